//go:build !windows

package heartbeat

import (
	"errors"
	"syscall"
)

// peerGone reports whether err from the underlying connection means the TCP stack gave up on
// the peer: TCP_USER_TIMEOUT, keepalive and the retransmission limit end a connection with
// ETIMEDOUT, or with EHOSTUNREACH/ENETUNREACH when ICMP errors arrived meanwhile.
func peerGone(err error) bool {
	return errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN)
}
