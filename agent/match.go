package agent

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/keepalive-dev/keepalive/host"
)

// Conn is what a rule is matched against: one connection with its namespace
// and owners resolved.
type Conn struct {
	// NetNS is the namespace's name (/var/run/netns) and Label its label for people
	// ("" for the agent's own namespace).
	NetNS, NetNSLabel string
	Local, Remote     netip.AddrPort
	// Comms and Cgroups are the owners' process names and cgroup v2 paths.
	Comms, Cgroups []string
	// Containers are the owners' containers (nil entries left out).
	Containers []*host.Container
}

// Matches reports whether the connection matches m.
func (m *Match) Matches(c *Conn) bool {
	if len(m.Namespaces) > 0 && !slices.ContainsFunc(m.Namespaces, func(n string) bool {
		return n == c.NetNS || n == c.NetNSLabel
	}) {
		return false
	}
	if len(m.Ports) > 0 && !slices.ContainsFunc(m.Ports, func(p uint16) bool {
		return p == c.Local.Port() || p == c.Remote.Port()
	}) {
		return false
	}
	if len(m.Peers) > 0 {
		ra := c.Remote.Addr().Unmap()
		if !slices.ContainsFunc(m.Peers, func(p netip.Prefix) bool { return p.Contains(ra) }) {
			return false
		}
	}
	if len(m.Processes) > 0 && !slices.ContainsFunc(c.Comms, func(s string) bool { return slices.Contains(m.Processes, s) }) {
		return false
	}
	if len(m.Cgroups) > 0 && !slices.ContainsFunc(c.Cgroups, func(cg string) bool {
		return slices.ContainsFunc(m.Cgroups, func(want string) bool { return cgroupUnder(cg, want) })
	}) {
		return false
	}
	if len(m.Containers) > 0 && !slices.ContainsFunc(c.Containers, func(ct *host.Container) bool {
		return slices.ContainsFunc(m.Containers, func(want string) bool { return ct.MatchID(want) || ct.Label() == want })
	}) {
		return false
	}
	if len(m.Pods) > 0 && !slices.ContainsFunc(c.Containers, func(ct *host.Container) bool {
		return ct.Pod != "" && slices.Contains(m.Pods, ct.Pod)
	}) {
		return false
	}
	return true
}

// cgroupUnder reports whether cgroup path cg is want or lies below it.
func cgroupUnder(cg, want string) bool {
	want = strings.TrimSuffix(want, "/")
	if want == "" {
		return true
	}
	return cg == want || strings.HasPrefix(cg, want+"/")
}

// RuleFor returns the first rule that matches c, or nil.
func (p *Policy) RuleFor(c *Conn) *Rule {
	return p.rule(p.ruleIndex(c))
}

// ruleIndex is the index of the first rule that matches c, -1 when none does
// (policies hold at most MaxRules rules).
func (p *Policy) ruleIndex(c *Conn) int16 {
	for i := range p.Rules {
		if p.Rules[i].Match.Matches(c) {
			return int16(i)
		}
	}
	return -1
}

// rule returns the rule at index i, nil for -1.
func (p *Policy) rule(i int16) *Rule {
	if i < 0 || int(i) >= len(p.Rules) {
		return nil
	}
	return &p.Rules[i]
}

// needsIdle reports whether a rule needs the connections' idle time (tcp_info).
func (p *Policy) needsIdle() bool {
	for i := range p.Rules {
		if p.Rules[i].Action == ActionProbe {
			return true
		}
	}
	return false
}

// NeedsOwners reports whether any rule needs the connections' owners.
func (p *Policy) NeedsOwners() bool {
	for i := range p.Rules {
		if p.Rules[i].Match.NeedsOwners() || p.Rules[i].Action == ActionEnforce {
			return true
		}
	}
	return false
}
