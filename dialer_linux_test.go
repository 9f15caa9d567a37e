//go:build linux

package keepalive_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

var testCfg = keepalive.Config{Idle: 41 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 33 * time.Second}

func wantRaw(t *testing.T, what string, c syscall.Conn, cfg keepalive.Config) {
	t.Helper()
	on, idle, intvl, cnt, ut := rawGet(t, c)
	if on != 1 || idle != int(cfg.Idle/time.Second) || intvl != int(cfg.Interval/time.Second) || cnt != cfg.Count || ut != int(cfg.UserTimeout/time.Millisecond) {
		t.Errorf("%s: on %d idle %d intvl %d cnt %d ut %d ms, want %s", what, on, idle, intvl, cnt, ut, cfg)
	}
}

// The obvious use of NewDialer keeps every field (Go's 15 s/15 s/9 would otherwise win) and
// still runs the base Dialer's own Control.
func TestNewDialerKeepsConfigAndChainsControl(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	baseCalls := 0
	base := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second},
		Control: func(network, address string, c syscall.RawConn) error {
			baseCalls++
			return c.Control(func(fd uintptr) {
				// The base Control sets a value that cfg must override.
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 5)
			})
		}}
	d, err := keepalive.NewDialer(base, testCfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Timeout != 3*time.Second || d.KeepAlive != -1 || d.KeepAliveConfig.Enable {
		t.Errorf("dialer: Timeout %v KeepAlive %v KeepAliveConfig %+v", d.Timeout, d.KeepAlive, d.KeepAliveConfig)
	}
	if base.KeepAlive != 30*time.Second {
		t.Error("NewDialer changed its base")
	}
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if baseCalls != 1 {
		t.Errorf("base Control ran %d times, want 1", baseCalls)
	}
	wantRaw(t, "dialed", c.(*net.TCPConn), testCfg)

	// ControlContext is chained as well.
	ctxCalls := 0
	d2, err := keepalive.NewDialer(&net.Dialer{ControlContext: func(ctx context.Context, network, address string, c syscall.RawConn) error {
		ctxCalls++
		return nil
	}}, testCfg)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := d2.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if ctxCalls != 1 {
		t.Errorf("base ControlContext ran %d times, want 1", ctxCalls)
	}
	wantRaw(t, "dialed with ControlContext", c2.(*net.TCPConn), testCfg)

	// A failing base Control stops the dial.
	boom := errors.New("base refused")
	d3, _ := keepalive.NewDialer(&net.Dialer{Control: func(string, string, syscall.RawConn) error { return boom }}, testCfg)
	if _, err := d3.Dial("tcp4", ln.Addr().String()); !errors.Is(err, boom) {
		t.Errorf("dial with failing base Control: %v", err)
	}
}

func TestNewDialerValidatesUpFront(t *testing.T) {
	_, err := keepalive.NewDialer(nil, keepalive.Config{Idle: 1500 * time.Millisecond})
	if !errors.Is(err, keepalive.ErrOutOfRange) {
		t.Fatalf("NewDialer with idle 1.5s: %v, want ErrOutOfRange", err)
	}
	_, err = keepalive.DialFunc(keepalive.Config{Count: -1})(context.Background(), "tcp", "127.0.0.1:1")
	if err == nil {
		t.Fatal("DialFunc with count -1 dialed")
	}
}

// Accepted connections of a NewListenConfig listener carry cfg, MPTCP default or not.
func TestNewListenConfigAccepted(t *testing.T) {
	for _, mptcp := range []bool{false, true} {
		base := &net.ListenConfig{}
		base.SetMultipathTCP(mptcp)
		lc, err := keepalive.NewListenConfig(base, testCfg)
		if err != nil {
			t.Fatal(err)
		}
		if lc.MultipathTCP() {
			t.Errorf("MPTCP %v: listener with UserTimeout still uses MPTCP", mptcp)
		}
		ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		wantRaw(t, "accepted", s.(*net.TCPConn), testCfg)
		c.Close()
		s.Close()
		ln.Close()
	}
}

func mptcpAvailable(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
	nstest.Need(t, err == nil && strings.TrimSpace(string(b)) == "1", "MPTCP enabled in the kernel (net.mptcp.enabled=1)")
}

// On an MPTCP socket idle, interval and count apply and are inherited by accepted MPTCP
// connections; the user timeout is refused before anything changes.
func TestMPTCP(t *testing.T) {
	mptcpAvailable(t)
	noUT := testCfg
	noUT.UserTimeout = 0
	base := &net.ListenConfig{}
	base.SetMultipathTCP(true)
	lc, err := keepalive.NewListenConfig(base, noUT)
	if err != nil {
		t.Fatal(err)
	}
	if !lc.MultipathTCP() {
		t.Fatal("NewListenConfig without UserTimeout turned MPTCP off")
	}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got, err := keepalive.Get(ln.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	if !got.MPTCP || got.Config != noUT || !got.Enabled {
		t.Errorf("MPTCP listener reads %+v, want MPTCP and %s", got, noUT)
	}
	var d net.Dialer
	d.SetMultipathTCP(true)
	d.KeepAlive = -1
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m, _ := s.(*net.TCPConn).MultipathTCP(); !m {
		t.Fatal("accepted connection is not MPTCP")
	}
	got, err = keepalive.Get(s.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	if !got.MPTCP || got.Config != noUT {
		t.Errorf("accepted MPTCP connection reads %+v, want %s inherited", got, noUT)
	}

	// The user timeout: refused up front, nothing changed.
	other := keepalive.Config{Idle: 99 * time.Second, UserTimeout: 10 * time.Second}
	err = keepalive.Apply(s.(*net.TCPConn), other)
	var fe *keepalive.FieldError
	if !errors.As(err, &fe) || fe.Field != "user-timeout" || len(fe.Applied) != 0 ||
		!errors.Is(err, keepalive.ErrUnsupported) || !errors.Is(err, syscall.ENOPROTOOPT) {
		t.Fatalf("Apply with user timeout on MPTCP: %v (%+v)", err, fe)
	}
	if after, _ := keepalive.Get(s.(*net.TCPConn)); after.Idle != noUT.Idle {
		t.Errorf("refused Apply changed idle to %v", after.Idle)
	}
	// Without it, Apply works on MPTCP.
	if err := keepalive.Apply(s.(*net.TCPConn), keepalive.Config{Idle: 99 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if after, _ := keepalive.Get(s.(*net.TCPConn)); after.Idle != 99*time.Second {
		t.Errorf("idle on MPTCP reads %v after Apply, want 99s", after.Idle)
	}
}

// A system call failing midway reports what was applied. A raw IPPROTO_TCP socket is the real
// case at hand: SO_PROTOCOL says TCP and SO_KEEPALIVE is accepted, but TCP_KEEPIDLE is not.
func TestApplyReportsWhatWasApplied(t *testing.T) {
	nstest.Need(t, os.Geteuid() == 0, "root (a raw socket)")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = keepalive.Apply(keepalive.FD(fd), keepalive.Config{Idle: 30 * time.Second, Count: 3})
	var fe *keepalive.FieldError
	if !errors.As(err, &fe) || fe.Field != "idle" || len(fe.Applied) != 1 || fe.Applied[0] != "keepalive" {
		t.Fatalf("Apply on a raw socket: %v (%+v)", err, fe)
	}
	if !strings.Contains(err.Error(), "already applied: keepalive") {
		t.Errorf("error text does not name what was applied: %v", err)
	}
	if v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); v != 1 {
		t.Errorf("SO_KEEPALIVE reads %d, the error said it was applied", v)
	}
}

func TestNonTCPRejected(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	uc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	ctx := context.Background()
	cases := map[string]error{}
	_, cases["Dial unix"] = keepalive.Dial(ctx, "unix", path, testCfg)
	_, cases["Listen unix"] = keepalive.Listen(ctx, "unix", filepath.Join(dir, "t"), testCfg)
	_, cases["DialFunc unix"] = keepalive.DialFunc(testCfg)(ctx, "unix", path)
	cases["ApplyConn unix"] = keepalive.ApplyConn(uc, testCfg)
	cases["Apply unix"] = keepalive.Apply(uc.(*net.UnixConn), testCfg)
	cases["Disable unix"] = keepalive.Disable(uc.(*net.UnixConn))
	_, cases["Get unix"] = keepalive.Get(uc.(*net.UnixConn))
	d := net.Dialer{Control: keepalive.Control(testCfg)}
	_, cases["Control unix"] = d.Dial("unix", path)
	ufd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ufd)
	cases["Apply unix FD"] = keepalive.Apply(keepalive.FD(ufd), testCfg)
	for name, err := range cases {
		if !errors.Is(err, keepalive.ErrNotTCP) {
			t.Errorf("%s: %v, want ErrNotTCP", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "t")); err == nil {
		t.Error("Listen unix created a socket file")
	}
}

func selfSignedTLS(t *testing.T) (client, server *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keepalive test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestApplyConnThroughTLS(t *testing.T) {
	ccfg, scfg := selfSignedTLS(t)
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err == nil {
			_ = s.(*tls.Conn).Handshake()
			defer s.Close()
			buf := make([]byte, 1)
			s.Read(buf)
		}
	}()
	c, err := tls.Dial("tcp4", ln.Addr().String(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := keepalive.ApplyConn(c, testCfg); err != nil {
		t.Fatal(err)
	}
	tc, err := keepalive.UnwrapTCP(c)
	if err != nil {
		t.Fatal(err)
	}
	wantRaw(t, "TLS connection", tc, testCfg)
}

// DialFunc as http.Transport.DialContext: the connection net/http uses carries cfg.
func TestDialFuncHTTPTransport(t *testing.T) {
	seen := make(chan keepalive.Settings, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Start()
	defer srv.Close()
	dial := keepalive.DialFunc(testCfg)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			s, gerr := keepalive.Get(c.(*net.TCPConn))
			if gerr != nil {
				t.Error(gerr)
			}
			seen <- s
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-seen; !s.Enabled || s.Config != testCfg {
		t.Errorf("HTTP connection: %s, want %s", s, testCfg)
	}
	// The grpc shape dials tcp.
	c, err := keepalive.ContextDialer(testCfg)(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantRaw(t, "ContextDialer", c.(*net.TCPConn), testCfg)
}

// RFC 1122: keepalive can be switched off per connection, read back, and switched on again.
func TestDisable(t *testing.T) {
	ln, err := keepalive.Listen(context.Background(), "tcp4", "127.0.0.1:0", testCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tc := s.(*net.TCPConn)
	if err := keepalive.Disable(tc); err != nil {
		t.Fatal(err)
	}
	got, err := keepalive.Get(tc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Enabled || got.Config != testCfg {
		t.Errorf("after Disable: %+v, want off with %s kept", got, testCfg)
	}
	if got.String() != "off, ut 33s" {
		t.Errorf("String after Disable: %q", got.String())
	}
	if err := keepalive.Apply(tc, keepalive.Config{}); err != nil {
		t.Fatal(err)
	}
	wantRaw(t, "re-enabled", tc, testCfg)
}

func TestConfigStringZeroFields(t *testing.T) {
	if got := (keepalive.Config{Interval: 10 * time.Second}).String(); got != "idle default intvl 10s cnt default" {
		t.Errorf("String: %q", got)
	}
}
