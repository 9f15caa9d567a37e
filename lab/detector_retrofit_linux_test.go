//go:build linux

package lab

import "testing"

// TestRetrofitMode: keepalive set from outside the application detects a crashed peer at the
// same time as keepalive the application set itself.
func TestRetrofitMode(t *testing.T) {
	requireRoot(t)
	for _, sc := range []Scenario{Crash, Reboot} {
		t.Run(string(sc), func(t *testing.T) {
			t.Parallel()
			r := runLab(t, Options{Scenario: sc, Mode: "retrofit", Config: fastCfg})
			if !r.Detected || !r.Agree {
				t.Fatalf("retrofit on %s: %s", sc, r.Verdict)
			}
		})
	}
}
