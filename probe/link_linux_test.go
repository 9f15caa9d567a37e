package probe

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestUnreachableLocalLinkDown: the peer's end of the veth goes down, so the
// local end loses its carrier (NO-CARRIER, operstate lowerlayerdown). Probes
// cannot leave; the verdict names the local link instead of "unknown".
func TestUnreachableLocalLinkDown(t *testing.T) {
	tn := newTestNet(t)
	ln := tn.listen(t, tn.PeerIP)
	cl, _ := tn.pair(t, ln, 3)
	var flows []Flow
	for _, c := range cl {
		flows = append(flows, flowOf(c))
	}
	links, err := tn.ph.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var peerEnd netlink.Link
	for _, l := range links {
		if l.Type() == "veth" {
			peerEnd = l
		}
	}
	if peerEnd == nil {
		t.Fatal("peer end of the veth not found")
	}
	if err := tn.ph.LinkSetDown(peerEnd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tn.ph.LinkSetUp(peerEnd) })
	// Wait until the local end reports no carrier (bounded).
	for i := 0; i < 50; i++ {
		l, err := tn.lh.LinkByName(tn.vethL)
		if err == nil && linkDownReason(l.Attrs()) != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p := newProber(t, tn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := p.Probe(ctx, flows, Options{Config: Config{Count: 2, Interval: 600 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%v: %v %s", r.Flow, r.Verdict, r.Evidence)
		if r.Verdict != Unreachable || !strings.HasPrefix(r.Evidence, "local link down: "+tn.vethL+" has no carrier") {
			t.Errorf("%v: %v %q, want unreachable: local link down: %s has no carrier", r.Flow, r.Verdict, r.Evidence, tn.vethL)
		}
	}

	// Carrier back: alive again.
	if err := tn.ph.LinkSetUp(peerEnd); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		l, err := tn.lh.LinkByName(tn.vethL)
		if err == nil && linkDownReason(l.Attrs()) == "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err = p.Probe(ctx, flows, Options{Config: Config{Count: 3, Interval: 600 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Verdict != Alive {
			t.Errorf("after the carrier came back: %v %v %s", r.Flow, r.Verdict, r.Evidence)
		}
	}
}

func TestLinkDownReason(t *testing.T) {
	for _, c := range []struct {
		flags uint32
		want  string
	}{
		{0, "eth9 is down"},
		{0x1, "eth9 has no carrier (down)"},
		{0x1 | 0x10000, ""},
	} {
		a := &netlink.LinkAttrs{Name: "eth9", RawFlags: c.flags, OperState: netlink.OperDown}
		if got := linkDownReason(a); got != c.want {
			t.Errorf("flags %#x: %q, want %q", c.flags, got, c.want)
		}
	}
}
