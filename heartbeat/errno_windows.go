//go:build windows

package heartbeat

import (
	"errors"

	"golang.org/x/sys/windows"
)

// peerGone reports whether err from the underlying connection means the TCP stack gave up on
// the peer (TCP_MAXRT, keepalive or the retransmission limit: WSAETIMEDOUT, or an unreachable
// error when ICMP errors arrived meanwhile).
func peerGone(err error) bool {
	return errors.Is(err, windows.WSAETIMEDOUT) || errors.Is(err, windows.WSAEHOSTUNREACH) ||
		errors.Is(err, windows.WSAENETUNREACH) || errors.Is(err, windows.WSAEHOSTDOWN)
}
