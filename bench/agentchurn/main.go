// Command agentchurn is the load of bench/agent-soak.sh. As a server (-listen) it accepts and
// holds connections; as a client (-connect) it keeps -n connections open to the server and
// replaces -churn of them per second (closes one at random, opens a new one), so that
// thousands of connections are opened and closed per minute. Keepalive is off on every
// socket, so a dead peer is only found by the agent's probes.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "", "serve: address to listen on")
	connect := flag.String("connect", "", "client: server address")
	n := flag.Int("n", 500, "client: connections held")
	churn := flag.Int("churn", 20, "client: connections replaced per second")
	flag.Parse()
	switch {
	case *listen != "":
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err := lc.Listen(context.Background(), "tcp", *listen)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				continue
			}
			go func() { // hold until the peer closes
				b := make([]byte, 1)
				_, _ = c.Read(b)
				c.Close()
			}()
		}
	case *connect != "":
		d := net.Dialer{KeepAlive: -1, Timeout: 2 * time.Second}
		conns := make([]net.Conn, 0, *n)
		for len(conns) < *n {
			c, err := d.Dial("tcp", *connect)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			conns = append(conns, c)
		}
		fmt.Println("ready")
		tick := time.NewTicker(time.Second / time.Duration(max(1, *churn)))
		for range tick.C {
			i := rand.IntN(len(conns))
			conns[i].Close()
			if c, err := d.Dial("tcp", *connect); err == nil {
				conns[i] = c
			} else {
				conns[i] = nopConn{}
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: agentchurn -listen ADDR | -connect ADDR [-n N] [-churn PER_SECOND]")
		os.Exit(2)
	}
}

// nopConn stands in for a connection that could not be reopened (the server is black-holed).
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }
