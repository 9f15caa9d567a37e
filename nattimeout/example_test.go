package nattimeout_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/keepalive-dev/keepalive/nattimeout"
)

// Measure the path to a nat-timeout server (here one on loopback, where nothing expires)
// and turn the result into advice.
func ExampleMeasure() {
	srv, err := nattimeout.NewServer(nattimeout.ServerConfig{Token: "s3cret"})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go srv.Serve(ctx, ln)

	res, err := nattimeout.Measure(ctx, ln.Addr().String(), nattimeout.Options{Token: "s3cret", Max: 2 * time.Second, MaxConns: 16})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Up.Direction, "expired:", res.Up.Expired)
	fmt.Println(res.Down.Direction, "expired:", res.Down.Expired)
	advice, err := nattimeout.Advise(res)
	if err != nil {
		panic(err)
	}
	fmt.Println(advice.Text)
	// Output:
	// client-to-server expired: false
	// server-to-client expired: false
	// no idle timeout up to 2s: keepalive is only needed to detect dead peers (see 'keepalive plan')
}

// Drive a Searcher by hand: here against a path whose flows expire after 4.5 s, on a clock
// that only moves when told to.
func ExampleSearcher() {
	s, err := nattimeout.NewSearcher(nattimeout.SearchConfig{Max: time.Minute, Resolution: time.Second, Conns: 12})
	if err != nil {
		panic(err)
	}
	const timeout = 4500 * time.Millisecond
	opened := map[int]time.Duration{}
	now := time.Duration(0)
	for !s.Done() {
		acts, wake := s.Next(now)
		for _, a := range acts {
			switch a.Kind {
			case nattimeout.ActOpen:
				opened[a.Conn] = now
				s.Opened(a.Conn, now)
			case nattimeout.ActCheck:
				idle := now - opened[a.Conn]
				if idle < timeout {
					opened[a.Conn] = now
					s.Checked(a.Conn, now, idle, nattimeout.OK)
				} else {
					s.Checked(a.Conn, now, idle, nattimeout.Silent)
				}
			}
		}
		if !s.Done() && wake > now {
			now = wake
		}
	}
	e := s.Estimate()
	fmt.Printf("expires after (%s, %s], %s\n", e.Lower, e.Upper, e.Behaviour)
	// Output:
	// expires after (4s, 5s], silent
}
