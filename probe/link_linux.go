package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkChecker wraps a Checker: for every socket found established it looks
// up the route toward the peer in the prober's namespace and reports the
// outgoing interface when it is down or has no carrier. A probe cannot
// leave then, and the local stack's answer to the learning segment is
// dropped before the capture sees it: without this check such a
// connection would be "unknown", not "unreachable".
type linkChecker struct {
	Checker
	h *netlink.Handle
}

func newLinkHandle(ns string) (*netlink.Handle, error) {
	if ns == "" {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	nh, err := netnsx.Open(ns)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	return netlink.NewHandleAt(nh, unix.NETLINK_ROUTE)
}

// Check implements Checker.
func (c linkChecker) Check(ctx context.Context, flows []Flow) ([]SockState, error) {
	st, err := c.Checker.Check(ctx, flows)
	if err != nil || len(st) != len(flows) {
		return st, err
	}
	down := map[netip.Addr]string{} // per remote address, for this batch only
	for i, f := range flows {
		if !st[i].Found || !st[i].Established {
			continue
		}
		ra := f.Remote.Addr()
		why, ok := down[ra]
		if !ok {
			why = c.linkDown(ra)
			down[ra] = why
		}
		st[i].LinkDown = why
	}
	return st, nil
}

// linkDown returns why the interface toward remote cannot send ("" when it
// can, or when that cannot be told).
func (c linkChecker) linkDown(remote netip.Addr) string {
	routes, err := c.h.RouteGet(remote.AsSlice())
	if err != nil {
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
			return "no route to " + remote.String()
		}
		return ""
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return ""
	}
	l, err := c.h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return ""
	}
	return linkDownReason(l.Attrs())
}

// linkDownReason says why a link cannot send: administratively down, or up
// without carrier (IFF_LOWER_UP clear: cable out, the veth's other end
// down). "" when it can.
func linkDownReason(a *netlink.LinkAttrs) string {
	switch {
	case a.RawFlags&unix.IFF_UP == 0:
		return fmt.Sprintf("%s is down", a.Name)
	case a.RawFlags&unix.IFF_LOWER_UP == 0:
		return fmt.Sprintf("%s has no carrier (%s)", a.Name, a.OperState)
	}
	return ""
}

// withLinkCheck wraps chk with the link check of the namespace ns.
func withLinkCheck(chk Checker, ns string) (Checker, error) {
	h, err := newLinkHandle(ns)
	if err != nil {
		return nil, fmt.Errorf("route netlink socket%s: %w", nsSuffix(ns), err)
	}
	return linkChecker{Checker: chk, h: h}, nil
}

func (c linkChecker) close() { c.h.Close() }

func nsSuffix(ns string) string {
	if ns == "" {
		return ""
	}
	return " in network namespace " + ns
}
