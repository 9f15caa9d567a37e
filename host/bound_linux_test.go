//go:build linux

package host

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestDeviceBoundSockets checks sockets bound to an interface (SO_BINDTODEVICE, and an IPv6
// link-local peer, whose scope binds the socket): sock_diag reports the interface index, and
// Lookup, Retrofit and Destroy address the socket with it.
func TestDeviceBoundSockets(t *testing.T) {
	nstest.Require(t)
	p := nstest.NewPair(t, "kabind", 231)
	llA, llB := netip.MustParseAddr("fe80::e7:1"), netip.MustParseAddr("fe80::e7:2")
	var ifA int
	p.A.Do(t, func() error {
		l, err := netlink.LinkByName("veth-a")
		if err != nil {
			return err
		}
		ifA = l.Attrs().Index
		return netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: llA.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD})
	})
	p.B.Do(t, func() error {
		l, err := netlink.LinkByName("veth-b")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: llB.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD})
	})
	var ln net.Listener
	p.B.Do(t, func() error {
		var err error
		ln, err = net.Listen("tcp", "[::]:0")
		return err
	})
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	bind := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), "veth-a") }); err != nil {
			return err
		}
		return serr
	}}
	plain := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
	targets := []struct {
		name string
		d    *net.Dialer
		addr string
	}{
		{"ipv4-bindtodevice", bind, net.JoinHostPort(p.BIP.String(), itoa(port))},
		{"ipv6-linklocal", plain, net.JoinHostPort(llB.String()+"%veth-a", itoa(port))},
	}
	ctx := context.Background()
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			var c, s net.Conn
			p.A.Do(t, func() error {
				var err error
				c, err = tc.d.Dial("tcp", tc.addr)
				return err
			})
			t.Cleanup(func() { c.Close() })
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			socks, err := List(ctx, ListOptions{NetNS: p.A.Name, Selector: Selector{Ports: []uint16{uint16(port)}}, Owners: true, Deep: true})
			if err != nil {
				t.Fatal(err)
			}
			var me Socket
			for _, x := range socks {
				if x.Local == netip.AddrPortFrom(ap(c.LocalAddr()).Addr().WithZone(""), ap(c.LocalAddr()).Port()) {
					me = x
				}
			}
			if me.Cookie == 0 {
				t.Fatalf("client socket %s not listed: %v", c.LocalAddr(), socks)
			}
			if me.Interface != uint32(ifA) {
				t.Fatalf("Interface = %d, want veth-a's index %d (socket %v)", me.Interface, ifA, &me)
			}
			if me.Settings == nil {
				t.Fatalf("deep read failed: %v", me.SettingsErr)
			}
			if _, err := Lookup(ctx, me); err != nil {
				t.Fatalf("Lookup of a device-bound socket: %v", err)
			}
			res := Retrofit(ctx, []Socket{me}, keepalive.Config{Idle: 33 * time.Second, Interval: 3 * time.Second, Count: 3}, RetrofitOptions{})
			if len(res) != 1 || res[0].Err != nil || !res[0].After.Enabled || res[0].After.Idle != 33*time.Second {
				t.Fatalf("Retrofit: %+v", res)
			}
			if err := Destroy(ctx, me); err != nil {
				t.Fatalf("Destroy of a device-bound socket: %v", err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, unix.ECONNABORTED) {
				t.Fatalf("owner read after destroy: %v, want ECONNABORTED", err)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
