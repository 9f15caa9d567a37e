package probe

import (
	"testing"
	"time"
)

// TestSimulate: the shared state machine reaches each verdict at the time the probe cycle
// implies: alive after one RTT, reset at the learning step, dead one timeout after the last
// of count probes.
func TestSimulate(t *testing.T) {
	cfg := Config{Count: 3, Interval: time.Second}
	for _, tc := range []struct {
		peer    Peer
		verdict Verdict
		lo, hi  time.Duration
	}{
		{PeerAlive, Alive, time.Millisecond, 10 * time.Millisecond},
		{PeerReset, Reset, 0, 10 * time.Millisecond},
		{PeerSilent, Dead, 3 * time.Second, 3*time.Second + 100*time.Millisecond},
	} {
		sim, err := Simulate(tc.peer, cfg, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		r := sim.Result
		if r.Verdict != tc.verdict || r.Elapsed < tc.lo || r.Elapsed > tc.hi {
			t.Errorf("%s: verdict %s after %s, want %s within %s..%s\n%+v", tc.peer, r.Verdict, r.Elapsed, tc.verdict, tc.lo, tc.hi, sim.Events)
		}
		if tc.peer == PeerSilent && r.Probes != 3 {
			t.Errorf("silent peer: %d probes, want 3", r.Probes)
		}
	}
	if _, err := Simulate("zombie", cfg, 0); err == nil {
		t.Error("unknown peer accepted")
	}
}
