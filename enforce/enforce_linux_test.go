//go:build linux

package enforce

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the process moved into the test cgroup: with KA_ENFORCE_HELPER
// set it runs one helper role and exits.
func TestMain(m *testing.M) {
	if role := os.Getenv("KA_ENFORCE_HELPER"); role != "" {
		os.Exit(helperMain(role, os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

// helperResult is what a helper prints: the settings its own getsockopt read right after
// connect()/accept() returned, and after Go's own setup (for the go* roles).
type helperResult struct {
	Settings keepalive.Settings `json:"-"`
	// keepalive.Settings marshals as its embedded Config (no Enabled): carry it apart.
	Enabled bool             `json:"enabled"`
	Config  keepalive.Config `json:"config"`
	Local   string           `json:"local"`
	Err     string           `json:"err,omitempty"`
}

func printResult(r helperResult) {
	r.Enabled, r.Config = r.Settings.Enabled, r.Settings.Config
	json.NewEncoder(os.Stdout).Encode(r)
}

func helperMain(role, arg string) int {
	out := func(c net.Conn, err error) int {
		r := helperResult{}
		if err != nil {
			r.Err = err.Error()
		} else {
			r.Settings, err = keepalive.Get(c.(*net.TCPConn))
			if err != nil {
				r.Err = err.Error()
			}
			r.Local = c.LocalAddr().String()
		}
		printResult(r)
		if c != nil {
			c.Close()
		}
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	switch role {
	case "connect": // plain system calls: what the kernel gave the socket, nothing from Go
		r := helperResult{}
		r.Settings, r.Local, err = rawConnect(arg)
		if err != nil {
			r.Err = err.Error()
		}
		printResult(r)
		return 0
	case "hold": // connect, say so, wait for a line on stdin, then report the settings
		d := net.Dialer{KeepAlive: -1}
		c, err := d.DialContext(ctx, "tcp", arg)
		if err != nil {
			return out(nil, err)
		}
		fmt.Println("connected")
		bufio.NewReader(os.Stdin).ReadString('\n')
		return out(c, nil)
	case "godial": // Go's defaults (15 s keepalive set after connect)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", arg)
		return out(c, err)
	case "accept":
		r := helperResult{}
		r.Settings, r.Local, err = rawAccept(arg)
		if err != nil {
			r.Err = err.Error()
		}
		printResult(r)
		return 0
	case "goaccept":
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", arg)
		if err != nil {
			return out(nil, err)
		}
		defer ln.Close()
		fmt.Println(ln.Addr().String())
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		c, err := ln.Accept()
		return out(c, err)
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// rawConnect connects with plain system calls and reads the socket's settings right after
// connect() returns.
func rawConnect(addr string) (keepalive.Settings, string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return keepalive.Settings{}, "", err
	}
	fam := unix.AF_INET
	var sa unix.Sockaddr
	if ap.Addr().Is6() {
		fam, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return keepalive.Settings{}, "", err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); err != nil {
		return keepalive.Settings{}, "", err
	}
	s, err := keepalive.Get(keepalive.FD(fd))
	return s, "", err
}

// rawAccept listens on addr, prints the bound address, accepts one connection with plain
// system calls and reads its settings right after accept() returns.
func rawAccept(addr string) (keepalive.Settings, string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return keepalive.Settings{}, "", err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return keepalive.Settings{}, "", err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return keepalive.Settings{}, "", err
	}
	if err := unix.Listen(fd, 8); err != nil {
		return keepalive.Settings{}, "", err
	}
	sa, _ := unix.Getsockname(fd)
	a4 := sa.(*unix.SockaddrInet4)
	fmt.Println(netip.AddrPortFrom(netip.AddrFrom4(a4.Addr), uint16(a4.Port)))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10})
	nfd, _, err := unix.Accept(fd)
	if err != nil {
		return keepalive.Settings{}, "", err
	}
	defer unix.Close(nfd)
	s, err := keepalive.Get(keepalive.FD(nfd))
	return s, "", err
}

func need(t *testing.T) {
	t.Helper()
	nstest.Need(t, os.Geteuid() == 0, "needs root (cgroups, BPF)")
	err := Probe()
	nstest.Need(t, err == nil, fmt.Sprintf("kernel support for enforce: %v", err))
}

func rnd() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testBPFFS mounts a private BPF filesystem for the test and unmounts it at cleanup, so no
// pin outlives the test even when it fails.
func testBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount test bpffs: %v", err)
		}
	})
	return filepath.Join(dir, "keepalive")
}

// testCgroup creates a cgroup under the cgroup2 mount (or under parent when not "") and
// removes it at cleanup. It returns the path relative to the mount.
func testCgroup(t *testing.T, parent string) string {
	t.Helper()
	mnt, err := Cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join("/", parent, fmt.Sprintf("keepalive-enforce-test-%d-%s", os.Getpid(), rnd()))
	abs := filepath.Join(mnt, rel)
	if err := os.Mkdir(abs, 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := os.Remove(abs)
			if err == nil || os.IsNotExist(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("remove test cgroup %s: %v", abs, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return rel
}

// inCgroup returns an exec.Cmd that starts directly inside the cgroup (clone3 CLONE_INTO_CGROUP).
func inCgroup(t *testing.T, cg string, name string, args ...string) *exec.Cmd {
	t.Helper()
	mnt, _ := Cgroup2Mount()
	f, err := os.Open(filepath.Join(mnt, cg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	cmd.Stderr = os.Stderr
	return cmd
}

// helper runs a helper role of this test binary in cgroup cg ("" = the test's own cgroup).
func helper(t *testing.T, cg, role, arg string) *exec.Cmd {
	t.Helper()
	var cmd *exec.Cmd
	if cg == "" {
		cmd = exec.Command(os.Args[0], arg)
	} else {
		cmd = inCgroup(t, cg, os.Args[0], arg)
	}
	cmd.Args = []string{os.Args[0], "-test.run=^$", arg}
	cmd.Env = append(os.Environ(), "KA_ENFORCE_HELPER="+role)
	return cmd
}

func parseResult(t *testing.T, b []byte) helperResult {
	t.Helper()
	var r helperResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("helper output %q: %v", b, err)
	}
	if r.Err != "" {
		t.Fatalf("helper: %s", r.Err)
	}
	r.Settings = keepalive.Settings{Enabled: r.Enabled, Config: r.Config}
	return r
}

// server listens on loopback in this (untouched) process and accepts in the background;
// it returns the address and a function giving the settings of the n-th accepted socket.
func server(t *testing.T, addr string) (string, <-chan keepalive.Settings) {
	t.Helper()
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan keepalive.Settings, 16)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 16 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, _ := keepalive.Get(c.(*net.TCPConn))
			ch <- s
			conns = append(conns, c) // kept open: a client may hold its end
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), ch
}

func dialFrom(t *testing.T, cg, role, addr string) keepalive.Settings {
	t.Helper()
	b, err := helper(t, cg, role, addr).Output()
	if err != nil {
		t.Fatalf("helper %s: %v", role, err)
	}
	return parseResult(t, b).Settings
}

func want(cfg keepalive.Config) keepalive.Settings {
	return keepalive.Settings{Enabled: true, Config: cfg}
}

func openTest(t *testing.T) *Host {
	t.Helper()
	h, err := Open(Options{PinDir: testBPFFS(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

var policyA = keepalive.Config{Idle: 7 * time.Second, Interval: 3 * time.Second, Count: 4, UserTimeout: 19 * time.Second}

func TestSockOpsDefaultMode(t *testing.T) {
	need(t)
	h := openTest(t)
	cg := testCgroup(t, "")
	if _, err := h.Attach(AttachRequest{Cgroup: cg, Rule: Rule{Config: policyA, Mode: ModeDefault}}); err != nil {
		t.Fatal(err)
	}
	addr, accepted := server(t, "127.0.0.1:0")

	// A client in the cgroup: its own getsockopt right after connect() shows the policy.
	if got := dialFrom(t, cg, "connect", addr); got != want(policyA) {
		t.Errorf("client in cgroup: %s, want %s", got, want(policyA))
	}
	// The server outside the cgroup is untouched.
	if s := <-accepted; s.Enabled {
		t.Errorf("accepted socket outside the cgroup got keepalive: %s", s)
	}
	// A client outside the cgroup is untouched.
	if got := dialFrom(t, "", "connect", addr); got.Enabled || got.UserTimeout != 0 {
		t.Errorf("client outside the cgroup: %s, want off", got)
	}
	<-accepted

	// Default mode: Go's own keepalive (15 s) after connect wins; the user timeout stays ours.
	got := dialFrom(t, cg, "godial", addr)
	<-accepted
	if got.Idle != 15*time.Second || got.UserTimeout != policyA.UserTimeout {
		t.Errorf("Go client in default mode: %s, want Go's idle 15s and our ut", got)
	}

	// A server in the cgroup: its accepted socket has the policy right after accept().
	srv := helper(t, cg, "accept", "127.0.0.1:0")
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(stdout)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rest, _ := rd.ReadBytes('\n')
	srv.Wait()
	if r := parseResult(t, rest); r.Settings != want(policyA) {
		t.Errorf("accepted in cgroup: %s, want %s", r.Settings, want(policyA))
	}

	atts, err := h.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 1 || atts[0].Cgroup != cg || !atts[0].Linked || atts[0].Counters.Seen < 3 || atts[0].Counters.Set != atts[0].Counters.Seen {
		t.Errorf("list: %+v", atts)
	}

	// Detach: new connections get nothing.
	if err := h.Detach(cg, nil, "", false); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, cg, "connect", addr); got.Enabled || got.UserTimeout != 0 {
		t.Errorf("after detach: %s, want off", got)
	}
	if atts, _ := h.List(); len(atts) != 0 {
		t.Errorf("after detach list: %+v", atts)
	}
	// Nothing attached any more: nothing left pinned.
	if _, err := os.Stat(h.PinDir()); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(h.PinDir())
		t.Errorf("pin directory left after the last detach: %v %v", err, ents)
	}
	// The handle still works: a new attachment recreates the pins.
	h.Close()
	h2, err := Open(Options{PinDir: h.PinDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := h2.Attach(AttachRequest{Cgroup: cg, Rule: Rule{Config: policyA, Mode: ModeDefault}}); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, cg, "connect", addr); got != want(policyA) {
		t.Errorf("after re-attach: %s, want %s", got, want(policyA))
	}
	if err := h2.Detach(cg, nil, "", false); err != nil {
		t.Fatal(err)
	}
}

func TestEnforceMode(t *testing.T) {
	need(t)
	h := openTest(t)
	cg := testCgroup(t, "")
	if _, err := h.Attach(AttachRequest{Cgroup: cg, Rule: Rule{Config: policyA, Mode: ModeEnforce}}); err != nil {
		t.Fatal(err)
	}
	addr, accepted := server(t, "127.0.0.1:0")
	if got := dialFrom(t, cg, "godial", addr); got != want(policyA) {
		t.Errorf("Go client in enforce mode: %s, want %s", got, want(policyA))
	}
	<-accepted
	// A Python client that sets its own values ends with the policy in enforce mode.
	py := pythonClient(t, cg, addr)
	<-accepted
	if py != want(policyA) {
		t.Errorf("python client in enforce mode: %s, want %s", py, want(policyA))
	}
	atts, _ := h.List()
	if len(atts) != 1 || atts[0].Counters.Rewritten < 5 || !atts[0].Rewriting {
		t.Errorf("rewritten counter: %+v", atts)
	}
	// UDP sockets and listeners keep their own options; with Listeners, listeners too get
	// the policy.
	if got := pyOther(t, cg); got != "udp 0 listener 33" {
		t.Errorf("enforce mode touched a UDP socket or a listener: %q", got)
	}
	if _, err := h.Attach(AttachRequest{Cgroup: cg, Rule: Rule{Config: policyA, Mode: ModeEnforce, Listeners: true}}); err != nil {
		t.Fatal(err)
	}
	if got := pyOther(t, cg); got != "udp 0 listener 7" {
		t.Errorf("enforce mode with Listeners: %q, want the listener rewritten", got)
	}
	// The same Python client in default mode keeps its own values.
	if _, err := h.Attach(AttachRequest{Cgroup: cg, Rule: Rule{Config: policyA, Mode: ModeDefault}}); err != nil {
		t.Fatal(err)
	}
	py = pythonClient(t, cg, addr)
	<-accepted
	own := want(keepalive.Config{Idle: 33 * time.Second, Interval: 11 * time.Second, Count: 3, UserTimeout: 4242 * time.Millisecond})
	if py != own {
		t.Errorf("python client in default mode: %s, want its own %s", py, own)
	}
	// Default mode needs no cgroup/setsockopt program: it is gone.
	if atts, _ := h.List(); len(atts) != 1 || atts[0].Rewriting || !atts[0].Linked || len(atts[0].Pins) != 1 {
		t.Errorf("default mode still has the setsockopt program: %+v", atts)
	}
}

// pyOther reports what a Python process in cg reads back after setting SO_KEEPALIVE 0 on a
// UDP socket and TCP_KEEPIDLE 33 on a listening TCP socket.
func pyOther(t *testing.T, cg string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	nstest.Need(t, err == nil, "python3")
	b, err := inCgroup(t, cg, py, "-c", `
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1)
l.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 33)
print("udp", u.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), "listener", l.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))
`).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// pythonClient connects from a Python process in cg that sets its own keepalive values and
// returns what it reads back.
func pythonClient(t *testing.T, cg, addr string) keepalive.Settings {
	t.Helper()
	py, err := exec.LookPath("python3")
	nstest.Need(t, err == nil, "python3")
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`
import socket
s = socket.create_connection((%q, %d), timeout=10)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 33)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 11)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
s.setsockopt(socket.IPPROTO_TCP, 18, 4242)
g = lambda l, o: s.getsockopt(l, o)
print(g(socket.SOL_SOCKET, socket.SO_KEEPALIVE), g(6, 4), g(6, 5), g(6, 6), g(6, 18))
`, ap.Addr().String(), ap.Port())
	b, err := inCgroup(t, cg, py, "-c", script).Output()
	if err != nil {
		t.Fatalf("python client: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 5 {
		t.Fatalf("python output %q", b)
	}
	n := make([]int, 5)
	for i := range f {
		n[i], _ = strconv.Atoi(f[i])
	}
	return keepalive.Settings{Enabled: n[0] != 0, Config: keepalive.Config{Idle: time.Duration(n[1]) * time.Second,
		Interval: time.Duration(n[2]) * time.Second, Count: n[3], UserTimeout: time.Duration(n[4]) * time.Millisecond}}
}

var (
	policyB = keepalive.Config{Idle: 11 * time.Second, Interval: 2 * time.Second, Count: 2}
	policyC = keepalive.Config{Idle: 13 * time.Second, Interval: 5 * time.Second, Count: 6, UserTimeout: 31 * time.Second}
	policyD = keepalive.Config{Idle: 17 * time.Second}
	policyE = keepalive.Config{Idle: 23 * time.Second, Count: 8}
)

func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// freeAbove returns a port above p that is free on addr.
func freeAbove(t *testing.T, addr string, p uint16) uint16 {
	t.Helper()
	for q := p + 1; q > p && q < p+200; q++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(int(q))))
		if err == nil {
			ln.Close()
			return q
		}
	}
	t.Fatalf("no free port above %d on %s", p, addr)
	return 0
}

func port(t *testing.T, addr string) uint16 {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Port()
}

func attach(t *testing.T, h *Host, cg string, m Match, c keepalive.Config) {
	t.Helper()
	if _, err := h.Attach(AttachRequest{Cgroup: cg, Rule: Rule{Match: m, Config: c, Mode: ModeDefault}}); err != nil {
		t.Fatalf("attach %s %s: %v", cg, m, err)
	}
}

func acceptIn(t *testing.T, cg, addr string) keepalive.Settings {
	t.Helper()
	srv := helper(t, cg, "accept", addr)
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(stdout)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rest, _ := rd.ReadBytes('\n')
	srv.Wait()
	return parseResult(t, rest).Settings
}

func TestPortAndPrefixRules(t *testing.T) {
	need(t)
	h := openTest(t)
	cg := testCgroup(t, "")
	// Distinct ports (bind to port 0 on different addresses may hand out the same number).
	a1, acc1 := server(t, "127.0.0.1:0")
	p1 := port(t, a1)
	a2, acc2 := server(t, fmt.Sprintf("127.0.0.2:%d", freeAbove(t, "127.0.0.2", p1)))
	a6, acc6 := server(t, fmt.Sprintf("[::1]:%d", freeAbove(t, "::1", port(t, a2))))
	lport := freePort(t)
	attach(t, h, cg, Match{}, policyA)
	attach(t, h, cg, Match{RemotePort: port(t, a1)}, policyB)
	attach(t, h, cg, Match{Peer: netip.MustParsePrefix("127.0.0.2/32")}, policyC)
	attach(t, h, cg, Match{Peer: netip.MustParsePrefix("::1/128")}, policyD)
	attach(t, h, cg, Match{LocalPort: lport}, policyE)
	// A remote-port rule restricted to a prefix that does not contain the peer: not used.
	attach(t, h, cg, Match{RemotePort: port(t, a2), Peer: netip.MustParsePrefix("10.0.0.0/8")}, policyB)

	for _, c := range []struct {
		name, addr string
		acc        <-chan keepalive.Settings
		want       keepalive.Config
	}{
		{"remote port rule", a1, acc1, policyB},
		{"IPv4 prefix rule", a2, acc2, policyC},
		{"IPv6 prefix rule", a6, acc6, policyD},
	} {
		got := dialFrom(t, cg, "connect", c.addr)
		<-c.acc
		w := want(c.want.WithDefaults(keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}))
		if got != w {
			t.Errorf("%s: %s, want %s", c.name, got, w)
		}
	}
	// Local-port rule: a server in the cgroup listening on lport.
	got := acceptIn(t, cg, fmt.Sprintf("127.0.0.1:%d", lport))
	if w := want(policyE.WithDefaults(keepalive.Config{Interval: 75 * time.Second})); got != w {
		t.Errorf("local port rule: %s, want %s", got, w)
	}
	// Another local port: the cgroup's default.
	if got := acceptIn(t, cg, "127.0.0.1:0"); got != want(policyA) {
		t.Errorf("default for other ports: %s, want %s", got, want(policyA))
	}
	atts, err := h.List()
	if err != nil || len(atts) != 1 || len(atts[0].Rules) != 6 {
		t.Fatalf("list: %+v %v", atts, err)
	}
	if atts[0].Rules[len(atts[0].Rules)-1].Match != (Match{}) {
		t.Errorf("default is not last in precedence order: %+v", atts[0].Rules)
	}
	// Removing one rule leaves the others.
	if err := h.Detach(cg, &Match{RemotePort: port(t, a1)}, "", false); err != nil {
		t.Fatal(err)
	}
	got = dialFrom(t, cg, "connect", a1)
	<-acc1
	if got != want(policyA) {
		t.Errorf("after removing the port rule: %s, want the default %s", got, want(policyA))
	}
}

func TestNestedCgroupsMostSpecificWins(t *testing.T) {
	need(t)
	h := openTest(t)
	parent := testCgroup(t, "")
	child := testCgroup(t, parent)
	a1, acc1 := server(t, "127.0.0.1:0")
	a2, acc2 := server(t, "127.0.0.1:0")
	// The child first (a rule only), then the parent: the child's program must learn its
	// new ancestor.
	attach(t, h, child, Match{RemotePort: port(t, a1)}, policyB)
	attach(t, h, parent, Match{}, policyA)
	check := func(cg, addr string, acc <-chan keepalive.Settings, w keepalive.Settings, what string) {
		t.Helper()
		got := dialFrom(t, cg, "connect", addr)
		<-acc
		if got != w {
			t.Errorf("%s: %s, want %s", what, got, w)
		}
	}
	fill := func(c keepalive.Config) keepalive.Settings {
		return want(c.WithDefaults(keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}))
	}
	check(child, a1, acc1, fill(policyB), "child, its rule")
	check(child, a2, acc2, want(policyA), "child, no rule of its own: the parent's default")
	check(parent, a1, acc1, want(policyA), "parent")
	// A child default beats the parent's default.
	attach(t, h, child, Match{}, policyC)
	check(child, a2, acc2, want(policyC), "child default")
	atts, _ := h.List()
	for _, a := range atts {
		if a.Cgroup == child && a.CoveredBy != parent {
			t.Errorf("child covered by %q, want %q", a.CoveredBy, parent)
		}
	}
	// The parent in enforce mode rewrites its own processes' calls, not the child's, whose
	// own policy is in default mode.
	if _, err := h.Attach(AttachRequest{Cgroup: parent, Rule: Rule{Config: policyA, Mode: ModeEnforce}}); err != nil {
		t.Fatal(err)
	}
	own := want(keepalive.Config{Idle: 33 * time.Second, Interval: 11 * time.Second, Count: 3, UserTimeout: 4242 * time.Millisecond})
	if got := pythonClient(t, child, a2); got != own {
		t.Errorf("child (default mode) under an enforcing parent: %s, want its own %s", got, own)
	}
	<-acc2
	if got := pythonClient(t, parent, a2); got != want(policyA) {
		t.Errorf("enforcing parent: %s, want %s", got, want(policyA))
	}
	<-acc2
	// Detaching the parent: the child keeps its own policy.
	if err := h.Detach(parent, nil, "", false); err != nil {
		t.Fatal(err)
	}
	check(child, a2, acc2, want(policyC), "child after parent detached")
	check(parent, a2, acc2, keepalive.Settings{Config: keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}}, "parent after detach")
	if err := h.Detach(child, nil, "", false); err != nil {
		t.Fatal(err)
	}
}

func TestExistingConnections(t *testing.T) {
	need(t)
	h := openTest(t)
	cg := testCgroup(t, "")
	addr, acc := server(t, "127.0.0.1:0")
	cmd := helper(t, cg, "hold", addr)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	rd := bufio.NewReader(stdout)
	if l, err := rd.ReadString('\n'); err != nil || strings.TrimSpace(l) != "connected" {
		t.Fatalf("hold helper: %q %v", l, err)
	}
	<-acc
	pending := []Rule{{Config: policyA, Mode: ModeDefault}}
	dry, err := h.RetrofitExisting(context.Background(), cg, ExistingOptions{DryRun: true, Pending: pending})
	if err != nil || len(dry) != 1 || !dry[0].Changed || dry[0].After != want(policyA) {
		t.Fatalf("dry run before attach: %+v %v", dry, err)
	}
	attach(t, h, cg, Match{}, policyA)
	dry, err = h.RetrofitExisting(context.Background(), cg, ExistingOptions{DryRun: true})
	if err != nil || len(dry) != 1 || !dry[0].Changed || dry[0].After != want(policyA) {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	res, err := h.RetrofitExisting(context.Background(), cg, ExistingOptions{})
	if err != nil || len(res) != 1 || res[0].Err != nil || res[0].After != want(policyA) {
		t.Fatalf("retrofit: %+v %v", res, err)
	}
	fmt.Fprintln(stdin, "report")
	b, _ := rd.ReadBytes('\n')
	if got := parseResult(t, b).Settings; got != want(policyA) {
		t.Errorf("connection opened before attach: %s, want %s", got, want(policyA))
	}
}

func TestAttachRefusesBadInput(t *testing.T) {
	need(t)
	h := openTest(t)
	cg := testCgroup(t, "")
	for _, c := range []struct {
		req  AttachRequest
		want string
	}{
		{AttachRequest{Cgroup: cg, Rule: Rule{Config: keepalive.Config{Idle: 40000 * time.Second}, Mode: ModeDefault}}, "32767"},
		{AttachRequest{Cgroup: cg, Rule: Rule{Config: keepalive.Config{Count: 200}, Mode: ModeDefault}}, "127"},
		{AttachRequest{Cgroup: cg, Rule: Rule{Mode: ModeDefault}}, "empty policy"},
		{AttachRequest{Cgroup: cg, Rule: Rule{Config: policyA, Mode: "strict"}}, "mode"},
		{AttachRequest{Cgroup: cg, Rule: Rule{Config: policyA, Mode: ModeDefault, Match: Match{LocalPort: 1, RemotePort: 2}}}, "not both"},
		{AttachRequest{Cgroup: "/no-such-cgroup-" + rnd(), Rule: Rule{Config: policyA, Mode: ModeDefault}}, "no such"},
		{AttachRequest{Cgroup: "../../etc", Rule: Rule{Config: policyA, Mode: ModeDefault}}, "cgroup"},
	} {
		_, err := h.Attach(c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %q", c.req, err, c.want)
		}
	}
	if atts, _ := h.List(); len(atts) != 0 {
		t.Errorf("a refused attach left %+v", atts)
	}
	// Another owner's attachment is changed or detached only when asked.
	if _, err := h.Attach(AttachRequest{Cgroup: cg, Owner: "agent", Rule: Rule{Config: policyA, Mode: ModeDefault}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Attach(AttachRequest{Cgroup: cg, Rule: Rule{Config: policyB, Mode: ModeDefault}}); err == nil || !strings.Contains(err.Error(), "another owner") {
		t.Errorf("cli changed the agent's attachment: %v", err)
	}
	if err := h.Detach(cg, nil, "cli", false); err == nil {
		t.Errorf("cli detached the agent's attachment without force")
	}
	if err := h.Detach(cg, nil, "cli", true); err != nil {
		t.Error(err)
	}
}

// TestKernelRefusalCounted: a value the kernel refuses is counted per option with its errno
// (written straight into the map: Attach itself never stores a value Validate rejects).
func TestKernelRefusalCounted(t *testing.T) {
	need(t)
	h := openTest(t)
	cg := testCgroup(t, "")
	att, err := h.Attach(AttachRequest{Cgroup: cg, Rule: Rule{Config: policyA, Mode: ModeDefault}})
	if err != nil {
		t.Fatal(err)
	}
	v := policyValue(Rule{Config: policyA, Mode: ModeDefault})
	v[polIdle], v[polIdle+1], v[polIdle+2], v[polIdle+3] = 0, 0, 0, 0 // idle 0: EINVAL
	if err := h.policy.Put(policyKey(att.CgroupID, Match{}), v); err != nil {
		t.Fatal(err)
	}
	addr, acc := server(t, "127.0.0.1:0")
	got := dialFrom(t, cg, "connect", addr)
	<-acc
	if !got.Enabled || got.Interval != policyA.Interval || got.Idle != 7200*time.Second {
		t.Errorf("the other options must still be set: %s", got)
	}
	atts, _ := h.List()
	c := atts[0].Counters
	if c.Seen != 1 || c.Set != 0 || len(c.Failures) != 1 || c.Failures[0].Option != "idle" || c.Failures[0].Errno != int(unix.EINVAL) {
		t.Errorf("counters: %+v", c)
	}
}

// TestPodCgroup: a pod UID resolves to the kubelet's directory for it (systemd-driver name).
func TestPodCgroup(t *testing.T) {
	need(t)
	top := testCgroup(t, "")
	mnt, _ := Cgroup2Mount()
	uid := "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	qos := filepath.Join(top, "kubepods-burstable.slice")
	pod := filepath.Join(qos, "kubepods-burstable-pod"+strings.ReplaceAll(uid, "-", "_")+".slice")
	for _, d := range []string{qos, pod} {
		if err := os.Mkdir(filepath.Join(mnt, d), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(filepath.Join(mnt, d)) })
	}
	got, err := PodCgroup(uid)
	if err != nil || got != pod {
		t.Errorf("PodCgroup = %q, %v; want %q", got, err, pod)
	}
	if _, err := PodCgroup("00000000-0000-0000-0000-000000000000"); err == nil {
		t.Error("an unknown pod resolved")
	}
}

// TestResolveCgroupRejectsDotDot: paths read in a private cgroup namespace ("/../..",
// "/../../docker/ID") are refused, not cleaned into the host's root or a wrong directory.
func TestResolveCgroupRejectsDotDot(t *testing.T) {
	need(t)
	top := testCgroup(t, "")
	mnt, err := Cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resolveCgroup(mnt, top); err != nil {
		t.Fatalf("resolveCgroup(%q): %v", top, err)
	}
	for _, p := range []string{"/../..", "/..", "/.." + top, "/../.." + top, top + "/../..", filepath.Join(mnt, "x") + "/../.."} {
		if cg, err := resolveCgroup(mnt, p); err == nil || !strings.Contains(err.Error(), "leaves the cgroup2 hierarchy") {
			t.Errorf("resolveCgroup(%q) = %+v, %v; want an error", p, cg, err)
		}
	}
}
