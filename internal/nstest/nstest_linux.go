//go:build linux

// Package nstest builds throw-away network namespaces for the project's integration tests:
// named namespaces joined by a veth pair, code run inside a namespace, and an nftables
// black hole. Everything is removed by t.Cleanup, also when the test fails.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/google/nftables"
	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Require fails (under CI=true) or skips the test when it cannot build namespaces here.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (network namespaces, veth, nftables)"
	} else if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		why = "kernel without network namespaces: " + err.Error()
	}
	Need(t, why == "", why)
}

// Need fails the test under CI=true, where every prerequisite must be there, and skips it
// otherwise, when ok is false; what names the missing prerequisite.
func Need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("prerequisite missing under CI=true: %s", what)
	}
	t.Skipf("skipping: %s", what)
}

// NS is a named network namespace created for one test.
type NS struct {
	Name   string
	Handle netns.NsHandle
}

// Pair is two namespaces joined by a veth pair: A has 10.200.<n>.1/24 and fd00:200::<n>:1,
// B has 10.200.<n>.2/24 and fd00:200::<n>:2.
type Pair struct {
	A, B       *NS
	AIP, BIP   net.IP
	AIP6, BIP6 net.IP
}

func suffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewNS creates a named namespace "<prefix>-<random>" and deletes it at cleanup.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	name := prefix + "-" + suffix()
	h, err := netnsx.NewNamed(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	ns := &NS{Name: name, Handle: h}
	t.Cleanup(func() {
		h.Close()
		if err := netnsx.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	ns.Do(t, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	return ns
}

// Do runs fn on a locked OS thread inside the namespace. Sockets created by fn stay in the
// namespace after Do returns.
func (n *NS) Do(t testing.TB, fn func() error) {
	t.Helper()
	if err := n.Run(fn); err != nil {
		t.Fatalf("in netns %s: %v", n.Name, err)
	}
}

// Run is Do returning the error instead of failing the test.
func (n *NS) Run(fn func() error) error { return netnsx.Do(n.Handle, fn) }

// NewPair creates two namespaces joined by a veth pair on subnet 10.200.<n>.0/24.
func NewPair(t testing.TB, prefix string, n int) *Pair {
	t.Helper()
	if n < 0 || n > 255 {
		t.Fatalf("subnet index %d out of range 0..255", n)
	}
	a, b := NewNS(t, prefix+"a"), NewNS(t, prefix+"b")
	p := &Pair{A: a, B: b,
		AIP: net.IPv4(10, 200, byte(n), 1).To4(), BIP: net.IPv4(10, 200, byte(n), 2).To4(),
		AIP6: net.ParseIP(fmt.Sprintf("fd00:200::%x:1", n)), BIP6: net.ParseIP(fmt.Sprintf("fd00:200::%x:2", n))}
	va, vb := "veth-a", "veth-b"
	a.Do(t, func() error {
		la := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: va}, PeerName: vb, PeerNamespace: netlink.NsFd(int(b.Handle))}
		if err := netlink.LinkAdd(la); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		return setup(va, p.AIP, p.AIP6)
	})
	b.Do(t, func() error { return setup(vb, p.BIP, p.BIP6) })
	return p
}

func setup(name string, ip4, ip6 net.IP) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip4, Mask: net.CIDRMask(24, 32)}}); err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip6, Mask: net.CIDRMask(112, 128)}, Flags: 0x80 /* IFA_F_NODAD */}); err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// BlackHole makes the namespace drop every packet it receives and sends (an nftables inet
// table with input and output chains of policy drop), like a crashed host. The namespace's
// deletion removes the table.
func (n *NS) BlackHole(t testing.TB) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(n.Handle)))
	if err != nil {
		t.Fatalf("nftables in %s: %v", n.Name, err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "nstest_blackhole"})
	drop := nftables.ChainPolicyDrop
	for _, hook := range []*nftables.ChainHook{nftables.ChainHookInput, nftables.ChainHookOutput} {
		name := "in"
		if hook == nftables.ChainHookOutput {
			name = "out"
		}
		c.AddChain(&nftables.Chain{Name: name, Table: tbl, Type: nftables.ChainTypeFilter, Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables black hole in %s: %v", n.Name, err)
	}
}
