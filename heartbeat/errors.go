package heartbeat

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrPeerUnresponsive is matched (errors.Is) by the error a Conn returns once the peer is
	// declared dead, whatever noticed it: no frame arrived within Timeout of a PING (the peer
	// host is gone, the path is broken, or the peer application is hung: its Health check
	// blocks or fails), or the TCP stack gave up on the connection (TCP_USER_TIMEOUT set by
	// Options.UserTimeout, kernel keepalive set by Options.KeepAlive, or the retransmission
	// limit: the socket reports ETIMEDOUT or a host/network unreachable error). The error is a
	// *DeadError in both cases; OnDead is called once.
	//
	// How to tell the errors of a Conn apart:
	//
	//	errors.Is(err, ErrPeerUnresponsive)  the peer is dead: reconnect (DeadError.By says who noticed)
	//	errors.Is(err, ErrGoAway)            GOAWAY sent or received (IsTooManyPings: back off, NextTime)
	//	errors.Is(err, ErrProtocol)          the peer does not speak this protocol
	//	errors.Is(err, os.ErrDeadlineExceeded) the application's own SetReadDeadline/SetWriteDeadline
	//	                                     expired; the connection is still usable
	//	errors.Is(err, net.ErrClosed)        this side called Close
	//	errors.Is(err, io.EOF)               the peer closed the connection cleanly
	//
	// Check ErrPeerUnresponsive before net.Error's Timeout method: errors.As finds the
	// *net.OpError inside a DeadError by ByTCP, and its Timeout() is true for ETIMEDOUT
	// although no deadline of the application expired (os.ErrDeadlineExceeded does not match).
	ErrPeerUnresponsive = errors.New("heartbeat: peer unresponsive")
	// ErrGoAway is matched by the error a Conn returns after a GOAWAY was sent or received.
	ErrGoAway = errors.New("heartbeat: goaway")
)

// Who noticed that a peer is dead (DeadError.By).
const (
	// ByHeartbeat: no frame arrived within Timeout of a PING.
	ByHeartbeat = "heartbeat"
	// ByTCP: the TCP stack gave up on the connection (TCP_USER_TIMEOUT, kernel keepalive or the
	// retransmission limit; the socket error does not say which) and a Read or Write of the
	// underlying connection failed with it.
	ByTCP = "tcp"
)

// DeadError is the error of a connection whose peer was declared dead, by the heartbeat or by
// the TCP stack. It matches ErrPeerUnresponsive and, when By is ByTCP, the socket error too
// (errors.Is(err, syscall.ETIMEDOUT)).
type DeadError struct {
	// By is ByHeartbeat or ByTCP.
	By string
	// Err is the socket error for ByTCP (a *net.OpError wrapping ETIMEDOUT, EHOSTUNREACH...),
	// nil for ByHeartbeat.
	Err error
	// Silence is how long nothing had been read when the peer was declared dead.
	Silence time.Duration
	// Timeout is the Timeout that expired after the PING.
	Timeout time.Duration
	// PingsUnanswered counts PINGs sent since the last frame arrived.
	PingsUnanswered int
}

func (e *DeadError) Error() string {
	if e.By == ByTCP {
		return fmt.Sprintf("heartbeat: peer unresponsive: the TCP stack gave up on the connection after nothing read for %s (user timeout, keepalive or retransmissions): %v",
			e.Silence.Round(time.Millisecond), e.Err)
	}
	return fmt.Sprintf("heartbeat: peer unresponsive: nothing read for %s, no frame within %s after PING (peer dead, path broken or peer application hung)",
		e.Silence.Round(time.Millisecond), e.Timeout)
}

// Unwrap makes the error match ErrPeerUnresponsive and, for ByTCP, the socket error.
func (e *DeadError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrPeerUnresponsive, e.Err}
	}
	return []error{ErrPeerUnresponsive}
}

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
