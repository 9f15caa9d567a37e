package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// need skips (or, with CI=true, fails) when the test cannot run here.
func need(t testing.TB, ok bool, what string) {
	t.Helper()
	nstest.Need(t, ok, what)
}

// testNet is a local namespace and a peer namespace joined by a veth pair:
// local 10.200.N.1 / fd00:200::1, peer 10.200.N.2 / fd00:200::2.
type testNet struct {
	Local, Peer       string // namespace names
	lns, pns          netns.NsHandle
	lh, ph            *netlink.Handle
	diag              *netlink.Handle // NETLINK_INET_DIAG in the local namespace
	LocalIP, PeerIP   netip.Addr
	LocalIP6, PeerIP6 netip.Addr
	vethL             string
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newNamedNS(name string) (netns.NsHandle, error) { return netnsx.NewNamed(name) }

// inNS runs fn on a thread inside ns; sockets fn creates stay there.
func inNS(ns netns.NsHandle, fn func() error) error { return netnsx.Do(ns, fn) }

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	need(t, os.Geteuid() == 0, "root (network namespaces, raw sockets)")
	suf := randHex(3)
	tn := &testNet{Local: "kaprobe-l-" + suf, Peer: "kaprobe-p-" + suf, vethL: "kaprobe" + suf + "a"}
	n := 1 + int(suf[0])%250
	tn.LocalIP = netip.MustParseAddr(fmt.Sprintf("10.200.%d.1", n))
	tn.PeerIP = netip.MustParseAddr(fmt.Sprintf("10.200.%d.2", n))
	tn.LocalIP6 = netip.MustParseAddr("fd00:200::1")
	tn.PeerIP6 = netip.MustParseAddr("fd00:200::2")
	var err error
	if tn.lns, err = newNamedNS(tn.Local); err != nil {
		need(t, false, "network namespaces: "+err.Error())
	}
	t.Cleanup(func() { tn.lns.Close(); _ = netns.DeleteNamed(tn.Local) })
	if tn.pns, err = newNamedNS(tn.Peer); err != nil {
		t.Fatalf("create namespace %s: %v", tn.Peer, err)
	}
	t.Cleanup(func() { tn.pns.Close(); _ = netns.DeleteNamed(tn.Peer) })
	if tn.lh, err = netlink.NewHandleAt(tn.lns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.lh.Close)
	if tn.ph, err = netlink.NewHandleAt(tn.pns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.ph.Close)
	if tn.diag, err = netlink.NewHandleAt(tn.lns, unix.NETLINK_INET_DIAG); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.diag.Close)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tn.vethL}, PeerName: "kaprobe" + suf + "b", PeerNamespace: netlink.NsFd(tn.pns)}
	if err := tn.lh.LinkAdd(veth); err != nil {
		need(t, false, "veth: "+err.Error())
	}
	t.Cleanup(func() {
		if l, err := tn.lh.LinkByName(tn.vethL); err == nil {
			_ = tn.lh.LinkDel(l)
		}
	})
	setup := func(h *netlink.Handle, name string, v4, v6 netip.Addr) {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []*netlink.Addr{
			{IPNet: &net.IPNet{IP: v4.AsSlice(), Mask: net.CIDRMask(24, 32)}},
			{IPNet: &net.IPNet{IP: v6.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD},
		} {
			if err := h.AddrAdd(l, a); err != nil {
				t.Fatalf("address %v on %s: %v", a, name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
	}
	setup(tn.lh, tn.vethL, tn.LocalIP, tn.LocalIP6)
	setup(tn.ph, "kaprobe"+suf+"b", tn.PeerIP, tn.PeerIP6)
	return tn
}

// listen opens a TCP listener in the peer namespace.
func (tn *testNet) listen(t testing.TB, addr netip.Addr) net.Listener {
	t.Helper()
	var ln net.Listener
	err := inNS(tn.pns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair dials n connections from the local namespace to ln and returns the
// client and server ends, index-matched.
func (tn *testNet) pair(t testing.TB, ln net.Listener, n int) (clients, servers []*net.TCPConn) {
	t.Helper()
	acc := make(chan *net.TCPConn, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				close(acc)
				return
			}
			acc <- c.(*net.TCPConn)
		}
	}()
	byRemote := map[string]*net.TCPConn{}
	err := inNS(tn.lns, func() error {
		for range n {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				return err
			}
			clients = append(clients, c.(*net.TCPConn))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case s, ok := <-acc:
			if !ok {
				t.Fatal("accept failed")
			}
			byRemote[s.RemoteAddr().String()] = s
		case <-time.After(10 * time.Second):
			t.Fatal("accept timed out")
		}
	}
	for _, c := range clients {
		s := byRemote[c.LocalAddr().String()]
		if s == nil {
			t.Fatalf("no server end for %v", c.LocalAddr())
		}
		servers = append(servers, s)
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
		for _, s := range servers {
			s.Close()
		}
	})
	return clients, servers
}

func flowOf(c net.Conn) Flow {
	return Flow{
		Local:  c.LocalAddr().(*net.TCPAddr).AddrPort(),
		Remote: c.RemoteAddr().(*net.TCPAddr).AddrPort(),
	}.Normalize()
}

// diagChecker reads sockets with sock_diag in a namespace.
type diagChecker struct{ h *netlink.Handle }

func (d diagChecker) Check(ctx context.Context, flows []Flow) ([]SockState, error) {
	all := map[Flow]SockState{}
	var fams []uint8
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if slices.ContainsFunc(flows, func(f Flow) bool { return f.Local.Addr().Is4() == (fam == unix.AF_INET) }) {
			fams = append(fams, fam)
		}
	}
	for _, fam := range fams {
		socks, err := d.h.SocketDiagTCPInfo(fam)
		if err != nil {
			return nil, err
		}
		for _, s := range socks {
			id := s.InetDiagMsg.ID
			sa, _ := netip.AddrFromSlice(id.Source)
			da, _ := netip.AddrFromSlice(id.Destination)
			f := Flow{Local: netip.AddrPortFrom(sa, id.SourcePort), Remote: netip.AddrPortFrom(da, id.DestinationPort)}.Normalize()
			st := SockState{Found: true, Established: s.InetDiagMsg.State == 1, State: fmt.Sprint("state ", s.InetDiagMsg.State)}
			if s.TCPInfo != nil {
				st.Unacked, st.NotSent = s.TCPInfo.Unacked, s.TCPInfo.Notsent_bytes
			}
			all[f] = st
		}
	}
	out := make([]SockState, len(flows))
	for i, f := range flows {
		out[i] = all[f.Normalize()]
	}
	return out, nil
}

// dropTable installs, in ns, an inet table whose base chain on hook drops
// everything (policy drop); the returned func removes it.
func dropTable(t testing.TB, ns netns.NsHandle, hook *nftables.ChainHook) func() {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		need(t, false, "nftables: "+err.Error())
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "kaprobe"})
	drop := nftables.ChainPolicyDrop
	c.AddChain(&nftables.Chain{Name: "drop", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := c.Flush(); err != nil {
		need(t, false, "nftables: "+err.Error())
	}
	removed := false
	undo := func() {
		if removed {
			return
		}
		removed = true
		c.DelTable(tbl)
		if err := c.Flush(); err != nil {
			t.Errorf("remove nftables table: %v", err)
		}
	}
	t.Cleanup(undo)
	return undo
}

// queueChecker looks each socket up by its exact identity with sock_diag
// (a hash lookup, not a dump of every socket on the host) without asking for
// tcp_info: the kernel then fills idiag_wqueue (write_seq - snd_una, that is
// unacknowledged plus unsent bytes) without taking the socket's lock, which
// keeps the check fast on sockets busy with a transfer. wqueue = 0 is
// exactly "nothing in flight, nothing unsent".
type queueChecker struct{ fd int }

func newQueueChecker(t testing.TB, ns netns.NsHandle) queueChecker {
	t.Helper()
	var fd int
	if err := inNS(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return queueChecker{fd: fd}
}

func (q queueChecker) Check(ctx context.Context, flows []Flow) ([]SockState, error) {
	out := make([]SockState, len(flows))
	req := make([]byte, 16+56)
	buf := make([]byte, 8192)
	for i, f := range flows {
		f = f.Normalize()
		clear(req)
		binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
		binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
		binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
		binary.NativeEndian.PutUint32(req[8:], uint32(i+1))
		r := req[16:]
		r[0], r[1] = unix.AF_INET6, unix.IPPROTO_TCP
		if f.Local.Addr().Is4() {
			r[0] = unix.AF_INET
		}
		binary.NativeEndian.PutUint32(r[4:], ^uint32(0)) // all states
		binary.BigEndian.PutUint16(r[8:], f.Local.Port())
		binary.BigEndian.PutUint16(r[10:], f.Remote.Port())
		if f.Local.Addr().Is4() {
			a, b := f.Local.Addr().As4(), f.Remote.Addr().As4()
			copy(r[12:], a[:])
			copy(r[28:], b[:])
		} else {
			a, b := f.Local.Addr().As16(), f.Remote.Addr().As16()
			copy(r[12:], a[:])
			copy(r[28:], b[:])
		}
		binary.NativeEndian.PutUint32(r[48:], ^uint32(0)) // INET_DIAG_NOCOOKIE
		binary.NativeEndian.PutUint32(r[52:], ^uint32(0))
		if err := unix.Sendto(q.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return nil, err
		}
		n, _, err := unix.Recvfrom(q.fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil || len(msgs) == 0 {
			return nil, fmt.Errorf("sock_diag: %v", err)
		}
		m := msgs[0]
		if m.Header.Type == unix.NLMSG_ERROR || len(m.Data) < 72 {
			continue // ENOENT: gone
		}
		d := m.Data
		out[i] = SockState{Found: true, Established: d[1] == 1, State: fmt.Sprint("state ", d[1]), Unacked: binary.NativeEndian.Uint32(d[64:])}
	}
	return out, nil
}
