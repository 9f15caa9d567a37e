//go:build linux

package main

import (
	"encoding/json"
	"github.com/keepalive-dev/keepalive/internal/report"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

type enableJSON struct {
	Round   int  `json:"round"`
	DryRun  bool `json:"dry_run"`
	Results []struct {
		Local   string                 `json:"local"`
		PID     int                    `json:"pid"`
		Before  *report.EnableSettings `json:"before"`
		After   *report.EnableSettings `json:"after"`
		Changed bool                   `json:"changed"`
		Error   string                 `json:"error"`
	} `json:"results"`
	Matched int `json:"matched"`
	Changed int `json:"changed"`
	Already int `json:"unchanged"`
	Failed  int `json:"failed"`
}

func TestEnableRetrofitsRunningProcess(t *testing.T) {
	lab := newHostLab(t, 3)
	ns := lab.pair.A.Name
	pid := lab.child.Process.Pid
	childFDs, selfFDs := fdTable(t, pid), fdTable(t, os.Getpid())
	untouched := []string{"false 7200 75 9 0", "false 7200 75 9 0", "false 7200 75 9 0"}
	if got := lab.settings(); !slices.Equal(got, untouched) {
		t.Fatalf("child starts with %q, want %q", got, untouched)
	}
	args := []string{"enable", "--netns", ns, "--pid", lab.pid(), "--idle", "2", "--interval", "1", "--count", "3", "--json"}

	// --dry-run: exact before → after, and nothing changes (read back from inside the child).
	out, errOut, code := lab.run(append(args, "--dry-run")...)
	if code != 0 {
		t.Fatalf("enable --dry-run: exit %d: %s", code, errOut)
	}
	var dry enableJSON
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := report.EnableSettings{Enabled: true, IdleMS: 2000, IntervalMS: 1000, Count: 3}
	before := report.EnableSettings{Enabled: false, IdleMS: 7200000, IntervalMS: 75000, Count: 9}
	if !dry.DryRun || dry.Matched != 3 || dry.Changed != 3 {
		t.Fatalf("dry run: %s", out)
	}
	for _, r := range dry.Results {
		if r.PID != pid || r.Before == nil || *r.Before != before || r.After == nil || *r.After != want || !r.Changed {
			t.Errorf("dry-run result %+v", r)
		}
	}
	if got := lab.settings(); !slices.Equal(got, untouched) {
		t.Fatalf("--dry-run changed the child's sockets: %q", got)
	}

	// The real thing.
	out, errOut, code = lab.run(args...)
	if code != 0 {
		t.Fatalf("enable: exit %d: %s", code, errOut)
	}
	var res enableJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.DryRun || res.Matched != 3 || res.Changed != 3 || res.Failed != 0 {
		t.Fatalf("enable: %s", out)
	}
	for _, r := range res.Results {
		if r.After == nil || *r.After != want || r.Error != "" {
			t.Errorf("result %+v", r)
		}
	}
	if got := lab.settings(); !slices.Equal(got, []string{"true 2 1 3 0", "true 2 1 3 0", "true 2 1 3 0"}) {
		t.Fatalf("child reads back %q after enable", got)
	}
	// No descriptor leaked into the child or into us.
	if got := fdTable(t, pid); !slices.Equal(got, childFDs) {
		t.Errorf("child descriptors changed:\nbefore %q\nafter  %q", childFDs, got)
	}
	if got := fdTable(t, os.Getpid()); !slices.Equal(got, selfFDs) {
		t.Errorf("test process descriptors changed:\nbefore %q\nafter  %q", selfFDs, got)
	}
	// A second run finds nothing to change (and leaves the timers alone).
	out, _, _ = lab.run(args[:len(args)-1]...)
	if !strings.Contains(out, "3 connections: 0 changed, 3 already set, 0 gone, 0 failed") {
		t.Errorf("second enable:\n%s", out)
	}

	// Black-hole the peer and see the child get ETIMEDOUT when audit predicted it.
	time.Sleep(2500 * time.Millisecond) // let a probe be answered: the timer runs on idle 2/1/3
	lab.pair.B.BlackHole(t)
	auditStart := time.Now()
	a := lab.audit("--netns", ns, "--pid", lab.pid(), "--deep", "always")
	auditAt := auditStart.Add(time.Since(auditStart) / 2)
	if len(a.Connections) != 3 {
		t.Fatalf("audit after black hole: %+v", a)
	}
	var expect []time.Time
	for _, c := range a.Connections {
		if c.DetectMS == nil || *c.DetectMS != 5000 || c.AtRisk {
			t.Fatalf("audit: %+v", c)
		}
		expect = append(expect, auditAt.Add(time.Duration(*c.DetectMS-c.IdleMS)*time.Millisecond))
	}
	slices.SortFunc(expect, func(x, y time.Time) int { return x.Compare(y) })
	for i := 0; i < 3; i++ {
		line := lab.expect("err ", 12*time.Second)
		at := time.Now()
		if !strings.HasSuffix(line, " ETIMEDOUT") {
			t.Fatalf("child: %q, want ETIMEDOUT", line)
		}
		// Timer slack is ~1.024 s per second of a short timer, and the three probes add up.
		if d := at.Sub(expect[i]); d < -400*time.Millisecond || d > 2500*time.Millisecond {
			t.Errorf("connection died %s after the predicted time (%s)", d, line)
		} else {
			t.Logf("%s: %s after the predicted time", line, d.Round(time.Millisecond))
		}
	}
}

func TestEnableWatchPicksUpNewConnections(t *testing.T) {
	lab := newHostLab(t, 1)
	ns := lab.pair.A.Name
	out, errOut, code := lab.run("enable", "--netns", ns, "--pid", lab.pid(), "--user-timeout", "30s",
		"--watch", "1s", "--rounds", "2", "--json")
	if code != 0 {
		t.Fatalf("enable --watch: exit %d: %s", code, errOut)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var rounds []enableJSON
	for dec.More() {
		var r enableJSON
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		rounds = append(rounds, r)
	}
	if len(rounds) != 2 || rounds[0].Round != 1 || rounds[0].Changed != 1 || rounds[1].Matched != 0 {
		t.Fatalf("watch rounds: %+v", rounds)
	}
	if got := lab.settings(); !slices.Equal(got, []string{"true 7200 75 9 30000"}) {
		t.Fatalf("child reads back %q", got)
	}
}
