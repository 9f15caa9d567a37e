package probe

import (
	"net/netip"
	"testing"
	"time"
)

func TestPruneHistory(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	flow := func(port uint16) Flow {
		return Flow{Local: netip.AddrPortFrom(netip.MustParseAddr("10.200.0.1"), port), Remote: netip.MustParseAddrPort("10.200.0.2:80")}
	}
	h := map[Flow]History{
		flow(1): {LastLearn: now.Add(-2 * time.Minute), LastZero: now.Add(-2 * time.Minute)}, // old: dropped
		flow(2): {LastLearn: now.Add(-2 * time.Minute), LastZero: now.Add(-time.Second)},     // probed just now
		flow(3): {LastLearn: now.Add(-30 * time.Second)},                                     // learned recently
		flow(4): {},                                                                          // never: dropped
	}
	pruneHistory(h, now)
	if len(h) != 2 {
		t.Fatalf("%d histories left, want 2: %v", len(h), h)
	}
	for _, p := range []uint16{2, 3} {
		if _, ok := h[flow(p)]; !ok {
			t.Errorf("history of port %d dropped while still within %s", p, historyKeep)
		}
	}
}
