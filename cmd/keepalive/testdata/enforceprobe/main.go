// Command enforceprobe runs inside a test container: "sleep" waits (the container's main
// process), "once" connects to itself over the container's loopback and prints what
// getsockopt reads on both ends right after connect() and accept(): "ka idle intvl cnt ut"
// for the client, then for the accepted socket.
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func settings(fd int) string {
	g := func(level, opt int) int { v, _ := unix.GetsockoptInt(fd, level, opt); return v }
	return fmt.Sprintf("%d %d %d %d %d", g(unix.SOL_SOCKET, unix.SO_KEEPALIVE), g(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE),
		g(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL), g(unix.IPPROTO_TCP, unix.TCP_KEEPCNT), g(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT))
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "sleep" {
		time.Sleep(5 * time.Minute)
		return
	}
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	check(err)
	check(unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	check(unix.Listen(ln, 1))
	sa, err := unix.Getsockname(ln)
	check(err)
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	check(err)
	check(unix.Connect(c, sa))
	client := settings(c)
	a, _, err := unix.Accept(ln)
	check(err)
	fmt.Println(client + " / " + settings(a))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
