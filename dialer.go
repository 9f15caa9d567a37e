package keepalive

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"syscall"
)

// NewDialer returns a copy of base (the zero net.Dialer when base is nil) that applies cfg to
// every TCP connection it makes, before the connection is made. It sets what Go needs so that
// cfg is not overwritten after connecting: KeepAlive -1 and a zero KeepAliveConfig (otherwise Go
// applies idle 15 s, interval 15 s, count 9 once connected). An existing Control or
// ControlContext of base runs first, then cfg is applied. When cfg.UserTimeout is set, Multipath
// TCP is turned off (an MPTCP socket has no TCP_USER_TIMEOUT). cfg is validated for the running
// OS here, so a bad value fails now rather than at the first dial. Dialing a network other than
// tcp, tcp4 or tcp6 fails with ErrNotTCP.
func NewDialer(base *net.Dialer, cfg Config) (*net.Dialer, error) {
	if _, err := cfg.Validate(GOOS); err != nil {
		return nil, err
	}
	d := &net.Dialer{}
	if base != nil {
		*d = *base
	}
	d.KeepAlive = -1
	d.KeepAliveConfig = net.KeepAliveConfig{}
	apply := Control(cfg)
	if prev := d.ControlContext; prev != nil {
		d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
			if err := prev(ctx, network, address, c); err != nil {
				return err
			}
			return apply(network, address, c)
		}
	} else if prev := d.Control; prev != nil {
		d.Control = func(network, address string, c syscall.RawConn) error {
			if err := prev(network, address, c); err != nil {
				return err
			}
			return apply(network, address, c)
		}
	} else {
		d.Control = apply
	}
	if cfg.UserTimeout > 0 {
		d.SetMultipathTCP(false)
	}
	return d, nil
}

// NewListenConfig returns a copy of base (the zero net.ListenConfig when base is nil) that
// applies cfg to its listening sockets; accepted connections inherit the settings on Linux,
// macOS and FreeBSD. As NewDialer, it sets KeepAlive -1 and a zero KeepAliveConfig so Go does
// not overwrite cfg on accepted connections, runs an existing Control of base first, validates
// cfg now, and rejects non-TCP networks with ErrNotTCP.
//
// Since Go 1.24 a ListenConfig uses Multipath TCP on Linux by default. Idle, interval and count
// work on MPTCP listeners and are inherited by what they accept, but TCP_USER_TIMEOUT does not
// exist for MPTCP sockets: when cfg.UserTimeout is set, MPTCP is turned off so that it applies.
// Without a UserTimeout the MPTCP setting of base is kept.
func NewListenConfig(base *net.ListenConfig, cfg Config) (*net.ListenConfig, error) {
	if _, err := cfg.Validate(GOOS); err != nil {
		return nil, err
	}
	lc := &net.ListenConfig{}
	if base != nil {
		*lc = *base
	}
	lc.KeepAlive = -1
	lc.KeepAliveConfig = net.KeepAliveConfig{}
	apply := Control(cfg)
	if prev := lc.Control; prev != nil {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			if err := prev(network, address, c); err != nil {
				return err
			}
			return apply(network, address, c)
		}
	} else {
		lc.Control = apply
	}
	if cfg.UserTimeout > 0 {
		lc.SetMultipathTCP(false)
	}
	return lc, nil
}

// DialFunc returns a dial function with cfg applied to every connection before it is made,
// in the shape that net/http (Transport.DialContext), pgx (pgconn.Config.DialFunc) and go-redis
// (Options.Dialer) take. An invalid cfg or a network other than tcp, tcp4 or tcp6 (pgx dials
// "unix" for a socket directory) makes every call fail with that error: nothing is dialed
// without the settings asked for.
func DialFunc(cfg Config) func(ctx context.Context, network, address string) (net.Conn, error) {
	d, err := NewDialer(nil, cfg)
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if err != nil {
			return nil, err
		}
		if err := checkNetwork(network); err != nil {
			return nil, err
		}
		return d.DialContext(ctx, network, address)
	}
}

// ContextDialer returns DialFunc(cfg) for network "tcp" in the func(ctx, address) shape of
// grpc.WithContextDialer.
func ContextDialer(cfg Config) func(ctx context.Context, address string) (net.Conn, error) {
	dial := DialFunc(cfg)
	return func(ctx context.Context, address string) (net.Conn, error) {
		return dial(ctx, "tcp", address)
	}
}

// ApplyConn applies cfg like Apply to the TCP connection under conn, looking through *tls.Conn
// and any wrapper with a NetConn() net.Conn method (see UnwrapTCP).
func ApplyConn(conn net.Conn, cfg Config) error {
	tc, err := UnwrapTCP(conn)
	if err != nil {
		return err
	}
	return Apply(tc, cfg)
}

// UnwrapTCP returns the *net.TCPConn under conn, looking through *tls.Conn and any wrapper with a
// NetConn() net.Conn method (up to 8 levels). Anything else, a *net.UnixConn for example, gives
// an error matching ErrNotTCP.
func UnwrapTCP(conn net.Conn) (*net.TCPConn, error) {
	c := conn
	for range 8 {
		switch v := c.(type) {
		case *net.TCPConn:
			return v, nil
		case *tls.Conn:
			c = v.NetConn()
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil, fmt.Errorf("keepalive: %T: %w", conn, ErrNotTCP)
		}
	}
	return nil, fmt.Errorf("keepalive: %T: no *net.TCPConn within 8 NetConn levels: %w", conn, ErrNotTCP)
}

// Disable turns keepalive off on conn (SO_KEEPALIVE 0), as RFC 1122 §4.2.3.6 requires an
// application to be able to do per connection, for example on a connection accepted from a
// listener that has keepalive on. Where the OS can read the option back (Linux, macOS,
// FreeBSD) Disable checks that it reads 0. The other settings are left as they are, so a later
// Apply turns keepalive back on with them; TCP_USER_TIMEOUT, which is not part of keepalive, is
// not touched. conn is checked as in Apply (ErrNotTCP).
func Disable(conn syscall.Conn) error {
	if err := checkTCPType(conn); err != nil {
		return err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("keepalive: raw conn: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = disableFD(fd) }); err != nil {
		return fmt.Errorf("keepalive: control: %w", err)
	}
	return serr
}

// checkNetwork rejects a network that is not TCP.
func checkNetwork(network string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return nil
	}
	return &FieldError{Field: "socket", Value: "network " + network, OS: GOOS, Range: "tcp, tcp4 or tcp6", Err: ErrNotTCP}
}

// checkTCPType rejects the standard library's non-TCP socket types up front; descriptors are
// checked by the OS-specific code where the OS can tell.
func checkTCPType(conn syscall.Conn) error {
	switch v := conn.(type) {
	case *net.UnixConn, *net.UnixListener, *net.UDPConn, *net.IPConn:
		return &FieldError{Field: "socket", Value: fmt.Sprintf("%T", v), OS: GOOS, Err: ErrNotTCP}
	}
	return nil
}
