// Command testconn holds TCP connections without keepalive on loopback until killed: the
// "other container" of the image test. Usage: testconn PORT.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: testconn PORT")
		os.Exit(2)
	}
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	d := net.Dialer{KeepAlive: -1}
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready", c.LocalAddr(), s.LocalAddr())
	time.Sleep(10 * time.Minute)
}
