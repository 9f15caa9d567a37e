package heartbeat_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/keepalive-dev/keepalive/heartbeat"
)

// Wrap both ends of a connection; the application reads and writes as usual.
func ExampleWrap() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		srv, err := heartbeat.Server(raw, heartbeat.Options{Time: 50 * time.Millisecond})
		if err != nil {
			return
		}
		defer srv.Close()
		io.Copy(srv, srv) // echo
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	conn, err := heartbeat.Wrap(raw, heartbeat.Options{
		Time:               50 * time.Millisecond, // PING after 50 ms without reading anything
		Timeout:            time.Second,           // dead when nothing arrives 1 s after a PING
		PermitWithoutCalls: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	fmt.Fprint(conn, "hello")
	buf := make([]byte, 5)
	io.ReadFull(conn, buf)
	fmt.Println(string(buf))

	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	conn.Read(buf) // nothing more comes: heartbeats flow meanwhile
	st := conn.Stats()
	fmt.Println("pongs:", st.PongsReceived > 0, "rtt measured:", st.RTT > 0)
	// Output:
	// hello
	// pongs: true rtt measured: true
}

// A peer that accepts the TCP connection but never speaks the protocol is declared dead
// Time+Timeout after the last byte read; Read then returns ErrPeerUnresponsive.
func ExampleWrap_deadPeer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		raw, err := ln.Accept()
		if err == nil {
			time.Sleep(2 * time.Second) // holds the socket, never answers
			raw.Close()
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	conn, err := heartbeat.Client(raw, heartbeat.Options{
		Time:    100 * time.Millisecond,
		Timeout: 200 * time.Millisecond,
		OnDead:  func(c *heartbeat.Conn, err error) { /* alert, reconnect... */ },
	})
	if err != nil {
		log.Fatal(err)
	}
	_, err = conn.Read(make([]byte, 1))
	fmt.Println(errors.Is(err, heartbeat.ErrPeerUnresponsive))
	// Output: true
}
