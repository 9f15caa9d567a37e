package host

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// TestDeepReadRTOMax sets TCP_RTO_MAX_MS on a loopback connection of this process and checks
// that a deep List reads it back through the owner's descriptor (Linux 6.15+).
func TestDeepReadRTOMax(t *testing.T) {
	nstest.Need(t, os.Geteuid() == 0, "root (reading another descriptor through pidfd_getfd)")
	probe, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, gerr := unix.GetsockoptInt(probe, unix.IPPROTO_TCP, tcpRTOMaxMS)
	unix.Close(probe)
	nstest.Need(t, gerr == nil, "a kernel with TCP_RTO_MAX_MS (Linux 6.15+)")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpRTOMaxMS, 3000) }); err != nil || serr != nil {
		t.Fatalf("setsockopt TCP_RTO_MAX_MS: %v %v", err, serr)
	}
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	socks, err := List(context.Background(), ListOptions{Selector: Selector{Ports: []uint16{local.Port()}}, Owners: true, Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if s.Local == local {
			if s.Settings == nil {
				t.Fatalf("deep read failed: %v", s.SettingsErr)
			}
			if s.RTOMax != 3*time.Second {
				t.Fatalf("RTOMax = %v, want 3s", s.RTOMax)
			}
			return
		}
	}
	t.Fatalf("client socket %s not listed", local)
}

// TestReadSysctlRTOBounds checks ReadSysctl against /proc/sys for the RTO bounds.
func TestReadSysctlRTOBounds(t *testing.T) {
	minUS, err1 := os.ReadFile("/proc/sys/net/ipv4/tcp_rto_min_us")
	maxMS, err2 := os.ReadFile("/proc/sys/net/ipv4/tcp_rto_max_ms")
	nstest.Need(t, err1 == nil && err2 == nil, "a kernel with net.ipv4.tcp_rto_min_us and tcp_rto_max_ms (Linux 6.x)")
	s, err := ReadSysctl("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.RTOMin.Microseconds(), atoi(t, minUS); got != want {
		t.Errorf("RTOMin %dµs, /proc says %d", got, want)
	}
	if got, want := s.RTOMax.Milliseconds(), atoi(t, maxMS); got != want {
		t.Errorf("RTOMax %dms, /proc says %d", got, want)
	}
}

func atoi(t *testing.T, b []byte) int64 {
	t.Helper()
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
