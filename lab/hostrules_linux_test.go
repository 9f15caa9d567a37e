//go:build linux

package lab

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/nftables"
)

// hostRules describes every nftables table of the current namespace with its chains and
// rule counts (Docker's iptables-nft rules among them).
func hostRules(t *testing.T) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range tables {
		chains, err := c.ListChainsOfTableFamily(tb.Family)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%d %s %s %d", tb.Family, tb.Name, ch.Name, len(rules)))
		}
		out = append(out, fmt.Sprintf("%d %s", tb.Family, tb.Name))
	}
	slices.Sort(out)
	return out
}

// TestHostRulesUntouched runs a lab and cleans up after it beside the host's own firewall
// (Docker's iptables/nftables rules on the project's machines): the lab works inside its own
// namespaces, so the host's tables, chains and rules are the same afterwards.
func TestHostRulesUntouched(t *testing.T) {
	requireRoot(t)
	// Other software (a container started meanwhile) may change the host's rules during the
	// run; only a change that happens in two runs out of two counts.
	var before, after []string
	for try := 0; try < 2; try++ {
		before = hostRules(t)
		r := runLab(t, Options{Scenario: Crash, Config: fastCfg})
		assertDetected(t, r, "ETIMEDOUT")
		if _, err := CleanMatching(false, func(l Leftover) bool { return false }); err != nil {
			t.Fatal(err)
		}
		if after = hostRules(t); slices.Equal(before, after) {
			t.Logf("host tables, chains and rule counts unchanged: %v", before)
			return
		}
	}
	t.Fatalf("host nftables changed by a lab run:\nbefore %v\nafter  %v", before, after)
}
