//go:build linux

package lab

import "testing"

// TestHeartbeatMode: an application heartbeat sees what kernel keepalive cannot — a hung
// (SIGSTOPped) server whose kernel still ACKs — within Time + Timeout.
func TestHeartbeatMode(t *testing.T) {
	requireRoot(t)
	for _, sc := range []Scenario{Hung, Crash} {
		t.Run(string(sc), func(t *testing.T) {
			t.Parallel()
			r := runLab(t, Options{Scenario: sc, Mode: "heartbeat", Config: fastCfg})
			if !r.Detected {
				t.Fatalf("heartbeat did not detect %s: %s", sc, r.Verdict)
			}
			if !r.Agree {
				t.Errorf("disagrees with the model: %s", r.Disagreement)
			}
		})
	}
}
