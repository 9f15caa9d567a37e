//go:build linux

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/vishvananda/netlink"
)

// TestCleanChecksOwners checks lab clean on this test's own leftovers only: a stale
// /var/run/netns entry of a dead run is removed; a namespace a live run still holds, and an
// interface whose veth peer lies in it, are kept; once the run lets go they are removed.
func TestCleanChecksOwners(t *testing.T) {
	nstest.Require(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("t%x", os.Getpid()&0xffffff)
	stale := fmt.Sprintf("%s-%d-%s-c", Prefix, dead.Process.Pid, tag)
	live := fmt.Sprintf("%s-%d-%s-s", Prefix, os.Getpid(), tag)
	link := Prefix + tag
	mine := func(l Leftover) bool { return strings.Contains(l.Name, tag) }
	table := Prefix + tag
	t.Cleanup(func() {
		if c, err := nftables.New(); err == nil {
			c.DelTable(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
			_ = c.Flush()
		}
		_ = netnsx.DeleteNamed(live)
		_ = os.Remove(filepath.Join(netnsDir, stale))
		if l, err := netlink.LinkByName(link); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	// A stale entry: a plain file, as an interrupted 'ip netns add' leaves.
	unlock, err := netnsx.LockDir()
	if err != nil {
		t.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(netnsDir, stale), nil, 0)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	h, err := newNamedNS(live)
	if err != nil {
		t.Fatal(err)
	}
	ha, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	// A veth with one end here and the other in the live run's namespace.
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: link}, PeerName: "peer", PeerNamespace: netlink.NsFd(int(h))}); err != nil {
		t.Fatal(err)
	}
	// A table in this namespace: it carries no owner, so it is kept while any run is live.
	nc, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	nc.AddTable(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rep, err := CleanMatching(false, mine)
	if err != nil {
		t.Fatal(err)
	}
	names := func(ls []Leftover) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Kind+" "+l.Name+" "+l.State)
		}
		slices.Sort(out)
		return out
	}
	if got, want := names(rep.Removed), []string{"netns " + stale + " stale"}; !slices.Equal(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	if got, want := names(rep.Skipped), []string{"link " + link + " ", "netns " + live + " ", "nft " + table + " "}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if _, err := netlink.LinkByName(link); err != nil {
		t.Errorf("the live run's interface was removed: %v", err)
	}
	// The run lets go of its namespace (as a killed run does): now it is left behind.
	h.Close()
	ha.Close()
	rep, err = CleanMatching(false, mine)
	if err != nil {
		t.Fatal(err)
	}
	// (The table is kept as long as any lab run on the machine is live: count only ours.)
	if got := names(rep.Removed); len(got) < 2 || slices.ContainsFunc(rep.Skipped, func(l Leftover) bool { return l.Kind != "nft" }) {
		t.Errorf("after the run let go: removed %v, kept %v", got, names(rep.Skipped))
	}
	keptTable := slices.ContainsFunc(rep.Skipped, func(l Leftover) bool { return l.Kind == "nft" })
	if left, _ := Leftovers(); slices.ContainsFunc(left, func(l Leftover) bool { return mine(l) && !(keptTable && l.Kind == "nft") }) {
		t.Errorf("left behind: %v", left)
	}
	// With no live run of this test any more, all=true removes the table whatever runs.
	if keptTable {
		if _, err := CleanMatching(true, mine); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := Leftovers(); slices.ContainsFunc(left, mine) {
		t.Errorf("left behind after --all: %v", left)
	}
}
