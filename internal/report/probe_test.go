package report

import (
	"strings"
	"testing"
)

func TestProbeNotAliveCounts(t *testing.T) {
	v := map[string]int{"alive": 5, "gone": 2}
	if n := ProbeNotAlive(v); n != 0 {
		t.Errorf("alive and gone only: %d not alive", n)
	}
	v = map[string]int{"alive": 1, "dead": 1, "unreachable": 1, "reset": 1, "unknown": 1, "gone": 1}
	if n := ProbeNotAlive(v); n != 4 {
		t.Errorf("%v: %d not alive, want 4 (unknown counts, gone does not)", v, n)
	}
	s := ProbeFormatSummary(ProbeSummary{Connections: 3, Verdicts: map[string]int{"alive": 1, "dead": 1, "unknown": 1}, NotAlive: 2})
	if !strings.Contains(s, "1 dead, 1 unknown") || !strings.Contains(s, "2 not alive") {
		t.Errorf("summary %q: unknown must stay unknown", s)
	}
}
