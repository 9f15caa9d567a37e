package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// planBinary builds the keepalive binary once for the command tests in this file.
var planBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "keepalive-plan-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "keepalive")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

func planRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin, err := planBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestPlanDefaultsExplained(t *testing.T) {
	out, _, code := planRun(t, "plan")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"textbook: 2 h 11 min 15 s", "ETIMEDOUT", "keepalive probe 9", "keepalive plan --env", "net.ipv4.tcp_keepalive_time = 7200", "timer-wheel", "Timers: HZ"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
}

func TestPlanEnvJSON(t *testing.T) {
	out, _, code := planRun(t, "plan", "--env", "aws-nat-gateway", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var r struct {
		Source string `json:"source"`
		Config struct {
			Idle  float64 `json:"idle_seconds"`
			Intvl float64 `json:"interval_seconds"`
			Count int     `json:"count"`
		} `json:"config"`
		Detected bool              `json:"detected"`
		Snippets map[string]string `json:"snippets"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
	if r.Source != "recommended" || r.Config.Idle <= 0 || r.Config.Idle >= 350 || r.Config.Count < 2 || !r.Detected {
		t.Fatalf("plan --env aws-nat-gateway = %+v", r)
	}
	if !strings.Contains(r.Snippets["go"], "keepalive.Config{") || !strings.Contains(r.Snippets["sysctl"], "tcp_keepalive_probes") {
		t.Fatalf("snippets: %v", r.Snippets)
	}
}

func TestPlanScenariosAndSVG(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "t.svg")
	out, _, code := planRun(t, "plan", "--idle", "2s", "--interval", "1", "--count", "3", "--scenario", "reboot", "--svg", svg)
	if code != 0 || !strings.Contains(out, "ECONNRESET") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	b, err := os.ReadFile(svg)
	if err != nil || !bytes.HasPrefix(b, []byte("<svg")) || !bytes.Contains(b, []byte("probe")) {
		t.Fatalf("svg: %v %.200s", err, b)
	}
	out, _, code = planRun(t, "plan", "--idle", "2", "--scenario", "reboot", "--json")
	var pj struct {
		Probe struct {
			Result struct {
				Verdict string `json:"verdict"`
			} `json:"result"`
		} `json:"probe"`
	}
	if err := json.Unmarshal([]byte(out), &pj); err != nil || code != 0 || pj.Probe.Result.Verdict != "reset" {
		t.Fatalf("plan --scenario reboot --json: probe simulation %+v (%v, exit %d)", pj, err, code)
	}
	out, _, _ = planRun(t, "plan", "--idle", "60", "--scenario", "in-flight")
	if !strings.Contains(out, "15 min") {
		t.Fatalf("in-flight without user timeout should mention tcp_retries2's ≈15 min:\n%s", out)
	}
	out, _, _ = planRun(t, "plan", "--idle", "400", "--interval", "10", "--count", "3", "--scenario", "nat", "--env", "aws-nat-gateway")
	if !strings.Contains(out, "middlebox forgets") || !strings.Contains(out, "ECONNRESET") {
		t.Fatalf("nat scenario:\n%s", out)
	}
	out, _, _ = planRun(t, "plan", "--list-envs")
	for _, env := range []string{"linux-conntrack", "aws-nat-gateway", "azure-lb", "aws-elb", "aws-alb", "aws-nlb", "gcp-lb", "rfc5382", "mobile-carrier-nat", "consumer-router", "carrier-grade-nat", "corporate-firewall", "unknown-nat", "1 min – 10 min", "data only"} {
		if !strings.Contains(out, env) {
			t.Errorf("--list-envs lacks %s", env)
		}
	}
}

// TestPlanBadFlags: every bad value gets exit code 2 and a message naming it and the range.
func TestPlanBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--idle", "0.5"}, "1s..32767s"},
		{[]string{"--idle", "40000"}, "1s..32767s"},
		{[]string{"--interval", "1500ms"}, "not a multiple of 1s"},
		{[]string{"--idle", "0"}, "--idle 0"},
		{[]string{"--idle", "abc"}, `"abc" is not a duration`},
		{[]string{"--idle", "-5s"}, "negative"},
		{[]string{"--count", "0"}, "--count 0"},
		{[]string{"--count", "128"}, "1..127"},
		{[]string{"--count", "x"}, "invalid argument"},
		{[]string{"--user-timeout", "0.5ms"}, "1ms..2147483647ms"},
		{[]string{"--os", "plan9"}, "allowed: linux, darwin, windows, freebsd"},
		{[]string{"--os", "freebsd", "--user-timeout", "10s"}, "user-timeout"},
		{[]string{"--scenario", "meteor"}, "allowed: silent, reboot, nat, in-flight"},
		{[]string{"--scenario", "nat"}, "needs --middlebox-timeout or --env"},
		{[]string{"--env", "moon-nat"}, "known: "},
		{[]string{"--detect-within", "2s"}, "at least 3s"},
		{[]string{"--middlebox-timeout", "1s"}, "at least 2s"},
		{[]string{"--rtt", "1e9", "--scenario", "in-flight"}, "allowed: 0..1m0s"},
		{[]string{"--hz", "5"}, "allowed: 10..10000"},
		{[]string{"--segments", "0", "--scenario", "in-flight"}, "allowed: 1.."},
		{[]string{"--segments", "3"}, "in-flight only"},
		{[]string{"extra-arg"}, "unknown command"},
		{[]string{"--bogus"}, "unknown flag"},
	} {
		_, stderr, code := planRun(t, append([]string{"plan"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("plan %v: exit %d, stderr %q; want non-zero and %q", tc.args, code, stderr, tc.want)
		}
		if code != 2 && code != 1 {
			t.Errorf("plan %v: exit %d, want 1 or 2", tc.args, code)
		}
	}
}

func TestSysctlShowAndBadSet(t *testing.T) {
	out, _, code := planRun(t, "sysctl", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var v struct {
		Keepalive struct {
			Count int `json:"count"`
		} `json:"keepalive"`
		DetectionText string `json:"detection_text"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Keepalive.Count == 0 || v.DetectionText == "" {
		t.Fatalf("sysctl --json: %v %s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"set"}, "nothing to set"},
		{[]string{"set", "--count", "200"}, "1..127"},
		{[]string{"set", "--idle", "0"}, "--idle 0"},
		{[]string{"set", "--env", "aws-nat-gateway", "--idle", "5"}, "exclusive"},
		{[]string{"--netns", "kacore-does-not-exist"}, "kacore-does-not-exist"},
	} {
		_, stderr, code := planRun(t, append([]string{"sysctl"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("sysctl %v: exit %d, stderr %q; want %q", tc.args, code, stderr, tc.want)
		}
	}
	out, _, code = planRun(t, "sysctl", "set", "--idle", "300", "--persist", "--dry-run")
	if code != 0 || !strings.Contains(out, "net.ipv4.tcp_keepalive_time = 300") || !strings.Contains(out, "SO_KEEPALIVE") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
}

// Issue 9: HZ is an input with its source in text and JSON; the user timeout just after a
// nominal firing names both candidate firings; an interval longer than the NAT timeout
// lets the mapping expire.
func TestPlanHZAndWindows(t *testing.T) {
	out, _, code := planRun(t, "plan", "--idle", "4", "--interval", "3", "--count", "9", "--user-timeout", "7.1s", "--hz", "250", "--json")
	var r struct {
		Earliest, Latest int64
		HZ               int    `json:"hz"`
		HZSource         string `json:"hz_source"`
		Timeline         struct {
			Candidates []struct{ From, To int64 } `json:"candidates"`
		} `json:"timeline"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
		t.Fatalf("exit %d %v\n%s", code, err, out)
	}
	if r.HZ != 250 || r.HZSource != "--hz" || len(r.Timeline.Candidates) != 2 || r.Earliest > 7118e6 || r.Latest < 10e9 {
		t.Fatalf("plan --hz 250 4/3/7.1s: %+v", r)
	}
	out, _, _ = planRun(t, "plan", "--idle", "4", "--interval", "3", "--user-timeout", "7.1s", "--hz", "250")
	if !strings.Contains(out, "candidate 1:") || !strings.Contains(out, "candidate 2:") || !strings.Contains(out, "HZ 250 (--hz)") {
		t.Fatalf("text lacks the candidates or the HZ source:\n%s", out)
	}
	out, _, _ = planRun(t, "plan", "--idle", "60s", "--interval", "600s", "--count", "3", "--env", "aws-nat-gateway", "--scenario", "nat")
	if !strings.Contains(out, "ECONNRESET") || !strings.Contains(out, "max(idle, interval)") {
		t.Fatalf("interval beyond the NAT timeout: the mapping must expire and a warning say why:\n%s", out)
	}
	out, _, code = planRun(t, "plan", "--env", "aws-alb")
	if code != 0 || !strings.Contains(out, "TCP keepalive cannot keep this flow: use application heartbeats (package heartbeat) or the protocol's own pings") {
		t.Fatalf("plan --env aws-alb (exit %d):\n%s", code, out)
	}
	out, _, _ = planRun(t, "plan", "--env", "consumer-router", "--json")
	var rec struct {
		Config struct {
			Idle float64 `json:"idle_seconds"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.Config.Idle >= 60 {
		t.Fatalf("consumer-router must be planned for its 1-minute low end: %+v %v", rec, err)
	}
}
