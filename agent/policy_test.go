package agent

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
)

const samplePolicy = `version: 1
interval: 10s
budgets:
  probes_per_second: 20
  retrofits_per_sweep: 50
rules:
  - name: db
    match:
      processes: [java, psql]
      ports: 5432
      peers: [10.0.0.0/8, "fd00::/8"]
    action: enforce
    keepalive: {idle: 60s, interval: 10s, count: 5, user_timeout: 110s, mode: enforce}
  - name: lab
    match:
      namespaces: [kalab-a]
    action: probe
    probe:
      idle_over: 30s
      reap: true
  - action: report
`

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(samplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	if p.Interval != 10*time.Second || p.Budgets != (Budgets{20, 50}) || len(p.Rules) != 3 {
		t.Fatalf("got %+v", p)
	}
	db := p.Rules[0]
	want := keepalive.Config{Idle: time.Minute, Interval: 10 * time.Second, Count: 5, UserTimeout: 110 * time.Second}
	if db.Name != "db" || db.Line != 7 || db.Action != ActionEnforce || db.Keepalive != want || !db.ModeEnforce {
		t.Fatalf("rule db: %+v", db)
	}
	if len(db.Match.Ports) != 1 || db.Match.Ports[0] != 5432 || len(db.Match.Peers) != 2 {
		t.Fatalf("match: %+v", db.Match)
	}
	if r := p.Rules[1]; r.IdleOver != 30*time.Second || !r.Reap || r.Action != ActionProbe {
		t.Fatalf("rule lab: %+v", r)
	}
	if r := p.Rules[2]; r.Name != "rule-3" || r.Action != ActionReport {
		t.Fatalf("rule 3: %+v", r)
	}
	if !p.NeedsOwners() {
		t.Fatal("NeedsOwners false with a processes match")
	}
}

func TestParsePolicyDefaults(t *testing.T) {
	p, err := ParsePolicy([]byte("rules: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Budgets != DefaultBudgets() || p.Interval != 0 || len(p.Rules) != 0 || p.NeedsOwners() {
		t.Fatalf("%+v", p)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		line     int
		want     string
	}{
		{"empty", "", 0, "empty file"},
		{"no rules", "interval: 15s\n", 1, "no `rules:`"},
		{"unknown top key", "rules: []\nintervall: 5s\n", 2, `unknown key "intervall"`},
		{"interval range", "interval: 100ms\nrules: []\n", 1, "out of range"},
		{"bad duration", "interval: soon\nrules: []\n", 1, `invalid duration "soon"`},
		{"version", "version: 2\nrules: []\n", 1, `version "2"`},
		{"budget range", "budgets:\n  probes_per_second: 0\nrules: []\n", 2, "0 out of range (allowed: 1 to 10000)"},
		{"budget int", "budgets:\n  retrofits_per_sweep: 1.5\nrules: []\n", 2, `invalid integer "1.5"`},
		{"rules not list", "rules: {a: 1}\n", 1, "rules must be a list"},
		{"no action", "rules:\n  - name: x\n", 2, "has no action"},
		{"bad action", "rules:\n  - action: kill\n", 2, `unknown action "kill"`},
		{"enforce without keepalive", "rules:\n  - action: enforce\n", 2, "needs keepalive"},
		{"keepalive on report", "rules:\n  - action: report\n    keepalive: {idle: 5s}\n", 3, "only for action enforce"},
		{"probe on enforce", "rules:\n  - action: enforce\n    keepalive: {idle: 5s}\n    probe: {reap: true}\n", 4, "only for action probe"},
		{"keepalive fraction", "rules:\n  - action: enforce\n    keepalive: {idle: 1500ms}\n", 3, "keepalive:"},
		{"keepalive count", "rules:\n  - action: enforce\n    keepalive:\n      idle: 5s\n      count: 500\n", 5, "500 out of range"},
		{"keepalive empty", "rules:\n  - action: enforce\n    keepalive: {}\n", 3, "sets nothing"},
		{"bad mode", "rules:\n  - action: enforce\n    keepalive: {idle: 5s, mode: strict}\n", 3, `unknown mode "strict"`},
		{"bad port", "rules:\n  - action: report\n    match:\n      ports: [80, 70000]\n", 4, "70000 out of range (allowed: 1 to 65535)"},
		{"bad peer", "rules:\n  - action: report\n    match:\n      peers:\n        - 10.0.0.0/33\n", 5, `peer "10.0.0.0/33"`},
		{"bad pod", "rules:\n  - action: report\n    match: {pods: [abc]}\n", 3, "not a pod UID"},
		{"bad cgroup", "rules:\n  - action: report\n    match: {cgroups: [system.slice]}\n", 3, "absolute cgroup v2 path"},
		{"long comm", "rules:\n  - action: report\n    match: {processes: [averyveryverylongname]}\n", 3, "15 characters"},
		{"unknown match key", "rules:\n  - action: report\n    match: {process: [x]}\n", 3, `unknown key "process" in match`},
		{"empty list", "rules:\n  - action: report\n    match: {ports: []}\n", 3, "empty list"},
		{"dup key", "rules: []\nrules: []\n", 2, `key "rules" repeated (first on line 1)`},
		{"dup rule name", "rules:\n  - {name: a, action: report}\n  - {name: a, action: report}\n", 3, `rule name "a" already used on line 2`},
		{"alias", "x: &a 1\nrules: []\ny: *a\n", 3, "aliases"},
		{"second doc", "rules: []\n---\nrules: []\n", 2, "second YAML document"},
		{"syntax", "rules: [\n", 0, "did not find"},
		{"bool", "rules:\n  - action: probe\n    probe: {reap: yes}\n", 3, `invalid boolean "yes"`},
		{"idle_over", "rules:\n  - action: probe\n    probe: {idle_over: 0s}\n", 3, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.in))
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *PolicyError", err)
			}
			if pe.Line != tc.line || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q (line %d), want line %d and %q", err, pe.Line, tc.line, tc.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	ctr := &host.Container{Runtime: "docker", ID: strings.Repeat("ab", 32), Pod: "0a1b2c3d-0000-1111-2222-333344445555"}
	c := &Conn{
		NetNS: "kalab-a", NetNSLabel: "kalab-a",
		Local:  netip.MustParseAddrPort("10.200.0.1:40000"),
		Remote: netip.MustParseAddrPort("[::ffff:10.200.0.2]:5432"),
		Comms:  []string{"psql"}, Cgroups: []string{"/system.slice/db.service"},
		Containers: []*host.Container{ctr},
	}
	for _, tc := range []struct {
		m    Match
		want bool
	}{
		{Match{}, true},
		{Match{Namespaces: []string{"other", "kalab-a"}}, true},
		{Match{Namespaces: []string{"other"}}, false},
		{Match{Ports: []uint16{5432}}, true},
		{Match{Ports: []uint16{40000}}, true},
		{Match{Ports: []uint16{80}}, false},
		{Match{Peers: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}}, true},
		{Match{Peers: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}, false},
		{Match{Processes: []string{"psql"}}, true},
		{Match{Processes: []string{"java"}}, false},
		{Match{Cgroups: []string{"/system.slice"}}, true},
		{Match{Cgroups: []string{"/system"}}, false},
		{Match{Cgroups: []string{"/"}}, true},
		{Match{Containers: []string{strings.Repeat("ab", 6)}}, true},
		{Match{Containers: []string{"cdcdcdcdcdcd"}}, false},
		{Match{Pods: []string{ctr.Pod}}, true},
		{Match{Pods: []string{"0a1b2c3d-0000-1111-2222-333344445556"}}, false},
		{Match{Processes: []string{"psql"}, Ports: []uint16{80}}, false},
	} {
		if got := tc.m.Matches(c); got != tc.want {
			t.Errorf("%+v: got %v, want %v", tc.m, got, tc.want)
		}
	}
	p := &Policy{Rules: []Rule{{Name: "a", Match: Match{Ports: []uint16{80}}}, {Name: "b"}}}
	if r := p.RuleFor(c); r == nil || r.Name != "b" {
		t.Fatalf("RuleFor: %+v", r)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(samplePolicy))
	f.Add([]byte("rules: []\n"))
	f.Add([]byte("rules:\n  - action: probe\n    probe: {idle_over: 1m, reap: true}\n"))
	f.Add([]byte("x: &a [1]\nrules: *a\n"))
	f.Add([]byte("rules:\n  - action: report\n    match: {peers: ['::ffff:1.2.3.4/128']}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *PolicyError", err)
			}
			return
		}
		for _, r := range p.Rules {
			switch r.Action {
			case ActionReport, ActionEnforce, ActionProbe:
			default:
				t.Fatalf("rule %q with action %q accepted", r.Name, r.Action)
			}
			if r.Action == ActionEnforce && r.Keepalive == (keepalive.Config{}) {
				t.Fatal("enforce rule without settings accepted")
			}
		}
	})
}
