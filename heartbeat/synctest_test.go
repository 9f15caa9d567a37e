package heartbeat

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// The protocol logic on a virtual clock (testing/synctest) over in-memory connections
// (net.Pipe): deterministic, in addition to the real-socket tests. Each test gives its Conns
// their own scheduler, made inside the bubble, so its clock and goroutines are the bubble's.

// A silent peer (reads everything, answers nothing) is declared dead exactly Time+Timeout
// after the last byte read.
func TestSynctestSilentPeerExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScheduler()
		defer settle(s)
		a, b := net.Pipe()
		defer b.Close()
		go func() { _, _ = io.Copy(io.Discard, b) }()
		const tm, to = 2 * time.Second, 3 * time.Second
		dead := make(chan error, 1)
		start := time.Now()
		c, err := Client(a, Options{Time: tm, Timeout: to, sched: s,
			OnDead: func(_ *Conn, err error) { dead <- err }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = <-dead
		el := time.Since(start)
		if !errors.Is(err, ErrPeerUnresponsive) {
			t.Fatalf("OnDead got %v, want ErrPeerUnresponsive", err)
		}
		if el != tm+to {
			t.Fatalf("detected after %s, want exactly Time+Timeout = %s", el, tm+to)
		}
		if st := c.Stats(); st.PingsSent != 1 || st.PongsReceived != 0 {
			t.Fatalf("stats %+v, want one PING and no PONG", st)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, ErrPeerUnresponsive) {
			t.Fatalf("Write returned %v, want ErrPeerUnresponsive", err)
		}
	})
}

// settle lets the scheduler's loop see that its Conns are gone (it wakes at its next
// deadline) and ends its writers, so that nothing of the bubble is left running.
func settle(s *scheduler) {
	time.Sleep(time.Hour)
	synctest.Wait()
	s.stopWriters()
}

// delayConn delays every write by d: a path with latency. The virtual clock does not move
// by itself, and a PONG read in the very nanosecond its PING left is not counted as an
// answer (lastRead must be after the PING).
type delayConn struct {
	net.Conn
	d time.Duration
}

func (c delayConn) Write(p []byte) (int, error) {
	time.Sleep(c.d)
	return c.Conn.Write(p)
}

// A live peer answers every PING: after a virtual minute the client pinged once per Time of
// silence, the other end (Wrap: no enforcement, pings only during calls) never pinged, and nobody died.
func TestSynctestLivePeerMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScheduler()
		defer settle(s)
		pa, pb := net.Pipe()
		a, b := delayConn{pa, time.Millisecond}, delayConn{pb, time.Millisecond}
		const tm, to = 2 * time.Second, 3 * time.Second
		died := make(chan error, 2)
		onDead := func(_ *Conn, err error) { died <- err }
		c, err := Client(a, Options{Time: tm, Timeout: to, sched: s, OnDead: onDead})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		srv, err := Wrap(b, Options{Time: 10 * tm, Timeout: to, sched: s, OnDead: onDead})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		time.Sleep(time.Minute + tm/2)
		synctest.Wait()
		select {
		case err := <-died:
			t.Fatalf("a live peer was declared dead: %v", err)
		default:
		}
		cs, ss := c.Stats(), srv.Stats()
		if cs.PingsSent != 30 || cs.PongsReceived != 30 || ss.PingsReceived != 30 || ss.PongsSent != 30 {
			t.Fatalf("client %+v server %+v, want 30 PINGs answered (one per Time over a minute)", cs, ss)
		}
		if ss.PingsSent != 0 {
			t.Fatalf("server pinged %d times although it hears the client's PINGs", ss.PingsSent)
		}
	})
}

// The peer's connection is fine but its application hangs (Health never returns): the PONG
// is withheld and the client declares the peer dead Time+Timeout after the last byte read.
func TestSynctestHungApplication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScheduler()
		defer settle(s)
		release := make(chan struct{})
		defer close(release)
		pa, pb := net.Pipe()
		a, b := delayConn{pa, time.Millisecond}, delayConn{pb, time.Millisecond}
		const tm, to = 2 * time.Second, 3 * time.Second
		dead := make(chan error, 1)
		start := time.Now()
		c, err := Client(a, Options{Time: tm, Timeout: to, sched: s,
			OnDead: func(_ *Conn, err error) { dead <- err }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		srv, err := Wrap(b, Options{Time: time.Hour, Timeout: time.Hour, sched: s,
			Health: func(context.Context) error { <-release; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		readLoop(srv) // the peer application reads; only its Health hangs
		err = <-dead
		el := time.Since(start)
		if !errors.Is(err, ErrPeerUnresponsive) {
			t.Fatalf("OnDead got %v, want ErrPeerUnresponsive", err)
		}
		if el != tm+to {
			t.Fatalf("hung peer detected after %s, want exactly Time+Timeout = %s", el, tm+to)
		}
		if st := srv.Stats(); st.PingsReceived != 1 || st.PongsSent != 0 {
			t.Fatalf("peer stats %+v, want one PING received and no PONG", st)
		}
	})
}
