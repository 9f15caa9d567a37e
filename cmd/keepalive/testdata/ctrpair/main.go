// Command ctrpair is the container test program of the command tests: it listens on
// 127.0.0.1 in its own network namespace, dials itself -n times (keepalive off), prints
// "ready PORT" and then blocks reading every connection; a read that fails prints
// "err INDEX ERROR". It exits on SIGTERM or SIGINT (it may run as a container's PID 1, which
// the kernel shields from signals it does not handle).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 2, "number of connections")
	flag.Parse()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctrpair:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", a...)
	}
	d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
	var conns []net.Conn
	for i := 0; i < *n; i++ {
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			fmt.Fprintln(os.Stderr, "ctrpair:", err)
			os.Exit(1)
		}
		s, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ctrpair:", err)
			os.Exit(1)
		}
		// Accepted connections get Go's default 15 s keepalive: turn it off on both ends.
		s.(*net.TCPConn).SetKeepAlive(false)
		conns = append(conns, c, s)
	}
	for i, c := range conns {
		go func() {
			_, err := c.Read(make([]byte, 1))
			say("err %d %v", i, err)
		}()
	}
	say("ready %d", ln.Addr().(*net.TCPAddr).Port)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
