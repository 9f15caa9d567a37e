//go:build linux

package main

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// floor is the bare ping-pong: the least any design can spend per heartbeat round trip on
// these connections (two 16-byte writes, two reads, two goroutine wake-ups in Read).
type floor struct {
	clients []net.Conn
	pongs   atomic.Uint64
}

func (f *floor) pings() uint64 { return f.pongs.Load() }
func (f *floor) dead() bool    { return false }

// pace writes one 16-byte ping on each client end per period, spread evenly, from one
// goroutine and one ticker (10 ms batches).
func (f *floor) pace(period time.Duration, stop <-chan struct{}) {
	var ping [16]byte
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var sent uint64
	n := uint64(len(f.clients))
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			due := uint64(float64(now.Sub(start)) / float64(period) * float64(n))
			for ; sent < due; sent++ {
				f.clients[sent%n].Write(ping[:])
			}
		}
	}
}

func (f *floor) clientRead(c net.Conn) {
	var b [16]byte
	for {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		f.pongs.Add(1)
	}
}

func floorEcho(c net.Conn) {
	var b [16]byte
	for {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		if _, err := c.Write(b[:]); err != nil {
			return
		}
	}
}
