package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/host"
	"github.com/spf13/pflag"
)

func TestSelectorFlags(t *testing.T) {
	var sf selectorFlags
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	sf.register(fs)
	err := fs.Parse([]string{"--port", "443,80", "--peer", "10.0.0.0/8", "--peer", "::ffff:192.0.2.1", "--pid", "42",
		"--comm", "nginx", "--state", "established,close-wait", "--idle-over", "90", "--netns", "blue"})
	if err != nil {
		t.Fatal(err)
	}
	if !sf.given() {
		t.Fatal("selectors not seen")
	}
	opt, err := sf.listOptions()
	if err != nil {
		t.Fatal(err)
	}
	sel := opt.Selector
	if !slices.Equal(sel.Ports, []uint16{443, 80}) || !slices.Equal(sel.PIDs, []int{42}) || !slices.Equal(sel.Comms, []string{"nginx"}) ||
		!slices.Equal(sel.States, []host.State{host.StateEstablished, host.StateCloseWait}) || sel.IdleOver != 90*time.Second || opt.NetNS != "blue" {
		t.Fatalf("selector %+v", opt)
	}
	if !slices.Equal(sel.Peers, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}) {
		t.Fatalf("peers %v", sel.Peers)
	}
	if got := sf.describe(); got != "--port 443,80 --peer 10.0.0.0/8,::ffff:192.0.2.1 --pid 42 --comm nginx --state established,close-wait --idle-over 1m30s --netns blue" {
		t.Errorf("describe: %q", got)
	}
	var none selectorFlags
	none.register(pflag.NewFlagSet("n", pflag.ContinueOnError))
	if none.given() {
		t.Error("no flags counted as a selector")
	}
}

func FuzzSelectorFlags(f *testing.F) {
	for _, s := range [][3]string{{"443", "10.0.0.0/8", "established"}, {"0", "::1", "listen"}, {"65536", "1.2.3.4/33", "bogus"}, {"", "[::1]", "TIME_WAIT"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, port, peer, state string) {
		sf := selectorFlags{ports: []string{port}, peers: []string{peer}, states: []string{state}, pids: []string{port}, comms: []string{peer}}
		sel, err := sf.selector()
		if err != nil {
			return
		}
		for _, p := range sel.Ports {
			if p == 0 {
				t.Fatalf("port 0 accepted from %q", port)
			}
		}
		for _, p := range sel.Peers {
			if !p.IsValid() || p.Addr().Is4In6() {
				t.Fatalf("peer %v from %q", p, peer)
			}
		}
	})
}

func TestSelectorFlagsContainers(t *testing.T) {
	parse := func(args ...string) (host.ListOptions, error) {
		var sf selectorFlags
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		sf.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return sf.listOptions()
	}
	opt, err := parse("--cgroup", "/system.slice/nginx.service", "--container", "4F2A9C1E", "--cookie", "0x1f,42", "--netns", "/var/run/docker/netns/abc")
	if err != nil {
		t.Fatal(err)
	}
	sel := opt.Selector
	if !slices.Equal(sel.Cgroups, []string{"/system.slice/nginx.service"}) || !slices.Equal(sel.Containers, []string{"4f2a9c1e"}) ||
		!slices.Equal(sel.Cookies, []uint64{31, 42}) || opt.NetNS != "/var/run/docker/netns/abc" || !sel.Narrows() {
		t.Fatalf("%+v", opt)
	}
	for _, bad := range [][]string{
		{"--container", "a b"}, {"--container", "-bad"}, {"--cookie", "0"}, {"--cookie", "cookie"},
		{"--cgroup", "/a/../b"}, {"--netns", "../x"}, {"--netns", "a/b"}, {"--netns", "/var/run/netns/../x"},
	} {
		if _, err := parse(bad...); !isUsageError(err) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
	var sf selectorFlags
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	sf.register(fs)
	fs.Parse([]string{"--state", "established", "--idle-over", "1h"})
	if sf.narrows() || !sf.given() {
		t.Error("--state and --idle-over alone must not count as narrowing")
	}
}

func TestUsageVersusRuntimeErrors(t *testing.T) {
	for _, tc := range []struct {
		err   error
		usage bool
	}{
		{usagef("invalid --port %q", "x"), true},
		{fmt.Errorf("audit: %w", usagef("bad")), true},
		{errors.New(`unknown flag: --nope`), true},
		{errors.New(`unknown command "x" for "keepalive"`), true},
		{errors.New("accepts 1 arg(s), received 0"), true},
		{fmt.Errorf("host: enter network namespace: %w", syscall.EINVAL), false},            // "invalid argument"
		{fmt.Errorf("setns: invalid argument for x: %w", errors.New("stale entry")), false}, // wraps: runtime
		{errors.New("read /proc/sys/x: permission denied"), false},
	} {
		if got := isUsageError(tc.err); got != tc.usage {
			t.Errorf("isUsageError(%q) = %v, want %v", tc.err, got, tc.usage)
		}
	}
}
