package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
)

func newProber(t *testing.T, tn *testNet) *Prober {
	t.Helper()
	p, err := New(NewOptions{Netns: tn.Local, Checker: diagChecker{tn.diag}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestAliveIPv4IPv6(t *testing.T) {
	tn := newTestNet(t)
	var flows []Flow
	for _, a := range []netip.Addr{tn.PeerIP, tn.PeerIP6} {
		ln := tn.listen(t, a)
		cl, _ := tn.pair(t, ln, 5)
		for _, c := range cl {
			flows = append(flows, flowOf(c))
		}
	}
	p := newProber(t, tn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := p.Probe(ctx, flows, Options{Config: Config{Count: 3, Interval: 500 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%v: %v rtt=%v probes=%d learned=%s %s", r.Flow, r.Verdict, r.RTT, r.Probes, r.Learned, r.Evidence)
		if r.Verdict != Alive || r.Probes < 1 || r.Probes > 2 || r.Learned != "injection" {
			t.Errorf("%v: got %v after %d probes (learned %q), want alive after 1 probe (2 on a loaded machine) learned by injection", r.Flow, r.Verdict, r.Probes, r.Learned)
		}
		if r.RTT <= 0 || r.RTT > time.Second {
			t.Errorf("%v: RTT %v", r.Flow, r.RTT)
		}
	}
}

func TestDeadBlackHole(t *testing.T) {
	tn := newTestNet(t)
	ln := tn.listen(t, tn.PeerIP)
	cl, _ := tn.pair(t, ln, 3)
	var flows []Flow
	for _, c := range cl {
		flows = append(flows, flowOf(c))
	}
	dropTable(t, tn.pns, nftables.ChainHookInput)
	p := newProber(t, tn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	res, err := p.Probe(ctx, flows, Options{Config: Config{Count: 3, Interval: 300 * time.Millisecond, Timeout: 300 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%v: %v probes=%d onebyte=%d %s", r.Flow, r.Verdict, r.Probes, r.OneByte, r.Evidence)
		if r.Verdict != Dead || r.Probes != 3 {
			t.Errorf("%v: got %v after %d probes, want dead after 3", r.Flow, r.Verdict, r.Probes)
		}
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("took %v", el)
	}
}

func TestResetPeerForgot(t *testing.T) {
	tn := newTestNet(t)
	ln := tn.listen(t, tn.PeerIP)
	cl, sv := tn.pair(t, ln, 3)
	var flows []Flow
	for _, c := range cl {
		flows = append(flows, flowOf(c))
	}
	// The peer forgets: its sockets vanish while its output is dropped, so
	// the RSTs never leave; then connectivity returns.
	undo := dropTable(t, tn.pns, nftables.ChainHookOutput)
	for _, s := range sv {
		if err := s.SetLinger(0); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	time.Sleep(50 * time.Millisecond)
	undo()

	p := newProber(t, tn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := p.Probe(ctx, flows, Options{Config: Config{Count: 3, Interval: 500 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%v: %v probes=%d %s", r.Flow, r.Verdict, r.Probes, r.Evidence)
		if r.Verdict != Reset {
			t.Errorf("%v: got %v, want reset", r.Flow, r.Verdict)
		}
	}
	// The kernel's own view: the local sockets are gone, owners got ECONNRESET.
	time.Sleep(50 * time.Millisecond)
	st, err := diagChecker{tn.diag}.Check(ctx, flows)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s.Found {
			t.Errorf("%v still in sock_diag: %+v", flows[i], s)
		}
	}
	for _, c := range cl {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%v: owner read error %v, want ECONNRESET", flowOf(c), err)
		}
	}
}

// TestMappedIPv4FromDualStack probes from the peer's side the connections
// its dual-stack listener ([::]) accepted: AF_INET6 sockets whose addresses
// are IPv4-mapped, IPv4 on the wire. Their tcp_info comes from ConnChecker.
func TestMappedIPv4FromDualStack(t *testing.T) {
	tn := newTestNet(t)
	var ln net.Listener
	if err := inNS(tn.pns, func() (err error) {
		ln, err = net.Listen("tcp", "[::]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	acc := make(chan net.Conn, 3)
	go func() {
		for range 3 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			acc <- c
		}
	}()
	var conns []syscall.Conn
	var flows []Flow
	if err := inNS(tn.lns, func() error {
		for range 3 {
			c, err := net.Dial("tcp", netip.AddrPortFrom(tn.PeerIP, uint16(port)).String())
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s := <-acc
		t.Cleanup(func() { s.Close() })
		la := s.LocalAddr().(*net.TCPAddr).AddrPort()
		if !la.Addr().Is4In6() {
			t.Fatalf("accepted socket %v is not IPv4-mapped", la)
		}
		conns = append(conns, s.(*net.TCPConn))
		flows = append(flows, Flow{Local: la, Remote: s.RemoteAddr().(*net.TCPAddr).AddrPort()})
	}
	chk, err := ConnChecker(conns...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(NewOptions{Netns: "/var/run/netns/" + tn.Peer, Checker: chk})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.Probe(ctx, flows, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Verdict != Alive || !r.Flow.Local.Addr().Is4() {
			t.Errorf("%+v", r)
		}
	}
}

// TestLoopbackBothEnds probes both ends of a loopback connection at once:
// every packet is seen by both machines, in opposite directions.
func TestLoopbackBothEnds(t *testing.T) {
	tn := newTestNet(t)
	var ln net.Listener
	var c net.Conn
	if err := inNS(tn.lns, func() (err error) {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		c, err = net.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	chk, err := ConnChecker(c.(*net.TCPConn), s.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(NewOptions{Netns: tn.Local, Checker: chk})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.Probe(ctx, []Flow{flowOf(c), flowOf(s)}, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%v: %v %s snd=%d rcv=%d", r.Flow, r.Verdict, r.Evidence, r.SndNxt, r.RcvNxt)
		if r.Verdict != Alive {
			t.Errorf("%+v", r)
		}
	}
	if res[0].SndNxt != res[1].RcvNxt || res[0].RcvNxt != res[1].SndNxt {
		t.Errorf("the two ends disagree: %+v / %+v", res[0], res[1])
	}
	// The stream is intact.
	if _, err := c.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	_ = s.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := s.Read(b)
	if err != nil || string(b[:n]) != "world" {
		t.Errorf("read %q, %v", b[:n], err)
	}
}
