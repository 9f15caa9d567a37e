package main

import (
	"net/netip"
	"slices"
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
