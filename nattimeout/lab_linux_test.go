//go:build linux

package nattimeout

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/natlab"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// serve runs a Server in the server namespace for the test's lifetime.
func serve(t *testing.T, r *natlab.Routed) string {
	t.Helper()
	s, err := NewServer(ServerConfig{Token: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	r.Server.Do(t, func() error {
		lc := net.ListenConfig{KeepAlive: -1}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", fmt.Sprintf("%s:%d", natlab.ServerIP, natlab.ServerPort))
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
	return fmt.Sprintf("%s:%d", natlab.ServerIP, natlab.ServerPort)
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

func measure(t *testing.T, r *natlab.Routed, addr string, o Options) Result {
	t.Helper()
	o.Token, o.Dial = "lab", dialFrom(r.Client)
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
	r := natlab.New(t, "nat14")
	r.ConntrackNAT(t, 4, "drop")
	res := measure(t, r, serve(t, r), Options{})
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
	r := natlab.New(t, "nat14")
	r.ConntrackNAT(t, 9, "rst")
	res := measure(t, r, serve(t, r), Options{})
	within(t, res.Up, 9*time.Second, RST)
	within(t, res.Down, 9*time.Second, RST)
}

func TestLabAsymmetric(t *testing.T) {
	t.Parallel()
	r := natlab.New(t, "nat14")
	r.Asymmetric(t, 9, 4)
	res := measure(t, r, serve(t, r), Options{SkipKeepalive: true})
	within(t, res.Up, 9*time.Second, Silent)
	within(t, res.Down, 4*time.Second, Silent)
	if res.Timeout() > 5*time.Second {
		t.Errorf("Timeout() %s, want the shorter direction's", res.Timeout())
	}
}

func TestLabNoTimeout(t *testing.T) {
	t.Parallel()
	r := natlab.New(t, "nat14")
	res := measure(t, r, serve(t, r), Options{Max: 6 * time.Second})
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
	r := natlab.New(t, "nat14")
	target := serve(t, r)
	addr := r.Proxy(t, target, 5*time.Second)
	res := measure(t, r, addr, Options{})
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

// TestLabFewConnections: a client allowed few connections (a carrier NAT's port limit)
// still finds the timeout; the wall time is reported against the connections it had.
func TestLabFewConnections(t *testing.T) {
	t.Parallel()
	r := natlab.New(t, "nat14")
	r.ConntrackNAT(t, 4, "drop")
	res := measure(t, r, serve(t, r), Options{MaxConns: 8, SkipDown: true})
	if res.ConnsPerDirection != 5 {
		t.Errorf("connections per direction %d, want 5 (8 − control − 2 keepalive)", res.ConnsPerDirection)
	}
	within(t, res.Up, 4*time.Second, Silent)
}
