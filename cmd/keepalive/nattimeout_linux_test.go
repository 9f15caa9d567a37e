//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/keepalive-dev/keepalive/internal/report"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/natlab"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/keepalive-dev/keepalive/nattimeout"
)

// natStart starts the binary inside ns (the child inherits the namespace of the thread
// that forks it) and kills it at cleanup.
func natStart(t *testing.T, ns *nstest.NS, cmd *exec.Cmd) {
	t.Helper()
	ns.Do(t, cmd.Start)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// natLabMeasure serves in the server namespace and measures from the client namespace.
func natLabMeasure(t *testing.T, b hbBin, r *natlab.Routed, via string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	srv := exec.Command(string(b), "nat-timeout", "serve", "--listen", fmt.Sprintf("%s:%d", natlab.ServerIP, natlab.ServerPort), "--token", "lab")
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	natStart(t, r.Server, srv)
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "listening on ") {
		t.Fatalf("serve: first line %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if via == "" {
		via = fmt.Sprintf("%s:%d", natlab.ServerIP, natlab.ServerPort)
	}
	m := exec.Command(string(b), append([]string{"nat-timeout", "measure", via, "--token", "lab", "--max", "1m", "--no-progress"}, args...)...)
	var o, e bytes.Buffer
	m.Stdout, m.Stderr = &o, &e
	natStart(t, r.Client, m)
	done := make(chan error, 1)
	go func() { done <- m.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("measure did not finish in 2 min")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestNATTimeoutLab runs 'keepalive nat-timeout' as processes in the lab: through a
// conntrack NAT that forgets flows after 4 s, and through a proxy that closes connections
// idle of data for 5 s whatever keepalive does.
func TestNATTimeoutLab(t *testing.T) {
	b := hbBuild(t)
	t.Run("ConntrackNAT", func(t *testing.T) {
		r := natlab.New(t, "nat14x")
		r.ConntrackNAT(t, 4, "drop")
		stdout, stderr, code := natLabMeasure(t, b, r, "", "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var j report.NATJSON
		if err := json.Unmarshal([]byte(stdout), &j); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		for _, d := range []*report.NATDir{j.Up, j.Down} {
			if d == nil || !d.Expired || d.TimeoutSeconds < 3.7 || d.TimeoutSeconds > 5 || d.ErrorSeconds > 1 || d.Behaviour != "silent" {
				t.Errorf("direction %+v, want silent expiry after 4 s ±1 s", d)
			}
		}
		if !j.KeepaliveRecognised || j.Heartbeat || j.Recommendation == nil || !strings.HasPrefix(j.RecommendationCommand, "keepalive plan --middlebox-timeout 4s") {
			t.Errorf("keepalive/advice: %s", stdout)
		}
	})
	t.Run("DataOnlyProxy", func(t *testing.T) {
		r := natlab.New(t, "nat14y")
		via := r.Proxy(t, fmt.Sprintf("%s:%d", natlab.ServerIP, natlab.ServerPort), 5*time.Second)
		stdout, stderr, code := natLabMeasure(t, b, r, via)
		if code != exitFound {
			t.Fatalf("exit %d, want %d (keepalive cannot keep the flow): %s\n%s", code, exitFound, stderr, stdout)
		}
		for _, want := range []string{"by closing the connection itself (FIN)", "keepalive probes: do NOT count as activity", nattimeout.HeartbeatAdvice} {
			if !strings.Contains(stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, stdout)
			}
		}
	})
}
