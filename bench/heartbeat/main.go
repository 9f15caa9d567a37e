//go:build linux

// Command heartbeat-bench measures the cost of application heartbeats on idle loopback
// connections, for one design per process:
//
//	plain       no heartbeats (the reference the others are measured against)
//	floor       the floor: a bare 16-byte ping-pong over the same kind of connections, no
//	            framework: one pacing goroutine with one ticker writes a 16-byte ping on each
//	            client end once per Time, the server end's reader echoes it, the client end's
//	            reader reads it back
//	ours        github.com/keepalive-dev/keepalive/heartbeat (one shared scheduler)
//	ours-noread ours without application readers (each end gets the package's background reader)
//	goroutine   baseline (a): the same wire format with one goroutine and one time.Timer per
//	            connection running gRPC's keepalive loop
//	yamux       baseline (b): a hashicorp/yamux session per connection with keepalive on
//	grpc        grpc-go: one grpc.Server, one grpc.ClientConn per connection with keepalive
//	            ClientParameters{Time, Timeout: 2*Time, PermitWithoutStream} and
//	            ServerParameters{Time: 2*Time, Timeout: 2*Time}
//
// Every mode except ours-noread has one application goroutine per connection end blocked in
// Read (yamux: in Accept; grpc: its own transport readers), as a server or client would. It opens -pairs loopback connection pairs, waits
// -settle for heartbeats to start, measures CPU over -window, then memory after a GC, and
// prints one JSON line.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/keepalive-dev/keepalive/heartbeat"
)

// profile is the -cpuprofile path, set once in main.
var profile string

type result struct {
	Mode        string  `json:"mode"`
	Pairs       int     `json:"pairs"`
	Conns       int     `json:"conns"`
	HeapInuse   uint64  `json:"heap_inuse"`
	StackInuse  uint64  `json:"stack_inuse"`
	RSS         uint64  `json:"rss"`
	Goroutines  int     `json:"goroutines"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	Window      float64 `json:"window_seconds"`
	CPUPercent  float64 `json:"cpu_percent_of_one_core"`
	Pings       uint64  `json:"pings_in_window"`
	PingsEst    bool    `json:"pings_estimated,omitempty"`
	Dead        int     `json:"dead"`
	SetupSecond float64 `json:"setup_seconds"`
}

func main() {
	mode := flag.String("mode", "ours", "plain | floor | ours | ours-noread | goroutine | yamux | grpc")
	pairs := flag.Int("pairs", 9000, "connection pairs (2 descriptors each; a process may hold 20000)")
	hbTime := flag.Duration("time", 10*time.Second, "heartbeat Time (PING after this long without reading)")
	settle := flag.Duration("settle", 12*time.Second, "wait before measuring")
	window := flag.Duration("window", 20*time.Second, "CPU measurement window")
	addr := flag.String("addr", "127.0.0.1", "loopback address to listen on")
	src := flag.String("src", "", "loopback address to dial from (a distinct one per process gives each its own ephemeral port range)")
	label := flag.String("label", "", "name to report instead of the mode (the script uses scale-N for the 100 000-connection run)")
	report := flag.String("report", "", "print the comparison table from a file of JSON result lines and exit")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measurement window to this file")
	flag.Parse()
	profile = *cpuprofile
	if *report != "" {
		if err := printReport(*report); err != nil {
			fmt.Fprintln(os.Stderr, "heartbeat-bench:", err)
			os.Exit(1)
		}
		return
	}
	if *pairs < 1 || *pairs > 9900 {
		fmt.Fprintf(os.Stderr, "-pairs %d is out of range (allowed 1..9900: a process may hold 20000 descriptors)\n", *pairs)
		os.Exit(2)
	}
	r, err := run(*mode, *pairs, *hbTime, *settle, *window, *addr, *src)
	if err != nil {
		fmt.Fprintln(os.Stderr, "heartbeat-bench:", err)
		os.Exit(1)
	}
	if *label != "" {
		r.Mode = *label
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

// endpoint is one wrapped connection end.
type endpoint interface {
	pings() uint64
	dead() bool
}

func run(mode string, pairs int, hbTime, settle, window time.Duration, addr, src string) (result, error) {
	var d net.Dialer
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		return result{}, err
	}
	defer ln.Close()
	if mode == "grpc" {
		return runGRPC(ln, &d, pairs, hbTime, settle, window)
	}
	start := time.Now()
	var eps []endpoint
	var keep []any // keeps plain conns reachable
	var fl *floor
	if mode == "floor" {
		fl = &floor{}
		eps = append(eps, fl)
	}
	for i := 0; i < pairs; i++ {
		cc, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			return result{}, fmt.Errorf("dial pair %d: %w", i, err)
		}
		sc, err := ln.Accept()
		if err != nil {
			return result{}, fmt.Errorf("accept pair %d: %w", i, err)
		}
		for side, nc := range []net.Conn{cc, sc} {
			switch mode {
			case "plain":
				keep = append(keep, nc)
				go appRead(nc)
			case "floor":
				keep = append(keep, nc)
				if side == 0 {
					fl.clients = append(fl.clients, nc)
					go fl.clientRead(nc)
				} else {
					go floorEcho(nc)
				}
			case "ours", "ours-noread":
				var c *heartbeat.Conn
				opts := heartbeat.Options{Time: hbTime, Timeout: 2 * hbTime, PermitWithoutCalls: true}
				if side == 0 {
					c, err = heartbeat.Client(nc, opts)
				} else {
					opts.Time = serverTime(hbTime)
					c, err = heartbeat.Wrap(nc, opts)
				}
				if err != nil {
					return result{}, err
				}
				eps = append(eps, oursEP{c})
				if mode == "ours" {
					go appRead(c)
				}
			case "goroutine":
				t := hbTime
				if side == 1 {
					t = serverTime(hbTime)
				}
				c := newGTConn(nc, t, 2*hbTime)
				eps = append(eps, c)
				go appRead(c)
			case "yamux":
				cfg := yamux.DefaultConfig()
				cfg.EnableKeepAlive = true
				cfg.KeepAliveInterval = hbTime
				cfg.ConnectionWriteTimeout = 2 * hbTime
				cfg.LogOutput = io.Discard
				var s *yamux.Session
				if side == 0 {
					s, err = yamux.Client(nc, cfg)
				} else {
					s, err = yamux.Server(nc, cfg)
				}
				if err != nil {
					return result{}, err
				}
				eps = append(eps, &yamuxEP{s: s})
				go func() { s.Accept() }() // the application waiting for streams
			default:
				return result{}, fmt.Errorf("unknown -mode %q (allowed plain, floor, ours, ours-noread, goroutine, yamux, grpc)", mode)
			}
		}
	}
	setup := time.Since(start)
	if fl != nil {
		stop := make(chan struct{})
		defer close(stop)
		go fl.pace(hbTime, stop)
	}
	time.Sleep(settle)
	return measure(mode, pairs, eps, keep, settle, window, setup)
}

// measure takes the CPU, ping and memory figures of a running mode.
func measure(mode string, pairs int, eps []endpoint, keep any, settle, window, setup time.Duration) (result, error) {
	p0 := totalPings(eps)
	c0 := cpuTime()
	if profile != "" {
		if f, err := os.Create(profile); err == nil {
			pprof.StartCPUProfile(f)
			defer f.Close()
		}
	}
	time.Sleep(window)
	if profile != "" {
		pprof.StopCPUProfile()
	}
	cpu := cpuTime() - c0
	p1 := totalPings(eps)
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	dead := 0
	for _, e := range eps {
		if e.dead() {
			dead++
		}
	}
	runtime.KeepAlive(keep)
	return result{
		Mode: mode, Pairs: pairs, Conns: 2 * pairs,
		HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, RSS: rss(),
		Goroutines: runtime.NumGoroutine(), CPUSeconds: cpu.Seconds(), Window: window.Seconds(),
		CPUPercent: 100 * cpu.Seconds() / window.Seconds(), Pings: p1 - p0, Dead: dead,
		SetupSecond: setup.Seconds(),
	}, nil
}

// serverTime is the accepting side's Time: longer than the client's, as gRPC servers use a
// longer keepalive Time than clients, so that the client does the pinging and the server
// still notices a dead client.
func serverTime(t time.Duration) time.Duration { return 2 * t }

func appRead(c net.Conn) {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func totalPings(eps []endpoint) uint64 {
	var n uint64
	for _, e := range eps {
		n += e.pings()
	}
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

type oursEP struct{ c *heartbeat.Conn }

func (o oursEP) pings() uint64 { return o.c.Stats().PingsSent }
func (o oursEP) dead() bool    { return o.c.Err() != nil }

type yamuxEP struct{ s *yamux.Session }

func (y *yamuxEP) pings() uint64 { return 0 } // yamux does not count its keepalive pings
func (y *yamuxEP) dead() bool    { return y.s.IsClosed() }

// gtConn is baseline (a): heartbeat frames in the same wire format as the heartbeat package,
// driven by one goroutine and one time.Timer per connection running gRPC-go's keepalive loop
// (internal/transport/http2_client.go keepalive()): after Time without reading, PING; dead
// when nothing is read within Timeout after it. The reader answers PINGs inline (gRPC hands
// them to its writer goroutine; inline is cheaper, in the baseline's favour).
type gtConn struct {
	nc       net.Conn
	time     time.Duration
	timeout  time.Duration
	lastRead atomic.Int64
	sent     atomic.Uint64
	isDead   atomic.Bool
	done     chan struct{}
	closeMu  sync.Once
	wmu      sync.Mutex
	hdr      [4]byte
	ctl      [16]byte
	wbuf     [20]byte
	left     int
}

func newGTConn(nc net.Conn, t, to time.Duration) *gtConn {
	c := &gtConn{nc: nc, time: t, timeout: to, done: make(chan struct{})}
	c.lastRead.Store(time.Now().UnixNano())
	go c.keepalive()
	return c
}

func (c *gtConn) pings() uint64 { return c.sent.Load() }
func (c *gtConn) dead() bool    { return c.isDead.Load() }

// keepalive mirrors gRPC-go's http2Client.keepalive loop.
func (c *gtConn) keepalive() {
	outstanding := false
	var timeoutLeft time.Duration
	prevNano := time.Now().UnixNano()
	timer := time.NewTimer(c.time)
	var seq uint64
	for {
		select {
		case <-timer.C:
			lastRead := c.lastRead.Load()
			if lastRead > prevNano {
				outstanding = false
				timer.Reset(time.Duration(lastRead) + c.time - time.Duration(time.Now().UnixNano()))
				prevNano = lastRead
				continue
			}
			if outstanding && timeoutLeft <= 0 {
				c.isDead.Store(true)
				c.Close()
				return
			}
			if !outstanding {
				seq++
				c.write(1, seq, time.Now().UnixNano())
				c.sent.Add(1)
				timeoutLeft = c.timeout
				outstanding = true
			}
			sleep := min(c.time, timeoutLeft)
			timeoutLeft -= sleep
			timer.Reset(sleep)
		case <-c.done:
			timer.Stop()
			return
		}
	}
}

func (c *gtConn) write(typ byte, id uint64, ts int64) {
	c.wmu.Lock()
	c.wbuf[0], c.wbuf[1], c.wbuf[2], c.wbuf[3] = heartbeat.Version, typ, 0, 16
	binary.BigEndian.PutUint64(c.wbuf[4:], id)
	binary.BigEndian.PutUint64(c.wbuf[12:], uint64(ts))
	c.nc.Write(c.wbuf[:])
	c.wmu.Unlock()
}

func (c *gtConn) Read(p []byte) (int, error) {
	for {
		if c.left > 0 {
			n, err := c.nc.Read(p[:min(len(p), c.left)])
			if n > 0 {
				c.lastRead.Store(time.Now().UnixNano())
				c.left -= n
			}
			return n, err
		}
		if _, err := io.ReadFull(c.nc, c.hdr[:]); err != nil {
			return 0, err
		}
		c.lastRead.Store(time.Now().UnixNano())
		n := int(binary.BigEndian.Uint16(c.hdr[2:]))
		switch c.hdr[1] {
		case 0:
			c.left = n
		case 1, 2:
			if _, err := io.ReadFull(c.nc, c.ctl[:]); err != nil {
				return 0, err
			}
			if c.hdr[1] == 1 {
				c.write(2, binary.BigEndian.Uint64(c.ctl[:8]), int64(binary.BigEndian.Uint64(c.ctl[8:])))
			}
		default:
			return 0, fmt.Errorf("frame type %d", c.hdr[1])
		}
	}
}

func (c *gtConn) Write(p []byte) (int, error) { return 0, fmt.Errorf("not used") }
func (c *gtConn) Close() error {
	c.closeMu.Do(func() { close(c.done) })
	return c.nc.Close()
}
func (c *gtConn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *gtConn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *gtConn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *gtConn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *gtConn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// printReport reads result lines and prints per-connection costs against the plain run.
func printReport(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	byMode := map[string]result{}
	var scale []result
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			return fmt.Errorf("bad result line %q: %w", l, err)
		}
		if strings.HasPrefix(r.Mode, "scale-") {
			scale = append(scale, r)
			continue
		}
		byMode[r.Mode] = r
	}
	plain, ok := byMode["plain"]
	if !ok {
		return fmt.Errorf("no plain run in %s", path)
	}
	// Per connection, against plain's per-connection figure (runs may differ in size: grpc).
	per := func(v uint64, r result) float64 { return float64(v) / float64(r.Conns) }
	perConn := func(r result) (gomem, rssb float64) {
		return per(r.HeapInuse+r.StackInuse, r) - per(plain.HeapInuse+plain.StackInuse, plain),
			per(r.RSS, r) - per(plain.RSS, plain)
	}
	cpuPerConn := func(r result) float64 { return r.CPUPercent / float64(r.Conns) }
	fmt.Printf("%d connection pairs (%d connections) per process, idle, loopback; heartbeat cost per connection = (mode - plain) / connections\n\n", plain.Pairs, plain.Conns)
	fmt.Printf("%-11s %6s %12s %13s %11s %11s %9s %9s %11s %5s\n", "mode", "conns", "heap B/conn", "stacks B/conn", "RSS B/conn", "goroutines", "CPU %core", "pings/s", "CPU us/ping", "dead")
	for _, m := range []string{"plain", "floor", "ours", "ours-noread", "goroutine", "yamux", "grpc"} {
		r, ok := byMode[m]
		if !ok {
			continue
		}
		heap := per(r.HeapInuse, r) - per(plain.HeapInuse, plain)
		stk := per(r.StackInuse, r) - per(plain.StackInuse, plain)
		_, rs := perConn(r)
		pings, perPing := "-", "-"
		if m != "plain" && m != "yamux" && r.Pings > 0 {
			pings = fmt.Sprintf("%.0f", float64(r.Pings)/r.Window)
			perPing = fmt.Sprintf("%.1f", r.CPUSeconds*1e6/float64(r.Pings))
			if r.PingsEst {
				pings += "~"
			}
		}
		fmt.Printf("%-11s %6d %12.0f %13.0f %11.0f %11d %9.2f %9s %11s %5d\n", m, r.Conns, heap, stk, rs, r.Goroutines, r.CPUPercent, pings, perPing, r.Dead)
	}
	if ours, ok := byMode["ours"]; ok {
		om, orss := perConn(ours)
		fmt.Println()
		for _, m := range []string{"goroutine", "yamux", "grpc"} {
			if r, ok := byMode[m]; ok {
				gm, grss := perConn(r)
				fmt.Printf("ratio %s / ours per connection: Go memory (heap+stacks) %.1fx, RSS %.1fx, goroutines %.1fx, CPU %.1fx", m, gm/om, grss/orss,
					per(uint64(r.Goroutines), r)/per(uint64(ours.Goroutines), ours), cpuPerConn(r)/cpuPerConn(ours))
				if r.Pings > 0 && ours.Pings > 0 {
					fmt.Printf(", CPU per PING round trip %.1fx", (r.CPUSeconds/float64(r.Pings))/(ours.CPUSeconds/float64(ours.Pings)))
				}
				fmt.Println()
			}
		}
	}
	if ours, ok := byMode["ours"]; ok {
		if f, ok := byMode["floor"]; ok && f.Pings > 0 && ours.Pings > 0 {
			fmt.Printf("ratio ours / floor: CPU per PING round trip %.2fx (%.1f us against %.1f us), CPU %.2fx\n",
				(ours.CPUSeconds/float64(ours.Pings))/(f.CPUSeconds/float64(f.Pings)),
				ours.CPUSeconds*1e6/float64(ours.Pings), f.CPUSeconds*1e6/float64(f.Pings), ours.CPUPercent/f.CPUPercent)
		}
	}
	if len(scale) > 0 {
		var conns, rssSum, dead int
		var cpu float64
		for _, r := range scale {
			conns += r.Conns
			rssSum += int(r.RSS)
			dead += r.Dead
			cpu += r.CPUPercent
		}
		var pings uint64
		var window float64
		for _, r := range scale {
			pings += r.Pings
			window = r.Window
		}
		fmt.Printf("\nscale: %d processes at once, %d connections with heartbeats (ours): total RSS %.0f MiB (%.0f B/conn, everything included), CPU %.2f %% of one core in total, %.0f PINGs/s, %d dead\n",
			len(scale), conns, float64(rssSum)/(1<<20), float64(rssSum)/float64(conns), cpu, float64(pings)/window, dead)
	}
	return nil
}
