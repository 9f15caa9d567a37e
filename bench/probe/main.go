//go:build linux

// Command probe-bench measures 'keepalive probe' on 10 000 idle connections
// to a namespace peer (all alive, then all reset) against the kernel's own
// keepalive (idle 1 s, interval 1 s) as the anchor. Run it through
// bench/probe.sh as root.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func main() {
	role := flag.String("role", "bench", "bench | server | client (internal)")
	ns := flag.String("ns", "", "network namespace (server, client)")
	addr := flag.String("addr", "", "listen or dial address (server, client)")
	n := flag.Int("n", 10000, "connections")
	bin := flag.String("keepalive", "", "path to the keepalive binary (bench)")
	flag.Parse()
	var err error
	switch *role {
	case "server":
		err = serve(*ns, *addr)
	case "client":
		err = client(*ns, *addr, *n)
	default:
		err = bench(*bin, *n)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe-bench:", err)
		os.Exit(1)
	}
}

// enter moves the calling goroutine's thread into ns and keeps it locked
// there: the server and client roles open every socket from main.
func enter(name string) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer h.Close()
	runtime.LockOSThread() // stays locked: this thread opens every socket
	return netns.Set(h)
}

func serve(ns, addr string) error {
	if err := enter(ns); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("READY")
	var conns []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		// Linger 0: when this process dies its sockets vanish with an RST
		// (dropped by the bench while the peer "forgets").
		_ = c.(*net.TCPConn).SetLinger(0)
		conns = append(conns, c)
	}
}

func client(ns, addr string, n int) error {
	if err := enter(ns); err != nil {
		return err
	}
	conns := make([]*net.TCPConn, 0, n)
	for range n {
		// Keepalive off (Go turns it on by default), so that arming it later
		// starts a full idle period, as on a connection nobody configured.
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("dial %d: %w", len(conns), err)
		}
		conns = append(conns, c.(*net.TCPConn))
	}
	var resets, timeouts atomic.Int64
	var armed atomic.Int64 // unix nanos
	allReset := make(chan struct{})
	at := make([]int64, n) // when each owner saw its error, ns after arming
	for i, c := range conns {
		go func() {
			_, err := c.Read(make([]byte, 1))
			at[i] = time.Now().UnixNano() - armed.Load()
			if errors.Is(err, syscall.ETIMEDOUT) {
				timeouts.Add(1)
			}
			if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ETIMEDOUT) {
				if resets.Add(1) == int64(n) {
					close(allReset)
				}
			}
		}()
	}
	go func() {
		<-allReset
		s := slices.Clone(at)
		slices.Sort(s)
		fmt.Printf("ALLRESET %d %d %d %d\n", s[n-1], s[n/2], s[n*99/100], timeouts.Load())
	}()
	fmt.Println("CONNECTED")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "arm":
			armed.Store(time.Now().UnixNano())
			for _, c := range conns {
				rc, _ := c.SyscallConn()
				_ = rc.Control(func(fd uintptr) {
					_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1)
					_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 1)
					_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3)
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
				})
			}
			fmt.Printf("ARMED %d\n", time.Now().UnixNano()-armed.Load())
		case "disarm":
			for _, c := range conns {
				_ = c.SetKeepAlive(false)
			}
			fmt.Println("DISARMED")
		}
	}
	return nil
}

type proc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func start(args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p, nil
}

func (p *proc) expect(prefix string, timeout time.Duration) (string, error) {
	t := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("process exited waiting for %s", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimSpace(strings.TrimPrefix(l, prefix)), nil
			}
		case <-t:
			return "", fmt.Errorf("timed out waiting for %s", prefix)
		}
	}
}

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

type lab struct {
	local, peer string
	pns         netns.NsHandle
	peerIP      string
	veth        string
}

func setup() (*lab, error) {
	pid := os.Getpid()
	l := &lab{local: fmt.Sprintf("kaprobe-bl-%d", pid), peer: fmt.Sprintf("kaprobe-bp-%d", pid), veth: fmt.Sprintf("kaprobe%xa", pid&0xffffff)}
	oct := 200 + pid%50
	l.peerIP = fmt.Sprintf("10.200.%d.2", oct)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer netns.Set(orig)
	lns, err := netns.NewNamed(l.local)
	if err != nil {
		return nil, err
	}
	if l.pns, err = netns.NewNamed(l.peer); err != nil {
		return l, err
	}
	if err := netns.Set(orig); err != nil {
		return l, err
	}
	lh, err := netlink.NewHandleAt(lns)
	if err != nil {
		return l, err
	}
	defer lh.Close()
	ph, err := netlink.NewHandleAt(l.pns)
	if err != nil {
		return l, err
	}
	defer ph.Close()
	peerVeth := fmt.Sprintf("kaprobe%xb", pid&0xffffff)
	if err := lh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.veth}, PeerName: peerVeth, PeerNamespace: netlink.NsFd(l.pns)}); err != nil {
		return l, err
	}
	for _, x := range []struct {
		h      *netlink.Handle
		name   string
		ip     string
		netnsN string
	}{{lh, l.veth, fmt.Sprintf("10.200.%d.1/24", oct), l.local}, {ph, peerVeth, fmt.Sprintf("10.200.%d.2/24", oct), l.peer}} {
		lk, err := x.h.LinkByName(x.name)
		if err != nil {
			return l, err
		}
		a, _ := netlink.ParseAddr(x.ip)
		if err := x.h.AddrAdd(lk, a); err != nil {
			return l, err
		}
		if err := x.h.LinkSetUp(lk); err != nil {
			return l, err
		}
		lo, _ := x.h.LinkByName("lo")
		_ = x.h.LinkSetUp(lo)
	}
	return l, nil
}

func (l *lab) cleanup() {
	if h, err := netns.GetFromName(l.local); err == nil {
		if nh, err := netlink.NewHandleAt(h); err == nil {
			if lk, err := nh.LinkByName(l.veth); err == nil {
				_ = nh.LinkDel(lk)
			}
			nh.Close()
		}
		h.Close()
	}
	if l.pns.IsOpen() {
		l.pns.Close()
	}
	_ = netns.DeleteNamed(l.local)
	_ = netns.DeleteNamed(l.peer)
}

// peerOutput drops (true) or restores (false) everything the peer sends.
func (l *lab) peerOutput(drop bool) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(l.pns)))
	if err != nil {
		return err
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: "kaprobe_bench"}
	if !drop {
		c.DelTable(tbl)
		return c.Flush()
	}
	c.AddTable(tbl)
	pol := nftables.ChainPolicyDrop
	c.AddChain(&nftables.Chain{Name: "out", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	return c.Flush()
}

// probeRun runs 'keepalive probe' and returns its wall time and verdict counts.
func (l *lab) probeRun(bin string) (time.Duration, map[string]int, time.Duration, error) {
	start := time.Now()
	cmd := exec.Command(bin, "probe", "--json", "--netns", l.local, "--peer", l.peerIP)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	wall := time.Since(start)
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) {
		return wall, nil, 0, fmt.Errorf("keepalive probe: %v: %s", err, errb.String())
	}
	var res struct {
		Summary struct {
			Verdicts map[string]int `json:"verdicts"`
			Elapsed  time.Duration  `json:"elapsed_ns"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return wall, nil, 0, fmt.Errorf("keepalive probe output: %v", err)
	}
	return wall, res.Summary.Verdicts, res.Summary.Elapsed, nil
}

func tcpKeepAlive(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/netstat", pid))
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		if !strings.HasPrefix(lines[i], "TcpExt:") {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, nm := range names {
			if nm == "TCPKeepAlive" && j < len(vals) {
				return strconv.ParseInt(vals[j], 10, 64)
			}
		}
	}
	return 0, errors.New("TcpExt TCPKeepAlive not found")
}

func bench(bin string, n int) error {
	if bin == "" {
		return errors.New("-keepalive PATH is required")
	}
	l, err := setup()
	defer l.cleanup()
	if err != nil {
		return fmt.Errorf("set up namespaces: %w", err)
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr(l.peerIP), 7000).String()
	var procs []*proc
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		for _, p := range procs {
			p.stop()
		}
		mu.Unlock()
	}()
	run := func(args ...string) (*proc, error) {
		p, err := start(args...)
		if err == nil {
			mu.Lock()
			procs = append(procs, p)
			mu.Unlock()
		}
		return p, err
	}
	srv, err := run("-role", "server", "-ns", l.peer, "-addr", addr)
	if err != nil {
		return err
	}
	if _, err := srv.expect("READY", 10*time.Second); err != nil {
		return err
	}
	connect := func() (*proc, error) {
		cl, err := run("-role", "client", "-ns", l.local, "-addr", addr, "-n", strconv.Itoa(n))
		if err != nil {
			return nil, err
		}
		_, err = cl.expect("CONNECTED", 120*time.Second)
		return cl, err
	}
	t0 := time.Now()
	cl, err := connect()
	if err != nil {
		return err
	}
	fmt.Printf("%d idle connections %s -> %s (client and server in separate processes), set up in %v\n", n, l.local, addr, time.Since(t0).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)

	// 1. All alive: keepalive probe.
	wall, v, el, err := l.probeRun(bin)
	if err != nil {
		return err
	}
	fmt.Printf("alive: keepalive probe        wall %7.3f s (probing %6.3f s)  verdicts %v\n", wall.Seconds(), el.Seconds(), v)
	aliveWall := wall

	// Anchor: the kernel's keepalive, idle 1 s interval 1 s, armed now.
	before, err := tcpKeepAlive(cl.cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintln(cl.in, "arm")
	armAt := time.Now()
	if _, err := cl.expect("ARMED", 30*time.Second); err != nil {
		return err
	}
	var anchorAlive time.Duration
	for time.Since(armAt) < 30*time.Second {
		now, err := tcpKeepAlive(cl.cmd.Process.Pid)
		if err != nil {
			return err
		}
		if now-before >= int64(n) {
			anchorAlive = time.Since(armAt)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("alive: kernel keepalive 1s/1s wall %7.3f s until it had probed all %d (TcpExt TCPKeepAlive)\n", anchorAlive.Seconds(), n)
	fmt.Fprintln(cl.in, "disarm")
	if _, err := cl.expect("DISARMED", 30*time.Second); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond) // let the kernel's last probes settle

	// 2. The peer forgets every connection: its output dropped, the server
	// killed (linger 0: RSTs dropped), connectivity restored.
	forget := func(s *proc) error {
		if err := l.peerOutput(true); err != nil {
			return err
		}
		s.stop()
		time.Sleep(200 * time.Millisecond)
		return l.peerOutput(false)
	}
	if err := forget(srv); err != nil {
		return err
	}
	wall, v, el, err = l.probeRun(bin)
	if err != nil {
		return err
	}
	fmt.Printf("reset: keepalive probe        wall %7.3f s (probing %6.3f s)  verdicts %v\n", wall.Seconds(), el.Seconds(), v)
	resetWall := wall
	cl.stop()

	// Anchor: a fresh set, the peer forgets, then the kernel's keepalive
	// (idle 1 s, interval 1 s) is armed and finds the resets.
	srv, err = run("-role", "server", "-ns", l.peer, "-addr", addr)
	if err != nil {
		return err
	}
	if _, err := srv.expect("READY", 10*time.Second); err != nil {
		return err
	}
	cl, err = connect()
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	if err := forget(srv); err != nil {
		return err
	}
	fmt.Fprintln(cl.in, "arm")
	ns, err := cl.expect("ALLRESET", 60*time.Second)
	if err != nil {
		return err
	}
	var maxNs, p50, p99, timedOut int64
	fmt.Sscan(ns, &maxNs, &p50, &p99, &timedOut)
	anchorReset := time.Duration(maxNs)
	fmt.Printf("reset: kernel keepalive 1s/1s wall %7.3f s until all %d owners got ECONNRESET (median %.3f s, p99 %.3f s; %d ETIMEDOUT instead)\n",
		anchorReset.Seconds(), n, time.Duration(p50).Seconds(), time.Duration(p99).Seconds(), timedOut)
	fmt.Printf("ratio (kernel keepalive / keepalive probe): alive %.2fx, reset %.2fx\n",
		anchorAlive.Seconds()/aliveWall.Seconds(), anchorReset.Seconds()/resetWall.Seconds())
	return nil
}
