package heartbeat

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrPeerUnresponsive is matched (errors.Is) by the error a Conn returns after no frame
	// arrived within Timeout of a PING: the peer host is gone, the path is broken, or the peer
	// application is hung (its Health check blocks or fails).
	ErrPeerUnresponsive = errors.New("heartbeat: peer unresponsive")
	// ErrGoAway is matched by the error a Conn returns after a GOAWAY was sent or received.
	ErrGoAway = errors.New("heartbeat: goaway")
)

// DeadError is the error of a connection whose peer did not answer a PING in time.
// It matches ErrPeerUnresponsive.
type DeadError struct {
	// Silence is how long nothing had been read when the peer was declared dead.
	Silence time.Duration
	// Timeout is the Timeout that expired after the PING.
	Timeout time.Duration
	// PingsUnanswered counts PINGs sent since the last frame arrived.
	PingsUnanswered int
}

func (e *DeadError) Error() string {
	return fmt.Sprintf("heartbeat: peer unresponsive: nothing read for %s, no frame within %s after PING (peer dead, path broken or peer application hung)",
		e.Silence.Round(time.Millisecond), e.Timeout)
}

// Unwrap makes the error match ErrPeerUnresponsive.
func (e *DeadError) Unwrap() error { return ErrPeerUnresponsive }

// GoAwayError is the error of a connection closed with a GOAWAY frame. It matches ErrGoAway.
type GoAwayError struct {
	// Code is the GOAWAY code (CodeTooManyPings, CodeProtocolError, ...).
	Code uint32
	// Reason is the GOAWAY reason, e.g. "too_many_pings".
	Reason string
	// Sent is true when this side sent the GOAWAY, false when the peer did.
	Sent bool
}

func (e *GoAwayError) Error() string {
	dir := "received from peer"
	if e.Sent {
		dir = "sent to peer"
	}
	return fmt.Sprintf("heartbeat: GOAWAY %q (code %d) %s", e.Reason, e.Code, dir)
}

// Unwrap makes the error match ErrGoAway.
func (e *GoAwayError) Unwrap() error { return ErrGoAway }

// IsTooManyPings reports whether err is a GOAWAY "too_many_pings" received from the peer.
func IsTooManyPings(err error) bool {
	var g *GoAwayError
	return errors.As(err, &g) && !g.Sent && g.Code == CodeTooManyPings
}

// NextTime returns the Time a client should use for its next connection after err ended the
// previous one: double t when the peer answered GOAWAY "too_many_pings" (gRPC's back-off),
// t otherwise. The result never exceeds MaxDuration.
func NextTime(err error, t time.Duration) time.Duration {
	if t <= 0 {
		t = DefaultTime
	}
	if !IsTooManyPings(err) {
		return t
	}
	if t > MaxDuration/2 {
		return MaxDuration
	}
	return 2 * t
}
