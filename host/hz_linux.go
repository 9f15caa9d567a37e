//go:build linux

package host

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"golang.org/x/sys/unix"
)

// DetectTimers learns the kernel's CONFIG_HZ and RTO bounds.
//
// HZ comes from /proc/config.gz (CONFIG_IKCONFIG_PROC), else /boot/config-$(uname -r) (absent
// in most containers), else it is inferred from the kernel itself: idiag_expires of a
// loopback socket's keepalive timer (sock_diag, in ms) falls in steps of one jiffy, 1000/HZ
// ms. `getconf CLK_TCK` is USER_HZ (always 100), not HZ. When nothing works HZ is 0 and the
// source says the model assumes keepalive.DefaultHZ (100, the coarsest common value).
//
// The RTO bounds are net.ipv4.tcp_rto_min_us and net.ipv4.tcp_rto_max_ms of the current
// network namespace (Linux 6.x; older kernels use the fixed 200 ms and 120 s).
func DetectTimers(ctx context.Context) Timers {
	var t Timers
	t.HZ, t.HZSource = detectHZ(ctx)
	var srcs []string
	if v, err := readSysctlInt("net/ipv4/tcp_rto_min_us"); err == nil && v > 0 {
		t.RTOMin = time.Duration(v) * time.Microsecond
		srcs = append(srcs, "net.ipv4.tcp_rto_min_us")
	}
	if v, err := readSysctlInt("net/ipv4/tcp_rto_max_ms"); err == nil && v > 0 {
		t.RTOMax = time.Duration(v) * time.Millisecond
		srcs = append(srcs, "net.ipv4.tcp_rto_max_ms")
	}
	if len(srcs) > 0 {
		t.RTOSource = strings.Join(srcs, ", ")
	} else {
		t.RTOSource = "no tcp_rto_min_us/tcp_rto_max_ms sysctls: fixed 200ms and 120s"
	}
	return t
}

func readSysctlInt(name string) (int64, error) {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func detectHZ(ctx context.Context) (int, string) {
	if hz, err := hzFromConfig("/proc/config.gz", true); err == nil {
		return hz, "/proc/config.gz"
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		p := "/boot/config-" + unix.ByteSliceToString(u.Release[:])
		if hz, err := hzFromConfig(p, false); err == nil {
			return hz, p
		}
	}
	if hz, err := InferHZ(ctx); err == nil {
		return hz, "idiag_expires steps on a loopback socket"
	}
	return 0, fmt.Sprintf("unknown: assumed %d, the coarsest common value", keepalive.DefaultHZ)
}

// hzFromConfig reads CONFIG_HZ=N from a kernel config file.
func hzFromConfig(path string, gz bool) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if gz {
		z, err := gzip.NewReader(f)
		if err != nil {
			return 0, err
		}
		defer z.Close()
		r = z
	}
	return ParseKernelConfigHZ(r)
}

// ParseKernelConfigHZ finds CONFIG_HZ=N in a kernel configuration (bounded to 16 MiB).
func ParseKernelConfigHZ(r io.Reader) (int, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 16<<20))
	for sc.Scan() {
		l := sc.Text()
		if v, ok := strings.CutPrefix(l, "CONFIG_HZ="); ok {
			hz, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || hz < 10 || hz > 10000 {
				return 0, fmt.Errorf("host: CONFIG_HZ=%q not a tick rate (allowed: 10..10000)", v)
			}
			return hz, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("host: no CONFIG_HZ line")
}

// InferHZ measures HZ from the kernel: it opens a loopback connection with a keepalive timer
// and samples idiag_expires (ms, derived from jiffies) for about 150 ms; the smallest step
// between the distinct values seen is one jiffy.
func InferHZ(ctx context.Context) (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("host: infer HZ: %w", err)
	}
	defer ln.Close()
	d := net.Dialer{KeepAlive: -1, Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, fmt.Errorf("host: infer HZ: %w", err)
	}
	defer c.Close()
	if err := keepalive.Apply(c.(*net.TCPConn), keepalive.Config{Idle: 1000 * time.Second}); err != nil {
		return 0, fmt.Errorf("host: infer HZ: %w", err)
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	seen := map[time.Duration]bool{}
	// Sample until enough distinct values are seen (a busy machine samples less often, so
	// allow up to a second): the gaps between them are whole jiffies.
	deadline := time.Now().Add(time.Second)
	for i := 0; i < 2000 && len(seen) < 60 && time.Now().Before(deadline); i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		ss, err := List(ctx, ListOptions{Selector: Selector{Ports: []uint16{local.Port()}}, NoInfo: true})
		if err != nil {
			return 0, fmt.Errorf("host: infer HZ: %w", err)
		}
		for _, s := range ss {
			if s.Local == local && s.Timer == TimerKeepalive {
				seen[s.TimerExpires] = true
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
	return hzFromSteps(seen)
}

// hzFromSteps turns distinct idiag_expires values (whole milliseconds) into HZ. Their gaps
// are whole jiffies: multiples of 1 ms at HZ 1000, of 4 ms at 250, of 10 ms at 100, and 3 or
// 4 ms (jiffies_to_msecs rounding) at 300. On a busy machine samples are sparser and the
// smallest gap may span several jiffies, so the greatest common divisor of the gaps decides,
// not the smallest gap alone.
func hzFromSteps(seen map[time.Duration]bool) (int, error) {
	var vs []int64
	for v := range seen {
		vs = append(vs, v.Milliseconds())
	}
	if len(vs) < 4 {
		return 0, fmt.Errorf("host: infer HZ: only %d distinct timer values seen", len(vs))
	}
	slices.Sort(vs)
	var g, minGap int64
	for i := 1; i < len(vs); i++ {
		d := vs[i] - vs[i-1]
		if d <= 0 {
			continue
		}
		if minGap == 0 || d < minGap {
			minGap = d
		}
		a, b := g, d
		for b != 0 {
			a, b = b, a%b
		}
		g = a
	}
	switch {
	case g == 0:
		return 0, fmt.Errorf("host: infer HZ: no step between %d timer values", len(vs))
	case minGap <= 2:
		return 1000, nil
	case g%10 == 0:
		return 100, nil
	case g%4 == 0:
		return 250, nil
	case g == 1 && minGap >= 3:
		return 300, nil
	}
	return 0, fmt.Errorf("host: infer HZ: timer values step by multiples of %d ms, which matches no usual HZ (100, 250, 300, 1000)", g)
}
