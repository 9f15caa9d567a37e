//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Leftovers lists what the lab created and has not removed: named namespaces in
// /var/run/netns, interfaces and nftables tables in the current namespace, all recognised by
// Prefix. Namespaces carry the PID of the lab process that made them.
func Leftovers() ([]Leftover, error) {
	var out []Leftover
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab: list %s: %w", netnsDir, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), Prefix) {
			out = append(out, Leftover{Kind: "netns", Name: e.Name(), PID: ownerPID(e.Name())})
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

// Clean removes leftovers of lab runs whose process is gone (all of them with all set):
// namespaces, and interfaces and nftables tables named with Prefix in the current namespace.
// Namespaces of a lab process that is still running are skipped and listed in Skipped.
func Clean(all bool) (CleanReport, error) {
	if os.Geteuid() != 0 {
		return CleanReport{}, ErrNotRoot
	}
	var rep CleanReport
	left, err := Leftovers()
	if err != nil {
		return rep, err
	}
	var errs []error
	var nc *nftables.Conn
	for _, l := range left {
		switch l.Kind {
		case "netns":
			if !all && alive(l.PID) {
				rep.Skipped = append(rep.Skipped, l)
				continue
			}
			if err := deleteNamedNS(l.Name); err != nil {
				errs = append(errs, err)
				continue
			}
		case "link":
			lk, err := netlink.LinkByName(l.Name)
			if err != nil {
				continue // gone with its peer
			}
			if err := netlink.LinkDel(lk); err != nil {
				errs = append(errs, fmt.Errorf("lab: delete link %s: %w", l.Name, err))
				continue
			}
		case "nft":
			if nc == nil {
				if nc, err = nftables.New(); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			nc.DelTable(&nftables.Table{Name: l.Name, Family: nftables.TableFamily(l.family)})
			if err := nc.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("lab: delete nftables table %s: %w", l.Name, err))
				continue
			}
		}
		rep.Removed = append(rep.Removed, l)
	}
	return rep, errors.Join(errs...)
}
