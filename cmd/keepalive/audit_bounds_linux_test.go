//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

// TestAuditWithoutRootShowsBounds runs the built binary as nobody (no pidfd access to the
// test's sockets) against sockets with known settings, in a namespace whose sysctls are the
// kernel defaults (7200/75/9). Every keepalive shown must be a bound the true settings
// satisfy, never a sysctl default, and verdicts resting on bounds must say so.
func TestAuditWithoutRootShowsBounds(t *testing.T) {
	nstest.Require(t)
	bin, err := probeTestBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(bin), filepath.Dir(filepath.Dir(bin))} {
		if err := os.Chmod(d, 0o755); err != nil { // let nobody reach the binary
			t.Fatal(err)
		}
	}
	pair := nstest.NewPair(t, "kaaudb", 77)
	var ln net.Listener
	pair.B.Do(t, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(pair.BIP.String(), "0"))
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	type want struct {
		on          bool
		idle, intvl time.Duration
		cnt         int
	}
	settings := []want{
		{true, 60 * time.Second, 10 * time.Second, 5}, // the case: shown as ~14s/75s/9 before
		{false, 0, 0, 0},
		{true, time.Second, 2 * time.Second, 5}, // probes go out once the peer is black-holed
	}
	byPort := map[string]want{}
	pair.A.Do(t, func() error {
		for _, s := range settings {
			d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
			if s.on {
				rc, _ := c.(*net.TCPConn).SyscallConn()
				var serr error
				_ = rc.Control(func(fd uintptr) {
					for _, o := range []struct{ level, opt, v int }{
						{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(s.idle / time.Second)},
						{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(s.intvl / time.Second)},
						{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, s.cnt},
						{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
					} {
						serr = errors.Join(serr, unix.SetsockoptInt(int(fd), o.level, o.opt, o.v))
					}
				})
				if serr != nil {
					return serr
				}
			}
			_, port, _ := net.SplitHostPort(c.LocalAddr().String())
			byPort[port] = s
		}
		return nil
	})
	pair.B.BlackHole(t)
	time.Sleep(3500 * time.Millisecond) // the third socket has sent 2 probes by now

	runAsNobody := func(args ...string) (string, string) {
		t.Helper()
		var o, e bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &o, &e
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		err := pair.A.Run(cmd.Run)
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return o.String(), e.String()
	}
	out, errOut := runAsNobody("audit", "--json", "--middlebox-timeout", "30s", "--port", portOf(ln.Addr()))
	var res struct {
		Connections []struct {
			Local     string `json:"local"`
			Keepalive struct {
				Source   string `json:"source"`
				Enabled  *bool  `json:"enabled"`
				IdleMS   *int64 `json:"idle_ms"`
				Interval *int64 `json:"interval_ms"`
				Count    *int   `json:"count"`
				Bounds   *struct {
					RefreshMin  int64 `json:"refresh_min_ms"`
					IntervalMin int64 `json:"interval_min_ms"`
					IdleMax     int64 `json:"idle_max_ms"`
					CountMin    int   `json:"count_min"`
				} `json:"bounds"`
			} `json:"keepalive"`
			Risk    string `json:"risk"`
			Verdict string `json:"verdict"`
		} `json:"connections"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s\n%s", err, out, errOut)
	}
	seen := 0
	for _, c := range res.Connections {
		_, port, _ := net.SplitHostPort(c.Local)
		w, ok := byPort[port]
		if !ok {
			continue // the listener's side
		}
		seen++
		k := c.Keepalive
		t.Logf("%s (true %v/%v/%d on=%v): %+v bounds %+v; %s: %s", c.Local, w.idle, w.intvl, w.cnt, w.on, k, k.Bounds, c.Risk, c.Verdict)
		if k.Source != "inferred" || k.Enabled == nil || *k.Enabled != w.on {
			t.Errorf("%s: keepalive %+v, want inferred enabled=%v", c.Local, k, w.on)
			continue
		}
		if !w.on {
			continue
		}
		if k.IdleMS != nil || k.Interval != nil || k.Count != nil {
			t.Errorf("%s: values shown as exact (idle %v, interval %v, count %v) though only bounds are known", c.Local, k.IdleMS, k.Interval, k.Count)
		}
		b := k.Bounds
		if b == nil {
			t.Errorf("%s: no bounds", c.Local)
			continue
		}
		ms := func(d time.Duration) int64 { return d.Milliseconds() }
		if b.RefreshMin > ms(max(w.idle, w.intvl)) || b.RefreshMin < 1000 {
			t.Errorf("%s: refresh_min %d ms but max(idle, interval) is %v", c.Local, b.RefreshMin, max(w.idle, w.intvl))
		}
		if b.IntervalMin > ms(w.intvl) || (b.IdleMax != 0 && b.IdleMax < ms(w.idle)) || b.CountMin > w.cnt {
			t.Errorf("%s: bounds %+v violated by the true settings %v/%v/%d", c.Local, *b, w.idle, w.intvl, w.cnt)
		}
		switch w.idle {
		case 60 * time.Second: // no probe yet: only the refresh bound, and it proves the middlebox risk
			if b.RefreshMin < 50000 || b.IntervalMin != 0 || c.Risk != "middlebox" || !strings.Contains(c.Verdict, "on bounds") {
				t.Errorf("%s: %+v, risk %s %q; want refresh ≥ 50 s, a middlebox risk on bounds", c.Local, *b, c.Risk, c.Verdict)
			}
		case time.Second: // probes out: interval and idle bounded, count ≥ probes
			if b.IntervalMin < 1000 || b.IdleMax == 0 || b.CountMin < 1 || c.Risk == "middlebox" {
				t.Errorf("%s: %+v, risk %s; want interval, idle and count bounds and no middlebox risk claimed", c.Local, *b, c.Risk)
			}
		}
	}
	if seen != len(settings) {
		t.Fatalf("%d of %d sockets in the audit\n%s", seen, len(settings), out)
	}

	// The table: bounds notation, no sysctl default presented as the socket's.
	out, _ = runAsNobody("audit", "--port", portOf(ln.Addr()))
	t.Logf("audit as nobody:\n%s", out)
	if !regexp.MustCompile(`~on idle\|intvl≥\d+s`).MatchString(out) || !regexp.MustCompile(`~idle≤\d+s intvl≥\d+s cnt≥\d+`).MatchString(out) {
		t.Errorf("bounds notation missing:\n%s", out)
	}
	if strings.Contains(out, "/75s/") || strings.Contains(out, "7200s") || strings.Contains(out, "/9 ") {
		t.Errorf("a sysctl default shown as a socket's setting:\n%s", out)
	}
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return fmt.Sprint(p)
}
