// Command audit is the connection-holding helper of bench/audit.sh: it listens on a loopback
// address, dials itself -n times from the same address, prints "ready N" and holds every
// connection idle until its standard input closes or it gets SIGTERM/SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.2", "loopback address to listen on and dial from")
	n := flag.Int("n", 9000, "connections to make (each holds two descriptors)")
	flag.Parse()
	if err := run(*addr, *n); err != nil {
		fmt.Fprintln(os.Stderr, "audit helper:", err)
		os.Exit(1)
	}
}

func run(addr string, n int) error {
	if n < 1 || n > 9900 {
		return fmt.Errorf("-n %d out of range 1..9900 (two descriptors each, 20000 per process)", n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Accepted connections get keepalive with a 1 h idle time (so the audit sees both kinds
	// and no probe is sent during the benchmark: 100 000 synchronized probes would overflow
	// the loopback backlog and kill connections); dialled ones have none.
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: time.Hour, Interval: 75 * time.Second, Count: 9}}
	ln, err := lc.Listen(ctx, "tcp4", net.JoinHostPort(addr, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	conns := make([]net.Conn, 0, 2*n)
	var mu sync.Mutex
	accepted := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
		accepted <- nil
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, KeepAlive: -1, Timeout: 10 * time.Second}
	const workers = 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := d.DialContext(ctx, "tcp4", ln.Addr().String())
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	if err := <-accepted; err != nil {
		return err
	}
	fmt.Printf("ready %d\n", len(conns))
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-ctx.Done():
	case <-done:
	}
	for _, c := range conns {
		c.Close()
	}
	return nil
}
