package probe

import (
	"net/netip"
	"testing"

	"github.com/keepalive-dev/keepalive/internal/probewire"
	"github.com/keepalive-dev/keepalive/internal/probewire/wiretest"

	"golang.org/x/net/bpf"
)

func runFilter(t *testing.T, prog []bpf.Instruction, pkt []byte) bool {
	t.Helper()
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestFilter(t *testing.T) {
	l6 := netip.MustParseAddrPort("[fd00:200::1]:40000")
	r6 := netip.MustParseAddrPort("[fd00:200::2]:80")
	for _, n := range []int{1, 10, 100, 5000} { // 5000 falls back to addresses
		var flows []Flow
		for i := range n {
			flows = append(flows, Flow{Local: netip.AddrPortFrom(tLocal.Addr(), uint16(20000+i)), Remote: tRemote})
			flows = append(flows, Flow{Local: netip.AddrPortFrom(l6.Addr(), uint16(20000+i)), Remote: netip.AddrPortFrom(r6.Addr(), uint16(80+i))})
		}
		prog, err := buildFilter(flows)
		if err != nil {
			t.Fatal(err)
		}
		enc := probewire.NewEncoder()
		for _, c := range []struct {
			p    Packet
			want bool
		}{
			{Packet{Src: flows[0].Local, Dst: flows[0].Remote}, true},
			{Packet{Src: flows[0].Remote, Dst: flows[0].Local}, true},
			{Packet{Src: flows[1].Local, Dst: flows[1].Remote}, true},
			{Packet{Src: flows[len(flows)-1].Remote, Dst: flows[len(flows)-1].Local}, true},
			{Packet{Src: netip.MustParseAddrPort("10.9.9.9:1"), Dst: netip.MustParseAddrPort("10.9.9.8:2")}, false},
			{Packet{Src: netip.MustParseAddrPort("[fd00:9::1]:1"), Dst: netip.MustParseAddrPort("[fd00:9::2]:2")}, false},
		} {
			b, err := enc.Encode(c.p)
			if err != nil {
				t.Fatal(err)
			}
			if got := runFilter(t, prog, b); got != c.want {
				t.Errorf("n=%d %v -> %v: accepted %v, want %v", n, c.p.Src, c.p.Dst, got, c.want)
			}
		}
		// ICMP destination unreachable passes; other ICMP does not.
		b, _ := enc.Encode(Packet{Src: flows[0].Local, Dst: flows[0].Remote})
		icmp := wiretest.ICMPUnreachable(t, append([]byte(nil), b[:28]...), false)
		if !runFilter(t, prog, icmp) {
			t.Errorf("n=%d: ICMP unreachable rejected", n)
		}
		icmp[20] = 8 // echo request
		if runFilter(t, prog, icmp) {
			t.Errorf("n=%d: ICMP echo accepted", n)
		}
		b6, _ := enc.Encode(Packet{Src: flows[1].Local, Dst: flows[1].Remote})
		if !runFilter(t, prog, wiretest.ICMPUnreachable(t, append([]byte(nil), b6...), true)) {
			t.Errorf("n=%d: ICMPv6 unreachable rejected", n)
		}
		// Segments with payload pass like the others.
		for _, f := range flows[:2] {
			b, err := enc.Encode(Packet{Src: f.Local, Dst: f.Remote, Seq: 7919, Ack: 1, Payload: make([]byte, 1400)})
			if err != nil {
				t.Fatal(err)
			}
			if !runFilter(t, prog, b) {
				t.Errorf("n=%d %v: data segment dropped", n, f)
			}
		}
		t.Logf("%d flows: %d instructions", 2*n, len(prog))
	}
	if _, err := buildFilter([]Flow{{}}); err == nil {
		t.Error("invalid flow accepted")
	}
}
