//go:build darwin

package keepalive

import (
	"time"

	"golang.org/x/sys/unix"
)

// tcpRxtConndroptime is TCP_RXT_CONNDROPTIME from xnu's netinet/tcp.h: seconds of
// retransmission after which the connection is dropped.
const tcpRxtConndroptime = 0x80

func sockOpts() unixOpts {
	return unixOpts{idle: unix.TCP_KEEPALIVE, intvl: unix.TCP_KEEPINTVL, cnt: unix.TCP_KEEPCNT,
		ut: tcpRxtConndroptime, utUnit: time.Second}
}
