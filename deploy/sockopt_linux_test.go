package deploy

import "golang.org/x/sys/unix"

func getsockoptInt(fd int) (int, error) {
	return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
}
