//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// probeTestBinary builds the keepalive binary into the test's temporary
// directory (removed with it).
func probeTestBinary(t *testing.T) (string, error) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keepalive")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

func probeTestRun(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var err error
	if err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// probeTestNet: namespace L (the test's clients) and P (servers) joined by a veth.
type probeTestNet struct {
	local, peer string
	lns, pns    netns.NsHandle
	peerIP      netip.Addr
}

func probeTestNS(name string) (netns.NsHandle, error) { return netnsx.NewNamed(name) }

func probeTestIn(ns netns.NsHandle, fn func() error) error { return netnsx.Do(ns, fn) }

func newProbeTestNet(t *testing.T) *probeTestNet {
	t.Helper()
	nstest.Need(t, os.Geteuid() == 0, "keepalive probe tests need root (namespaces, raw sockets)")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	suf := hex.EncodeToString(b)
	n := 1 + int(b[0])%250
	tn := &probeTestNet{local: "kaprobe-cl-" + suf, peer: "kaprobe-cp-" + suf, peerIP: netip.MustParseAddr(fmt.Sprintf("10.200.%d.2", n))}
	var err error
	if tn.lns, err = probeTestNS(tn.local); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tn.lns.Close(); _ = netns.DeleteNamed(tn.local) })
	if tn.pns, err = probeTestNS(tn.peer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tn.pns.Close(); _ = netns.DeleteNamed(tn.peer) })
	lh, err := netlink.NewHandleAt(tn.lns)
	if err != nil {
		t.Fatal(err)
	}
	defer lh.Close()
	ph, err := netlink.NewHandleAt(tn.pns)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	a, bn := "kaprobe"+suf+"c", "kaprobe"+suf+"d"
	if err := lh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: bn, PeerNamespace: netlink.NsFd(tn.pns)}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		h    *netlink.Handle
		name string
		ip   string
	}{{lh, a, fmt.Sprintf("10.200.%d.1/24", n)}, {ph, bn, fmt.Sprintf("10.200.%d.2/24", n)}} {
		l, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(x.ip)
		if err := x.h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		lo, _ := x.h.LinkByName("lo")
		_ = x.h.LinkSetUp(lo)
	}
	return tn
}

// conns opens n connections from L to a listener in P; returns the client ends.
func (tn *probeTestNet) conns(t *testing.T, n int) []net.Conn {
	t.Helper()
	var ln net.Listener
	if err := probeTestIn(tn.pns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(tn.peerIP, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var servers []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			servers = append(servers, c)
			mu.Unlock()
		}
	}()
	var cl []net.Conn
	if err := probeTestIn(tn.lns, func() error {
		for range n {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				return err
			}
			cl = append(cl, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range cl {
			c.Close()
		}
		mu.Lock()
		for _, c := range servers {
			c.Close()
		}
		mu.Unlock()
	})
	return cl
}

func (tn *probeTestNet) blackHole(t *testing.T) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(tn.pns)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "kaprobe"})
	drop := nftables.ChainPolicyDrop
	c.AddChain(&nftables.Chain{Name: "in", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DelTable(tbl); _ = c.Flush() })
}

type probeTestOut struct {
	Connections []struct {
		Verdict  string `json:"verdict"`
		Evidence string `json:"evidence"`
		Probes   int    `json:"probes"`
		RTT      int64  `json:"rtt_ns"`
		Reaped   string `json:"reaped"`
		Flow     struct {
			Local, Remote string
		} `json:"flow"`
	} `json:"connections"`
	Summary struct {
		Connections int            `json:"connections"`
		Verdicts    map[string]int `json:"verdicts"`
		Reaped      int            `json:"reaped"`
		WouldReap   int            `json:"would_reap"`
	} `json:"summary"`
}

func TestProbeCommandAliveThenDeadReap(t *testing.T) {
	tn := newProbeTestNet(t)
	bin, err := probeTestBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	cl := tn.conns(t, 4)
	sel := []string{"--netns", tn.local, "--peer", tn.peerIP.String()}

	// Text output: one row per connection, evidence, summary; exit 0.
	out, errOut, code := probeTestRun(t, bin, append([]string{"probe", "--count", "2", "--interval", "600ms"}, sel...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("keepalive probe %s\n%s", strings.Join(sel, " "), out)
	if strings.Count(out, " alive ") != 4 || !strings.Contains(out, "ACK seq=RCV.NXT ack=SND.NXT from "+tn.peerIP.String()) ||
		!strings.Contains(out, "probed 4 connections") || !strings.Contains(out, "4 alive") {
		t.Errorf("text output:\n%s", out)
	}

	// Peer black-holed: dead, exit 3; --reap --dry-run destroys nothing.
	tn.blackHole(t)
	out, errOut, code = probeTestRun(t, bin, append([]string{"probe", "--json", "--count", "2", "--interval", "600ms", "--reap", "--dry-run", "--include-self"}, sel...)...)
	var res probeTestOut
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s\n%s", err, out, errOut)
	}
	if code != 3 || res.Summary.Verdicts["dead"] != 4 || res.Summary.WouldReap != 4 || res.Summary.Reaped != 0 {
		t.Fatalf("exit %d, summary %+v\n%s", code, res.Summary, errOut)
	}
	for _, c := range res.Connections {
		if c.Verdict != "dead" || c.Probes != 2 || c.Reaped != "would destroy" {
			t.Errorf("%+v", c)
		}
	}

	// Without --include-self the connections of this test process, an ancestor of the
	// command, carry "its session" and are kept.
	out, errOut, code = probeTestRun(t, bin, append([]string{"probe", "--count", "2", "--interval", "600ms", "--reap"}, sel...)...)
	if code != 3 || strings.Contains(out, "destroyed") || strings.Count(out, "kept: carries this session") != 4 {
		t.Fatalf("reap of the session's own connections: exit %d\n%s\n%s", code, out, errOut)
	}
	// --reap --include-self destroys them: the owners get ECONNABORTED.
	out, errOut, code = probeTestRun(t, bin, append([]string{"probe", "--count", "2", "--interval", "600ms", "--reap", "--include-self"}, sel...)...)
	if code != 3 || !strings.Contains(out, "4 destroyed") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, c := range cl {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNABORTED) {
			t.Errorf("%v: owner read error %v, want ECONNABORTED", c.LocalAddr(), err)
		}
	}
}

func TestProbeCommandNothingAndUsage(t *testing.T) {
	bin, err := probeTestBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"probe", "--count", "0"},
		{"probe", "--interval", "0.0001"},
		{"probe", "--interval", "1ms"},
		{"probe", "--interval", "500ms"}, // below tcp_invalid_ratelimit + margin
		{"probe", "--timeout", "1ms"},
		{"probe", "--timeout", "99ms"},
		{"probe", "--rate", "-1"},
		{"probe", "--dry-run"},
		{"probe", "--port", "70000"},
		{"probe", "extra"},
	} {
		_, errOut, code := probeTestRun(t, bin, args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	// No match: exit 0 and a message naming the selectors.
	_, errOut, code := probeTestRun(t, bin, "probe", "--peer", "10.200.255.254")
	if code != 0 || !strings.Contains(errOut, "no established connections match --peer 10.200.255.254") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestProbeCommandNotRoot(t *testing.T) {
	nstest.Need(t, os.Geteuid() == 0, "needs root to run the binary as nobody")
	bin, err := probeTestBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	// Run as nobody: no CAP_NET_RAW. Select loopback connections of our own.
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
	for _, d := range []string{filepath.Dir(bin), filepath.Dir(filepath.Dir(bin))} {
		if err := os.Chmod(d, 0o755); err != nil { // let nobody reach the binary
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "probe", "--port", fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var e bytes.Buffer
	cmd.Stderr = &e
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(e.String(), "CAP_NET_RAW") {
		t.Errorf("err %v, stderr %q", err, e.String())
	}
}

// TestProbeCommandLocalLinkDown: the peer's end of the veth goes down, so the local end has
// no carrier. The verdict is "unreachable: local link down", exit 3, and --reap keeps the
// connections (the peer may be fine once the link is back).
func TestProbeCommandLocalLinkDown(t *testing.T) {
	tn := newProbeTestNet(t)
	bin, err := probeTestBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	tn.conns(t, 2)
	ph, err := netlink.NewHandleAt(tn.pns)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	links, err := ph.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Type() == "veth" {
			if err := ph.LinkSetDown(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // carrier loss propagates at once; leave it a moment
	out, errOut, code := probeTestRun(t, bin, "probe", "--json", "--netns", tn.local, "--peer", tn.peerIP.String(), "--reap")
	var res probeTestOut
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s\n%s", err, out, errOut)
	}
	if code != 3 || res.Summary.Verdicts["unreachable"] != 2 || res.Summary.Reaped != 0 {
		t.Fatalf("exit %d, summary %+v\n%s\n%s", code, res.Summary, out, errOut)
	}
	for _, c := range res.Connections {
		if !strings.HasPrefix(c.Evidence, "local link down: ") || !strings.Contains(c.Evidence, "no carrier") || !strings.HasPrefix(c.Reaped, "kept") {
			t.Errorf("%+v", c)
		}
	}
}
