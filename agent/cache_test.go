package agent

import (
	"net/netip"
	"testing"
)

func TestAddrPack(t *testing.T) {
	for _, s := range []string{"127.0.0.1:80", "[::1]:443", "[fd00:200::1]:65535", "10.200.0.1:0", "[::ffff:10.0.0.1]:9"} {
		ap := netip.MustParseAddrPort(s)
		if got := packAddr(ap).unpack(); got != ap {
			t.Errorf("%s: round trip gave %s", s, got)
		}
	}
	if packAddr(netip.MustParseAddrPort("10.0.0.1:9")) == packAddr(netip.MustParseAddrPort("[::ffff:10.0.0.1]:9")) {
		t.Error("an IPv4 address and its IPv4-mapped IPv6 form pack alike")
	}
}

func TestTable(t *testing.T) {
	tb := newTable()
	const n = 3*chunkLen + 7
	for c := uint64(1); c <= n; c++ {
		tb.add(entry{cookie: c, lastSweep: 1})
	}
	if tb.live() != n || tb.n != n || len(tb.chunks) != 4 {
		t.Fatalf("live %d, slots %d, chunks %d", tb.live(), tb.n, len(tb.chunks))
	}
	p := tb.at(tb.idx[5])
	tb.add(entry{cookie: n + 1, lastSweep: 1}) // growing never moves an entry
	if p.cookie != 5 || tb.at(tb.idx[5]) != p {
		t.Fatal("entry moved when the table grew")
	}
	// Remove all but every tenth: the freed slots are reused, then compact shrinks.
	for c := uint64(1); c <= n+1; c++ {
		if c%10 != 0 {
			tb.remove(tb.idx[c])
		}
	}
	i := tb.add(entry{cookie: 1 << 40, lastSweep: 1})
	if i >= tb.n-1 && len(tb.free) == 0 {
		t.Fatalf("slot %d: freed slots not reused", i)
	}
	live := tb.live()
	tb.compact()
	if tb.live() != live || tb.n != uint32(live) || len(tb.free) != 0 {
		t.Fatalf("after compact: live %d (want %d), slots %d", tb.live(), live, tb.n)
	}
	for c, i := range tb.idx {
		if tb.at(i).cookie != c {
			t.Fatalf("cookie %d maps to slot %d holding %d", c, i, tb.at(i).cookie)
		}
	}
}

func TestTableFind(t *testing.T) {
	tb := newTable()
	a := tb.add(entry{cookie: 10, lastSweep: 1})
	b := tb.add(entry{cookie: 20, lastSweep: 1})
	tb.at(a).next = b + 1
	if i, ok := tb.find(20, a+1); !ok || i != b {
		t.Fatalf("find by hint: %d %v", i, ok)
	}
	// A wrong hint falls back to the index; an unknown cookie is not found.
	if i, ok := tb.find(10, a+1); !ok || i != a {
		t.Fatalf("find with a wrong hint: %d %v", i, ok)
	}
	tb.remove(b)
	if _, ok := tb.find(20, a+1); ok {
		t.Fatal("found a removed entry through a stale hint")
	}
}

func TestRetryAfter(t *testing.T) {
	want := []uint32{1, 2, 4, 8, 16, 32, 40, 40}
	for f, w := range want {
		if got := retryAfter(uint8(f)); got != w {
			t.Errorf("retryAfter(%d) = %d, want %d", f, got, w)
		}
	}
	if retryAfter(255) != retryMaxSweeps {
		t.Error("no cap at 255 failures")
	}
}
