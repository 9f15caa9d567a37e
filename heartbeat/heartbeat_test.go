package heartbeat

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// tcpPair returns the two ends of a fresh loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	return nstest.Loopback(t, "tcp", "127.0.0.1:0")
}

// wrappedPair wraps both ends of a loopback connection.
func wrappedPair(t testing.TB, co, so Options) (*Conn, *Conn) {
	t.Helper()
	rc, rs := tcpPair(t)
	c, err := Wrap(rc, co)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Wrap(rs, so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// readLoop reads c until an error and reports it.
func readLoop(c net.Conn) <-chan error {
	ch := make(chan error, 1)
	go func() {
		buf := make([]byte, 1024)
		for {
			if _, err := c.Read(buf); err != nil {
				ch <- err
				return
			}
		}
	}()
	return ch
}

func waitErr(t *testing.T, ch <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(within):
		t.Fatalf("no error within %s", within)
		return nil
	}
}

func TestRoundTrip(t *testing.T) {
	c, s := wrappedPair(t, Options{Time: 50 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true}, Options{Time: 50 * time.Millisecond, Timeout: time.Second})
	go io.Copy(s, s) // echo
	for _, size := range []int{1, 3, 63, 64, 65, 1000, MaxPayload - 1, MaxPayload, MaxPayload + 1, 100000} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i*7 + size)
		}
		errc := make(chan error, 1)
		go func() { _, err := c.Write(msg); errc <- err }()
		got := make([]byte, size)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("size %d: read: %v", size, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("size %d: write: %v", size, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("size %d: data differs", size)
		}
		time.Sleep(20 * time.Millisecond) // let PINGs interleave with data
	}
	time.Sleep(150 * time.Millisecond)
	st := c.Stats()
	if st.PingsSent == 0 || st.PongsReceived == 0 || st.RTT <= 0 || st.MinRTT <= 0 || st.SmoothedRTT <= 0 {
		t.Fatalf("no heartbeat measured: %+v", st)
	}
	if st.MinRTT > st.RTT && st.RTT > 0 {
		t.Fatalf("min RTT %s > last %s", st.MinRTT, st.RTT)
	}
	if st.Err != nil || c.Err() != nil {
		t.Fatalf("unexpected error %v", st.Err)
	}
	// Close then use: clean errors.
	c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// A peer that accepts the TCP connection but never speaks the protocol (never reads, never
// writes) must be declared dead within Time+Timeout.
func TestDeadPeerDetected(t *testing.T) {
	for _, appReads := range []bool{true, false} {
		name := "app-reading"
		if !appReads {
			name = "app-idle"
		}
		t.Run(name, func(t *testing.T) {
			raw, _ := tcpPair(t) // server end is never read nor written
			const tm, to = 200 * time.Millisecond, 300 * time.Millisecond
			dead := make(chan error, 1)
			start := time.Now()
			c, err := Client(raw, Options{Time: tm, Timeout: to, OnDead: func(c *Conn, err error) { dead <- err }})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var rerr <-chan error
			if appReads {
				rerr = readLoop(c)
			}
			err = waitErr(t, dead, 5*time.Second)
			el := time.Since(start)
			if !errors.Is(err, ErrPeerUnresponsive) {
				t.Fatalf("OnDead got %v, want ErrPeerUnresponsive", err)
			}
			if el < tm+to-20*time.Millisecond || el > tm+to+700*time.Millisecond {
				t.Fatalf("detected after %s, want about Time+Timeout = %s", el, tm+to)
			}
			t.Logf("detected after %s: %v", el, err)
			if appReads {
				if err := waitErr(t, rerr, 2*time.Second); !errors.Is(err, ErrPeerUnresponsive) {
					t.Fatalf("Read returned %v, want ErrPeerUnresponsive", err)
				}
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, ErrPeerUnresponsive) {
				t.Fatalf("Write returned %v, want ErrPeerUnresponsive", err)
			}
			var de *DeadError
			if !errors.As(c.Err(), &de) || de.Timeout != to {
				t.Fatalf("Err() = %#v", c.Err())
			}
		})
	}
}

// The peer's TCP stack is fine but its application hangs: Health blocks, no PONG follows.
func TestHungApplication(t *testing.T) {
	var hung atomic.Bool
	release := make(chan struct{})
	defer close(release)
	health := func(ctx context.Context) error {
		if hung.Load() {
			<-release // a deadlocked application ignores ctx
		}
		return nil
	}
	const tm, to = 100 * time.Millisecond, 300 * time.Millisecond
	dead := make(chan error, 1)
	c, s := wrappedPair(t,
		Options{Time: tm, Timeout: to, PermitWithoutCalls: true, OnDead: func(c *Conn, err error) { dead <- err }},
		Options{Time: time.Hour, Timeout: time.Hour, Health: health})
	readLoop(c)
	readLoop(s)
	time.Sleep(4 * tm)
	if st := c.Stats(); st.PongsReceived == 0 {
		t.Fatalf("healthy application never answered: %+v", st)
	}
	hung.Store(true)
	start := time.Now()
	err := waitErr(t, dead, 5*time.Second)
	el := time.Since(start)
	if !errors.Is(err, ErrPeerUnresponsive) {
		t.Fatalf("got %v, want ErrPeerUnresponsive", err)
	}
	if el > tm+to+700*time.Millisecond {
		t.Fatalf("hung peer detected after %s, want within Time+Timeout = %s", el, tm+to)
	}
	t.Logf("hung peer detected after %s", el)
}

// A failing Health check withholds the PONG too.
func TestHealthError(t *testing.T) {
	dead := make(chan error, 1)
	c, s := wrappedPair(t,
		Options{Time: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, PermitWithoutCalls: true, OnDead: func(c *Conn, err error) { dead <- err }},
		Options{Time: time.Hour, Health: func(context.Context) error { return errors.New("db down") }})
	readLoop(c)
	readLoop(s)
	if err := waitErr(t, dead, 3*time.Second); !errors.Is(err, ErrPeerUnresponsive) {
		t.Fatalf("got %v", err)
	}
	if s.Stats().HealthFailures == 0 {
		t.Fatal("no health failure counted")
	}
}

func TestPingFloodGoAway(t *testing.T) {
	c, s := wrappedPair(t,
		Options{Time: 10 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true},
		Options{Time: time.Hour, Enforcement: &EnforcementPolicy{MinTime: time.Second, PermitWithoutCalls: true}})
	cerr := readLoop(c)
	serr := readLoop(s)
	err := waitErr(t, cerr, 3*time.Second)
	if !errors.Is(err, ErrGoAway) || !IsTooManyPings(err) {
		t.Fatalf("client got %v, want GOAWAY too_many_pings", err)
	}
	err = waitErr(t, serr, 3*time.Second)
	var g *GoAwayError
	if !errors.As(err, &g) || !g.Sent || g.Reason != ReasonTooManyPings {
		t.Fatalf("server got %v, want sent GOAWAY", err)
	}
	if n := s.Stats().PingsReceived; n != MaxPingStrikes+2 {
		t.Fatalf("server cut after %d pings, want %d (first ping free, %d strikes, then GOAWAY)", n, MaxPingStrikes+2, MaxPingStrikes)
	}
}

// Without calls and without PermitWithoutCalls in the policy, any repeated ping is a strike.
func TestEnforcementWithoutCalls(t *testing.T) {
	c, s := wrappedPair(t,
		Options{Time: 30 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true},
		Options{Time: time.Hour, Enforcement: &EnforcementPolicy{MinTime: 10 * time.Millisecond}})
	cerr := readLoop(c)
	readLoop(s)
	if err := waitErr(t, cerr, 3*time.Second); !IsTooManyPings(err) {
		t.Fatalf("got %v", err)
	}
	// With a call active the same rate is fine.
	c2, s2 := wrappedPair(t,
		Options{Time: 30 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true},
		Options{Time: time.Hour, Enforcement: &EnforcementPolicy{MinTime: 10 * time.Millisecond}})
	s2.BeginCall()
	c2err := readLoop(c2)
	readLoop(s2)
	select {
	case err := <-c2err:
		t.Fatalf("connection with an active call ended: %v", err)
	case <-time.After(400 * time.Millisecond):
	}
	if s2.Stats().Calls != 1 || s2.Stats().PingsReceived < 5 {
		t.Fatalf("stats %+v", s2.Stats())
	}
}

// A client cut with too_many_pings doubles Time for its next connection until the server
// accepts its rate.
func TestBackoffDoubling(t *testing.T) {
	policy := &EnforcementPolicy{MinTime: 120 * time.Millisecond, PermitWithoutCalls: true}
	tm := 20 * time.Millisecond
	var seen []time.Duration
	for attempt := 0; attempt < 6; attempt++ {
		seen = append(seen, tm)
		c, s := wrappedPair(t, Options{Time: tm, Timeout: time.Second, PermitWithoutCalls: true}, Options{Time: time.Hour, Enforcement: policy})
		readLoop(s)
		cerr := readLoop(c)
		select {
		case err := <-cerr:
			if !IsTooManyPings(err) {
				t.Fatalf("Time %s: got %v", tm, err)
			}
			tm = NextTime(err, tm)
			continue
		case <-time.After(8 * tm):
		}
		if c.Stats().PongsReceived < 3 {
			t.Fatalf("Time %s: too few pongs %+v", tm, c.Stats())
		}
		want := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond}
		if len(seen) != len(want) {
			t.Fatalf("Time sequence %v, want %v", seen, want)
		}
		for i := range want {
			if seen[i] != want[i] {
				t.Fatalf("Time sequence %v, want %v", seen, want)
			}
		}
		return
	}
	t.Fatalf("never accepted: %v", seen)
}

func TestNextTime(t *testing.T) {
	tm := &GoAwayError{Code: CodeTooManyPings, Reason: ReasonTooManyPings}
	if got := NextTime(tm, time.Second); got != 2*time.Second {
		t.Fatalf("got %s", got)
	}
	if got := NextTime(&GoAwayError{Code: CodeTooManyPings, Sent: true}, time.Second); got != time.Second {
		t.Fatalf("sent goaway changed Time: %s", got)
	}
	if got := NextTime(io.EOF, time.Second); got != time.Second {
		t.Fatalf("got %s", got)
	}
	if got := NextTime(tm, MaxDuration); got != MaxDuration {
		t.Fatalf("got %s", got)
	}
}

func TestPermitWithoutCallsAndMaxPings(t *testing.T) {
	// No calls, no PermitWithoutCalls: no PING at all.
	c, s := wrappedPair(t, Options{Time: 20 * time.Millisecond, Timeout: time.Second}, Options{Time: time.Hour})
	readLoop(c)
	readLoop(s)
	time.Sleep(150 * time.Millisecond)
	if n := c.Stats().PingsSent; n != 0 {
		t.Fatalf("%d pings without calls", n)
	}
	c.BeginCall()
	time.Sleep(150 * time.Millisecond)
	if n := c.Stats().PingsSent; n < 2 {
		t.Fatalf("%d pings during a call", n)
	}
	c.EndCall()
	// MaxPingsWithoutData stops pinging until data is written.
	c2, s2 := wrappedPair(t, Options{Time: 20 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true, MaxPingsWithoutData: 2}, Options{Time: time.Hour})
	readLoop(c2)
	readLoop(s2)
	time.Sleep(200 * time.Millisecond)
	if n := c2.Stats().PingsSent; n != 2 {
		t.Fatalf("%d pings, want 2", n)
	}
	if _, err := c2.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := c2.Stats().PingsSent; n != 4 {
		t.Fatalf("%d pings after data, want 4", n)
	}
}

// An application that does not read still answers PINGs (through the background reader),
// and data that arrives meanwhile is delivered intact to its next Read.
func TestNotReadingStillAnswers(t *testing.T) {
	c, s := wrappedPair(t, Options{Time: 30 * time.Millisecond, Timeout: 200 * time.Millisecond, PermitWithoutCalls: true}, Options{Time: 30 * time.Millisecond, Timeout: 200 * time.Millisecond, PermitWithoutCalls: true})
	time.Sleep(500 * time.Millisecond) // nobody reads on either side
	if c.Err() != nil || s.Err() != nil {
		t.Fatalf("idle non-reading pair died: %v / %v", c.Err(), s.Err())
	}
	if c.Stats().PongsReceived+s.Stats().PongsReceived < 3 {
		t.Fatalf("no heartbeats: %+v %+v", c.Stats(), s.Stats())
	}
	msg := bytes.Repeat([]byte("0123456789"), 5000)
	go s.Write(msg)
	time.Sleep(300 * time.Millisecond) // DATA sits in the background reader / socket
	if c.Err() != nil {
		t.Fatalf("died with unread data: %v", c.Err())
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("data corrupted across background reader hand-off")
	}
}

// Idle connections whose application is blocked in Read cost no goroutine for heartbeats.
func TestNoGoroutinePerConn(t *testing.T) {
	const n = 200
	before := runtime.NumGoroutine()
	var conns []*Conn
	for range n {
		c, s := wrappedPair(t, Options{Time: 50 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true}, Options{Time: 50 * time.Millisecond, Timeout: time.Second})
		readLoop(c)
		readLoop(s)
		conns = append(conns, c, s)
	}
	time.Sleep(400 * time.Millisecond)
	extra := runtime.NumGoroutine() - before - 2*n // minus the application's readers
	if extra > 12 {
		t.Fatalf("%d goroutines beyond the application's readers for %d connections", extra, 2*n)
	}
	var pongs uint64
	for _, c := range conns {
		if c.Err() != nil {
			t.Fatal(c.Err())
		}
		pongs += c.Stats().PongsReceived
	}
	if pongs < n {
		t.Fatalf("only %d pongs over %d pairs", pongs, n)
	}
	t.Logf("%d connections, %d extra goroutines, %d pongs", 2*n, extra, pongs)
}

// The ping/pong path allocates nothing in steady state.
func TestPingPongAllocs(t *testing.T) {
	pong := make(chan struct{}, 1)
	c, s := wrappedPair(t,
		Options{Time: time.Hour, Timeout: time.Hour, OnPong: func(*Conn, time.Duration) { pong <- struct{}{} }},
		Options{Time: time.Hour, Timeout: time.Hour})
	readLoop(c)
	readLoop(s)
	round := func() {
		c.pingID.Add(1)
		c.queue(ctlPing)
		<-pong
	}
	for range 20 {
		round()
	}
	if a := testing.AllocsPerRun(200, round); a > 0.1 {
		t.Fatalf("%.2f allocations per ping/pong round trip", a)
	}
	// The scheduler's visit (ping decision) allocates nothing either.
	v := func() {
		c.pingOut = false
		c.lastRead.Store(c.s.nanotime() - int64(2*time.Hour))
		c.visit(c.s.nanotime())
		<-pong
		c.pingOut = false
	}
	c.s.remove(c)
	c.BeginCall()
	for range 5 {
		v()
	}
	if a := testing.AllocsPerRun(100, v); a > 0.1 {
		t.Fatalf("%.2f allocations per scheduler visit", a)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{Time: time.Millisecond},
		{Timeout: -1},
		{Time: 25 * time.Hour},
		{MaxPingsWithoutData: -1},
		{HealthTimeout: time.Nanosecond},
		{Enforcement: &EnforcementPolicy{MinTime: time.Microsecond}},
	} {
		raw, _ := tcpPair(t)
		_, err := Wrap(raw, o)
		var re *RangeError
		if !errors.As(err, &re) || !errors.Is(err, ErrInvalidOption) || re.Allowed == "" {
			t.Fatalf("%+v: got %v", o, err)
		}
		t.Log(err)
	}
	if _, err := Wrap(nil, Options{}); err == nil {
		t.Fatal("nil conn accepted")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := Wrap(a, Options{UserTimeout: true}); err == nil {
		t.Fatal("UserTimeout on a pipe accepted")
	}
}

func TestUserTimeoutApplied(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_USER_TIMEOUT read-back is checked on Linux only")
	}
	raw, _ := tcpPair(t)
	c, err := Wrap(raw, Options{Timeout: 1500 * time.Millisecond, UserTimeout: true, KeepAlive: &keepalive.Config{Idle: 5 * time.Second, Interval: time.Second, Count: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := keepalive.Get(raw.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Enabled || st.UserTimeout != 1500*time.Millisecond || st.Idle != 5*time.Second || st.Count != 3 {
		t.Fatalf("socket has %+v", st)
	}
}

func TestProtocolErrorFromGarbage(t *testing.T) {
	rc, rs := tcpPair(t)
	c, err := Wrap(rc, Options{Time: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rs.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	_, err = c.Read(make([]byte, 10))
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}
	// The peer gets a GOAWAY protocol_error.
	rs.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(rs)
	f, _, perr := ParseFrame(b)
	if perr != nil || f.Type != FrameGoAway || f.Code != CodeProtocolError {
		t.Fatalf("peer got %q (%v)", b, perr)
	}
}

func TestMonitorAndAnswer(t *testing.T) {
	rc, rs := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	var aerr error
	go func() { defer wg.Done(); aerr = Answer(ctx, rs, Options{Time: 50 * time.Millisecond}) }()
	var rtts []time.Duration
	st, err := Monitor(ctx, rc, Options{Time: 50 * time.Millisecond, Timeout: time.Second, OnPong: func(c *Conn, rtt time.Duration) { rtts = append(rtts, rtt) }}, 3)
	if err != nil || st.PongsReceived != 3 || len(rtts) != 3 {
		t.Fatalf("Monitor: %v %+v %v", err, st, rtts)
	}
	wg.Wait()
	if aerr != nil {
		t.Fatalf("Answer: %v", aerr)
	}
}

// Read deadlines pass through; a timed-out Read leaves the connection usable.
func TestReadDeadline(t *testing.T) {
	c, s := wrappedPair(t, Options{Time: 30 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true}, Options{Time: time.Hour})
	readLoop(s)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 10)
	start := time.Now()
	_, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	if el := time.Since(start); el < 90*time.Millisecond || el > time.Second {
		t.Fatalf("deadline fired after %s", el)
	}
	if c.Err() != nil {
		t.Fatalf("connection died: %v", c.Err())
	}
	c.SetReadDeadline(time.Time{})
	time.Sleep(200 * time.Millisecond) // the background reader keeps answering meanwhile
	if c.Err() != nil || c.Stats().PongsReceived < 2 {
		t.Fatalf("heartbeats stopped after a read timeout: %+v", c.Stats())
	}
	go s.Write([]byte("after"))
	n, err := io.ReadFull(c, buf[:5])
	if err != nil || string(buf[:n]) != "after" {
		t.Fatalf("read after timeout: %q %v", buf[:n], err)
	}
}

// Any net.Conn works: a Unix stream socket and the synchronous net.Pipe.
func TestOtherConnTypes(t *testing.T) {
	dir, err := os.MkdirTemp("", "kahb")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	uc, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	us := <-ch
	pa, pb := net.Pipe()
	for name, p := range map[string][2]net.Conn{"unix": {uc, us}, "pipe": {pa, pb}} {
		t.Run(name, func(t *testing.T) {
			o := Options{Time: 20 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true}
			c, err := Client(p[0], o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := Server(p[1], Options{Time: time.Hour, Enforcement: &EnforcementPolicy{PermitWithoutCalls: true}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			go io.Copy(s, s)
			go c.Write([]byte("ping over " + name))
			buf := make([]byte, len("ping over "+name))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping over "+name {
				t.Fatalf("%q %v", buf, err)
			}
			c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
			c.Read(buf)
			if st := c.Stats(); st.PongsReceived < 2 || st.Err != nil {
				t.Fatalf("%+v", st)
			}
		})
	}
}

// gRPC parity: a Server with default policy PINGs an idle client it has not heard from for
// Time, so a stopped client (here: one that never answers) is declared dead within
// Time + Timeout, with or without a call and whether or not the server application reads.
func TestServerPingsIdleClient(t *testing.T) {
	for _, appReads := range []bool{true, false} {
		_, rawServer := tcpPair(t) // the client end never answers
		const tm, to = 200 * time.Millisecond, 300 * time.Millisecond
		dead := make(chan error, 1)
		start := time.Now()
		s, err := Server(rawServer, Options{Time: tm, Timeout: to, OnDead: func(c *Conn, err error) { dead <- err }})
		if err != nil {
			t.Fatal(err)
		}
		if appReads {
			readLoop(s)
		}
		err = waitErr(t, dead, 5*time.Second)
		el := time.Since(start)
		if !errors.Is(err, ErrPeerUnresponsive) {
			t.Fatalf("OnDead got %v", err)
		}
		if el < tm+to-20*time.Millisecond || el > tm+to+700*time.Millisecond {
			t.Fatalf("app reading %v: detected after %s, want about Time+Timeout = %s", appReads, el, tm+to)
		}
		if st := s.Stats(); st.PingsSent == 0 {
			t.Fatalf("server sent no PING: %+v", st)
		}
		s.Close()
	}
}

// A live client and a server with the same Time: the client's PINGs keep the server's read
// clock fresh, so the server itself sends (almost) no PINGs.
func TestServerQuietWhileClientPings(t *testing.T) {
	rc, rs := tcpPair(t)
	o := Options{Time: 100 * time.Millisecond, Timeout: time.Second}
	so := o
	so.Time = 150 * time.Millisecond
	c, err := Client(rc, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := Server(rs, so)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readLoop(c)
	readLoop(s)
	time.Sleep(time.Second)
	cs, ss := c.Stats(), s.Stats()
	if cs.PongsReceived < 5 || ss.PingsSent > 1 || c.Err() != nil || s.Err() != nil {
		t.Fatalf("client %+v\nserver %+v", cs, ss)
	}
}

// Connections nobody reads: one background reader each, no more (the honest cost stated in
// the package documentation), and heartbeats still flow.
func TestGoroutinesWhenNotReading(t *testing.T) {
	const n = 200
	before := runtime.NumGoroutine()
	var conns []*Conn
	for range n {
		c, s := wrappedPair(t, Options{Time: 50 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true}, Options{Time: 50 * time.Millisecond, Timeout: time.Second})
		conns = append(conns, c, s)
	}
	time.Sleep(400 * time.Millisecond)
	extra := runtime.NumGoroutine() - before
	if extra < 2*n-4 || extra > 2*n+12 {
		t.Fatalf("%d goroutines for %d unread connections, want one background reader each (+ a few)", extra, 2*n)
	}
	var pongs uint64
	for _, c := range conns {
		if c.Err() != nil {
			t.Fatal(c.Err())
		}
		pongs += c.Stats().PongsReceived
	}
	if pongs < n {
		t.Fatalf("only %d pongs over %d pairs", pongs, n)
	}
	t.Logf("%d unread connections: %d goroutines, %d pongs", 2*n, extra, pongs)
}
