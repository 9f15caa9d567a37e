package lab

import (
	"fmt"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// scenarioDef is one scenario of the registry. Each lives in its own file scenario_<name>.go
// and is listed once in scenarioList; nothing else enumerates scenarios.
type scenarioDef interface {
	// id is the scenario's name (the value of Options.Scenario).
	id() Scenario
	// spellings are the names ParseScenario accepts for it, in help order.
	spellings() []spelling
	// describe is the one-line description (Scenario.Describe).
	describe() string
	// help is the text of the CLI's scenario list; it may span lines.
	help() string
	// routed reports whether the topology has a router between client and server.
	routed() bool
	// inFlight reports whether the fault is a write the server never acknowledges: time
	// zero moves to that write and Options.Segments applies.
	inFlight() bool
	// normalize validates and defaults the scenario's own options.
	normalize(o *Options) error
	// model fills in what the model should predict for the run.
	model(o Options, m *keepalive.Model)
	// setup prepares the built topology for the fault (after addresses and routes).
	setup(f faults) error
	// passive returns, for a fault that happens by itself, when it happens after the last
	// activity and the text of the event; ok is false for an injected fault.
	passive(o Options) (at time.Duration, text string, ok bool)
	// inject performs the fault and returns when it took effect.
	inject(f faults) (time.Time, error)
	// faultText describes the injected fault in the measured timeline.
	faultText(o Options) string
}

// spelling is one name of a scenario; variant is the NATOnExpiry it selects and alias hides
// it from help and error texts.
type spelling struct {
	name, variant string
	alias         bool
}

// faults is what a scenario can do to a built topology (a Linux run implements it).
type faults interface {
	options() Options
	// blackholeServer drops the server namespace's traffic ("in", "out" or "both").
	blackholeServer(dir string) error
	// restoreServer removes the blackhole.
	restoreServer() error
	// routerLinkDown sets the router's link towards the server down.
	routerLinkDown() error
	// abortServer makes the server process destroy its socket (RST on close).
	abortServer() error
	// stopServer freezes the server process (SIGSTOP).
	stopServer() error
	// clientWrite writes n bytes on the client connection and returns when it started.
	clientWrite(n int) (time.Time, error)
	// segmentSize is the client connection's maximum segment size.
	segmentSize() int
	// natRouter makes the router masquerade with the given expiry behaviour and timeout.
	natRouter(onExpiry string, timeout time.Duration) error
}

// scenarioList is the registry, in display order. A new scenario is one file and one line here.
var scenarioList = [...]scenarioDef{
	crashScenario{},
	pathScenario{},
	rebootScenario{},
	natScenario{},
	hungScenario{},
	inFlightScenario{},
}

// lookupScenario returns the registry entry of s.
func lookupScenario(s Scenario) (scenarioDef, bool) {
	for _, d := range scenarioList {
		if d.id() == s {
			return d, true
		}
	}
	return nil, false
}

// baseScenario gives the defaults of a scenario on the direct topology with an injected fault.
type baseScenario struct{}

func (baseScenario) routed() bool   { return false }
func (baseScenario) inFlight() bool { return false }
func (baseScenario) normalize(o *Options) error {
	o.NATOnExpiry = ""
	o.NATTimeout = 0
	return nil
}
func (baseScenario) model(o Options, m *keepalive.Model) { m.Scenario = keepalive.ScenarioSilent }
func (baseScenario) setup(faults) error                  { return nil }
func (baseScenario) passive(Options) (time.Duration, string, bool) {
	return 0, "", false
}

// Scenarios lists every scenario in display order.
func Scenarios() []Scenario {
	out := make([]Scenario, 0, len(scenarioList))
	for _, d := range scenarioList {
		out = append(out, d.id())
	}
	return out
}

// ScenarioNames lists the names ParseScenario accepts (without aliases), in display order;
// a scenario with variants appears as its name followed by one name per variant.
func ScenarioNames() []string {
	var out []string
	for _, d := range scenarioList {
		for _, sp := range d.spellings() {
			if !sp.alias {
				out = append(out, sp.name)
			}
		}
	}
	return out
}

// VariantNames lists one name per distinct run: a scenario with variants appears as its
// variants only (e.g. nat-drop, nat-rst), the others by their name.
func VariantNames() []string {
	var out []string
	for _, d := range scenarioList {
		var vs []string
		for _, sp := range d.spellings() {
			if sp.variant != "" && !sp.alias {
				vs = append(vs, sp.name)
			}
		}
		if len(vs) == 0 {
			vs = []string{string(d.id())}
		}
		out = append(out, vs...)
	}
	return out
}

// Describe is a one-line description of the scenario.
func (s Scenario) Describe() string {
	if d, ok := lookupScenario(s); ok {
		return d.describe()
	}
	return "unknown scenario"
}

// Help is the scenario's entry in command help: its description with the flags that
// apply to it; it may span several lines.
func (s Scenario) Help() string {
	if d, ok := lookupScenario(s); ok {
		return d.help()
	}
	return "unknown scenario"
}

// ParseScenario accepts a scenario name. "nat-drop" and "nat-rst" select NAT with that expiry
// behaviour (returned as variant; "" otherwise).
func ParseScenario(s string) (sc Scenario, variant string, err error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for _, d := range scenarioList {
		for _, sp := range d.spellings() {
			if sp.name == name {
				return d.id(), sp.variant, nil
			}
		}
	}
	return "", "", fmt.Errorf("unknown scenario %q (allowed: %s)", s, strings.Join(ScenarioNames(), ", "))
}

// scenarioIDs lists the scenarios' names (Options.Scenario values).
func scenarioIDs() []string {
	out := make([]string, 0, len(scenarioList))
	for _, d := range scenarioList {
		out = append(out, string(d.id()))
	}
	return out
}

// variantsOf lists the variants of scenario s (e.g. "drop", "rst" for NAT); none for most.
func variantsOf(s Scenario) []string {
	d, ok := lookupScenario(s)
	if !ok {
		return nil
	}
	var out []string
	for _, sp := range d.spellings() {
		if sp.variant != "" && !sp.alias {
			out = append(out, sp.variant)
		}
	}
	return out
}
