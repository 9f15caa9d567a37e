//go:build linux

package nattimeout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/vishvananda/netlink"
)

// routed is client ↔ router ↔ server: the client 10.200.141.1 behind the router's
// 10.200.141.254, the server 10.200.142.2 behind its 10.200.142.254. The router's
// interfaces are "rc" (client side) and "rs" (server side).
type routed struct {
	client, router, server *nstest.NS
}

const (
	labClientIP = "10.200.141.1"
	labRouterC  = "10.200.141.254"
	labRouterS  = "10.200.142.254"
	labServerIP = "10.200.142.2"
	labPort     = 7414
)

func newRouted(t *testing.T) *routed {
	t.Helper()
	nstest.Require(t)
	_, err := exec.LookPath("nft")
	nstest.Need(t, err == nil, "the nft command (package nftables)")
	r := &routed{client: nstest.NewNS(t, "nat14c"), router: nstest.NewNS(t, "nat14r"), server: nstest.NewNS(t, "nat14s")}
	link(t, r.client, "c0", labClientIP, r.router, "rc", labRouterC)
	link(t, r.server, "s0", labServerIP, r.router, "rs", labRouterS)
	route(t, r.client, "c0", labRouterC)
	route(t, r.server, "s0", labRouterS)
	sysctl(t, r.router, "net/ipv4/ip_forward", "1")
	return r
}

func link(t *testing.T, a *nstest.NS, an, aip string, b *nstest.NS, bn, bip string) {
	t.Helper()
	a.Do(t, func() error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: an}, PeerName: bn, PeerNamespace: netlink.NsFd(int(b.Handle))}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("veth %s/%s: %w", an, bn, err)
		}
		return addrUp(an, aip)
	})
	b.Do(t, func() error { return addrUp(bn, bip) })
}

func addrUp(name, ip string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(ip).To4(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func route(t *testing.T, ns *nstest.NS, dev, gw string) {
	t.Helper()
	ns.Do(t, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw).To4()})
	})
}

func sysctl(t *testing.T, ns *nstest.NS, key, value string) {
	t.Helper()
	err := ns.Run(func() error { return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644) })
	if errors.Is(err, os.ErrNotExist) && strings.Contains(key, "conntrack") {
		nstest.Need(t, false, "connection tracking (nf_conntrack module): "+err.Error())
	}
	if err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", key, value, ns.Name, err)
	}
}

// nft loads a ruleset into the namespace with the nft command.
func nft(t *testing.T, ns *nstest.NS, ruleset string) {
	t.Helper()
	err := ns.Run(func() error {
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(ruleset)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft -f: %w: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// conntrackNAT makes the router a masquerading NAT whose flows expire after timeout idle
// seconds; packets of forgotten flows are dropped (onExpiry "drop") or answered with an RST
// ("rst"). The value is set here only: the measurement does not know it.
func (r *routed) conntrackNAT(t *testing.T, timeout int, onExpiry string) {
	t.Helper()
	// Conntrack's sysctls appear in a namespace once the module is loaded.
	_ = exec.Command("modprobe", "-q", "nf_conntrack").Run()
	rules := `table inet nat14 {
	chain natpost { type nat hook postrouting priority srcnat; oifname "rs" masquerade; }
	chain natfwd { type filter hook forward priority filter; %s ct state invalid drop; }
	chain natin { type filter hook input priority filter; %s }
}`
	fwdRST, in := "", "ct state invalid drop;"
	if onExpiry == "rst" {
		fwdRST, in = "ct state invalid meta l4proto tcp reject with tcp reset;", ""
	}
	nft(t, r.router, fmt.Sprintf(rules, fwdRST, in))
	sysctl(t, r.router, "net/netfilter/nf_conntrack_tcp_loose", "0")
	sysctl(t, r.router, "net/netfilter/nf_conntrack_tcp_timeout_established", fmt.Sprint(timeout))
}

// asymmetric makes the router forget a flow per direction: client→server packets pass for
// up seconds after the flow's last packet, server→client packets for down seconds (nftables
// sets keyed by the client's port, with per-set timeouts; silent drop).
func (r *routed) asymmetric(t *testing.T, up, down int) {
	t.Helper()
	nft(t, r.router, fmt.Sprintf(`table inet nat14 {
	set upset { type inet_service; flags dynamic,timeout; timeout %ds; }
	set downset { type inet_service; flags dynamic,timeout; timeout %ds; }
	chain natfwd { type filter hook forward priority filter;
		meta l4proto != tcp accept
		iifname "rc" tcp flags & syn == syn update @upset { tcp sport } update @downset { tcp sport } accept
		iifname "rs" tcp flags & syn == syn update @upset { tcp dport } update @downset { tcp dport } accept
		iifname "rc" tcp sport != @upset drop
		iifname "rs" tcp dport != @downset drop
		iifname "rc" update @upset { tcp sport } update @downset { tcp sport }
		iifname "rs" update @upset { tcp dport } update @downset { tcp dport }
	}
}`, up, down))
}

// serve runs a Server in the server namespace for the test's lifetime.
func (r *routed) serve(t *testing.T) string {
	t.Helper()
	s, err := NewServer(ServerConfig{Token: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	r.server.Do(t, func() error {
		lc := net.ListenConfig{KeepAlive: -1}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", fmt.Sprintf("%s:%d", labServerIP, labPort))
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return fmt.Sprintf("%s:%d", labServerIP, labPort)
}

// dialFrom dials from inside ns, with keepalive off.
func dialFrom(ns *nstest.NS) func(ctx context.Context, address string) (net.Conn, error) {
	return func(ctx context.Context, address string) (net.Conn, error) {
		var c net.Conn
		err := ns.Run(func() error {
			var err error
			c, err = defaultDial(ctx, address)
			return err
		})
		return c, err
	}
}

func (r *routed) measure(t *testing.T, addr string, o Options) Result {
	t.Helper()
	o.Token, o.Dial = "lab", dialFrom(r.client)
	if o.Max == 0 {
		o.Max = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Measure(ctx, addr, o)
	if err != nil {
		t.Fatalf("measure: %v", err)
	}
	for _, d := range []*DirectionResult{res.Up, res.Down} {
		if d != nil {
			t.Logf("%s: (%s, %s] %s expired=%v flapping=%v checks=%d opened=%d wall %s (goal for T=%s: %s)", d.Direction,
				d.Lower, d.Upper, d.Behaviour, d.Expired, d.Flapping, d.Checks, d.Opened, d.Wall.Round(time.Millisecond), d.Upper, Goal(d.Upper))
			if d.Flapping {
				t.Logf("%s history: %+v", d.Direction, d.History)
			}
		}
	}
	t.Logf("keepalive: %+v; total wall %s, %d connections per direction", res.Keepalive, res.Wall.Round(time.Millisecond), res.ConnsPerDirection)
	return res
}

// within checks that the true timeout lies in the bracket and the bracket is ±1 s.
func within(t *testing.T, d *DirectionResult, want time.Duration, beh Outcome) {
	t.Helper()
	if d == nil || !d.Expired {
		t.Fatalf("%v: no expiry found, want %s", d, want)
	}
	slack := 300 * time.Millisecond // timer and scheduling slack of the lab
	if d.Upper-d.Lower > time.Second || d.Upper < want-slack || d.Lower > want+slack {
		t.Errorf("%s: bracket (%s, %s], want %s ±1s", d.Direction, d.Lower, d.Upper, want)
	}
	if d.Behaviour != beh {
		t.Errorf("%s: behaviour %s, want %s", d.Direction, d.Behaviour, beh)
	}
}

func TestLabConntrackDrop(t *testing.T) {
	t.Parallel()
	r := newRouted(t)
	r.conntrackNAT(t, 4, "drop")
	res := r.measure(t, r.serve(t), Options{})
	within(t, res.Up, 4*time.Second, Silent)
	within(t, res.Down, 4*time.Second, Silent)
	if !res.Keepalive.Tested || !res.Keepalive.Recognised {
		t.Errorf("conntrack counts keepalive probes, got %+v", res.Keepalive)
	}
	a, err := Advise(res)
	if err != nil || a.Heartbeat || a.Recommendation == nil || a.Recommendation.Config.Idle >= 4*time.Second {
		t.Errorf("advice %+v %v", a, err)
	}
}

func TestLabConntrackRST(t *testing.T) {
	t.Parallel()
	r := newRouted(t)
	r.conntrackNAT(t, 9, "rst")
	res := r.measure(t, r.serve(t), Options{})
	within(t, res.Up, 9*time.Second, RST)
	within(t, res.Down, 9*time.Second, RST)
}

func TestLabAsymmetric(t *testing.T) {
	t.Parallel()
	r := newRouted(t)
	r.asymmetric(t, 9, 4)
	res := r.measure(t, r.serve(t), Options{SkipKeepalive: true})
	within(t, res.Up, 9*time.Second, Silent)
	within(t, res.Down, 4*time.Second, Silent)
	if res.Timeout() > 5*time.Second {
		t.Errorf("Timeout() %s, want the shorter direction's", res.Timeout())
	}
}

func TestLabNoTimeout(t *testing.T) {
	t.Parallel()
	r := newRouted(t)
	res := r.measure(t, r.serve(t), Options{Max: 6 * time.Second})
	for _, d := range []*DirectionResult{res.Up, res.Down} {
		if d.Expired || d.Lower < 6*time.Second {
			t.Errorf("%s: %+v, want no timeout up to 6s", d.Direction, d.Estimate)
		}
	}
}

// TestLabDataOnlyProxy puts a user-space proxy in the router namespace that closes
// connections idle of data for 5 s, whatever TCP keepalive does (like a load balancer).
func TestLabDataOnlyProxy(t *testing.T) {
	t.Parallel()
	r := newRouted(t)
	target := r.serve(t)
	addr := r.proxy(t, target, 5*time.Second)
	res := r.measure(t, addr, Options{})
	within(t, res.Up, 5*time.Second, FIN)
	within(t, res.Down, 5*time.Second, FIN)
	if !res.Keepalive.Tested || res.Keepalive.Recognised {
		t.Errorf("keepalive pass: %+v, want tested and not recognised", res.Keepalive)
	}
	a, err := Advise(res)
	if err != nil || !a.Heartbeat || a.Text != HeartbeatAdvice {
		t.Errorf("advice %+v %v", a, err)
	}
}

// proxy listens on the router's client-side address and relays to target, closing both
// sides of a pair once no data has passed for idle.
func (r *routed) proxy(t *testing.T, target string, idle time.Duration) string {
	t.Helper()
	var ln net.Listener
	r.router.Do(t, func() error {
		lc := net.ListenConfig{KeepAlive: -1}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", labRouterC+":7415")
		return err
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10000; i++ {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			var out net.Conn
			err = r.router.Run(func() error {
				d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
				var err error
				out, err = d.Dial("tcp", target)
				return err
			})
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			open = append(open, in, out)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				relayIdle(in, out, idle)
			}()
		}
	}()
	return labRouterC + ":7415"
}

// relayIdle copies both ways and closes both connections when no data has moved for idle.
func relayIdle(a, b net.Conn, idle time.Duration) {
	var mu sync.Mutex
	last := time.Now()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 512)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				mu.Lock()
				last = time.Now()
				mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				if err != io.EOF {
					break
				}
				break
			}
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-done:
			a.Close()
			b.Close()
			<-done
			return
		case <-tk.C:
			mu.Lock()
			expired := time.Since(last) >= idle
			mu.Unlock()
			if expired {
				a.Close()
				b.Close()
				<-done
				<-done
				return
			}
		}
	}
}

// TestLabFewConnections: a client allowed few connections (a carrier NAT's port limit)
// still finds the timeout; the wall time is reported against the connections it had.
func TestLabFewConnections(t *testing.T) {
	t.Parallel()
	r := newRouted(t)
	r.conntrackNAT(t, 4, "drop")
	res := r.measure(t, r.serve(t), Options{MaxConns: 8, SkipDown: true})
	if res.ConnsPerDirection != 5 {
		t.Errorf("connections per direction %d, want 5 (8 − control − 2 keepalive)", res.ConnsPerDirection)
	}
	within(t, res.Up, 4*time.Second, Silent)
}
