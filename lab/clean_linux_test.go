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
	t.Cleanup(func() {
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
	if got, want := names(rep.Skipped), []string{"link " + link + " ", "netns " + live + " "}; !slices.Equal(got, want) {
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
	if got := names(rep.Removed); len(got) != 2 || len(rep.Skipped) != 0 {
		t.Errorf("after the run let go: removed %v, kept %v", got, names(rep.Skipped))
	}
	if left, _ := Leftovers(); slices.ContainsFunc(left, mine) {
		t.Errorf("left behind: %v", left)
	}
}
