package lab

import (
	"fmt"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// NAT: the router's conntrack entry expires while the connection is idle; later packets are
// dropped (NATOnExpiry "drop") or answered with RST by the router ("rst").
type natScenario struct{}

func (natScenario) id() Scenario { return NAT }
func (natScenario) spellings() []spelling {
	return []spelling{{name: "nat"}, {name: "nat-drop", variant: "drop"}, {name: "nat-rst", variant: "rst"}}
}
func (natScenario) describe() string {
	return "the router's conntrack entry expires while the connection is idle"
}
func (natScenario) help() string {
	return "the router's conntrack entry expires while idle (--nat-timeout,\n--nat-expiry drop|rst; also written nat-drop / nat-rst)"
}
func (natScenario) routed() bool   { return true }
func (natScenario) inFlight() bool { return false }
func (natScenario) normalize(o *Options) error {
	switch o.NATOnExpiry {
	case "":
		o.NATOnExpiry = "drop"
	case "drop", "rst":
	default:
		return fmt.Errorf("lab: NAT expiry behaviour %q not allowed (allowed: drop, rst)", o.NATOnExpiry)
	}
	if o.NATTimeout == 0 {
		o.NATTimeout = DefaultNATTimeout
	}
	if o.NATTimeout < time.Second || o.NATTimeout > 24*time.Hour || o.NATTimeout%time.Second != 0 {
		return fmt.Errorf("lab: NAT timeout %s not allowed (allowed: 1s..24h in whole seconds)", o.NATTimeout)
	}
	return nil
}
func (natScenario) model(o Options, m *keepalive.Model) {
	m.Scenario = keepalive.ScenarioNAT
	m.MiddleboxRST = o.NATOnExpiry == "rst"
}
func (natScenario) setup(f faults) error {
	o := f.options()
	return f.natRouter(o.NATOnExpiry, o.NATTimeout)
}

// passive: the entry expires by itself one conntrack timeout after the last activity.
func (natScenario) passive(o Options) (time.Duration, string, bool) {
	return o.NATTimeout, "the router's conntrack timeout after the last activity (" + o.NATOnExpiry + " on expiry; any later segment postpones it)", true
}
func (natScenario) inject(faults) (time.Time, error) { return time.Now(), nil }
func (natScenario) faultText(Options) string         { return string(NAT) }
