//go:build linux

package heartbeat

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// nsConn dials from namespace A to a listener in B and returns the client end; the server end
// is held open and never read, and B is then turned into a black hole.
func nsConn(t *testing.T, subnet int) net.Conn {
	t.Helper()
	nstest.Require(t)
	p := nstest.NewPair(t, "hbdead", subnet)
	addr := net.JoinHostPort(p.BIP.String(), "7100")
	var ln net.Listener
	p.B.Do(t, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- s
	}()
	var c net.Conn
	p.A.Do(t, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 5*time.Second)
		return err
	})
	t.Cleanup(func() { c.Close() })
	if s := <-accepted; s != nil {
		t.Cleanup(func() { s.Close() })
	}
	p.B.BlackHole(t)
	return c
}

func checkTCPDead(t *testing.T, c *Conn, err error, dead <-chan error, calls *atomic.Int32) {
	t.Helper()
	var de *DeadError
	if !errors.Is(err, ErrPeerUnresponsive) || !errors.Is(err, syscall.ETIMEDOUT) || !errors.As(err, &de) || de.By != ByTCP {
		t.Fatalf("error %v (%T), want a DeadError by tcp matching ErrPeerUnresponsive and ETIMEDOUT", err, err)
	}
	// The documented trap: a net.Error inside says Timeout, but it is no deadline of ours.
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("net.Error inside: %v, Timeout %v, ErrDeadlineExceeded %v", ne, ne != nil && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded))
	}
	select {
	case derr := <-dead:
		if !errors.Is(derr, ErrPeerUnresponsive) {
			t.Fatalf("OnDead got %v", derr)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("OnDead not called")
	}
	if !errors.Is(c.Err(), ErrPeerUnresponsive) || !errors.Is(c.Stats().Err, ErrPeerUnresponsive) {
		t.Fatalf("Err() = %v", c.Err())
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrPeerUnresponsive) {
		t.Fatalf("Write after death: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("OnDead called %d times, want once", n)
	}
}

// With UserTimeout, a Write blocked on a vanished peer fails through TCP_USER_TIMEOUT long
// before the heartbeat would notice; the application sees the same classification.
func TestUserTimeoutIsPeerDead(t *testing.T) {
	t.Parallel()
	raw := nsConn(t, 151)
	dead := make(chan error, 2)
	var calls atomic.Int32
	const to = time.Second
	c, err := Client(raw, Options{Time: 30 * time.Second, Timeout: to, UserTimeout: true,
		OnDead: func(c *Conn, err error) { calls.Add(1); dead <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 64<<10)
	start := time.Now()
	for time.Since(start) < 15*time.Second {
		if _, err = c.Write(buf); err != nil {
			break
		}
	}
	took := time.Since(start)
	t.Logf("Write failed after %s: %v", took.Round(time.Millisecond), err)
	if took > 8*time.Second {
		t.Fatalf("user timeout of %s took %s", to, took)
	}
	checkTCPDead(t, c, err, dead, &calls)
}

// With kernel keepalive shorter than the heartbeat, a Read on a vanished peer fails with
// ETIMEDOUT from keepalive; again the same classification and one OnDead.
func TestKernelKeepaliveIsPeerDead(t *testing.T) {
	t.Parallel()
	raw := nsConn(t, 152)
	dead := make(chan error, 2)
	var calls atomic.Int32
	c, err := Client(raw, Options{Time: 30 * time.Second, Timeout: 20 * time.Second,
		KeepAlive: &keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2},
		OnDead:    func(c *Conn, err error) { calls.Add(1); dead <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	rerr := readLoop(c)
	err = waitErr(t, rerr, 15*time.Second)
	t.Logf("Read failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	checkTCPDead(t, c, err, dead, &calls)
}
