package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/host"
)

// countAgent builds an agent whose table holds the given sockets without a sweep: the
// counting and its labels are checked on every system, against numbers worked out by hand.
func countAgent(t *testing.T, l Labels, pol *Policy) *Agent {
	t.Helper()
	a, err := New(Options{Labels: l, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	a.nss = []nsInfo{{key: "", name: "", label: "", seen: 1}, {key: "7", name: "red", label: "red", seen: 1}}
	a.assessments = []Assessment{
		{Risk: "ok", Keepalive: true, Detect: 45 * time.Second},
		{Risk: string(host.RiskNoKeepalive), AtRisk: true},
	}
	pod := func(p string) *host.Container { return &host.Container{Runtime: "containerd", ID: p + "c", Pod: p} }
	a.procs = append(a.procs,
		procInfo{pid: 10, comm: "nginx", ctr: pod("pod-a")}, // 1
		procInfo{pid: 11, comm: "redis", ctr: pod("pod-b")}, // 2
		procInfo{pid: 12, comm: "worker"},                   // 3: no container
	)
	return a
}

func addSock(a *Agent, cookie uint64, ns, proc, assess uint32, more ...uint32) {
	e := entry{cookie: cookie, lastSweep: 1, ns: ns, proc: proc, assess: assess, state: host.StateEstablished,
		local: packAddr(netip.MustParseAddrPort("10.0.0.1:80")), remote: packAddr(netip.MustParseAddrPort("10.0.0.2:5000")), rule: -1}
	for _, p := range more {
		e.flags |= flagMoreOwners
		a.moreOwners[cookie] = append(a.moreOwners[cookie], ownerRef{proc: p, fd: 9})
	}
	a.cache.add(e)
}

func TestCountGroupsAndLabels(t *testing.T) {
	pol, err := ParsePolicy([]byte("rules:\n  - name: web\n    match: {processes: [nginx]}\n    action: report\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := countAgent(t, Labels{Namespace: true, Process: true, Pod: true, TopN: 2}, pol)
	for c := uint64(1); c <= 5; c++ {
		addSock(a, c, 1, 1, 0) // nginx in red, ok
	}
	for c := uint64(6); c <= 8; c++ {
		addSock(a, c, 0, 2, 1) // redis on the host, at risk
	}
	addSock(a, 9, 0, 3, 1)     // worker: third process, folded into "other" (top 2)
	addSock(a, 10, 0, 3, 1, 2) // worker sharing the socket with redis: pod-b from its second owner
	var res SweepResult
	s := a.count(pol, a.gen.Load(), &res)

	if res.AtRisk != 5 {
		t.Errorf("at risk %d, want 5", res.AtRisk)
	}
	want := map[connKey]int{
		{state: "ESTAB", risk: "ok", ns: "red", proc: "nginx", pod: "pod-a"}:            5,
		{state: "ESTAB", risk: "no-keepalive", ns: "host", proc: "redis", pod: "pod-b"}: 3,
		{state: "ESTAB", risk: "no-keepalive", ns: "host", proc: "other", pod: "other"}: 1,
		{state: "ESTAB", risk: "no-keepalive", ns: "host", proc: "other", pod: "pod-b"}: 1,
	}
	if len(s.conns) != len(want) {
		t.Errorf("%d label sets, want %d: %v", len(s.conns), len(want), s.conns)
	}
	for k, n := range want {
		if s.conns[k] != n {
			t.Errorf("conns%+v = %d, want %d", k, s.conns[k], n)
		}
	}
	if s.noKA[connKey{ns: "host", proc: "redis", pod: "pod-b"}] != 3 {
		t.Errorf("without keepalive: %v", s.noKA)
	}
	if s.detectCount != 5 || s.detectSum != 5*45 || s.detectBkt[60] != 5 || s.detectBkt[30] != 0 || len(s.detectBkt) != len(DetectBuckets()) {
		t.Errorf("histogram: count %d sum %v buckets %v", s.detectCount, s.detectSum, s.detectBkt)
	}
	if s.rules[[2]string{"web", "report"}] != 5 {
		t.Errorf("rule web matched %d, want the 5 nginx sockets", s.rules[[2]string{"web", "report"}])
	}
	for i := range a.cache.n {
		if e := a.cache.at(i); e.ruleGen != uint32(a.gen.Load()) {
			t.Fatalf("slot %d: rule not matched for the policy's generation", i)
		}
	}

	// Without opt-in labels every socket of a kind is one series.
	b := countAgent(t, Labels{}, pol)
	for c := uint64(1); c <= 4; c++ {
		addSock(b, c, uint32(c%2), 1+uint32(c%3), uint32(c%2))
	}
	s = b.count(pol, b.gen.Load(), &res)
	if len(s.conns) != 2 || s.conns[connKey{state: "ESTAB", risk: "ok"}] != 2 || s.conns[connKey{state: "ESTAB", risk: "no-keepalive"}] != 2 {
		t.Errorf("unlabelled: %v", s.conns)
	}
}
