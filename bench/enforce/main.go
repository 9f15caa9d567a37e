//go:build linux

// Command enforce-bench measures 'keepalive enforce' side by side with its anchors, in one
// run: the loopback connection setup rate (connect + accept, both ends in the cgroup) with
// and without the programs attached, and the unprotected window of a new connection with
// enforce (checked right after connect() returns) against 'keepalive enable --watch 1s'
// (measured: the time until the connection's own getsockopt shows the policy). Run it through
// bench/enforce.sh as root. Everything it creates (a private bpffs, two cgroups) is removed
// at the end.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/enforce"
	"golang.org/x/sys/unix"
)

var policy = keepalive.Config{Idle: 7 * time.Second, Interval: 3 * time.Second, Count: 4, UserTimeout: 19 * time.Second}

func main() {
	role := flag.String("role", "bench", "bench | loop (internal)")
	n := flag.Int("n", 10000, "connections per setup-rate round")
	rounds := flag.Int("rounds", 5, "setup-rate rounds per variant (interleaved)")
	kind := flag.String("kind", "raw", "loop: raw (system calls) or go (net.Dial/Accept with Go's default keepalive)")
	window := flag.Int("window", 100, "connections for the unprotected-window measurement")
	bin := flag.String("keepalive", "", "path to the keepalive binary (bench)")
	flag.Parse()
	var err error
	switch *role {
	case "loop":
		err = loop(*kind, *n)
	default:
		err = bench(*bin, *n, *rounds, *window)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "enforce-bench:", err)
		os.Exit(1)
	}
}

// loop makes n loopback connections one after the other (connect, accept, close with RST so
// no TIME-WAIT piles up) and prints the rate.
func loop(kind string, n int) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().String()
	tl := ln.(*net.TCPListener)
	start := time.Now()
	switch kind {
	case "go":
		for range n {
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				return err
			}
			a, err := tl.AcceptTCP()
			if err != nil {
				return err
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			a.Close()
		}
	default:
		rc, err := tl.SyscallConn()
		if err != nil {
			return err
		}
		var lfd int
		rc.Control(func(fd uintptr) { lfd = int(fd) })
		unix.SetNonblock(lfd, false)
		ap := ln.Addr().(*net.TCPAddr)
		sa := &unix.SockaddrInet4{Port: ap.Port, Addr: [4]byte{127, 0, 0, 1}}
		for range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			if err := unix.Connect(fd, sa); err != nil {
				return err
			}
			afd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if err != nil {
				return err
			}
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			unix.Close(fd)
			unix.Close(afd)
		}
	}
	el := time.Since(start)
	fmt.Printf("%.0f\n", float64(n)/el.Seconds())
	return nil
}

// runLoop runs the loop role inside cgroup abs and returns its rate (connections/s) and the
// CPU time (user + system) it used per connection, which a busy machine disturbs less.
func runLoop(abs, kind string, n int) (float64, float64, error) {
	cg, err := os.Open(abs)
	if err != nil {
		return 0, 0, err
	}
	defer cg.Close()
	self, _ := os.Executable()
	cmd := exec.Command(self, "-role", "loop", "-kind", kind, "-n", strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("loop: %w", err)
	}
	rate, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() * 1e6 / float64(n)
	return rate, cpu, err
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func bench(bin string, n, rounds, window int) error {
	if bin == "" {
		return errors.New("-keepalive BINARY is required")
	}
	if n < 1 || n > 200000 || rounds < 1 || rounds > 50 || window < 1 || window > 2000 {
		return errors.New("-n 1..200000, -rounds 1..50, -window 1..2000")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A private BPF filesystem: nothing is left behind, and the host's pins are not touched.
	bpffs, err := os.MkdirTemp("", "enforce-bench-bpffs")
	if err != nil {
		return err
	}
	defer os.Remove(bpffs)
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs: %w", err)
	}
	defer unix.Unmount(bpffs, unix.MNT_DETACH)
	mnt, err := enforce.Cgroup2Mount()
	if err != nil {
		return err
	}
	cgs := map[string]string{}
	for _, v := range []string{"off", "default", "enforce"} {
		rel := fmt.Sprintf("/keepalive-enforce-bench-%d-%s", os.Getpid(), v)
		abs := filepath.Join(mnt, rel)
		if err := os.Mkdir(abs, 0o755); err != nil {
			return err
		}
		defer os.Remove(abs)
		cgs[v] = rel
	}
	h, err := enforce.Open(enforce.Options{PinDir: filepath.Join(bpffs, "keepalive")})
	if err != nil {
		return err
	}
	defer h.Close()
	for _, v := range []string{"default", "enforce"} {
		mode := enforce.ModeDefault
		if v == "enforce" {
			mode = enforce.ModeEnforce
		}
		if _, err := h.Attach(enforce.AttachRequest{Cgroup: cgs[v], Rule: enforce.Rule{Config: policy, Mode: mode}}); err != nil {
			return err
		}
		defer h.Detach(cgs[v], nil, "", true)
	}

	fmt.Printf("connection setup rate: %d rounds × %d connect+accept on 127.0.0.1, both ends in the cgroup, variants interleaved\n", rounds, n)
	for _, kind := range []string{"raw", "go"} {
		rates, cpus := map[string][]float64{}, map[string][]float64{}
		for r := 0; r < rounds; r++ {
			for _, v := range []string{"off", "default", "enforce"} {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				rate, cpu, err := runLoop(filepath.Join(mnt, cgs[v]), kind, n)
				if err != nil {
					return err
				}
				rates[v] = append(rates[v], rate)
				cpus[v] = append(cpus[v], cpu)
			}
		}
		off, offCPU := median(rates["off"]), median(cpus["off"])
		for _, v := range []string{"off", "default", "enforce"} {
			m, c := median(rates[v]), median(cpus[v])
			fmt.Printf("  %-4s %-8s median %8.0f conn/s (rounds: %s), ratio %.3f×;  CPU %5.1f µs/conn, rate per CPU ratio %.3f×\n",
				kind, v, m, fmtRates(rates[v]), m/off, c, offCPU/c)
		}
	}
	atts, err := h.List()
	if err == nil {
		for _, a := range atts {
			fmt.Printf("  counters %s: seen %d, set %d, rewritten %d, failures %d\n", a.Cgroup, a.Counters.Seen, a.Counters.Set, a.Counters.Rewritten, len(a.Counters.Failures))
		}
	}

	// Unprotected window, enforce: the connection's own getsockopt right after connect().
	fmt.Printf("\nunprotected window of a new connection (%d connections)\n", window)
	prot, err := windowEnforce(filepath.Join(mnt, cgs["default"]), window)
	if err != nil {
		return err
	}
	fmt.Printf("  enforce:              %d/%d connections had the policy when connect() returned: window 0\n", prot, window)
	ws, err := windowWatch(ctx, bin, window)
	if err != nil {
		return err
	}
	slices.Sort(ws)
	q := func(p float64) time.Duration { return ws[int(p*float64(len(ws)-1))] }
	var sum time.Duration
	for _, w := range ws {
		sum += w
	}
	fmt.Printf("  enable --watch 1s:    min %v  p50 %v  p90 %v  p99 %v  max %v  mean %v\n",
		q(0).Round(time.Millisecond), q(0.5).Round(time.Millisecond), q(0.9).Round(time.Millisecond), q(0.99).Round(time.Millisecond),
		q(1).Round(time.Millisecond), (sum / time.Duration(len(ws))).Round(time.Millisecond))
	return nil
}

func fmtRates(rs []float64) string {
	var s []string
	for _, r := range rs {
		s = append(s, strconv.FormatFloat(r, 'f', 0, 64))
	}
	return strings.Join(s, " ")
}

// windowEnforce connects window times from a process in the attached cgroup and counts the
// connections whose getsockopt right after connect() shows the policy.
func windowEnforce(abs string, window int) (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cg, err := os.Open(abs)
	if err != nil {
		return 0, err
	}
	defer cg.Close()
	py := fmt.Sprintf(`
import socket
ok = 0
for i in range(%d):
    s = socket.create_connection(("127.0.0.1", %d), timeout=10)
    v = (s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), s.getsockopt(6, 4), s.getsockopt(6, 5), s.getsockopt(6, 6), s.getsockopt(6, 18))
    ok += v == (1, %d, %d, %d, %d)
    s.close()
print(ok)
`, window, ln.Addr().(*net.TCPAddr).Port, int(policy.Idle/time.Second), int(policy.Interval/time.Second), policy.Count, policy.UserTimeout.Milliseconds())
	cmd := exec.Command("python3", "-c", py)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("python client: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// windowWatch runs 'keepalive enable --watch 1s' on a listener's port, opens window
// connections at random moments, and measures for each how long until its own getsockopt
// shows the policy (polled every 2 ms).
func windowWatch(ctx context.Context, bin string, window int) ([]time.Duration, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	wctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(wctx, bin, "enable", "--port", strconv.Itoa(port), "--idle", "7", "--interval", "3", "--count", "4",
		"--user-timeout", "19s", "--watch", "1s", "--json")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	defer func() {
		cancel() // interrupts enable --watch
		cmd.Wait()
	}()
	go func() { // drain the rounds' JSON
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
		}
	}()
	time.Sleep(1500 * time.Millisecond) // let the watch settle into its rhythm
	d := net.Dialer{KeepAlive: -1}
	var out []time.Duration
	for i := 0; i < window; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(time.Duration(rand.IntN(700)) * time.Millisecond)
		c, err := d.DialContext(ctx, "tcp4", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		tc := c.(*net.TCPConn)
		deadline := t0.Add(5 * time.Second)
		for {
			s, err := keepalive.Get(tc)
			if err == nil && s.Enabled && s.Idle == policy.Idle && s.UserTimeout == policy.UserTimeout {
				out = append(out, time.Since(t0))
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("connection %d (%s) not protected by enable --watch within 5 s: %s %v", i, c.LocalAddr(), s, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		c.Close()
	}
	return out, nil
}
