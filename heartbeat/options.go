package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Defaults and limits of Options.
const (
	// DefaultTime is the Time used when Options.Time is zero.
	DefaultTime = 30 * time.Second
	// DefaultTimeout is the Timeout used when Options.Timeout is zero (gRPC's default).
	DefaultTimeout = 20 * time.Second
	// MinDuration is the smallest Time, Timeout, HealthTimeout and non-zero MinTime.
	MinDuration = 10 * time.Millisecond
	// MaxDuration is the largest Time, Timeout, HealthTimeout and MinTime.
	MaxDuration = 24 * time.Hour
	// MaxPingStrikes is how many bad pings the EnforcementPolicy tolerates: the next one gets
	// GOAWAY "too_many_pings" and the connection is closed (as gRPC's maxPingStrikes).
	MaxPingStrikes = 2
	// noCallsPingWindow: without calls and without EnforcementPolicy.PermitWithoutCalls, any
	// ping within this time of the previous one is a strike (gRPC's rule).
	noCallsPingWindow = 2 * time.Hour
)

// Options configure a heartbeat connection. The zero value is usable: PING after 30 s without
// reading anything, dead 20 s later, only while calls are active, no enforcement.
type Options struct {
	// Time is how long the connection may go without reading any byte before a PING is sent.
	// It is measured from the last byte read, never from the last PING sent, so a busy
	// connection sends no PINGs. Zero means DefaultTime; allowed 10ms..24h.
	Time time.Duration
	// Timeout is how long to wait for any frame after a PING before the peer is declared dead
	// (ErrPeerUnresponsive). Zero means DefaultTimeout; allowed 10ms..24h.
	Timeout time.Duration
	// PermitWithoutCalls sends PINGs even when no call is active (see Conn.BeginCall). Without
	// it an idle connection with no active call is not pinged (gRPC's PermitWithoutStream).
	// Client and Server set it: a gRPC server always pings after its Time, and Client is for a
	// client that asked for keepalive; only Wrap leaves it to opts.
	PermitWithoutCalls bool
	// MaxPingsWithoutData limits how many PINGs are sent while the application sends no data;
	// further PINGs wait for the next Write. 0 means unlimited; allowed 0..1000000.
	MaxPingsWithoutData int
	// Enforcement, when set, polices the PINGs the peer sends; nil accepts any rate.
	Enforcement *EnforcementPolicy
	// Health, when set, is called for every PING received; the PONG is sent only if it
	// returns nil within HealthTimeout. While a call is still running further PINGs are not
	// answered, so a hung application stops answering and its peer declares it dead.
	// Running Health allocates (a context and a goroutine per PING).
	Health func(ctx context.Context) error
	// HealthTimeout bounds Health. Zero means Timeout; allowed 10ms..24h.
	HealthTimeout time.Duration
	// OnDead is called once, on its own goroutine, when the connection dies because the peer
	// is unresponsive (ErrPeerUnresponsive: the heartbeat's Timeout expired, or the TCP stack
	// reported ETIMEDOUT or unreachable through TCP_USER_TIMEOUT, keepalive or retransmissions,
	// whichever came first), sent or received GOAWAY (ErrGoAway) or broke the protocol
	// (ErrProtocol). It is not called for Close, the application's own deadlines, or the peer
	// closing or resetting the connection.
	OnDead func(c *Conn, err error)
	// OnPong is called with the round-trip time of every PONG, on the goroutine reading the
	// connection; it must not block.
	OnPong func(c *Conn, rtt time.Duration)
	// KeepAlive, when set, is applied to the underlying TCP socket with keepalive.Apply
	// (found through *tls.Conn and other wrappers with a NetConn method).
	KeepAlive *keepalive.Config
	// UserTimeout sets TCP_USER_TIMEOUT (or the OS's equivalent) on the underlying TCP socket
	// to Timeout, rounded up to the OS's resolution, as gRPC does. It also turns on
	// SO_KEEPALIVE (keepalive.Apply always does). A Write blocked on a dead peer then fails
	// after about Timeout with a *DeadError (By ByTCP) matching ErrPeerUnresponsive, and
	// OnDead is called, exactly as when the heartbeat notices first.
	UserTimeout bool

	// sched, when set, is the scheduler the Conn uses instead of the process-wide one (tests
	// only: a synctest bubble needs a scheduler whose clock and goroutines live inside it).
	sched *scheduler
}

// scheduler returns the scheduler a Conn made with o joins.
func (o Options) scheduler() *scheduler {
	if o.sched != nil {
		return o.sched
	}
	return shared
}

// EnforcementPolicy polices the PINGs a peer sends (gRPC's server EnforcementPolicy). A PING
// arriving less than MinTime after the previous one, or, while no call is active and
// PermitWithoutCalls is false, within 2 h of the previous one, is a strike; sending DATA
// clears the strikes. After MaxPingStrikes strikes the next bad PING is answered with GOAWAY
// "too_many_pings" and the connection is closed.
type EnforcementPolicy struct {
	// MinTime is the shortest allowed interval between PINGs; allowed 0 or 10ms..24h.
	MinTime time.Duration
	// PermitWithoutCalls allows PINGs while no call is active.
	PermitWithoutCalls bool
}

// RangeError reports an option outside its allowed range.
type RangeError struct {
	Option  string
	Value   string
	Allowed string
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("heartbeat: %s %s is out of range (allowed %s)", e.Option, e.Value, e.Allowed)
}

// ErrInvalidOption is matched by every *RangeError.
var ErrInvalidOption = errors.New("heartbeat: invalid option")

// Unwrap makes the error match ErrInvalidOption.
func (e *RangeError) Unwrap() error { return ErrInvalidOption }

func checkDur(name string, d time.Duration, zeroOK bool) error {
	if d == 0 && zeroOK {
		return nil
	}
	if d < MinDuration || d > MaxDuration {
		allowed := "10ms..24h"
		if zeroOK {
			allowed = "0 (default) or 10ms..24h"
		}
		return &RangeError{Option: name, Value: d.String(), Allowed: allowed}
	}
	return nil
}

// Validate checks every option against its allowed range.
func (o Options) Validate() error {
	if err := checkDur("Time", o.Time, true); err != nil {
		return err
	}
	if err := checkDur("Timeout", o.Timeout, true); err != nil {
		return err
	}
	if err := checkDur("HealthTimeout", o.HealthTimeout, true); err != nil {
		return err
	}
	if o.MaxPingsWithoutData < 0 || o.MaxPingsWithoutData > 1000000 {
		return &RangeError{Option: "MaxPingsWithoutData", Value: fmt.Sprint(o.MaxPingsWithoutData), Allowed: "0 (unlimited)..1000000"}
	}
	if o.Enforcement != nil {
		if err := checkDur("EnforcementPolicy.MinTime", o.Enforcement.MinTime, true); err != nil {
			return err
		}
	}
	return nil
}

// withDefaults returns o with zero durations replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.Time == 0 {
		o.Time = DefaultTime
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.HealthTimeout == 0 {
		o.HealthTimeout = o.Timeout
	}
	return o
}
