// Package keepalive configures, reads back and predicts TCP keepalive on real sockets.
//
// TCP sends nothing on an idle connection, so a crashed peer, a broken path, a rebooted peer or
// a NAT that silently forgot the flow all look like a healthy idle connection. TCP keepalive
// (RFC 1122 §4.2.3.6) sends a probe after an idle time; a live peer must answer it. This package
// sets the per-socket knobs (SO_KEEPALIVE, idle, interval, count and TCP_USER_TIMEOUT) on Linux,
// macOS, Windows and FreeBSD, reads the effective values back where the OS allows it, validates
// them against each OS's limits, and models exactly when a dead peer will be noticed.
//
// For Go programs: NewDialer and NewListenConfig turn an existing net.Dialer or
// net.ListenConfig into one that applies a Config (and that Go's own keepalive defaults cannot
// overwrite); DialFunc and ContextDialer plug into net/http, pgx, go-redis and grpc-go;
// ApplyConn works through TLS; Disable switches keepalive off for one connection. Only TCP is
// accepted (ErrNotTCP otherwise); Multipath TCP sockets are detected and handled as Apply
// describes.
package keepalive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"
)

// Config holds the per-socket liveness settings.
//
// A zero field means "keep what the socket already has" (for a fresh socket: the system-wide
// default, on Linux the sysctls net.ipv4.tcp_keepalive_time/intvl/probes). Apply always turns
// SO_KEEPALIVE on; Disable turns it off. Idle and Interval are whole seconds on every supported
// OS, Windows included (its TCP_KEEPIDLE/TCP_KEEPINTVL take seconds; only the SIO_KEEPALIVE_VALS
// fallback for old Windows takes milliseconds, and Validate still requires whole seconds so that
// both paths set the same value); a sub-second or fractional value is rejected by Validate rather
// than rounded.
type Config struct {
	// Idle is the time without any received segment before the first probe (TCP_KEEPIDLE,
	// TCP_KEEPALIVE on macOS). Zero keeps the current value.
	Idle time.Duration
	// Interval is the time between unanswered probes (TCP_KEEPINTVL). Zero keeps the current value.
	Interval time.Duration
	// Count is the number of unanswered probes after which the peer is declared dead
	// (TCP_KEEPCNT). Zero keeps the current value. Ignored by Linux when UserTimeout is set.
	Count int
	// UserTimeout bounds how long transmitted data may stay unacknowledged (TCP_USER_TIMEOUT on
	// Linux, TCP_RXT_CONNDROPTIME on macOS, TCP_MAXRT on Windows). On Linux it also caps
	// keepalive: the connection dies at the first probe firing where idle ≥ UserTimeout. Zero
	// keeps the current value.
	UserTimeout time.Duration
}

// configJSON is Config's JSON form: whole units named in the key, friendlier to scripts than
// nanoseconds.
type configJSON struct {
	IdleSeconds        float64 `json:"idle_seconds"`
	IntervalSeconds    float64 `json:"interval_seconds"`
	Count              int     `json:"count"`
	UserTimeoutSeconds float64 `json:"user_timeout_seconds"`
}

// MarshalJSON encodes durations as seconds: {"idle_seconds":60,"interval_seconds":10,...}.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(configJSON{c.Idle.Seconds(), c.Interval.Seconds(), c.Count, c.UserTimeout.Seconds()})
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (c *Config) UnmarshalJSON(b []byte) error {
	var j configJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	*c = Config{Idle: sec(j.IdleSeconds), Interval: sec(j.IntervalSeconds), Count: j.Count, UserTimeout: sec(j.UserTimeoutSeconds)}
	return nil
}

// Settings are the effective liveness settings read back from a socket.
type Settings struct {
	// Enabled reports SO_KEEPALIVE.
	Enabled bool
	// Config holds the effective values; on Linux a value never set per socket reads back as
	// the namespace's sysctl default. UserTimeout zero means "none".
	Config
	// MPTCP reports a Multipath TCP socket (Linux, SO_PROTOCOL IPPROTO_MPTCP). Such a socket
	// has no TCP_USER_TIMEOUT, so UserTimeout reads back as zero.
	MPTCP bool
}

// settingsJSON is Settings' JSON form: Config's keys plus "enabled" and "mptcp" (without it
// the embedded Config's MarshalJSON would take over and drop them).
type settingsJSON struct {
	Enabled bool `json:"enabled"`
	configJSON
	MPTCP bool `json:"mptcp,omitempty"`
}

// MarshalJSON encodes Settings as {"enabled":true,"idle_seconds":60,...,"mptcp":false}.
func (s Settings) MarshalJSON() ([]byte, error) {
	c := s.Config
	return json.Marshal(settingsJSON{s.Enabled, configJSON{c.Idle.Seconds(), c.Interval.Seconds(), c.Count, c.UserTimeout.Seconds()}, s.MPTCP})
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (s *Settings) UnmarshalJSON(b []byte) error {
	var j settingsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	*s = Settings{Enabled: j.Enabled, MPTCP: j.MPTCP, Config: Config{Idle: sec(j.IdleSeconds), Interval: sec(j.IntervalSeconds), Count: j.Count, UserTimeout: sec(j.UserTimeoutSeconds)}}
	return nil
}

// String renders the configuration the way the CLI prints it, e.g. "idle 60s intvl 10s cnt 5 ut 90s".
// A zero field prints as "default" ("idle default intvl 10s cnt default"); a zero UserTimeout is
// left out.
func (c Config) String() string {
	cnt := "default"
	if c.Count != 0 {
		cnt = fmt.Sprint(c.Count)
	}
	s := fmt.Sprintf("idle %s intvl %s cnt %s", fmtDur(c.Idle), fmtDur(c.Interval), cnt)
	if c.UserTimeout > 0 {
		s += " ut " + fmtDur(c.UserTimeout)
	}
	return s
}

// String renders the settings, "off" when SO_KEEPALIVE is disabled.
func (s Settings) String() string {
	if !s.Enabled {
		if s.UserTimeout > 0 {
			return "off, ut " + fmtDur(s.UserTimeout)
		}
		return "off"
	}
	return s.Config.String()
}

// FromNetConfig converts a net.KeepAliveConfig. Go's negative values ("disabled") map to zero
// here ("keep the current value"); a KeepAliveConfig with Enable false yields ok == false.
func FromNetConfig(k net.KeepAliveConfig) (cfg Config, ok bool) {
	if k.Idle > 0 {
		cfg.Idle = k.Idle
	}
	if k.Interval > 0 {
		cfg.Interval = k.Interval
	}
	if k.Count > 0 {
		cfg.Count = k.Count
	}
	return cfg, k.Enable
}

// NetConfig converts to a net.KeepAliveConfig usable with net.Dialer.KeepAliveConfig and
// net.ListenConfig.KeepAliveConfig. Zero fields become -1 (Go's "leave unchanged"), and
// UserTimeout has no counterpart there: use Control or Apply to get it.
func (c Config) NetConfig() net.KeepAliveConfig {
	k := net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	if c.Idle > 0 {
		k.Idle = c.Idle
	}
	if c.Interval > 0 {
		k.Interval = c.Interval
	}
	if c.Count > 0 {
		k.Count = c.Count
	}
	return k
}

// ErrUnsupported is returned (wrapped in a *FieldError) when the running OS cannot set or read
// a field. It matches errors.ErrUnsupported.
var ErrUnsupported = errors.ErrUnsupported

// FieldError reports a field that could not be applied, read or validated.
//
// When a system call fails midway through Apply, Applied lists the fields that were already
// set on the socket (in the order Apply sets them: "keepalive", "idle", "interval", "count",
// "user-timeout"); the socket keeps them. Apply does not roll back: Windows cannot read the
// previous values, so there is nothing to restore them from. Validation errors and the MPTCP
// check happen before any change, so Applied is empty for them.
type FieldError struct {
	Field   string   // "idle", "interval", "count", "user-timeout", "keepalive", "socket"
	Value   string   // the offending value as given
	OS      string   // GOOS the check was made for
	Range   string   // allowed range, e.g. "1s..32767s in whole seconds"
	Err     error    // underlying cause (syscall errno, ErrUnsupported, ErrNotTCP, ...)
	Fix     string   // what to do about it, may be empty
	Applied []string // fields already set on the socket when the error happened
}

func (e *FieldError) Error() string {
	s := e.Field
	if e.Value != "" {
		s += " " + e.Value
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Range != "" {
		s += " (allowed on " + e.OS + ": " + e.Range + ")"
	}
	if e.Fix != "" {
		s += "; " + e.Fix
	}
	if len(e.Applied) > 0 {
		s += " [already applied: " + strings.Join(e.Applied, ", ") + "]"
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *FieldError) Unwrap() error { return e.Err }

// ErrOutOfRange is the cause of a FieldError for a value outside the OS's allowed range.
var ErrOutOfRange = errors.New("out of range")

// ErrNotTCP is the cause of the error for a network or socket that is not TCP ("unix", "udp",
// a Unix domain socket descriptor...). TCP keepalive exists only for TCP, so such a connection is
// rejected before anything is changed.
var ErrNotTCP = errors.New("not a TCP socket")

// IPProtoMPTCP is IPPROTO_MPTCP, the protocol number of a Linux Multipath TCP socket as
// SO_PROTOCOL reports it.
const IPProtoMPTCP = 262

// Apply turns SO_KEEPALIVE on for conn and sets every non-zero field of cfg. conn is anything
// with a raw socket: *net.TCPConn, *net.TCPListener, or FD(n) for a descriptor (for a net.Conn
// that may be wrapped in TLS, use ApplyConn). cfg is validated for the running OS first, and a
// socket that is not TCP (a *net.UnixConn, a UDP socket; on Linux any descriptor whose
// SO_PROTOCOL is not TCP) is rejected with ErrNotTCP, so nothing is changed in either case.
//
// Multipath TCP (Linux; Go's net.ListenConfig uses it by default since Go 1.24): idle, interval
// and count work on an MPTCP socket and are inherited by its subflows and accepted connections
// (measured on Linux 6.18), but the kernel has no TCP_USER_TIMEOUT for MPTCP sockets
// (ENOPROTOOPT). Apply detects MPTCP with SO_PROTOCOL first and refuses a non-zero UserTimeout
// on such a socket before changing anything; the error matches ErrUnsupported and
// syscall.ENOPROTOOPT. NewListenConfig and NewDialer turn MPTCP off when UserTimeout is set.
//
// A system call failing midway returns a *FieldError whose Applied lists what was set.
func Apply(conn syscall.Conn, cfg Config) error {
	if _, err := cfg.Validate(GOOS); err != nil {
		return err
	}
	if err := checkTCPType(conn); err != nil {
		return err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("keepalive: raw conn: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = applyFD(fd, cfg) }); err != nil {
		return fmt.Errorf("keepalive: control: %w", err)
	}
	return serr
}

// Get reads back the effective settings of conn (Linux, macOS, FreeBSD). Windows cannot read
// keepalive values back and returns an error matching ErrUnsupported.
func Get(conn syscall.Conn) (Settings, error) {
	if err := checkTCPType(conn); err != nil {
		return Settings{}, err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return Settings{}, fmt.Errorf("keepalive: raw conn: %w", err)
	}
	var s Settings
	var serr error
	if err := rc.Control(func(fd uintptr) { s, serr = getFD(fd) }); err != nil {
		return Settings{}, fmt.Errorf("keepalive: control: %w", err)
	}
	return s, serr
}

// Control returns a function for net.Dialer.Control and net.ListenConfig.Control that applies
// cfg to every socket before it connects or listens. Accepted connections inherit the settings
// of a listening socket on Linux, macOS and FreeBSD. A network other than tcp, tcp4 or tcp6 is
// rejected with ErrNotTCP.
//
// Control alone is a trap: unless the Dialer's or ListenConfig's KeepAlive is -1 and its
// KeepAliveConfig.Enable is false, Go applies its own keepalive (idle 15 s, interval 15 s,
// count 9) after the connection is made and silently overwrites cfg. Prefer NewDialer and
// NewListenConfig, which set both and keep an existing Control.
func Control(cfg Config) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if err := checkNetwork(network); err != nil {
			return err
		}
		if _, err := cfg.Validate(GOOS); err != nil {
			return err
		}
		var serr error
		if err := c.Control(func(fd uintptr) { serr = applyFD(fd, cfg) }); err != nil {
			return err
		}
		return serr
	}
}

// Dial connects like net.Dialer.DialContext with cfg applied before the connection is made.
// network must be tcp, tcp4 or tcp6.
func Dial(ctx context.Context, network, address string, cfg Config) (net.Conn, error) {
	d, err := NewDialer(nil, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	return d.DialContext(ctx, network, address)
}

// Listen listens like net.ListenConfig.Listen with cfg applied to the listening socket (and so
// inherited by accepted connections on Linux, macOS and FreeBSD). Go's own keepalive defaults on
// accepted connections are turned off so they do not overwrite cfg. network must be tcp, tcp4
// or tcp6.
func Listen(ctx context.Context, network, address string, cfg Config) (net.Listener, error) {
	lc, err := NewListenConfig(nil, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	return lc.Listen(ctx, network, address)
}

// FD wraps a raw socket descriptor so Apply and Get can be used on it. The descriptor is not
// closed or otherwise owned.
type FD int

// SyscallConn implements syscall.Conn.
func (f FD) SyscallConn() (syscall.RawConn, error) { return fdRawConn(f), nil }

type fdRawConn int

func (f fdRawConn) Control(fn func(fd uintptr)) error { fn(uintptr(f)); return nil }
func (f fdRawConn) Read(fn func(fd uintptr) bool) error {
	return fmt.Errorf("keepalive: FD does not support Read: %w", errors.ErrUnsupported)
}
func (f fdRawConn) Write(fn func(fd uintptr) bool) error {
	return fmt.Errorf("keepalive: FD does not support Write: %w", errors.ErrUnsupported)
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "default"
	}
	return d.String()
}
