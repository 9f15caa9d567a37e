package probe

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// HostChecker reads the kernel's view: an idle connection is established and not busy, one
// with unacknowledged data is busy, a pinned cookie that no longer matches is not found,
// and large batches (one dump) agree with small ones (one lookup each).
func TestHostChecker(t *testing.T) {
	ctx := context.Background()
	ln, clients, _ := nstest.LoopbackPairs(t, net.Dialer{KeepAlive: -1}, "tcp4", "127.0.0.1:0", 3)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	socks, err := host.List(ctx, host.ListOptions{Selector: host.Selector{Ports: []uint16{port}, States: []host.State{host.StateEstablished}}})
	if err != nil {
		t.Fatal(err)
	}
	var pinned []host.Socket
	var flows []Flow
	for _, c := range clients {
		f := Flow{Local: c.LocalAddr().(*net.TCPAddr).AddrPort(), Remote: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
		flows = append(flows, f)
		for _, s := range socks {
			if s.Local == f.Local && s.Remote == f.Remote {
				pinned = append(pinned, s)
			}
		}
	}
	if len(pinned) != 3 {
		t.Fatalf("listed %d of the 3 client sockets", len(pinned))
	}
	pinned[2].Cookie++ // as if another socket had taken the addresses
	for _, tc := range []struct {
		name string
		chk  Checker
		want []bool // found
	}{
		{"pinned, one lookup each", HostChecker("", pinned...), []bool{true, true, false}},
		{"addresses only, one dump", HostChecker(""), []bool{true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := tc.chk.Check(ctx, flows)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range st {
				if s.Found != tc.want[i] || (s.Found && (!s.Established || s.Busy())) {
					t.Errorf("flow %d: %+v, want found=%v, established and idle", i, s, tc.want[i])
				}
			}
		})
	}
	// The server stops reading and its receive window fills: data stays unacknowledged or
	// unsent, and the checker must call the socket busy.
	buf := make([]byte, 1<<20)
	clients[0].SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	for range 64 {
		if _, err := clients[0].Write(buf); err != nil {
			break
		}
	}
	st, err := HostChecker("", pinned...).Check(ctx, flows[:1])
	if err != nil {
		t.Fatal(err)
	}
	if !st[0].Found || !st[0].Busy() {
		t.Fatalf("a socket with a full send queue: %+v, want busy", st[0])
	}
}

// New without a Checker uses HostChecker: safe by default.
func TestNewDefaultChecker(t *testing.T) {
	nstest.Require(t)
	p, err := New(NewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, ok := p.chk.(linkChecker).Checker.(hostChecker); !ok {
		t.Fatalf("default checker is %T", p.chk)
	}
}
