package nattimeout

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, cfg ServerConfig) (string, *Server) {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not shut down")
		}
	})
	return ln.Addr().String(), s
}

// On loopback nothing expires: the search climbs to --max in both directions.
func TestLoopbackNoTimeout(t *testing.T) {
	addr, _ := startServer(t, ServerConfig{Token: "t0k"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Measure(ctx, addr, Options{Token: "t0k", Max: 3 * time.Second, MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*DirectionResult{r.Up, r.Down} {
		if d == nil || d.Expired || d.Lower < 3*time.Second || !d.Complete {
			t.Fatalf("direction %+v", d)
		}
	}
	if r.Keepalive.Tested {
		t.Errorf("keepalive pass ran without a timeout: %+v", r.Keepalive)
	}
	if r.Wall > 10*time.Second {
		t.Errorf("wall %s", r.Wall)
	}
	a, err := Advise(r)
	if err != nil || a.Heartbeat || a.Recommendation != nil {
		t.Errorf("advice %+v %v", a, err)
	}
}

func TestServerRefusesBadToken(t *testing.T) {
	addr, _ := startServer(t, ServerConfig{Token: "right"})
	_, err := Measure(context.Background(), addr, Options{Token: "wrong", Max: 3 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("err %v", err)
	}
}

func TestServerCaps(t *testing.T) {
	addr, _ := startServer(t, ServerConfig{MaxPerClient: 3, MaxTotal: 10})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	f, err := ReadFrame(c)
	if err != nil || f.Type != TypeError || ErrorCode(f.A) != ErrCodeClientCap {
		t.Fatalf("fourth connection: %+v %v", f, err)
	}
	// Garbage gets a protocol error, not a crash.
	_, _ = conns[0].Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n12345"))
	_ = conns[0].SetDeadline(time.Now().Add(5 * time.Second))
	f, err = ReadFrame(conns[0])
	if err != nil || f.Type != TypeError || ErrorCode(f.A) != ErrCodeProtocol {
		t.Fatalf("garbage: %+v %v", f, err)
	}
	// Measuring needs more connections than the cap leaves.
	_, err = Measure(context.Background(), addr, Options{Max: 3 * time.Second})
	if err == nil {
		t.Fatal("measure under a cap of 3 succeeded")
	}
}

func TestServerIdleCapRefusesLongMax(t *testing.T) {
	addr, _ := startServer(t, ServerConfig{MaxIdle: time.Minute})
	_, err := Measure(context.Background(), addr, Options{Max: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "too long for this server") {
		t.Fatalf("err %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{Max: time.Second}, {Resolution: time.Millisecond}, {MaxConns: 2}, {SkipUp: true, SkipDown: true}, {Max: 3 * time.Second, Resolution: 2 * time.Second}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	for _, c := range []ServerConfig{{MaxPerClient: 1}, {MaxTotal: -1}, {MaxIdle: time.Millisecond}} {
		if _, err := NewServer(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestMeasureCancelled(t *testing.T) {
	addr, _ := startServer(t, ServerConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := Measure(ctx, addr, Options{Max: time.Minute, MaxConns: 16})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
}
