//go:build linux

package keepalive_test

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

// rawGet reads the options with plain getsockopt, independent of keepalive.Get.
func rawGet(t *testing.T, c syscall.Conn) (on, idle, intvl, cnt, utMS int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	get := func(fd uintptr, level, opt int) int {
		v, err := unix.GetsockoptInt(int(fd), level, opt)
		errs = append(errs, err)
		return v
	}
	if err := rc.Control(func(fd uintptr) {
		on = get(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle = get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		intvl = get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		cnt = get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		utMS = get(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return
}

func loopbackPair(t *testing.T, network, addr string) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	return nstest.Loopback(t, network, addr)
}

func TestApplyGetRoundTrip(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			c, _ := loopbackPair(t, tc.network, tc.addr)
			if on, _, _, _, _ := rawGet(t, c); on != 0 {
				t.Fatalf("fresh socket has SO_KEEPALIVE=%d, want 0", on)
			}
			cfg := keepalive.Config{Idle: 42 * time.Second, Interval: 7 * time.Second, Count: 5, UserTimeout: 1500 * time.Millisecond}
			if err := keepalive.Apply(c, cfg); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			on, idle, intvl, cnt, ut := rawGet(t, c)
			if on != 1 || idle != 42 || intvl != 7 || cnt != 5 || ut != 1500 {
				t.Fatalf("raw getsockopt = on %d idle %d intvl %d cnt %d ut %dms; want 1 42 7 5 1500", on, idle, intvl, cnt, ut)
			}
			got, err := keepalive.Get(c)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if want := (keepalive.Settings{Enabled: true, Config: cfg}); got != want {
				t.Fatalf("Get = %+v, want %+v", got, want)
			}
		})
	}
}

func TestApplyPartialKeepsOtherFields(t *testing.T) {
	c, _ := loopbackPair(t, "tcp4", "127.0.0.1:0")
	if err := keepalive.Apply(c, keepalive.Config{Interval: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	sys, err := host.ReadSysctl("")
	if err != nil {
		t.Fatal(err)
	}
	got, err := keepalive.Get(c)
	if err != nil {
		t.Fatal(err)
	}
	want := keepalive.Settings{Enabled: true, Config: keepalive.Config{Idle: sys.Keepalive.Idle, Interval: 3 * time.Second, Count: sys.Keepalive.Count}}
	if got != want {
		t.Fatalf("Get = %+v, want %+v (zero fields keep the sysctl default)", got, want)
	}
}

func TestApplyInvalidChangesNothing(t *testing.T) {
	c, _ := loopbackPair(t, "tcp4", "127.0.0.1:0")
	err := keepalive.Apply(c, keepalive.Config{Idle: 10 * time.Second, Count: 500})
	var fe *keepalive.FieldError
	if !errors.As(err, &fe) || fe.Field != "count" || !errors.Is(err, keepalive.ErrOutOfRange) {
		t.Fatalf("Apply(count 500) = %v, want a count FieldError matching ErrOutOfRange", err)
	}
	if on, idle, _, _, _ := rawGet(t, c); on != 0 || idle == 10 {
		t.Fatalf("invalid Apply half-applied: on=%d idle=%d", on, idle)
	}
}

func TestFDAndControlAndListen(t *testing.T) {
	cfg := keepalive.Config{Idle: 11 * time.Second, Interval: 2 * time.Second, Count: 4}
	ln, err := keepalive.Listen(context.Background(), "tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			done <- nil
			return
		}
		done <- s
	}()
	c, err := keepalive.Dial(context.Background(), "tcp", ln.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-done
	if s == nil {
		t.Fatal("accept failed")
	}
	defer s.Close()
	for name, conn := range map[string]syscall.Conn{"dialed": c.(*net.TCPConn), "accepted (inherited)": s.(*net.TCPConn)} {
		got, err := keepalive.Get(conn)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Enabled || got.Config != cfg {
			t.Errorf("%s: Get = %+v, want enabled %+v", name, got, cfg)
		}
	}
	// FD on a raw descriptor.
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := keepalive.Apply(keepalive.FD(f.Fd()), keepalive.Config{Count: 9}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, cnt, _ := rawGet(t, c.(*net.TCPConn)); cnt != 9 {
		t.Fatalf("count via FD = %d, want 9", cnt)
	}
}

// TestKernelDetectsSilentPeer is the real check: a peer in a namespace that starts dropping
// everything is noticed with ETIMEDOUT at idle + count × interval.
func TestKernelDetectsSilentPeer(t *testing.T) {
	nstest.Require(t)
	t.Parallel()
	p := nstest.NewPair(t, "kacore", 1)
	var ln net.Listener
	p.B.Do(t, func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(p.BIP.String(), "7000"))
		return err
	})
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := ln.Accept()
		if err == nil {
			accepted <- s
		}
		close(accepted)
	}()
	cfg := keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2}
	var c net.Conn
	p.A.Do(t, func() (err error) {
		c, err = keepalive.Dial(context.Background(), "tcp4", net.JoinHostPort(p.BIP.String(), "7000"), cfg)
		return err
	})
	defer c.Close()
	if s := <-accepted; s != nil {
		defer s.Close()
	}
	// Last activity: a byte from the server, read by the client.
	p.B.BlackHole(t)
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err := c.Read(make([]byte, 1))
	took := time.Since(start)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read error = %v after %s, want ETIMEDOUT", err, took)
	}
	want, _ := keepalive.DetectionTime(cfg, keepalive.ScenarioSilent)
	if took < want-200*time.Millisecond || took > want+1500*time.Millisecond {
		t.Fatalf("detected after %s, predicted %s (band −0.2 s … +1.5 s)", took, want)
	}
	t.Logf("ETIMEDOUT after %s (predicted %s)", took.Round(time.Millisecond), want)
}

// TestControlNeedsKeepAliveOff documents the pitfall Control's comment warns about: Go's
// default dialer keepalive overwrites the idle time after connecting.
func TestControlNeedsKeepAliveOff(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := keepalive.Config{Idle: 42 * time.Second}
	for _, tc := range []struct {
		keepAlive time.Duration
		wantIdle  int
	}{{-1, 42}, {0, 15}} {
		d := net.Dialer{KeepAlive: tc.keepAlive, Control: keepalive.Control(cfg)}
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, idle, _, _, _ := rawGet(t, c.(*net.TCPConn))
		c.Close()
		if idle != tc.wantIdle {
			t.Errorf("Dialer{KeepAlive: %v}: idle %d s, want %d s", tc.keepAlive, idle, tc.wantIdle)
		}
	}
}
