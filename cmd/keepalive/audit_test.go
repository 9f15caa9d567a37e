//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// hostLab is the fixture of the audit/enable/reap tests: namespaces A and B joined by a veth
// pair, a listener of this test process in B, and a child process (testdata/hostchild) in A
// holding idle connections to it.
type hostLab struct {
	t      *testing.T
	bin    string
	pair   *nstest.Pair
	child  *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	locals []string
	ports  []string // local ports of the child's connections
	mu     sync.Mutex
	served []net.Conn // the listener's ends, in namespace B
	lnPort string
}

func hostBuild(t *testing.T) (keepaliveBin, childBin string) {
	t.Helper()
	dir := t.TempDir()
	keepaliveBin, childBin = filepath.Join(dir, "keepalive"), filepath.Join(dir, "hostchild")
	for _, b := range [][2]string{{keepaliveBin, "."}, {childBin, "./testdata/hostchild"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	return keepaliveBin, childBin
}

func newHostLab(t *testing.T, nconn int) *hostLab {
	t.Helper()
	nstest.Require(t)
	bin, childBin := hostBuild(t)
	pair := nstest.NewPair(t, "kahost", 4)
	lab := &hostLab{t: t, bin: bin, pair: pair, lines: make(chan string, 256)}
	var ln net.Listener
	pair.B.Do(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(pair.BIP.String(), "0"))
		return err
	})
	_, lab.lnPort, _ = net.SplitHostPort(ln.Addr().String())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			lab.mu.Lock()
			lab.served = append(lab.served, c)
			lab.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		lab.mu.Lock()
		for _, c := range lab.served {
			c.Close()
		}
		lab.mu.Unlock()
	})
	cmd := exec.Command(childBin, "-connect", ln.Addr().String(), "-n", strconv.Itoa(nconn))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	// Started from a thread inside A, the child lives in A.
	pair.A.Do(t, cmd.Start)
	lab.child, lab.stdin = cmd, stdin
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lab.lines <- sc.Text()
		}
		close(lab.lines)
	}()
	ready := lab.expect("ready", 10*time.Second)
	lab.locals = strings.Fields(strings.TrimPrefix(ready, "ready"))
	for _, l := range lab.locals {
		_, p, _ := net.SplitHostPort(l)
		lab.ports = append(lab.ports, p)
	}
	if len(lab.locals) != nconn {
		t.Fatalf("child reported %q", ready)
	}
	// Wait until every connection is accepted, so our own descriptor table is stable.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lab.mu.Lock()
		n := len(lab.served)
		lab.mu.Unlock()
		if n == nconn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("accepted %d of %d connections", n, nconn)
		}
	}
	return lab
}

// expect waits for the child's next line starting with prefix; other lines fail the test.
func (l *hostLab) expect(prefix string, timeout time.Duration) string {
	l.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-l.lines:
			if !ok {
				l.t.Fatalf("child exited while waiting for %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
			l.t.Fatalf("child said %q while waiting for %q", line, prefix)
		case <-deadline:
			l.t.Fatalf("child did not say %q within %s", prefix, timeout)
		}
	}
}

// quiet checks that the child says nothing for d.
func (l *hostLab) quiet(d time.Duration) {
	l.t.Helper()
	select {
	case line := <-l.lines:
		l.t.Fatalf("child said %q, want silence", line)
	case <-time.After(d):
	}
}

// settings asks the child for its own getsockopt view: "ENABLED IDLE INTVL CNT UT_MS" per conn.
func (l *hostLab) settings() []string {
	l.t.Helper()
	if _, err := io.WriteString(l.stdin, "get\n"); err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for {
		line := l.expect("", 5*time.Second)
		if line == "end" {
			return out
		}
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 || f[0] != "settings" {
			l.t.Fatalf("child said %q while listing settings", line)
		}
		out = append(out, f[2])
	}
}

func (l *hostLab) pid() string { return strconv.Itoa(l.child.Process.Pid) }

// run runs the keepalive binary.
func (l *hostLab) run(args ...string) (stdout, stderr string, code int) {
	l.t.Helper()
	return hostRun(l.t, l.bin, args...)
}

func hostRun(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// fdTable lists /proc/PID/fd as "fd -> target" lines.
func fdTable(t *testing.T, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // the ReadDir descriptor itself
		}
		out = append(out, e.Name()+" -> "+l)
	}
	slices.Sort(out)
	return out
}

// auditJSON is the part of `audit --json` the tests read.
type auditJSON struct {
	Connections []struct {
		NetNS     string `json:"netns"`
		Local     string `json:"local"`
		Peer      string `json:"peer"`
		State     string `json:"state"`
		Owners    []struct{ PID int }
		Keepalive struct {
			Source        string `json:"source"`
			Enabled       *bool  `json:"enabled"`
			IdleMS        int64  `json:"idle_ms"`
			IntervalMS    int64  `json:"interval_ms"`
			Count         int    `json:"count"`
			UserTimeoutMS int64  `json:"user_timeout_ms"`
		} `json:"keepalive"`
		IdleMS   int64  `json:"idle_ms"`
		DetectMS *int64 `json:"detect_ms"`
		AtRisk   bool   `json:"at_risk"`
		Risk     string `json:"risk"`
		Verdict  string `json:"verdict"`
	} `json:"connections"`
	Summary struct {
		Connections int            `json:"connections"`
		AtRisk      int            `json:"at_risk"`
		ByRisk      map[string]int `json:"by_risk"`
		ByProcess   []struct {
			PID         int    `json:"pid"`
			Comm        string `json:"comm"`
			Connections int    `json:"connections"`
			AtRisk      int    `json:"at_risk"`
		} `json:"by_process"`
		Text string `json:"text"`
	} `json:"summary"`
}

func (l *hostLab) audit(args ...string) auditJSON {
	l.t.Helper()
	out, errOut, code := l.run(append([]string{"audit", "--json"}, args...)...)
	if code != 0 && code != 3 {
		l.t.Fatalf("audit %v: exit %d: %s", args, code, errOut)
	}
	var a auditJSON
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		l.t.Fatalf("audit --json output: %v\n%s", err, out)
	}
	return a
}

func TestAuditChildConnections(t *testing.T) {
	lab := newHostLab(t, 2)
	ns := lab.pair.A.Name
	a := lab.audit("--netns", ns, "--pid", lab.pid())
	if len(a.Connections) != 2 || a.Summary.Connections != 2 || a.Summary.AtRisk != 2 || a.Summary.ByRisk["no-keepalive"] != 2 {
		t.Fatalf("audit: %+v", a)
	}
	for _, c := range a.Connections {
		if c.NetNS != ns || c.State != "ESTAB" || !slices.Contains(lab.locals, c.Local) || len(c.Owners) != 1 ||
			c.Owners[0].PID != lab.child.Process.Pid || c.Keepalive.Source != "socket" || c.Keepalive.Enabled == nil ||
			*c.Keepalive.Enabled || !c.AtRisk || c.DetectMS != nil || !strings.Contains(c.Verdict, "never noticed") {
			t.Errorf("connection %+v", c)
		}
	}
	if len(a.Summary.ByProcess) != 1 || a.Summary.ByProcess[0].Comm != "hostchild" || a.Summary.ByProcess[0].AtRisk != 2 {
		t.Errorf("by process: %+v", a.Summary.ByProcess)
	}
	// Text table and summary line.
	out, _, code := lab.run("audit", "--netns", ns, "--sort", "risk")
	if code != 0 {
		t.Fatalf("audit text: exit %d", code)
	}
	for _, want := range []string{"LOCAL", "PEER", "STATE", "PROCESS", "KEEPALIVE", "IDLE", "UNACKED", "TIMER", "DETECT", "RISK",
		lab.locals[0], lab.pid() + "/hostchild", "! no keepalive: a dead peer is never noticed", "2 connections, 2 at risk (no-keepalive 2)", "hostchild[" + lab.pid() + "] 2/2"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit text lacks %q:\n%s", want, out)
		}
	}
	if _, _, code := lab.run("audit", "--netns", ns, "--fail-on-risk"); code != 3 {
		t.Errorf("--fail-on-risk with connections at risk: exit %d, want 3", code)
	}
	// Give connection 0 keepalive with a 600 s idle: too long for an AWS NAT gateway.
	if _, e, code := lab.run("enable", "--netns", ns, "--port", lab.ports[0], "--idle", "600", "--interval", "10", "--count", "3"); code != 0 {
		t.Fatalf("enable: exit %d: %s", code, e)
	}
	a = lab.audit("--netns", ns, "--env", "aws-nat-gateway", "--sort", "local", "--deep", "always")
	var kinds []string
	for _, c := range a.Connections {
		kinds = append(kinds, c.Risk)
		if c.Local == lab.locals[0] {
			if c.Keepalive.IdleMS != 600000 || c.Keepalive.IntervalMS != 10000 || c.Keepalive.Count != 3 || c.DetectMS == nil || *c.DetectMS != 630000 ||
				c.Verdict != "first probe after 600 s but the aws-nat-gateway forgets after 350 s" {
				t.Errorf("retrofitted connection: %+v", c)
			}
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"middlebox", "no-keepalive"}) {
		t.Errorf("risks %v, want middlebox and no-keepalive", kinds)
	}
	// Filters: a port selects one connection; a peer outside the lab selects none.
	if a := lab.audit("--netns", ns, "--port", lab.ports[1]); len(a.Connections) != 1 || a.Connections[0].Local != lab.locals[1] {
		t.Errorf("--port %s: %+v", lab.ports[1], a.Connections)
	}
	if a := lab.audit("--netns", ns, "--peer", "192.0.2.0/24"); len(a.Connections) != 0 {
		t.Errorf("--peer 192.0.2.0/24: %+v", a.Connections)
	}
	if a := lab.audit("--netns", ns, "--idle-over", "1h"); len(a.Connections) != 0 {
		t.Errorf("--idle-over 1h: %+v", a.Connections)
	}
	// --all-netns sees the namespace too.
	found := 0
	for _, c := range lab.audit("--all-netns", "--pid", lab.pid()).Connections {
		if c.NetNS == ns {
			found++
		}
	}
	if found != 2 {
		t.Errorf("--all-netns found %d connections in %s, want 2", found, ns)
	}
	// Data in flight to a peer that went silent: only tcp_retries2 would end it.
	lab.pair.A.BlackHole(t)
	lab.mu.Lock()
	_, err := lab.served[0].Write([]byte("unanswered"))
	lab.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	a = lab.audit("--netns", lab.pair.B.Name, "--port", lab.lnPort, "--state", "established", "--deep", "always")
	inflight := 0
	for _, c := range a.Connections {
		if c.Risk == "in-flight" {
			inflight++
			if !c.AtRisk || !strings.HasPrefix(c.Verdict, "data in flight and no user timeout: ≈ 15 min") || c.DetectMS == nil {
				t.Errorf("in-flight connection: %+v", c)
			}
		}
	}
	if inflight != 1 || len(a.Connections) != 2 {
		t.Errorf("want 1 of 2 server connections in flight: %+v", a.Connections)
	}
}

func TestAuditBadInput(t *testing.T) {
	bin, _ := hostBuild(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"audit", "--sort", "bogus"}, 2, `invalid --sort "bogus"`},
		{[]string{"audit", "--port", "70000"}, 2, `invalid --port "70000" (allowed: 1..65535)`},
		{[]string{"audit", "--peer", "nowhere"}, 2, `invalid --peer "nowhere"`},
		{[]string{"audit", "--state", "sleepy"}, 2, `unknown TCP state "sleepy"`},
		{[]string{"audit", "--deep", "sometimes"}, 2, `invalid --deep "sometimes"`},
		{[]string{"audit", "--env", "moon"}, 2, `unknown environment "moon"`},
		{[]string{"audit", "--hz", "5"}, 2, "invalid --hz 5 (allowed: 10..10000"},
		{[]string{"audit", "--netns", "a", "--all-netns"}, 2, "exclude each other"},
		{[]string{"audit", "--netns", "kahost-does-not-exist"}, 1, `network namespace "kahost-does-not-exist" not found`},
		{[]string{"enable", "--idle", "60"}, 2, "--all"},
		{[]string{"enable", "--all"}, 2, "say what to set"},
		{[]string{"enable", "--all", "--idle", "40000"}, 2, "idle"},
		{[]string{"enable", "--all", "--count", "0"}, 2, "invalid --count 0"},
		{[]string{"enable", "--all", "--idle", "60", "--watch", "10ms"}, 2, "invalid --watch"},
		{[]string{"reap"}, 2, "there is no --all"},
		{[]string{"reap", "--all"}, 2, "unknown flag"},
	} {
		_, errOut, code := hostRun(t, bin, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// TestAuditTimersAndDataOnly checks that audit says which HZ its windows use and where it
// came from, and that a data-only middlebox gets the heartbeat advice, in text and JSON.
func TestAuditTimersAndDataOnly(t *testing.T) {
	bin, _ := hostBuild(t)
	out, errOut, code := hostRun(t, bin, "audit", "--port", "1", "--env", "aws-alb")
	if code != 0 || !strings.Contains(out, "Timers: HZ ") || !strings.Contains(out, "aws-alb counts only data as activity: TCP keepalive cannot keep this flow") {
		t.Errorf("audit --env aws-alb: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = hostRun(t, bin, "audit", "--port", "1", "--env", "aws-alb", "--hz", "1000", "--json")
	var got struct {
		Summary struct {
			HZ        int    `json:"hz"`
			HZSource  string `json:"hz_source"`
			Heartbeat string `json:"heartbeat_advice"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("audit --json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if got.Summary.HZ != 1000 || got.Summary.HZSource != "--hz" || !strings.Contains(got.Summary.Heartbeat, "application heartbeats") {
		t.Errorf("summary %+v", got.Summary)
	}
}
