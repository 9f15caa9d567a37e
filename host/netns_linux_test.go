//go:build linux

package host

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

func TestNamedNamespace(t *testing.T) {
	nstest.Require(t)
	ns := nstest.NewNS(t, "kahost")
	var ln net.Listener
	var c, s net.Conn
	ns.Do(t, func() error {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if c, err = net.Dial("tcp4", ln.Addr().String()); err != nil {
			return err
		}
		s, err = ln.Accept()
		return err
	})
	t.Cleanup(func() { ln.Close(); c.Close(); s.Close() })
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ctx := context.Background()
	sel := Selector{Ports: []uint16{port}}
	socks, err := List(ctx, ListOptions{NetNS: ns.Name, Selector: sel, Owners: true, Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 2 {
		t.Fatalf("%d sockets in %s, want 2: %v", len(socks), ns.Name, socks)
	}
	for _, x := range socks {
		if x.NetNS != ns.Name || len(x.Owners) != 1 || x.Settings == nil {
			t.Errorf("socket %+v", x)
		}
	}
	// The same port in the current namespace is someone else's (or nobody's).
	here, err := List(ctx, ListOptions{Selector: sel})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range here {
		if x.Cookie == socks[0].Cookie || x.Cookie == socks[1].Cookie {
			t.Fatalf("namespace socket listed in the current namespace: %v", x)
		}
	}
	all, err := List(ctx, ListOptions{AllNetNS: true, Selector: sel})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, x := range all {
		if x.NetNS == ns.Name {
			n++
		}
	}
	if n != 2 {
		t.Errorf("AllNetNS found %d sockets in %s, want 2", n, ns.Name)
	}
	// Lookup and Destroy go to the socket's own namespace.
	var server Socket
	for _, x := range socks {
		if x.Local == ap(s.LocalAddr()) && x.Remote == ap(s.RemoteAddr()) {
			server = x
		}
	}
	if _, err := Lookup(ctx, server); err != nil {
		t.Fatal(err)
	}
	if err := Destroy(ctx, server); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, unix.ECONNABORTED) {
		t.Fatalf("read after destroy: %v, want ECONNABORTED", err)
	}
	if _, err := List(ctx, ListOptions{NetNS: "kahost-missing-ns"}); err == nil {
		t.Fatal("a missing namespace gave no error")
	}
}
