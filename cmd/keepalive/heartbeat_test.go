package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hbBin is the binary under test, built once by TestHeartbeatCommand into its TempDir.
type hbBin string

func hbBuild(t *testing.T) hbBin {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keepalive")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return hbBin(bin)
}

// TestHeartbeatCommand runs 'keepalive heartbeat serve' and 'connect' as real processes on
// 127.0.0.1.
func TestHeartbeatCommand(t *testing.T) {
	b := hbBuild(t)
	t.Run("ServeConnect", func(t *testing.T) { b.testServeConnect(t) })
	t.Run("HungPeerExit3", func(t *testing.T) { b.testHungPeerExit3(t) })
	t.Run("SilentPeerExit1", func(t *testing.T) { b.testSilentPeerExit1(t) })
	t.Run("FloodGoAway", func(t *testing.T) { b.testFloodGoAway(t) })
	t.Run("BadFlags", func(t *testing.T) { b.testBadFlags(t) })
}

// hbRun runs the binary to completion (bounded by 20 s).
func (b hbBin) run(t *testing.T, args ...string) (stdout, stderr string, code int, took time.Duration) {
	t.Helper()
	cmd := exec.Command(string(b), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	took = time.Since(start)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code, took
}

// hbServe starts 'heartbeat serve' on a free loopback port and returns its address.
func (b hbBin) serve(t *testing.T, extra ...string) string {
	t.Helper()
	args := append([]string{"heartbeat", "serve", "--listen", "127.0.0.1:0", "--json"}, extra...)
	cmd := exec.Command(string(b), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-lines:
		var ev struct{ Event, Addr string }
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Event != "listening" {
			t.Fatalf("first line %q: %v", l, err)
		}
		return ev.Addr
	case <-time.After(10 * time.Second):
		t.Fatal("serve printed no address")
		return ""
	}
}

func (b hbBin) testServeConnect(t *testing.T) {
	addr := b.serve(t)
	stdout, stderr, code, _ := b.run(t, "heartbeat", "connect", addr, "--time", "50ms", "--timeout", "1s", "--count", "3", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var pongs int
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var ev struct {
			Event string
			RTT   float64 `json:"rtt_ms"`
			Seq   int
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if ev.Event == "pong" {
			pongs++
			if ev.RTT <= 0 || ev.Seq != pongs {
				t.Fatalf("bad pong line %q", l)
			}
		}
	}
	if pongs != 3 {
		t.Fatalf("%d pongs, want 3:\n%s", pongs, stdout)
	}
	// Text output.
	stdout, _, code, _ = b.run(t, "heartbeat", "connect", addr, "--time", "50ms", "--count", "2")
	if code != 0 || !strings.Contains(stdout, "pong 2 from") || !strings.Contains(stdout, "rtt") {
		t.Fatalf("exit %d, text output:\n%s", code, stdout)
	}
}

// A server whose application hangs: its TCP stack answers, its heartbeats stop.
func (b hbBin) testHungPeerExit3(t *testing.T) {
	addr := b.serve(t, "--hang-after", "2")
	stdout, stderr, code, took := b.run(t, "heartbeat", "connect", addr, "--time", "100ms", "--timeout", "300ms")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "unresponsive") || !strings.Contains(stdout, "pong 2") || strings.Contains(stderr, "unresponsive") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if took > 5*time.Second {
		t.Fatalf("took %s", took)
	}
}

// A peer that accepts TCP but never speaks the protocol (no frame after the first PING) is
// reported within Time+Timeout as not being a heartbeat server, exit 1.
func (b hbBin) testSilentPeerExit1(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never read or written
		}
	}()
	stdout, stderr, code, took := b.run(t, "heartbeat", "connect", ln.Addr().String(), "--time", "200ms", "--timeout", "400ms", "--json")
	if code != 1 || !strings.Contains(stdout, `"event":"not_heartbeat"`) || stderr != "" {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if took < 550*time.Millisecond || took > 3*time.Second {
		t.Fatalf("silent peer reported after %s, want about 600ms", took)
	}
}

func (b hbBin) testFloodGoAway(t *testing.T) {
	addr := b.serve(t, "--min-time", "1s")
	stdout, stderr, code, _ := b.run(t, "heartbeat", "connect", addr, "--time", "10ms")
	if code != 3 || !strings.Contains(stdout, "too_many_pings") || strings.Contains(stderr, "too_many_pings") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func (b hbBin) testBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"heartbeat", "connect", "127.0.0.1:1", "--time", "1ms"}, "--time 1ms is out of range (allowed 10ms..24h)"},
		{[]string{"heartbeat", "connect", "127.0.0.1:1", "--timeout", "48h"}, "--timeout 48h0m0s is out of range"},
		{[]string{"heartbeat", "connect", "127.0.0.1:1", "--count", "-2"}, "--count -2 is out of range"},
		{[]string{"heartbeat", "connect", "nohost"}, "not HOST:PORT"},
		{[]string{"heartbeat", "connect"}, "accepts 1 arg"},
		{[]string{"heartbeat", "serve"}, "--listen is required"},
		{[]string{"heartbeat", "serve", "--listen", ":0", "--min-time", "1ms"}, "--min-time 1ms is out of range (allowed 0 (off) or 10ms..24h)"},
		{[]string{"heartbeat", "serve", "--listen", ":0", "--hang-after", "-1"}, "--hang-after -1 is out of range"},
		{[]string{"heartbeat", "connect", "127.0.0.1:1", "--time", "soon"}, "invalid argument"},
	} {
		_, stderr, code, _ := b.run(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	// Nothing listening: a plain error, exit 1.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, stderr, code, _ := b.run(t, "heartbeat", "connect", addr)
	if code != 1 || !strings.Contains(stderr, "connect to") {
		t.Fatalf("refused: exit %d %q", code, stderr)
	}
}
