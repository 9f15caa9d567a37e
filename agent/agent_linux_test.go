//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/keepalive-dev/keepalive/internal/promtest"
	"golang.org/x/sys/unix"
)

// topology is a client namespace with n connections, without keepalive on
// either side, to a server in a second namespace.
type topology struct {
	pair    *nstest.Pair
	clients []net.Conn
	servers []net.Conn
	port    int
}

func newTopology(t *testing.T, subnet, n int) *topology {
	t.Helper()
	nstest.Require(t)
	tp := &topology{pair: nstest.NewPair(t, "kaagent", subnet), port: 7000 + subnet}
	var ln net.Listener
	tp.pair.B.Do(t, func() error {
		var err error
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err = lc.Listen(context.Background(), "tcp4", net.JoinHostPort(tp.pair.BIP.String(), strconv.Itoa(tp.port)))
		return err
	})
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			tp.servers = append(tp.servers, c)
			mu.Unlock()
		}
	}()
	tp.pair.A.Do(t, func() error {
		d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
		for range n {
			c, err := d.Dial("tcp4", net.JoinHostPort(tp.pair.BIP.String(), strconv.Itoa(tp.port)))
			if err != nil {
				return err
			}
			tp.clients = append(tp.clients, c)
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("server did not accept every connection")
	}
	t.Cleanup(func() {
		for _, c := range append(tp.clients, tp.servers...) {
			c.Close()
		}
	})
	return tp
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// metricSum adds the samples of a metric whose labels contain every one of want.
func metricSum(text, name string, want ...string) float64 {
	sum, _ := promtest.Sum(text, name, want...)
	return sum
}

func sweep(t *testing.T, a *Agent) SweepResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := a.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAgentEnforceRetrofitAndReload(t *testing.T) {
	tp := newTopology(t, 231, 4)
	nsA, nsB := tp.pair.A.Name, tp.pair.B.Name
	p, err := ParsePolicy([]byte("rules: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Policy: p, Labels: Labels{Namespace: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before a sweep: %d", rec.Code)
	}
	sweep(t, a)
	m := scrape(t, h)
	for _, ns := range []string{nsA, nsB} {
		if got := metricSum(m, "keepalive_connections", `namespace="`+ns+`"`, `risk="no-keepalive"`); got != 4 {
			t.Fatalf("namespace %s: %v connections without keepalive, want 4\n%s", ns, got, m)
		}
	}

	// A bad policy keeps the old one.
	if err := a.Reload([]byte("rules:\n  - action: enforce\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad reload: %v", err)
	}
	if len(a.Policy().Rules) != 0 {
		t.Fatal("bad policy replaced the old one")
	}
	pol := fmt.Sprintf(`budgets: {retrofits_per_sweep: 3}
rules:
  - name: client
    match: {namespaces: [%s], ports: [%d]}
    action: enforce
    keepalive: {idle: 30s, interval: 5s, count: 3}
`, nsA, tp.port)
	if err := a.Reload([]byte(pol)); err != nil {
		t.Fatal(err)
	}
	r := sweep(t, a)
	if r.Retrofits != 3 {
		t.Fatalf("first sweep after the policy retrofitted %d, want the budget of 3", r.Retrofits)
	}
	r = sweep(t, a)
	if r.Retrofits != 1 {
		t.Fatalf("second sweep retrofitted %d, want 1", r.Retrofits)
	}
	sweep(t, a)
	m = scrape(t, h)
	if got := metricSum(m, "keepalive_connections", `namespace="`+nsA+`"`, `risk="no-keepalive"`); got != 0 {
		t.Fatalf("after enforcement: %v at risk in %s\n%s", got, nsA, m)
	}
	if got := metricSum(m, "keepalive_connections", `namespace="`+nsB+`"`, `risk="no-keepalive"`); got != 4 {
		t.Fatalf("the rule touched %s: %v at risk", nsB, got)
	}
	if got := metricSum(m, "keepalive_retrofits_total", `result="applied"`); got != 4 {
		t.Fatalf("retrofits_total = %v", got)
	}
	if got := metricSum(m, "keepalive_actions_deferred_total", `action="retrofit"`); got != 1 {
		t.Fatalf("deferred = %v", got)
	}
	if got := metricSum(m, "keepalive_rule_connections", `rule="client"`); got != 4 {
		t.Fatalf("rule_connections = %v", got)
	}
	if got := metricSum(m, "keepalive_policy_reloads_total", `result="rejected"`); got != 1 {
		t.Fatalf("rejected reloads = %v", got)
	}
	if !strings.Contains(m, `keepalive_tcpext_total{counter="TCPKeepAlive",namespace="`+nsA+`"}`) {
		t.Fatalf("no TcpExt for %s\n%s", nsA, m)
	}
	// The retrofitted connections: 30 s + 3 × 5 s.
	if got := metricSum(m, "keepalive_predicted_detection_seconds_bucket", `le="60"`); got < 4 {
		t.Fatalf("predicted detection ≤ 60 s for %v connections, want ≥ 4", got)
	}
	if !strings.Contains(m, "process_resident_memory_bytes") || !strings.Contains(m, "keepalive_sweep_duration_seconds_count 4") {
		t.Fatalf("own metrics missing\n%s", m)
	}
}

func TestAgentProbeReapsDeadPeer(t *testing.T) {
	tp := newTopology(t, 232, 2)
	nsA := tp.pair.A.Name
	pol, err := ParsePolicy([]byte(fmt.Sprintf(`rules:
  - name: dead
    match: {namespaces: [%s]}
    action: probe
    probe: {idle_over: 1s, reap: true}
`, nsA)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Policy: pol, Interval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	time.Sleep(1200 * time.Millisecond)
	// The first probes find the peer alive.
	r := sweep(t, a)
	if r.Probed != 2 || r.Dead != 0 {
		t.Fatalf("live peer: %+v", r)
	}
	tp.pair.B.BlackHole(t)
	time.Sleep(1200 * time.Millisecond)
	r = sweep(t, a)
	if r.Dead != 2 || r.Reaped != 2 {
		t.Fatalf("dead peer: %+v", r)
	}
	m := scrape(t, a.Handler())
	if metricSum(m, "keepalive_dead_peers_total") != 2 || metricSum(m, "keepalive_reaps_total", `result="applied"`) != 2 ||
		metricSum(m, "keepalive_probes_total") != 4 || metricSum(m, "keepalive_probe_verdicts_total", `verdict="alive"`) != 2 {
		t.Fatalf("counters:\n%s", m)
	}
	// The reaped connections are gone: the application sees the error.
	tp.clients[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := tp.clients[0].Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("read on a reaped connection: %v", err)
	}
}

func TestAgentNamespaceComesAndGoes(t *testing.T) {
	nstest.Require(t)
	a, err := New(Options{Labels: Labels{Namespace: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var nsA string
	t.Run("present", func(t *testing.T) {
		tp := newTopology(t, 233, 2)
		nsA = tp.pair.A.Name
		sweep(t, a)
		if got := metricSum(scrape(t, a.Handler()), "keepalive_connections", `namespace="`+nsA+`"`); got != 2 {
			t.Fatalf("%s: %v connections, want 2", nsA, got)
		}
	})
	// The subtest's cleanup closed the connections and deleted the namespaces.
	sweep(t, a)
	m := scrape(t, a.Handler())
	if strings.Contains(m, nsA) {
		t.Fatalf("namespace %s still reported after it went away", nsA)
	}
	for i := range a.cache.n {
		if e := a.cache.at(i); e.lastSweep != 0 && a.nss[e.ns].name == nsA {
			s := a.socketOf(e)
			t.Fatalf("cache still holds %s", s.String())
		}
	}
	for _, ni := range a.nss {
		if ni.name == nsA {
			t.Fatalf("namespace table still holds %s", nsA)
		}
	}
}

func TestAgentWithPrometheus(t *testing.T) {
	enf := newTopology(t, 234, 3)
	dead := newTopology(t, 235, 2)
	a, err := New(Options{Interval: time.Second, Labels: Labels{Namespace: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	prom := prometheusServer(t, strings.TrimPrefix(srv.URL, "http://"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	atRisk := func(ns string) string {
		return fmt.Sprintf(`sum(keepalive_connections_at_risk{namespace=%q}) or vector(0)`, ns)
	}
	waitQuery(t, prom, atRisk(enf.pair.A.Name), 3)
	waitQuery(t, prom, atRisk(dead.pair.A.Name), 2)
	pol := fmt.Sprintf(`rules:
  - name: enforce-a
    match: {namespaces: [%s]}
    action: enforce
    keepalive: {idle: 20s, interval: 5s, count: 3}
  - name: reap-dead
    match: {namespaces: [%s]}
    action: probe
    probe: {idle_over: 1s, reap: true}
`, enf.pair.A.Name, dead.pair.A.Name)
	dead.pair.B.BlackHole(t)
	if err := a.Reload([]byte(pol)); err != nil {
		t.Fatal(err)
	}
	waitQuery(t, prom, atRisk(enf.pair.A.Name), 0)
	waitQuery(t, prom, `sum(keepalive_retrofits_total{result="applied"})`, 3)
	waitQuery(t, prom, `sum(keepalive_dead_peers_total)`, 2)
	waitQuery(t, prom, `sum(keepalive_reaps_total{result="applied"})`, 2)
	waitQuery(t, prom, atRisk(dead.pair.A.Name), 0) // the reaped connections are gone
	waitQuery(t, prom, `keepalive_policy_rules`, 2)
	waitQuery(t, prom, `up{job="keepalive"}`, 1)

	// promtool check metrics on a scrape.
	promtool, err := exec.LookPath("promtool")
	nstest.Need(t, err == nil, "promtool (Debian package prometheus)")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape(t, a.Handler()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// prometheusServer runs Debian's prometheus on loopback with its own
// directory, scraping target every second; it is ended by PID.
func prometheusServer(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	nstest.Need(t, err == nil, "the prometheus binary (Debian package prometheus)")
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: keepalive\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// promQuery returns the single value of an instant query, or -1 with no result.
func promQuery(t *testing.T, base, q string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, b)
	}
	if len(r.Data.Result) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
	return v
}

// waitQuery polls a PromQL query until it returns want (bounded).
func waitQuery(t *testing.T, base, q string, want float64) {
	t.Helper()
	var got float64
	for range 60 {
		if got = promQuery(t, base, q); got == want {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("PromQL %s = %v, want %v", q, got, want)
}

// TestRetrofitAfterOwnerMoved: the owner the agent found closed its descriptor after a dup
// (as a server handing a connection to a worker does). The retrofit through the old
// descriptor finds nothing; the agent looks for the owners again and retrofits through the
// new descriptor in a later sweep, instead of giving the connection up.
func TestRetrofitAfterOwnerMoved(t *testing.T) {
	nstest.Require(t)
	client, server := nstest.Loopback(t, "tcp4", "127.0.0.1:0")
	port := server.LocalAddr().(*net.TCPAddr).Port
	policy := func(budget int) *Policy {
		p, err := ParsePolicy(fmt.Appendf(nil, "budgets: {retrofits_per_sweep: %d}\nrules:\n  - name: moved\n    match: {ports: [%d], processes: [%s]}\n    action: enforce\n    keepalive: {idle: 40s, interval: 5s, count: 3}\n",
			budget, port, filepath.Base(os.Args[0])[:min(15, len(filepath.Base(os.Args[0])))]))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, err := New(Options{Policy: policy(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if r := sweep(t, a); r.Retrofits != 0 {
		t.Fatalf("sweep 1 retrofitted %d with a budget of 0", r.Retrofits)
	}
	if got := metricSum(scrape(t, a.Handler()), "keepalive_rule_connections", `rule="moved"`); got != 2 {
		t.Fatalf("rule moved matches %v connections, want 2 (owners found)", got)
	}
	// Move the client socket to a new descriptor and close the ones the agent knows.
	f, err := client.File()
	if err != nil {
		t.Fatal(err)
	}
	moved, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(moved) })
	f.Close()
	client.Close()

	a.SetPolicy(policy(200))
	r := sweep(t, a)
	if r.Retrofits != 1 {
		t.Fatalf("sweep 2: %d retrofits, want 1 (the server side; the client's owner moved)", r.Retrofits)
	}
	got := 0
	for i := 3; i <= 8 && got == 0; i++ { // an owner pass per sweep here; spaced on a busy host
		got = sweep(t, a).Retrofits
	}
	if got != 1 {
		t.Fatalf("after the owner moved: %d retrofits, want the client's", got)
	}
	on, err := unix.GetsockoptInt(moved, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil || on != 1 {
		t.Fatalf("SO_KEEPALIVE on the moved descriptor: %d %v", on, err)
	}
	idle, _ := unix.GetsockoptInt(moved, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	if idle != 40 {
		t.Fatalf("TCP_KEEPIDLE %d, want 40", idle)
	}
}

// TestAgentDetachesGoneCgroup: an attachment the agent made for a cgroup that is then
// removed (the pod or container ended) is detached by the next sweep, pins and all.
func TestAgentDetachesGoneCgroup(t *testing.T) {
	nstest.Require(t)
	err := enforce.Probe()
	nstest.Need(t, err == nil, fmt.Sprintf("kernel support for enforce: %v", err))
	_, err = exec.LookPath("bash")
	nstest.Need(t, err == nil, "bash")
	mnt, err := enforce.Cgroup2Mount()
	nstest.Need(t, err == nil, fmt.Sprintf("cgroup v2: %v", err))

	bpffs := filepath.Join(t.TempDir(), "bpf")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, unix.MNT_DETACH) })
	h, err := enforce.Open(enforce.Options{PinDir: filepath.Join(bpffs, "keepalive")})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	rel := fmt.Sprintf("/keepalive-agent-gone-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	abs := filepath.Join(mnt, rel)
	if err := os.Mkdir(abs, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(abs) })
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cg, err := os.Open(abs)
	if err != nil {
		t.Fatal(err)
	}
	client := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; sleep 120", port))
	client.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	err = client.Start()
	cg.Close()
	if err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = client.Process.Kill()
			_ = client.Wait()
		}
	})

	pol, err := ParsePolicy(fmt.Appendf(nil, "rules:\n  - name: gone\n    match: {cgroups: [%s], ports: [%d]}\n    action: enforce\n    keepalive: {idle: 30s, interval: 5s, count: 3}\n", rel, port))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Policy: pol, Enforce: h})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var r SweepResult
	for i := 0; i < 20 && r.Attachments == 0; i++ { // the client connects in the background
		time.Sleep(100 * time.Millisecond)
		r = sweep(t, a)
	}
	if r.Attachments == 0 {
		t.Fatalf("no attachment for %s: %+v", rel, r)
	}
	atts, err := h.List()
	if err != nil || len(atts) != 1 || atts[0].Cgroup != rel || atts[0].Gone {
		t.Fatalf("attachments after the first sweeps: %+v %v", atts, err)
	}

	// The container ends: its process exits and its cgroup is removed.
	_ = client.Process.Kill()
	_ = client.Wait()
	exited = true
	for i := 0; ; i++ {
		if err := os.Remove(abs); err == nil {
			break
		} else if i == 100 {
			t.Fatalf("remove %s: %v", abs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sweep(t, a)
	if got := metricSum(scrape(t, a.Handler()), "keepalive_enforcements_total", `result="detached"`); got != 1 {
		t.Errorf("keepalive_enforcements_total{result=\"detached\"} = %v, want 1", got)
	}
	if atts, err := h.List(); err != nil || len(atts) != 0 {
		t.Fatalf("attachments after the cgroup went away: %+v %v", atts, err)
	}
	if len(a.attached) != 0 {
		t.Fatalf("the agent still records %d attachments", len(a.attached))
	}
}
