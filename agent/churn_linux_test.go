//go:build linux

package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/keepalive-dev/keepalive/probe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The churn tests run the agent against network namespaces and containers that
// appear and disappear between its sweeps: what appeared is reported, what
// disappeared leaves no metric series, no error and no descriptor behind.
//
// The agent sees every namespace of the host, also those of tests running at
// the same time in other processes: the tests match only their own objects
// (unique names, PIDs, container IDs) and keep every label value (TopN 1000).

// churnLabels are the labels of the churn tests' agents.
func churnLabels() Labels { return Labels{Namespace: true, Process: true, TopN: 1000} }

func churnID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lockedBuffer collects the agent's log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns the lines written since the last call.
func (b *lockedBuffer) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	b.buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// churnAgent returns an agent with policy pol (YAML, "" for none) whose debug
// log is collected; it is closed at cleanup.
func churnAgent(t *testing.T, pol string) (*Agent, *lockedBuffer) {
	t.Helper()
	log := &lockedBuffer{}
	opt := Options{Labels: churnLabels(), Log: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if pol != "" {
		p, err := ParsePolicy([]byte(pol))
		if err != nil {
			t.Fatalf("policy: %v\n%s", err, pol)
		}
		opt.Policy = p
	}
	a, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := safeClose(a); err != nil {
			t.Errorf("close the agent: %v", err)
		}
	})
	return a, log
}

// safeSweep is a.Sweep turning a panic into an error, so that the other tests run.
func safeSweep(ctx context.Context, a *Agent) (r SweepResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("agent panicked in Sweep: %v\n%s", p, debug.Stack())
		}
	}()
	return a.Sweep(ctx)
}

// safeClose is a.Close turning a panic into an error.
func safeClose(a *Agent) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("agent panicked in Close: %v\n%s", p, debug.Stack())
		}
	}()
	return a.Close()
}

// churnSweep is the package tests' sweep, with a panic failing the test
// instead of the test binary.
func churnSweep(t *testing.T, a *Agent) SweepResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := safeSweep(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// errorsLogged returns the errors the agent counted since the last call (its
// "skipped" and "cannot probe" log lines) and the change of keepalive_errors_total.
func errorsLogged(t *testing.T, a *Agent, log *lockedBuffer, before *float64) []string {
	t.Helper()
	var out []string
	for _, l := range log.take() {
		if strings.Contains(l, "msg=skipped") || strings.Contains(l, `msg="cannot probe"`) || strings.Contains(l, `msg="sweep failed"`) {
			out = append(out, l)
		}
	}
	now := metricSum(scrape(t, a.Handler()), "keepalive_errors_total")
	if now != *before {
		t.Logf("keepalive_errors_total +%v", now-*before)
	}
	*before = now
	return out
}

// checkNoErrorAbout fails when an error the agent counted names one of the
// strings in about (a namespace name, a PID, a container ID); errors about
// other tests' objects are only logged.
func checkNoErrorAbout(t *testing.T, errs []string, about ...string) {
	t.Helper()
	for _, e := range errs {
		mine := false
		for _, s := range about {
			mine = mine || strings.Contains(e, s)
		}
		if mine {
			t.Errorf("the agent counted an error about a gone object: %s", e)
		} else {
			t.Logf("error about another test's object (not ours): %s", e)
		}
	}
}

// checkNoTrace fails when the scrape still names a gone object in any series.
func checkNoTrace(t *testing.T, m string, values ...string) {
	t.Helper()
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, v := range values {
			if strings.Contains(line, v) {
				t.Errorf("stale series after the object went away: %s", line)
			}
		}
	}
}

// nsRefs lists the descriptors of this process (the test and the agent) that
// hold network namespace ino: an nsfs handle of it, or a socket living in it
// (SIOCGSKNS). Each keeps the namespace alive after it is deleted.
func nsRefs(ino uint64) []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return []string{err.Error()}
	}
	want := fmt.Sprintf("net:[%d]", ino)
	var out []string
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		switch {
		case err != nil:
		case link == want:
			out = append(out, fmt.Sprintf("fd %d: %s", fd, link))
		case strings.HasPrefix(link, "socket:["):
			nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
			if err != nil {
				continue // closed meanwhile, or not a socket any more
			}
			var st unix.Stat_t
			err = unix.Fstat(nsfd, &st)
			unix.Close(nsfd)
			if err == nil && st.Ino == ino {
				out = append(out, fmt.Sprintf("fd %d: %s in %s", fd, link, want))
			}
		}
	}
	return out
}

// checkNoRefs fails when this process still holds namespace ino (see nsRefs).
func checkNoRefs(t *testing.T, ino uint64, what string) {
	t.Helper()
	if refs := nsRefs(ino); len(refs) > 0 {
		t.Errorf("%s is gone, but this process still holds it (net:[%d]):\n%s", what, ino, strings.Join(refs, "\n"))
	}
}

// churnNS is a named namespace with n connections over its loopback (both ends
// inside, keepalive off), made and removed by the test.
type churnNS struct {
	name  string
	ino   uint64
	h     netns.NsHandle
	conns []net.Conn
	ln    net.Listener
	port  int
	once  sync.Once
}

func newChurnNS(name string, n int) (*churnNS, error) {
	h, err := netnsx.NewNamed(name)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	ns := &churnNS{name: name, h: h}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		ns.remove()
		return nil, err
	}
	ns.ino = st.Ino
	err = netnsx.Do(h, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		lc := net.ListenConfig{KeepAlive: -1}
		ns.ln, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ns.port = ns.ln.Addr().(*net.TCPAddr).Port
		d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
		for range n {
			c, err := d.Dial("tcp4", ns.ln.Addr().String())
			if err != nil {
				return err
			}
			ns.conns = append(ns.conns, c)
			s, err := ns.ln.Accept()
			if err != nil {
				return err
			}
			ns.conns = append(ns.conns, s)
		}
		return nil
	})
	if err != nil {
		ns.remove()
		return nil, fmt.Errorf("connections in %s: %w", name, err)
	}
	return ns, nil
}

// remove closes the connections and the handle and deletes the namespace; the
// kernel then frees it. Safe to call twice.
func (ns *churnNS) remove() error {
	var err error
	ns.once.Do(func() {
		for _, c := range ns.conns {
			c.Close()
		}
		if ns.ln != nil {
			ns.ln.Close()
		}
		ns.h.Close()
		err = netnsx.DeleteNamed(ns.name)
	})
	return err
}

// buildCtrpair builds the command tests' static container program (see
// cmd/keepalive/testdata/ctrpair): it listens on 127.0.0.1, dials itself -n
// times with keepalive off on both ends, prints "ready PORT" and holds them.
func buildCtrpair(t *testing.T) string {
	t.Helper()
	return nstest.StaticBinary(t, "..", "./cmd/keepalive/testdata/ctrpair")
}

// TestChurnNamedNamespace: a named namespace with connections appears between
// sweeps 1 and 2 and is deleted before sweep 3.
func TestChurnNamedNamespace(t *testing.T) {
	nstest.Require(t)
	const n = 3
	name := "kachurn-" + churnID()
	a, log := churnAgent(t, fmt.Sprintf(`rules:
  - name: churn-probe
    match: {namespaces: [%s]}
    action: probe
    probe: {idle_over: 1s}
`, name))
	var errs float64
	churnSweep(t, a)
	checkNoTrace(t, scrape(t, a.Handler()), `"`+name+`"`)
	errorsLogged(t, a, log, &errs)

	ns, err := newChurnNS(name, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.remove(); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	time.Sleep(1200 * time.Millisecond) // idle over the probe rule's threshold
	r := churnSweep(t, a)
	m := scrape(t, a.Handler())
	lbl := `namespace="` + name + `"`
	for _, c := range []struct {
		metric string
		labels []string
	}{
		{"keepalive_connections", []string{lbl, `state="ESTAB"`, `risk="no-keepalive"`}},
		{"keepalive_connections_at_risk", []string{lbl, `risk="no-keepalive"`}},
		{"keepalive_connections_without_keepalive", []string{lbl}},
	} {
		if got := metricSum(m, c.metric, c.labels...); got != 2*n {
			t.Errorf("sweep 2: %s{%s} = %v, want %d", c.metric, strings.Join(c.labels, ","), got, 2*n)
		}
	}
	if got := metricSum(m, "keepalive_rule_connections", `rule="churn-probe"`); got != 2*n {
		t.Errorf("sweep 2: rule churn-probe matched %v connections, want %d", got, 2*n)
	}
	if !strings.Contains(m, `keepalive_tcpext_total{counter="TCPKeepAlive",`+lbl+`}`) {
		t.Errorf("sweep 2: no TcpExt counters for %s", name)
	}
	if r.Probed == 0 || r.Dead != 0 {
		t.Errorf("sweep 2 probed %d connections (%d dead), want > 0 (none dead)", r.Probed, r.Dead)
	}
	// The test's own sockets and the prober's live in the namespace now.
	if refs := nsRefs(ns.ino); len(refs) <= 2*n+1 {
		t.Errorf("sweep 2: %d descriptors in %s, want the test's %d and the prober's:\n%s", len(refs), name, 2*n+1, strings.Join(refs, "\n"))
	}
	checkNoErrorAbout(t, errorsLogged(t, a, log, &errs), name)
	if t.Failed() {
		t.Fatalf("sweep 2: %+v\n%s", r, m)
	}

	if err := ns.remove(); err != nil {
		t.Fatal(err)
	}
	r3 := churnSweep(t, a)
	m = scrape(t, a.Handler())
	checkNoTrace(t, m, `"`+name+`"`)
	if got := metricSum(m, "keepalive_rule_connections", `rule="churn-probe"`); got != 0 {
		t.Errorf("sweep 3: rule churn-probe still matches %v connections", got)
	}
	if r3.Probed != 0 {
		t.Errorf("sweep 3 probed %d connections of a gone namespace", r3.Probed)
	}
	checkNoErrorAbout(t, errorsLogged(t, a, log, &errs), name, strconv.FormatUint(ns.ino, 10))
	checkNoRefs(t, ns.ino, "namespace "+name)
}

// TestChurnProcessNamespace: a namespace held only by a process (no mount, no
// name), whose connections that process owns, appears between sweeps 1 and 2;
// the process is killed before sweep 3.
func TestChurnProcessNamespace(t *testing.T) {
	nstest.Require(t)
	_, err := exec.LookPath("ip")
	nstest.Need(t, err == nil, "iproute2's ip (to bring up the loopback of a new namespace)")
	prog := buildCtrpair(t)
	a, log := churnAgent(t, "")
	var errs float64
	churnSweep(t, a)
	errorsLogged(t, a, log, &errs)

	// The child unshares a network namespace (clone flag), brings up its loopback
	// and becomes ctrpair: 2 connections, 4 sockets, all its own.
	cmd := exec.Command("sh", "-c", `ip link set lo up && exec "$0" -n 2`, prog)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	var waitOnce sync.Once
	kill := func() {
		waitOnce.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(kill)
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "ready ") {
			kill()
			t.Fatalf("ctrpair in a new namespace: %q %s", line, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ctrpair not ready after 15 s")
	}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
		t.Fatal(err)
	}
	ino := st.Ino
	label := fmt.Sprintf("pid %d (ctrpair)", pid)
	lbl := `namespace="` + label + `"`

	pol := fmt.Sprintf(`rules:
  - name: churn-proc
    match: {namespaces: [%q]}
    action: probe
    probe: {idle_over: 1s}
`, label)
	p, err := ParsePolicy([]byte(pol))
	if err != nil {
		t.Fatal(err)
	}
	a.SetPolicy(p)
	time.Sleep(1200 * time.Millisecond)
	r := churnSweep(t, a)
	m := scrape(t, a.Handler())
	if got := metricSum(m, "keepalive_connections", lbl, `process="ctrpair"`, `risk="no-keepalive"`); got != 4 {
		t.Errorf("sweep 2: %v connections of ctrpair without keepalive in %s, want 4", got, label)
	}
	if got := metricSum(m, "keepalive_connections_at_risk", lbl); got != 4 {
		t.Errorf("sweep 2: %v connections at risk in %s, want 4", got, label)
	}
	if got := metricSum(m, "keepalive_rule_connections", `rule="churn-proc"`); got != 4 {
		t.Errorf("sweep 2: rule churn-proc matched %v connections, want 4", got)
	}
	if r.Probed == 0 || r.Dead != 0 {
		t.Errorf("sweep 2 probed %d connections (%d dead), want > 0 (none dead)", r.Probed, r.Dead)
	}
	if refs := nsRefs(ino); len(refs) == 0 {
		t.Errorf("sweep 2: no prober descriptor in %s", label)
	}
	checkNoErrorAbout(t, errorsLogged(t, a, log, &errs), label, "/proc/"+strconv.Itoa(pid)+"/")
	if t.Failed() {
		t.Fatalf("sweep 2: %+v\n%s", r, m)
	}

	kill()
	r3 := churnSweep(t, a)
	m = scrape(t, a.Handler())
	checkNoTrace(t, m, `"`+label+`"`)
	if got := metricSum(m, "keepalive_rule_connections", `rule="churn-proc"`); got != 0 {
		t.Errorf("sweep 3: rule churn-proc still matches %v connections", got)
	}
	if r3.Probed != 0 {
		t.Errorf("sweep 3 probed %d connections of a gone namespace", r3.Probed)
	}
	checkNoErrorAbout(t, errorsLogged(t, a, log, &errs), label, "/proc/"+strconv.Itoa(pid)+"/", strconv.FormatUint(ino, 10))
	checkNoRefs(t, ino, "the namespace of "+label)
}

// ctrpairImage imports ctrpair as an image FROM scratch (no registry); it is
// removed at cleanup.
func ctrpairImage(t *testing.T, id string) string {
	t.Helper()
	return nstest.ImportImage(t, buildCtrpair(t), "keepalive-test-churn:"+id)
}

// TestChurnContainer: a Docker container holding 3 connections (6 sockets of
// its own process, in its own namespace) starts between sweeps; a report rule
// selects it by container ID, then an enforce rule (retrofit only: no
// Enforcer) retrofits its connections; it is removed with 'docker rm -f'.
func TestChurnContainer(t *testing.T) {
	nstest.Require(t)
	nstest.NeedDocker(t)
	id := churnID()
	image := ctrpairImage(t, id)
	a, log := churnAgent(t, "")
	var errs float64
	churnSweep(t, a)
	errorsLogged(t, a, log, &errs)

	name := "keepalive-test-churn-" + id
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	cid := nstest.Docker(t, "run", "-d", "--name", name, "--network", "none", image, "-n", "3")
	pid := nstest.Docker(t, "inspect", "-f", "{{.State.Pid}}", cid)
	for deadline := time.Now().Add(15 * time.Second); !strings.HasPrefix(nstest.Docker(t, "logs", name), "ready "); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("container not ready: %q", nstest.Docker(t, "logs", name))
		}
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+pid+"/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	ino := st.Ino
	short := cid[:12]
	label := "docker:" + short
	lbl := `namespace="` + label + `"`
	about := []string{short, "/proc/" + pid + "/", strconv.FormatUint(ino, 10)}

	set := func(pol string) {
		t.Helper()
		p, err := ParsePolicy([]byte(pol))
		if err != nil {
			t.Fatalf("%v\n%s", err, pol)
		}
		a.SetPolicy(p)
	}
	set(fmt.Sprintf(`rules:
  - name: churn-ctr
    match: {containers: [%s]}
    action: report
`, short))
	r := churnSweep(t, a)
	m := scrape(t, a.Handler())
	if got := metricSum(m, "keepalive_connections", lbl, `process="ctrpair"`, `state="ESTAB"`, `risk="no-keepalive"`); got != 6 {
		t.Errorf("sweep 2: %v connections of ctrpair without keepalive in %s, want 6", got, label)
	}
	if got := metricSum(m, "keepalive_connections_at_risk", lbl); got != 6 {
		t.Errorf("sweep 2: %v connections at risk in %s, want 6", got, label)
	}
	if got := metricSum(m, "keepalive_rule_connections", `rule="churn-ctr"`, `action="report"`); got != 6 {
		t.Errorf("sweep 2: rule churn-ctr matched %v connections, want 6", got)
	}
	checkNoErrorAbout(t, errorsLogged(t, a, log, &errs), about...)
	if t.Failed() {
		t.Fatalf("sweep 2: %+v\n%s", r, m)
	}

	// Enforce without an Enforcer: the existing connections are retrofitted.
	applied := metricSum(m, "keepalive_retrofits_total", `result="applied"`)
	set(fmt.Sprintf(`rules:
  - name: churn-enforce
    match: {containers: [%s]}
    action: enforce
    keepalive: {idle: 30s, interval: 5s, count: 3}
`, cid))
	r = churnSweep(t, a)
	if r.Retrofits != 6 {
		t.Errorf("sweep 3 retrofitted %d connections, want 6", r.Retrofits)
	}
	churnSweep(t, a)
	m = scrape(t, a.Handler())
	if got := metricSum(m, "keepalive_retrofits_total", `result="applied"`) - applied; got != 6 {
		t.Errorf("keepalive_retrofits_total{result=\"applied\"} grew by %v, want 6", got)
	}
	if got := metricSum(m, "keepalive_connections", lbl, `risk="no-keepalive"`); got != 0 {
		t.Errorf("sweep 4: %v connections still without keepalive in %s", got, label)
	}
	if got := metricSum(m, "keepalive_connections", lbl); got != 6 {
		t.Errorf("sweep 4: %v connections in %s, want 6", got, label)
	}
	if got := metricSum(m, "keepalive_rule_connections", `rule="churn-enforce"`, `action="enforce"`); got != 6 {
		t.Errorf("sweep 4: rule churn-enforce matched %v connections, want 6", got)
	}
	checkNoErrorAbout(t, errorsLogged(t, a, log, &errs), about...)
	if t.Failed() {
		t.Fatalf("sweep 4:\n%s", m)
	}

	nstest.Docker(t, "rm", "-f", name)
	r = churnSweep(t, a)
	m = scrape(t, a.Handler())
	checkNoTrace(t, m, short)
	if got := metricSum(m, "keepalive_rule_connections", `rule="churn-enforce"`); got != 0 {
		t.Errorf("after docker rm: rule churn-enforce still matches %v connections", got)
	}
	if r.Retrofits != 0 || r.Attachments != 0 {
		t.Errorf("after docker rm: %+v", r)
	}
	checkNoErrorAbout(t, errorsLogged(t, a, log, &errs), about...)
	checkNoRefs(t, ino, "the namespace of container "+short)
	checkNoPidfd(t, pid)
}

// checkNoPidfd fails when this process still holds a pidfd of process pid (or
// of a process that has exited: "Pid: -1"), such as a retrofit's.
func checkNoPidfd(t *testing.T, pid string) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || link != "anon_inode:[pidfd]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(info), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Pid:" && (f[1] == pid || f[1] == "-1") {
				t.Errorf("fd %s is a pidfd of pid %s (gone container process %s)", e.Name(), f[1], pid)
			}
		}
	}
}

// TestChurnSweepsDuringDeletions sweeps while a goroutine creates and deletes
// named namespaces with connections (at least 20, at most 60, until 3 sweeps
// have overlapped the churn; up to 8 alive at once, each matched by a probe
// rule): no sweep fails or panics, and when the churn is over nothing of them
// is left in the metrics or the process. The errors the agent counts meanwhile
// (namespaces gone between its steps) are logged by stage, not judged.
func TestChurnSweepsDuringDeletions(t *testing.T) {
	nstest.Require(t)
	const minCycles, maxCycles, alive, minSweeps = 20, 60, 8, 3
	prefix := "kachurnloop-" + churnID()
	names := make([]string, maxCycles)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	a, log := churnAgent(t, fmt.Sprintf(`rules:
  - name: churn-loop
    match: {namespaces: [%s]}
    action: probe
    probe: {idle_over: 1s}
`, strings.Join(names, ", ")))
	var errs float64
	churnSweep(t, a)
	errorsLogged(t, a, log, &errs)

	var mu sync.Mutex
	var made []*churnNS
	var sweeps atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, ns := range made {
			ns.remove()
		}
	})
	churnErr := make(chan error, 1)
	go func() {
		defer close(done)
		var live []*churnNS
		for i, name := range names {
			if i >= minCycles && sweeps.Load() >= minSweeps {
				break
			}
			select {
			case <-stop:
				return
			default:
			}
			ns, err := newChurnNS(name, 2)
			if err != nil {
				churnErr <- err
				return
			}
			mu.Lock()
			made = append(made, ns)
			mu.Unlock()
			live = append(live, ns)
			if len(live) > alive {
				if err := live[0].remove(); err != nil {
					churnErr <- err
					return
				}
				live = live[1:]
			}
			time.Sleep(250 * time.Millisecond)
		}
		for _, ns := range live {
			if err := ns.remove(); err != nil {
				churnErr <- err
				return
			}
		}
		churnErr <- nil
	}()
	probed := 0
	deadline := time.Now().Add(3 * time.Minute)
loop:
	for {
		select {
		case err := <-churnErr:
			if err != nil {
				t.Fatalf("churn: %v", err)
			}
			break loop
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("churn not done after 3 minutes")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		r, err := safeSweep(ctx, a)
		cancel()
		if err != nil {
			t.Fatalf("sweep %d during the churn: %v", sweeps.Load()+1, err)
		}
		sweeps.Add(1)
		probed += r.Probed
	}
	mu.Lock()
	cycles := len(made)
	mu.Unlock()
	t.Logf("%d sweeps during %d namespace creations and deletions, %d probes", sweeps.Load(), cycles, probed)
	if sweeps.Load() < minSweeps {
		t.Errorf("only %d sweeps overlapped the churn, want %d", sweeps.Load(), minSweeps)
	}
	byStage := map[string]int{}
	for _, e := range errorsLogged(t, a, log, &errs) {
		stage := "probe"
		if _, rest, ok := strings.Cut(e, "stage="); ok {
			stage, _, _ = strings.Cut(rest, " ")
		}
		if byStage[stage] == 0 {
			t.Logf("first error counted at stage %s: %s", stage, e)
		}
		byStage[stage]++
	}
	if len(byStage) > 0 {
		// Namespaces going away are churn (keepalive_vanished_total), never errors.
		t.Errorf("errors counted during the churn, by stage: %v", byStage)
	}
	churnSweep(t, a)
	m := scrape(t, a.Handler())
	checkNoTrace(t, m, prefix)
	if got := metricSum(m, "keepalive_rule_connections", `rule="churn-loop"`); got != 0 {
		t.Errorf("after the churn: rule churn-loop still matches %v connections", got)
	}
	checkNoErrorAbout(t, errorsLogged(t, a, log, &errs), prefix)
	mu.Lock()
	defer mu.Unlock()
	for _, ns := range made {
		checkNoRefs(t, ns.ino, "namespace "+ns.name)
	}
}

// TestChurnNamespaceGoneBeforeProberOpens: the namespace of connections that a
// probe rule matches is deleted after the sweep listed it and before the
// prober opens in it. The moment is forced by a ProberFunc that deletes the
// namespace and then opens the prober exactly as the default one does
// (probe.New); the open fails. That sweep must not fail, and the next sweeps
// (the namespace gone) and Close must not trip over the prober that never opened.
func TestChurnNamespaceGoneBeforeProberOpens(t *testing.T) {
	nstest.Require(t)
	name := "kachurngone-" + churnID()
	ns, err := newChurnNS(name, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.remove() })
	pol, err := ParsePolicy([]byte(fmt.Sprintf(`rules:
  - name: churn-gone
    match: {namespaces: [%s]}
    action: probe
    probe: {idle_over: 1s}
`, name)))
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	a, err := New(Options{Policy: pol, Labels: churnLabels(), Prober: func(netns string, chk probe.Checker) (Prober, error) {
		opened++
		if netns == name {
			if err := ns.remove(); err != nil {
				return nil, err
			}
		}
		return probe.New(probe.NewOptions{Netns: netns, Checker: chk})
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := safeClose(a); err != nil {
			t.Errorf("close the agent: %v", err)
		}
	})
	time.Sleep(1200 * time.Millisecond)
	r := churnSweep(t, a)
	if opened != 1 || r.Probed != 0 {
		t.Fatalf("the probe rule opened %d probers and probed %d connections, want 1 (failing) and 0", opened, r.Probed)
	}
	// The namespace went away: churn, not an error that alerts would page for.
	m := scrape(t, a.Handler())
	if got := metricSum(m, "keepalive_vanished_total", `stage="probe"`); got != 2 {
		t.Errorf("keepalive_vanished_total{stage=\"probe\"} = %v, want the 2 connections not probed", got)
	}
	if got := metricSum(m, "keepalive_errors_total", `stage="probe"`); got != 0 {
		t.Errorf("keepalive_errors_total{stage=\"probe\"} = %v, want 0", got)
	}
	for i := 2; i <= 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := safeSweep(ctx, a)
		cancel()
		if err != nil {
			t.Fatalf("sweep %d, after the namespace went away: %v", i, err)
		}
	}
	checkNoTrace(t, scrape(t, a.Handler()), `"`+name+`"`)
	checkNoRefs(t, ns.ino, "namespace "+name)
}
