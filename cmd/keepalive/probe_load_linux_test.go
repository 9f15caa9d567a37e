//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// TestProbeUnderLoadRedis probes the connections of a real server under a
// benchmark client (redis-server and redis-benchmark, both in a namespace of
// the test's own, on its loopback), several times over. Segments of the
// busy connections are captured all the time, also just before each probe
// leaves; none of them may decide a verdict: every alive verdict must be
// decided by a segment captured (kernel timestamp) after the probe was
// captured leaving, so no RTT is negative.
func TestProbeUnderLoadRedis(t *testing.T) {
	nstest.Require(t)
	server, err1 := exec.LookPath("redis-server")
	bench, err2 := exec.LookPath("redis-benchmark")
	nstest.Need(t, err1 == nil && err2 == nil,
		"redis-server and redis-benchmark (Debian: apt-get install -y redis-server redis-tools)")
	tn := newProbeTestNet(t)
	bin, err := probeTestBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	const port = "16379" // the namespace is the test's own: the port is free
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := func(name string, args ...string) *exec.Cmd {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		log, err := os.Create(filepath.Join(dir, filepath.Base(name)+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		// Started from a thread inside the namespace: the process lives there.
		if err := probeTestIn(tn.lns, cmd.Start); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill() // by PID, ours
			_ = cmd.Wait()
			log.Close()
		})
		return cmd
	}
	start(server, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no")
	ready := false
	for i := 0; i < 50 && !ready; i++ {
		_ = probeTestIn(tn.lns, func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
			if err == nil {
				c.Close()
				ready = true
			}
			return nil
		})
		if !ready {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatal("redis-server did not start listening")
	}
	const clients = 10
	start(bench, "-h", "127.0.0.1", "-p", port, "-c", fmt.Sprint(clients), "-n", "1000000000", "-t", "set,get", "-q", "-l")
	time.Sleep(time.Second)

	type row struct {
		Verdict   string `json:"verdict"`
		Evidence  string `json:"evidence"`
		RTT       int64  `json:"rtt_ns"`
		PreProbe  int    `json:"pre_probe_segments"`
		Busy      bool   `json:"busy"`
		DecidedBy *struct {
			CapturedAt time.Time `json:"captured_at"`
			SentAt     time.Time `json:"sent_at"`
			AfterProbe int64     `json:"after_probe_ns"`
			Probe      int       `json:"probe"`
		} `json:"decided_by"`
	}
	const runs = 8
	var total, alive, busy, preProbe int
	for run := 1; run <= runs; run++ {
		began := time.Now()
		out, errOut, code := probeTestRun(t, bin, "probe", "--json", "--netns", tn.local, "--port", port)
		var res struct {
			Connections []row `json:"connections"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("run %d: exit %d, json: %v\n%s\n%s", run, code, err, out, errOut)
		}
		if len(res.Connections) < clients {
			t.Fatalf("run %d: %d connections probed, want ≥ %d (both ends of %d)\n%s", run, len(res.Connections), clients, clients, out)
		}
		for _, r := range res.Connections {
			total++
			preProbe += r.PreProbe
			if r.Busy {
				busy++
			}
			if r.Verdict != "alive" {
				// A benchmark client may close and reopen a connection
				// meanwhile (gone); anything else is wrong for a live server.
				if r.Verdict != "gone" {
					t.Errorf("run %d: %s: %s", run, r.Verdict, r.Evidence)
				}
				continue
			}
			alive++
			d := r.DecidedBy
			switch {
			case r.RTT <= 0:
				t.Errorf("run %d: negative or zero RTT %d ns: %s", run, r.RTT, r.Evidence)
			case d == nil:
				t.Errorf("run %d: alive without the deciding segment: %s", run, r.Evidence)
			case !d.CapturedAt.After(d.SentAt) || d.AfterProbe != r.RTT || d.Probe < 1:
				t.Errorf("run %d: decided by a segment not after the probe: %+v (%s)", run, *d, r.Evidence)
			case d.SentAt.Before(began):
				t.Errorf("run %d: probe sent at %v, before the run began (%v)", run, d.SentAt, began)
			case !strings.Contains(r.Evidence, "after probe"):
				t.Errorf("run %d: evidence does not name the deciding segment: %s", run, r.Evidence)
			}
		}
		if code != 0 && !t.Failed() {
			t.Errorf("run %d: exit %d\n%s", run, code, errOut)
		}
	}
	t.Logf("%d runs: %d results, %d alive (%d busy), %d segments captured before a probe and not allowed to decide",
		runs, total, alive, busy, preProbe)
	if alive < total/2 {
		t.Errorf("only %d of %d alive", alive, total)
	}
}
