//go:build linux

package host

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

// loopPairs listens on addr and makes n connections to it; it returns both ends.
func loopPairs(t *testing.T, network, addr string, n int) (net.Listener, []net.Conn, []net.Conn) {
	t.Helper()
	var ln net.Listener
	var err error
	if addr == "v4mapped" {
		ln, err = listenV4Mapped()
	} else {
		ln, err = net.Listen(network, addr)
	}
	if err != nil {
		t.Fatalf("cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	var clients, servers []net.Conn
	dial := ln.Addr().String()
	if addr == "v4mapped" {
		// A dual-stack listener reached over IPv4: its sockets are AF_INET6 with
		// IPv4-mapped addresses.
		dial = net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	for i := 0; i < n; i++ {
		c, err := net.Dial(network, dial)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		clients = append(clients, c)
		servers = append(servers, s)
	}
	return ln, clients, servers
}

// listenV4Mapped listens on an AF_INET6 socket bound to ::ffff:127.0.0.1 (IPv6-only off), so
// its connections are AF_INET6 sockets with IPv4-mapped addresses that stay on loopback.
func listenV4Mapped() (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "v4mapped")
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, err
	}
	if err := unix.Listen(fd, 16); err != nil {
		return nil, err
	}
	return net.FileListener(f)
}

func connFD(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func ap(a net.Addr) netip.AddrPort {
	x := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(x.Addr().Unmap(), x.Port())
}

func TestListLoopback(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6", "tcp6", "[::1]:0"},
		{"dualstack-v4mapped", "tcp4", "v4mapped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, clients, servers := loopPairs(t, tc.network, tc.addr, 25)
			port := uint16(ln.Addr().(*net.TCPAddr).Port)
			// A distinct setting on every other client, to check the deep read.
			for i, c := range clients {
				if i%2 == 0 {
					if err := keepalive.Apply(c.(*net.TCPConn), keepalive.Config{Idle: time.Duration(100+i) * time.Second, Interval: 7 * time.Second, Count: 4}); err != nil {
						t.Fatal(err)
					}
				}
			}
			socks, err := List(context.Background(), ListOptions{
				Selector: Selector{Ports: []uint16{port}, States: []State{StateEstablished}},
				Owners:   true, Deep: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			type pair struct{ l, r netip.AddrPort }
			byPair := map[pair]Socket{}
			lnAddr := ap(clients[0].RemoteAddr())
			for _, s := range socks {
				// The port filter also matches unrelated connections whose other port
				// happens to be the same; count only ours.
				if s.Local == lnAddr || s.Remote == lnAddr {
					byPair[pair{s.Local, s.Remote}] = s
				}
			}
			if len(byPair) != 50 {
				t.Errorf("listed %d sockets of the listener, want 50 (25 connections × 2 ends)", len(byPair))
			}
			check := func(c net.Conn, side string, i int) {
				s, ok := byPair[pair{ap(c.LocalAddr()), ap(c.RemoteAddr())}]
				if !ok {
					t.Errorf("%s %d (%s) not listed", side, i, c.LocalAddr())
					return
				}
				if tc.name == "dualstack-v4mapped" && side == "server" && s.Family != unix.AF_INET6 {
					t.Errorf("server %d: family %d, want AF_INET6 (v4-mapped)", i, s.Family)
				}
				if s.State != StateEstablished || s.Inode == 0 || s.Cookie == 0 || s.Info == nil {
					t.Errorf("%s %d: got %+v", side, i, s)
				}
				fd := connFD(t, c)
				if len(s.Owners) != 1 || s.Owners[0].PID != os.Getpid() || s.Owners[0].FD != fd {
					t.Errorf("%s %d: owners %+v, want pid %d fd %d", side, i, s.Owners, os.Getpid(), fd)
				}
				want, err := keepalive.Get(c.(*net.TCPConn))
				if err != nil {
					t.Fatal(err)
				}
				if s.Settings == nil || *s.Settings != want || s.Inferred {
					t.Errorf("%s %d: settings %v (inferred %v, err %v), want %v", side, i, s.Settings, s.Inferred, s.SettingsErr, want)
				}
				on, known := s.KeepaliveArmed()
				if !known || on != want.Enabled {
					t.Errorf("%s %d: timer %v says keepalive on=%v known=%v, want on=%v", side, i, s.Timer, on, known, want.Enabled)
				}
			}
			for i := range clients {
				check(clients[i], "client", i)
				check(servers[i], "server", i)
			}
		})
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	nstest.Need(t, os.Geteuid() == 0, "needs root (SOCK_DESTROY needs CAP_NET_ADMIN)")
}

func TestLookupAndDestroy(t *testing.T) {
	requireRoot(t)
	// The server ends are AF_INET6 sockets with IPv4-mapped addresses: Lookup and Destroy
	// must address them in their own family.
	ln, clients, servers := loopPairs(t, "tcp4", "v4mapped", 3)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ctx := context.Background()
	socks, err := List(ctx, ListOptions{Selector: Selector{Ports: []uint16{port}}, Owners: true})
	if err != nil {
		t.Fatal(err)
	}
	var target Socket
	for _, s := range socks {
		if s.Local == ap(servers[1].LocalAddr()) && s.Remote == ap(servers[1].RemoteAddr()) {
			target = s
		}
	}
	if target.Cookie == 0 || target.Family != unix.AF_INET6 {
		t.Fatalf("server side of connection 1 not found (or not AF_INET6) in %v", socks)
	}
	// Make traffic so Lookup sees fresh counters.
	if _, err := clients[1].Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := servers[1].Read(buf); err != nil {
		t.Fatal(err)
	}
	got, err := Lookup(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cookie != target.Cookie || got.Info == nil || got.Info.BytesReceived != 5 || len(got.Owners) != 1 {
		t.Fatalf("lookup: %+v info %+v", got, got.Info)
	}
	wrong := target
	wrong.Cookie++
	if _, err := Lookup(ctx, wrong); !errors.Is(err, ErrGone) {
		t.Fatalf("lookup with a wrong cookie: %v, want ErrGone", err)
	}
	if err := Destroy(ctx, wrong); !errors.Is(err, ErrGone) {
		t.Fatalf("destroy with a wrong cookie: %v, want ErrGone", err)
	}
	if err := Destroy(ctx, target); err != nil {
		t.Fatal(err)
	}
	servers[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := servers[1].Read(buf); !errors.Is(err, unix.ECONNABORTED) {
		t.Fatalf("owner read after destroy: %v, want ECONNABORTED", err)
	}
	clients[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := clients[1].Read(buf); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("peer read after destroy: %v, want ECONNRESET", err)
	}
	if _, err := Lookup(ctx, target); !errors.Is(err, ErrGone) {
		t.Fatalf("lookup after destroy: %v, want ErrGone", err)
	}
	// The other connections are untouched.
	if _, err := clients[0].Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestRetrofitInProcess(t *testing.T) {
	ln, clients, _ := loopPairs(t, "tcp4", "127.0.0.1:0", 4)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ctx := context.Background()
	socks, err := List(ctx, ListOptions{Selector: Selector{Ports: []uint16{port}, PIDs: []int{os.Getpid()}}, Owners: true})
	if err != nil {
		t.Fatal(err)
	}
	lnAddr := ap(ln.Addr())
	socks = slices.DeleteFunc(socks, func(s Socket) bool { return s.Local != lnAddr && s.Remote != lnAddr })
	if len(socks) != 8 {
		t.Fatalf("%d sockets, want 8", len(socks))
	}
	cfg := keepalive.Config{Idle: 33 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 20 * time.Second}
	before, _ := keepalive.Get(clients[0].(*net.TCPConn))
	fds := fdCount(t)
	defer func() {
		if n := fdCount(t); n != fds {
			t.Errorf("descriptors: %d before, %d after: a duplicate leaked", fds, n)
		}
	}()
	dry := Retrofit(ctx, socks, cfg, RetrofitOptions{DryRun: true})
	for _, r := range dry {
		if r.Err != nil || !r.Changed || r.After != Merge(r.Before, cfg) {
			t.Fatalf("dry run: %+v", r)
		}
	}
	if now, _ := keepalive.Get(clients[0].(*net.TCPConn)); now != before {
		t.Fatalf("dry run changed %v to %v", before, now)
	}
	// Listed twice: handled once.
	res := Retrofit(ctx, append(socks, socks...), cfg, RetrofitOptions{})
	if len(res) != 8 {
		t.Fatalf("%d results, want 8", len(res))
	}
	for _, r := range res {
		if r.Err != nil || !r.Changed {
			t.Fatalf("retrofit: %+v", r)
		}
	}
	for i, c := range clients {
		got, _ := keepalive.Get(c.(*net.TCPConn))
		if got != (keepalive.Settings{Enabled: true, Config: cfg}) {
			t.Errorf("client %d: %v", i, got)
		}
	}
	again := Retrofit(ctx, socks, cfg, RetrofitOptions{})
	for _, r := range again {
		if r.Err != nil || r.Changed {
			t.Fatalf("second retrofit should change nothing: %+v", r)
		}
	}
	bad := Retrofit(ctx, socks[:1], keepalive.Config{Idle: 40000 * time.Second}, RetrofitOptions{})
	if bad[0].Err == nil {
		t.Fatal("idle 40000s accepted")
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]State{"established": StateEstablished, "ESTAB": StateEstablished,
		"time-wait": StateTimeWait, "close_wait": StateCloseWait, "listen": StateListen, "FIN-WAIT-2": StateFinWait2} {
		got, err := ParseState(in)
		if err != nil || got != want {
			t.Errorf("ParseState(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseState("bogus"); err == nil {
		t.Error("bogus state accepted")
	}
}

func TestSharedSocketOwners(t *testing.T) {
	ln, clients, _ := loopPairs(t, "tcp4", "127.0.0.1:0", 1)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	f, err := clients[0].(*net.TCPConn).File() // a second descriptor in this process
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("no sleep binary to hold the shared descriptor: %v", err)
	}
	child := exec.Command(sleep, "30")
	child.ExtraFiles = []*os.File{f} // fd 3 in the child
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	local := ap(clients[0].LocalAddr())
	var shared Socket
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		socks, err := List(context.Background(), ListOptions{Selector: Selector{Ports: []uint16{port}, PIDs: []int{os.Getpid(), child.Process.Pid}}, Owners: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range socks {
			if s.Local == local {
				shared = s
			}
		}
		if len(shared.Owners) == 3 {
			break
		}
	}
	pids := map[int]int{}
	for _, o := range shared.Owners {
		pids[o.PID]++
	}
	if pids[os.Getpid()] != 2 || pids[child.Process.Pid] != 1 {
		t.Fatalf("owners %+v, want two descriptors here and fd 3 in pid %d", shared.Owners, child.Process.Pid)
	}
	for _, o := range shared.Owners {
		if o.PID == child.Process.Pid && (o.FD != 3 || o.Comm != "sleep") {
			t.Errorf("child owner %+v, want fd 3 comm sleep", o)
		}
	}
	res := Retrofit(context.Background(), []Socket{shared, shared}, keepalive.Config{Idle: 77 * time.Second}, RetrofitOptions{})
	if len(res) != 1 || res[0].Err != nil || !res[0].Changed || res[0].After.Idle != 77*time.Second {
		t.Fatalf("retrofit of a shared socket: %+v", res)
	}
	if got, _ := keepalive.Get(clients[0].(*net.TCPConn)); got.Idle != 77*time.Second || !got.Enabled {
		t.Fatalf("socket reads back %v", got)
	}
}

func TestRetrofitGoneProcess(t *testing.T) {
	// An owner that no longer exists is reported per socket with ErrGone, not fatally.
	s := Socket{Family: unix.AF_INET, Inode: 1, Cookie: 1, Owners: []Owner{{PID: 1 << 22, Comm: "ghost", FD: 3}}}
	res := Retrofit(context.Background(), []Socket{s}, keepalive.Config{Idle: time.Minute}, RetrofitOptions{})
	if len(res) != 1 || !errors.Is(res[0].Err, ErrGone) {
		t.Fatalf("got %+v, want ErrGone", res)
	}
	none := Retrofit(context.Background(), []Socket{{Inode: 2, Cookie: 2}}, keepalive.Config{Idle: time.Minute}, RetrofitOptions{})
	if !errors.Is(none[0].Err, ErrNoOwner) {
		t.Fatalf("got %v, want ErrNoOwner", none[0].Err)
	}
}

func TestErrorsNameTheFix(t *testing.T) {
	o := Owner{PID: 42, Comm: "app", FD: 7}
	for _, tc := range []struct {
		errno unix.Errno
		want  []string
	}{
		{unix.EPERM, []string{"pid 42 (app) fd 7", "CAP_SYS_PTRACE"}},
		{unix.ENOSYS, []string{"Linux ≥ 5.6"}},
		{unix.ESRCH, []string{"process exited"}},
		{unix.EBADF, []string{"descriptor closed"}},
	} {
		err := explainPidfd("pidfd_getfd", o, tc.errno)
		if strings.Contains(err.Error(), "setcap") {
			t.Errorf("%v: %q suggests file capabilities, which would let any local user retrofit root's connections", tc.errno, err)
		}
		if !errors.Is(err, tc.errno) {
			t.Errorf("%v: %v does not match the errno", tc.errno, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q lacks %q", tc.errno, err, w)
			}
		}
	}
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestScanOwnersSparseTable(t *testing.T) {
	ln, clients, _ := loopPairs(t, "tcp4", "127.0.0.1:0", 1)
	_ = ln
	fd := connFD(t, clients[0])
	const high = 4321 // far beyond the dense part of the table: forces the getdents fallback
	if err := unix.Dup3(fd, high, unix.O_CLOEXEC); err != nil {
		t.Fatalf("dup3 to fd %d: %v", high, err)
	}
	defer unix.Close(high)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	idx, err := scanOwners([]int{os.Getpid()}, true)
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]bool{}
	for _, o := range idx.owners(uint32(st.Ino), nil) {
		if o.PID != os.Getpid() {
			t.Errorf("owner %+v", o)
		}
		fds[o.FD] = true
	}
	if !fds[fd] || !fds[high] || len(fds) != 2 {
		t.Fatalf("descriptors of the socket: %v, want %d and %d", fds, fd, high)
	}
}

// TestPrivilegedForOthersRefused checks the AT_SECURE rule: a set-user-ID or file-capability
// run refuses processes its real user does not own, and allows the real user's own.
func TestPrivilegedForOthersRefused(t *testing.T) {
	if p := currentPrivilege(); p.secure {
		t.Fatalf("AT_SECURE set for a plain test run: %+v", p)
	}
	self := os.Getpid()
	if err := (privilege{secure: true, ruid: 65534}).allows(self); !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("a setuid run for uid 65534 allowed pid %d of uid %d: %v", self, os.Getuid(), err)
	}
	if err := (privilege{secure: true, ruid: os.Getuid()}).allows(self); err != nil && os.Getuid() != 0 {
		t.Fatalf("own process refused: %v", err)
	}
	if err := (privilege{secure: false, ruid: 65534}).allows(self); err != nil {
		t.Fatalf("an unprivileged run refused: %v", err)
	}
}
