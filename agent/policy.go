// Package agent is the long-running side of keepalive: every interval it walks
// every network namespace of the host, assesses each TCP connection, applies a
// policy (report, enforce, probe and reap) within budgets, and exports what it
// saw and did as Prometheus metrics.
//
// The policy is a YAML file (see ParsePolicy); a sweep never overlaps the next,
// owners and assessments are cached by socket cookie so that only new or
// changed sockets are resolved again, and the budgets bound the probes per
// second and the retrofits per sweep.
package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"gopkg.in/yaml.v3"
)

// Action is what a rule does with the connections it matches.
type Action string

const (
	// ActionReport only counts the connections in the metrics.
	ActionReport Action = "report"
	// ActionEnforce attaches the rule's keepalive settings to the cgroups of the
	// matching connections (eBPF, see package enforce) and retrofits the
	// connections that already exist; where BPF is unavailable it retrofits only.
	ActionEnforce Action = "enforce"
	// ActionProbe probes, from user space and at a bounded rate, the matching
	// connections idle longer than the rule's idle threshold, and destroys
	// (reaps) those whose peer is dead when the rule says so.
	ActionProbe Action = "probe"
)

// Limits of the policy's values.
const (
	MinInterval        = time.Second
	MaxInterval        = time.Hour
	MaxProbesPerSecond = 10000
	MaxRetrofits       = 100000
	MaxRules           = 1000
	MaxPolicySize      = 1 << 20
)

// Policy is a parsed and validated policy file.
type Policy struct {
	// Interval is the time between the starts of two sweeps (0: the agent's flag).
	Interval time.Duration
	// Budgets bound the agent's actions.
	Budgets Budgets
	// Rules are tried in order; the first that matches a connection decides.
	Rules []Rule
}

// Budgets bound what the agent does.
type Budgets struct {
	// ProbesPerSecond bounds the probe packets injected per second (default 50).
	ProbesPerSecond int
	// RetrofitsPerSweep bounds the existing connections changed per sweep (default 200).
	RetrofitsPerSweep int
}

// DefaultBudgets returns the budgets used where a policy sets none.
func DefaultBudgets() Budgets { return Budgets{ProbesPerSecond: 50, RetrofitsPerSweep: 200} }

// Rule is one entry of the policy.
type Rule struct {
	// Name labels the rule in metrics and logs (default "rule-N", N from 1).
	Name string
	// Line is the line of the rule in the policy file.
	Line   int
	Match  Match
	Action Action
	// Keepalive is the setting that ActionEnforce applies.
	Keepalive keepalive.Config
	// ModeEnforce also rewrites the applications' own later setsockopt calls
	// (enforce.ModeEnforce) instead of only setting the policy at establishment.
	ModeEnforce bool
	// IdleOver is the idle time from which ActionProbe probes a connection.
	IdleOver time.Duration
	// Reap destroys the connections whose peer a probe found dead.
	Reap bool
}

// Match selects connections. Every non-empty field must match (AND); within
// a field any value may match (OR). The zero Match matches every connection.
type Match struct {
	// Namespaces are network namespace names (/var/run/netns) or labels.
	Namespaces []string
	// Containers are container IDs (or unique prefixes of at least 12 hex
	// digits) or container labels as the host package prints them.
	Containers []string
	// Pods are Kubernetes pod UIDs.
	Pods []string
	// Cgroups are cgroup v2 paths; a connection matches when an owner's
	// cgroup is the path or lies below it.
	Cgroups []string
	// Processes are process names (comm) of an owner.
	Processes []string
	// Ports match the local or the remote port.
	Ports []uint16
	// Peers are prefixes that must contain the remote address.
	Peers []netip.Prefix
}

// NeedsOwners reports whether matching needs the sockets' owning processes.
func (m *Match) NeedsOwners() bool {
	return len(m.Containers) > 0 || len(m.Pods) > 0 || len(m.Cgroups) > 0 || len(m.Processes) > 0
}

// PolicyError is an error in a policy file, with its line (0 when the error
// concerns the whole file).
type PolicyError struct {
	Line int
	Msg  string
}

func (e *PolicyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("policy line %d: %s", e.Line, e.Msg)
	}
	return "policy: " + e.Msg
}

func perr(n *yaml.Node, format string, a ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &PolicyError{Line: line, Msg: fmt.Sprintf(format, a...)}
}

// ReadPolicy reads and parses a policy of at most MaxPolicySize bytes.
func ReadPolicy(r io.Reader) (*Policy, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if len(b) > MaxPolicySize {
		return nil, &PolicyError{Msg: fmt.Sprintf("file larger than %d bytes", MaxPolicySize)}
	}
	return ParsePolicy(b)
}

// ParsePolicy parses and validates a policy file:
//
//	interval: 15s
//	budgets:
//	  probes_per_second: 50
//	  retrofits_per_sweep: 200
//	rules:
//	  - name: databases
//	    match:
//	      processes: [java]
//	      ports: [5432]
//	      peers: [10.0.0.0/8]
//	    action: enforce
//	    keepalive: {idle: 60s, interval: 10s, count: 5, user_timeout: 110s}
//	  - name: the rest
//	    action: probe
//	    probe: {idle_over: 10m, reap: true}
//
// Every error is a *PolicyError naming the line. Unknown keys are errors.
func ParsePolicy(b []byte) (*Policy, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &PolicyError{Msg: "empty file (at least `rules:` is needed)"}
		}
		return nil, &PolicyError{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, perr(&extra, "a second YAML document; a policy is one document")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	m, err := mapping(root, "the policy")
	if err != nil {
		return nil, err
	}
	p := &Policy{Budgets: DefaultBudgets()}
	seenRules := false
	for _, kv := range m {
		switch kv.key.Value {
		case "version":
			if kv.val.Value != "1" {
				return nil, perr(kv.val, "version %q not supported (allowed: 1)", kv.val.Value)
			}
		case "interval":
			d, err := duration(kv.val, MinInterval, MaxInterval)
			if err != nil {
				return nil, err
			}
			p.Interval = d
		case "budgets":
			bm, err := mapping(kv.val, "budgets")
			if err != nil {
				return nil, err
			}
			for _, bkv := range bm {
				switch bkv.key.Value {
				case "probes_per_second":
					p.Budgets.ProbesPerSecond, err = integer(bkv.val, 1, MaxProbesPerSecond)
				case "retrofits_per_sweep":
					p.Budgets.RetrofitsPerSweep, err = integer(bkv.val, 0, MaxRetrofits)
				default:
					err = perr(bkv.key, "unknown key %q in budgets (allowed: probes_per_second, retrofits_per_sweep)", bkv.key.Value)
				}
				if err != nil {
					return nil, err
				}
			}
		case "rules":
			seenRules = true
			if kv.val.Kind != yaml.SequenceNode {
				return nil, perr(kv.val, "rules must be a list")
			}
			if len(kv.val.Content) > MaxRules {
				return nil, perr(kv.val, "%d rules (at most %d)", len(kv.val.Content), MaxRules)
			}
			names := map[string]int{}
			for i, rn := range kv.val.Content {
				r, err := parseRule(rn, i+1)
				if err != nil {
					return nil, err
				}
				if l, dup := names[r.Name]; dup {
					return nil, perr(rn, "rule name %q already used on line %d", r.Name, l)
				}
				names[r.Name] = r.Line
				p.Rules = append(p.Rules, r)
			}
		default:
			return nil, perr(kv.key, "unknown key %q (allowed: version, interval, budgets, rules)", kv.key.Value)
		}
	}
	if !seenRules {
		return nil, perr(root, "no `rules:` (an empty list `rules: []` reports only)")
	}
	return p, nil
}

type keyVal struct{ key, val *yaml.Node }

// mapping returns the pairs of a mapping node, rejecting duplicate keys, aliases and merges.
func mapping(n *yaml.Node, what string) ([]keyVal, error) {
	if n.Kind == yaml.AliasNode {
		return nil, perr(n, "aliases are not allowed in a policy")
	}
	if n.Kind != yaml.MappingNode {
		return nil, perr(n, "%s must be a mapping of keys to values", what)
	}
	out := make([]keyVal, 0, len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			return nil, perr(k, "keys must be plain words")
		}
		if v.Kind == yaml.AliasNode {
			return nil, perr(v, "aliases are not allowed in a policy")
		}
		if l, dup := seen[k.Value]; dup {
			return nil, perr(k, "key %q repeated (first on line %d)", k.Value, l)
		}
		seen[k.Value] = k.Line
		out = append(out, keyVal{k, v})
	}
	return out, nil
}

func scalar(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", perr(n, "expected a single value")
	}
	return n.Value, nil
}

func list(n *yaml.Node) ([]*yaml.Node, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []*yaml.Node{n}, nil
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return nil, perr(n, "empty list (leave the key out to match everything)")
		}
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, perr(c, "expected a list of single values")
			}
		}
		return n.Content, nil
	}
	return nil, perr(n, "expected a value or a list of values")
}

func duration(n *yaml.Node, lo, hi time.Duration) (time.Duration, error) {
	s, err := scalar(n)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, perr(n, "invalid duration %q (e.g. 90s, 5m)", s)
	}
	if d < lo || d > hi {
		return 0, perr(n, "duration %s out of range (allowed: %s to %s)", s, lo, hi)
	}
	return d, nil
}

func integer(n *yaml.Node, lo, hi int) (int, error) {
	s, err := scalar(n)
	if err != nil {
		return 0, err
	}
	var v int
	if _, err := fmt.Sscan(s, &v); err != nil || fmt.Sprint(v) != s {
		return 0, perr(n, "invalid integer %q", s)
	}
	if v < lo || v > hi {
		return 0, perr(n, "%d out of range (allowed: %d to %d)", v, lo, hi)
	}
	return v, nil
}

func boolean(n *yaml.Node) (bool, error) {
	s, err := scalar(n)
	if err != nil {
		return false, err
	}
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, perr(n, "invalid boolean %q (allowed: true, false)", s)
}

func parseRule(n *yaml.Node, idx int) (Rule, error) {
	m, err := mapping(n, "a rule")
	if err != nil {
		return Rule{}, err
	}
	r := Rule{Name: fmt.Sprintf("rule-%d", idx), Line: n.Line}
	var kaNode, probeNode, actionNode *yaml.Node
	for _, kv := range m {
		switch kv.key.Value {
		case "name":
			s, err := scalar(kv.val)
			if err != nil {
				return r, err
			}
			if s == "" || len(s) > 63 || strings.ContainsAny(s, "\n\t\"\\") {
				return r, perr(kv.val, "rule name %q: 1 to 63 characters, no quotes, backslashes or control characters", s)
			}
			r.Name = s
		case "match":
			if r.Match, err = parseMatch(kv.val); err != nil {
				return r, err
			}
		case "action":
			actionNode = kv.val
			s, err := scalar(kv.val)
			if err != nil {
				return r, err
			}
			switch a := Action(s); a {
			case ActionReport, ActionEnforce, ActionProbe:
				r.Action = a
			default:
				return r, perr(kv.val, "unknown action %q (allowed: report, enforce, probe)", s)
			}
		case "keepalive":
			kaNode = kv.val
		case "probe":
			probeNode = kv.val
		default:
			return r, perr(kv.key, "unknown key %q in a rule (allowed: name, match, action, keepalive, probe)", kv.key.Value)
		}
	}
	if actionNode == nil {
		return r, perr(n, "rule %q has no action (allowed: report, enforce, probe)", r.Name)
	}
	if kaNode != nil && r.Action != ActionEnforce {
		return r, perr(kaNode, "keepalive: is only for action enforce")
	}
	if probeNode != nil && r.Action != ActionProbe {
		return r, perr(probeNode, "probe: is only for action probe")
	}
	switch r.Action {
	case ActionEnforce:
		if kaNode == nil {
			return r, perr(actionNode, "action enforce needs keepalive: {idle, interval, count, user_timeout}")
		}
		if err := parseKeepalive(kaNode, &r); err != nil {
			return r, err
		}
	case ActionProbe:
		r.IdleOver = 5 * time.Minute
		if probeNode != nil {
			pm, err := mapping(probeNode, "probe")
			if err != nil {
				return r, err
			}
			for _, kv := range pm {
				switch kv.key.Value {
				case "idle_over":
					r.IdleOver, err = duration(kv.val, time.Second, 30*24*time.Hour)
				case "reap":
					r.Reap, err = boolean(kv.val)
				default:
					err = perr(kv.key, "unknown key %q in probe (allowed: idle_over, reap)", kv.key.Value)
				}
				if err != nil {
					return r, err
				}
			}
		}
	}
	return r, nil
}

func parseKeepalive(n *yaml.Node, r *Rule) error {
	m, err := mapping(n, "keepalive")
	if err != nil {
		return err
	}
	var c keepalive.Config
	for _, kv := range m {
		switch kv.key.Value {
		case "idle":
			c.Idle, err = duration(kv.val, time.Second, 32767*time.Second)
		case "interval":
			c.Interval, err = duration(kv.val, time.Second, 32767*time.Second)
		case "count":
			c.Count, err = integer(kv.val, 1, 127)
		case "user_timeout":
			c.UserTimeout, err = duration(kv.val, time.Second, 24*time.Hour)
		case "mode":
			var s string
			if s, err = scalar(kv.val); err == nil {
				switch s {
				case "default":
				case "enforce":
					r.ModeEnforce = true
				default:
					err = perr(kv.val, "unknown mode %q (allowed: default, enforce)", s)
				}
			}
		default:
			err = perr(kv.key, "unknown key %q in keepalive (allowed: idle, interval, count, user_timeout, mode)", kv.key.Value)
		}
		if err != nil {
			return err
		}
	}
	if c == (keepalive.Config{}) {
		return perr(n, "keepalive: sets nothing (give at least idle)")
	}
	if _, err := c.Validate("linux"); err != nil {
		return perr(n, "keepalive: %v", err)
	}
	r.Keepalive = c
	return nil
}

func parseMatch(n *yaml.Node) (Match, error) {
	var mt Match
	m, err := mapping(n, "match")
	if err != nil {
		return mt, err
	}
	strs := func(v *yaml.Node, check func(*yaml.Node) error) ([]string, error) {
		items, err := list(v)
		if err != nil {
			return nil, err
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			if it.Value == "" {
				return nil, perr(it, "empty value")
			}
			if check != nil {
				if err := check(it); err != nil {
					return nil, err
				}
			}
			out = append(out, it.Value)
		}
		return out, nil
	}
	for _, kv := range m {
		v := kv.val
		switch kv.key.Value {
		case "namespaces":
			mt.Namespaces, err = strs(v, nil)
		case "containers":
			mt.Containers, err = strs(v, nil)
		case "pods":
			mt.Pods, err = strs(v, func(it *yaml.Node) error {
				if !isPodUID(it.Value) {
					return perr(it, "pod %q is not a pod UID (8-4-4-4-12 hex digits)", it.Value)
				}
				return nil
			})
		case "cgroups":
			mt.Cgroups, err = strs(v, func(it *yaml.Node) error {
				if !strings.HasPrefix(it.Value, "/") || strings.Contains(it.Value, "..") {
					return perr(it, "cgroup %q must be an absolute cgroup v2 path without '..' (e.g. /system.slice/nginx.service)", it.Value)
				}
				return nil
			})
		case "processes":
			mt.Processes, err = strs(v, func(it *yaml.Node) error {
				if len(it.Value) > 15 {
					return perr(it, "process name %q longer than the kernel's 15 characters (comm)", it.Value)
				}
				return nil
			})
		case "ports":
			var items []*yaml.Node
			if items, err = list(v); err == nil {
				for _, it := range items {
					var p int
					if p, err = integer(it, 1, 65535); err != nil {
						break
					}
					mt.Ports = append(mt.Ports, uint16(p))
				}
			}
		case "peers":
			var items []*yaml.Node
			if items, err = list(v); err == nil {
				for _, it := range items {
					pf, perr2 := parsePeer(it.Value)
					if perr2 != nil {
						err = perr(it, "peer %q: %v (e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)", it.Value, perr2)
						break
					}
					mt.Peers = append(mt.Peers, pf)
				}
			}
		default:
			err = perr(kv.key, "unknown key %q in match (allowed: namespaces, containers, pods, cgroups, processes, ports, peers)", kv.key.Value)
		}
		if err != nil {
			return mt, err
		}
	}
	return mt, nil
}

func parsePeer(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, errors.New("not an address prefix")
		}
		if p.Addr().Is4In6() {
			return p, errors.New("IPv4-mapped prefix; write the IPv4 prefix")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an address or prefix")
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func isPodUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}
