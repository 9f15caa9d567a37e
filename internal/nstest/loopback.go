package nstest

import (
	"net"
	"testing"
)

// Loopback returns both ends of a fresh TCP connection over the loopback address addr
// ("127.0.0.1:0", "[::1]:0") with network "tcp4", "tcp6" or "tcp". The client is dialled with
// keepalive off (Go turns it on by default), so a test starts from the kernel's defaults.
// Everything is closed by t.Cleanup.
func Loopback(t testing.TB, network, addr string) (client, server *net.TCPConn) {
	t.Helper()
	_, c, s := LoopbackPairs(t, net.Dialer{KeepAlive: -1}, network, addr, 1)
	return c[0], s[0]
}

// LoopbackPairs listens on addr and makes n connections to it with d; it returns the
// listener and both ends of each connection, in order. Everything is closed by t.Cleanup.
func LoopbackPairs(t testing.TB, d net.Dialer, network, addr string, n int) (ln net.Listener, clients, servers []*net.TCPConn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	for range n {
		c, err := d.Dial(network, ln.Addr().String())
		if err != nil {
			t.Fatalf("dial %s: %v", ln.Addr(), err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			t.Fatalf("accept on %s: %v", ln.Addr(), err)
		}
		t.Cleanup(func() { s.Close() })
		clients = append(clients, c.(*net.TCPConn))
		servers = append(servers, s.(*net.TCPConn))
	}
	return ln, clients, servers
}
