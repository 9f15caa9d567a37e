//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Leftovers lists what the lab created and has not removed: named namespaces in
// /var/run/netns (also stale entries that hold no namespace), interfaces and nftables tables
// in the current namespace, all recognised by Prefix. Namespaces carry the PID of the lab
// process that made them.
func Leftovers() ([]Leftover, error) {
	var out []Leftover
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab: list %s: %w", netnsDir, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), Prefix) {
			l := Leftover{Kind: "netns", Name: e.Name(), PID: ownerPID(e.Name())}
			if _, err := nsInode(filepath.Join(netnsDir, e.Name())); err != nil {
				l.State = "stale"
			}
			out = append(out, l)
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("lab: list links: %w", err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, Prefix) {
			out = append(out, Leftover{Kind: "link", Name: l.Attrs().Name})
		}
	}
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("lab: nftables: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("lab: list nftables tables: %w", err)
	}
	for _, t := range tables {
		if strings.HasPrefix(t.Name, Prefix) {
			out = append(out, Leftover{Kind: "nft", Name: t.Name, family: uint8(t.Family)})
		}
	}
	return out, nil
}

// nsInode is the inode of the namespace mounted at path; an error when path holds none.
func nsInode(path string) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, err
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return 0, errors.New("not a mounted namespace")
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// ownerPID parses the PID from a namespace name kalab-<pid>-<runid>-<role>.
func ownerPID(name string) int {
	f := strings.Split(name, "-")
	if len(f) < 3 {
		return 0
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0
	}
	return pid
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// holdsNS reports whether process pid still holds the namespace mounted at path: an open descriptor of
// it or a thread inside it. A lab run keeps a handle on each of its namespaces until it
// deletes them, so a live PID that holds none is a reused PID, not the run.
func holdsNS(pid int, path string) bool {
	var ns unix.Stat_t
	if err := unix.Stat(path, &ns); err != nil {
		return false
	}
	want := "net:[" + strconv.FormatUint(ns.Ino, 10) + "]"
	base := "/proc/" + strconv.Itoa(pid)
	if ents, err := os.ReadDir(base + "/fd"); err == nil {
		for _, e := range ents {
			var st unix.Stat_t
			if unix.Stat(base+"/fd/"+e.Name(), &st) == nil && st.Ino == ns.Ino && st.Dev == ns.Dev {
				return true
			}
		}
	}
	if ts, err := os.ReadDir(base + "/task"); err == nil {
		for _, t := range ts {
			if l, err := os.Readlink(base + "/task/" + t.Name() + "/ns/net"); err == nil && l == want {
				return true
			}
		}
	}
	return false
}

// Clean removes leftovers of lab runs whose process is gone (all of them with all set):
// namespaces, stale /var/run/netns entries, and interfaces and nftables tables named with
// Prefix in the current namespace. What belongs to a lab run that is still running is kept
// and listed in Skipped: a namespace whose creating process is alive and still holds it; an
// interface whose veth peer lies in such a namespace; an interface or table whose creator
// cannot be told while any lab run is running. What could not be removed is listed in
// Failed with the reason and the fix, and makes the error.
func Clean(all bool) (CleanReport, error) { return CleanMatching(all, nil) }

// CleanMatching is Clean limited to the leftovers match accepts (all of them when match is
// nil): a test cleans only its own, never other runs' leftovers on a shared machine.
func CleanMatching(all bool, match func(Leftover) bool) (CleanReport, error) {
	if os.Geteuid() != 0 {
		return CleanReport{}, ErrNotRoot
	}
	var rep CleanReport
	// The lock ip netns add and netnsx.NewNamed take: no namespace is half-made while we look.
	unlock, err := netnsx.LockDir()
	if err != nil {
		return rep, fmt.Errorf("lab: %w", err)
	}
	defer unlock()
	left, err := Leftovers()
	if err != nil {
		return rep, err
	}
	liveLeft := left
	if match != nil {
		kept := left[:0:0]
		for _, l := range left {
			if match(l) {
				kept = append(kept, l)
			}
		}
		left = kept
	}
	// Which runs are live, and the netnsid (as the current namespace numbers it) of each of
	// their namespaces, to tell the owner of a veth whose peer lies there.
	livePIDs := map[int]bool{}
	liveNSIDs := map[int]int{}
	for _, l := range liveLeft {
		if l.Kind != "netns" || !alive(l.PID) {
			continue
		}
		p := filepath.Join(netnsDir, l.Name)
		if _, err := nsInode(p); err != nil {
			continue // stale: nothing live about it
		}
		if !holdsNS(l.PID, p) {
			continue
		}
		livePIDs[l.PID] = true
		if f, err := os.Open(p); err == nil {
			if id, err := netlink.GetNetNsIdByFd(int(f.Fd())); err == nil && id >= 0 {
				liveNSIDs[id] = l.PID
			}
			f.Close()
		}
	}
	anyLive := 0
	for pid := range livePIDs {
		anyLive = pid
		break
	}
	var errs []error
	var nc *nftables.Conn
	fail := func(l Leftover, err error, fix string) {
		rep.Failed = append(rep.Failed, CleanFailure{Leftover: l, Reason: err.Error(), Fix: fix})
		errs = append(errs, fmt.Errorf("lab: cannot remove %s: %w (fix: %s)", l, err, fix))
	}
	for _, l := range left {
		switch l.Kind {
		case "netns":
			if !all && livePIDs[l.PID] {
				rep.Skipped = append(rep.Skipped, l)
				continue
			}
			if err := removeNS(l.Name); err != nil {
				fail(l, err, "a mount of this entry is hidden under a later mount of "+netnsDir+
					"; run 'umount -l "+filepath.Join(netnsDir, l.Name)+"' until it fails, then remove the file, or reboot")
				continue
			}
		case "link":
			lk, err := netlink.LinkByName(l.Name)
			if err != nil {
				continue // gone with its peer
			}
			owner := 0
			if id := lk.Attrs().NetNsID; id >= 0 {
				owner = liveNSIDs[id]
			} else {
				owner = anyLive // no peer to tell the owner by: keep it while any run is live
			}
			if !all && owner != 0 {
				l.PID = owner
				rep.Skipped = append(rep.Skipped, l)
				continue
			}
			if err := netlink.LinkDel(lk); err != nil {
				fail(l, err, "'ip link del "+l.Name+"'")
				continue
			}
		case "nft":
			if !all && anyLive != 0 {
				// Tables carry no owner: keep them while any lab run is live.
				l.PID = anyLive
				rep.Skipped = append(rep.Skipped, l)
				continue
			}
			if nc == nil {
				if nc, err = nftables.New(); err != nil {
					fail(l, err, "check that nftables (CONFIG_NF_TABLES) is available")
					continue
				}
			}
			nc.DelTable(&nftables.Table{Name: l.Name, Family: nftables.TableFamily(l.family)})
			if err := nc.Flush(); err != nil {
				fail(l, err, "'nft delete table "+familyName(l.family)+" "+l.Name+"'")
				continue
			}
		}
		rep.Removed = append(rep.Removed, l)
	}
	return rep, errors.Join(errs...)
}

func familyName(f uint8) string {
	switch nftables.TableFamily(f) {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	case nftables.TableFamilyARP:
		return "arp"
	}
	return strconv.Itoa(int(f))
}

// removeNS removes a /var/run/netns entry: every mount stacked on it, then the file. An entry
// whose mount is hidden under a later mount of the directory (left by a run of an older
// version next to 'ip netns add') cannot be unmounted through its path; netnsx.RemoveHidden
// removes it from a private mount namespace.
func removeNS(name string) error {
	p := filepath.Join(netnsDir, name)
	for i := 0; i < 16; i++ {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			break
		}
	}
	err := os.Remove(p)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if errors.Is(err, unix.EBUSY) {
		if herr := netnsx.RemoveHidden(name); herr == nil {
			return nil
		} else {
			return errors.Join(err, herr)
		}
	}
	return err
}
