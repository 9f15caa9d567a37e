// Command hostchild is the test program of the audit/enable/reap command tests: it dials -n
// connections to -connect (keepalive off), prints "ready LOCAL..." and then blocks reading
// each connection. When a read fails it prints "err INDEX ERRNO". On the stdin line "get" it
// prints "settings INDEX ENABLED IDLE_S INTERVAL_S COUNT USER_TIMEOUT_MS" for every
// connection and "end". It exits when stdin closes.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keepalive-dev/keepalive"
)

func main() {
	addr := flag.String("connect", "", "address to connect to")
	n := flag.Int("n", 2, "number of connections")
	flag.Parse()
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", a...)
	}
	d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
	var conns []*net.TCPConn
	var locals []string
	for i := 0; i < *n; i++ {
		c, err := d.Dial("tcp", *addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hostchild:", err)
			os.Exit(1)
		}
		conns = append(conns, c.(*net.TCPConn))
		locals = append(locals, c.LocalAddr().String())
	}
	say("ready %s", strings.Join(locals, " "))
	for i, c := range conns {
		go func() {
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					say("err %d %s", i, errnoName(err))
					return
				}
			}
		}()
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "get" {
			continue
		}
		mu.Lock()
		for i, c := range conns {
			s, err := keepalive.Get(c)
			if err != nil {
				fmt.Printf("settings %d error %v\n", i, err)
				continue
			}
			fmt.Printf("settings %d %v %d %d %d %d\n", i, s.Enabled, int(s.Idle/time.Second), int(s.Interval/time.Second), s.Count, s.UserTimeout.Milliseconds())
		}
		fmt.Println("end")
		mu.Unlock()
	}
}

func errnoName(err error) string {
	for _, e := range []struct {
		errno syscall.Errno
		name  string
	}{{syscall.ETIMEDOUT, "ETIMEDOUT"}, {syscall.ECONNABORTED, "ECONNABORTED"}, {syscall.ECONNRESET, "ECONNRESET"},
		{syscall.EHOSTUNREACH, "EHOSTUNREACH"}, {syscall.EPIPE, "EPIPE"}} {
		if errors.Is(err, e.errno) {
			return e.name
		}
	}
	if err.Error() == "EOF" {
		return "EOF"
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}
