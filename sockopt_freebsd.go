//go:build freebsd

package keepalive

import "golang.org/x/sys/unix"

func sockOpts() unixOpts {
	return unixOpts{idle: unix.TCP_KEEPIDLE, intvl: unix.TCP_KEEPINTVL, cnt: unix.TCP_KEEPCNT}
}
