//go:build linux

package lab

import "testing"

// TestProbeMode: user-space probes reach the right verdict in every scenario where the
// peer's kernel is gone or has forgotten the flow, and a hung peer's kernel still answers.
func TestProbeMode(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name   string
		o      Options
		detect bool
	}{
		{"crash", Options{Scenario: Crash}, true},
		{"path", Options{Scenario: Path}, true},
		{"reboot", Options{Scenario: Reboot}, true},
		{"nat-drop", Options{Scenario: NAT, NATOnExpiry: "drop"}, true},
		{"nat-rst", Options{Scenario: NAT, NATOnExpiry: "rst"}, true},
		{"hung", Options{Scenario: Hung}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.o.Mode = "probe"
			c.o.Config = fastCfg
			r := runLab(t, c.o)
			if r.Detected != c.detect {
				t.Fatalf("probe mode on %s: %s", c.name, r.Verdict)
			}
			if !r.Agree {
				t.Errorf("disagrees with the model: %s", r.Disagreement)
			}
		})
	}
}
