package probe

import (
	"context"
	"errors"

	"github.com/keepalive-dev/keepalive/host"
)

// hostCheckerBatch is the number of flows up to which HostChecker looks each socket up on
// its own; larger batches are read in one sock_diag dump.
const hostCheckerBatch = 128

// HostChecker returns the [Checker] the prober uses unless told otherwise: right before every
// injection it reads each socket again from the kernel through sock_diag in network namespace
// ns ("" for the current one, else a name under /var/run/netns or a path) — one lookup per
// socket for small batches, one dump for large ones. A socket whose tcp_info is missing is
// reported busy: nothing is ever injected blindly.
//
// socks, when given, are the sockets as listed (host.List): each flow is then pinned to its
// socket by cookie, so a different socket that reuses the addresses meanwhile is reported as
// not found. It works on Linux only (elsewhere Check fails).
func HostChecker(ns string, socks ...host.Socket) Checker {
	c := hostChecker{ns: ns, socks: make(map[Flow]host.Socket, len(socks))}
	for _, s := range socks {
		c.socks[Flow{Local: s.Local, Remote: s.Remote}.Normalize()] = s
	}
	return c
}

type hostChecker struct {
	ns    string
	socks map[Flow]host.Socket
}

func hostSockState(s *host.Socket) SockState {
	st := SockState{Found: true, Established: s.State == host.StateEstablished, State: s.State.String()}
	if s.Info != nil {
		st.Unacked, st.NotSent = s.Info.Unacked, s.Info.NotSent
	} else {
		// Without tcp_info, assume busy: never inject blindly.
		st.Unacked = 1
	}
	return st
}

// Check implements Checker.
func (c hostChecker) Check(ctx context.Context, flows []Flow) ([]SockState, error) {
	out := make([]SockState, len(flows))
	small := len(flows) <= hostCheckerBatch
	for _, f := range flows {
		if _, ok := c.socks[f.Normalize()]; !ok {
			small = false // addresses only: the dump finds it
			break
		}
	}
	if small {
		for i, f := range flows {
			s := c.socks[f.Normalize()]
			fresh, err := host.Lookup(ctx, s)
			if err != nil {
				if errors.Is(err, host.ErrGone) {
					continue
				}
				return nil, err
			}
			if fresh.Cookie != s.Cookie && s.Cookie != 0 {
				continue // a different socket now owns these addresses
			}
			out[i] = hostSockState(&fresh)
		}
		return out, nil
	}
	want := make(map[Flow]int, len(flows))
	for i, f := range flows {
		want[f.Normalize()] = i
	}
	err := host.Walk(ctx, host.ListOptions{NetNS: c.ns, Selector: host.Selector{States: host.ConnectedStates()}}, func(s *host.Socket) error {
		f := Flow{Local: s.Local, Remote: s.Remote}.Normalize()
		i, ok := want[f]
		if !ok {
			return nil
		}
		if orig := c.socks[f]; orig.Cookie != 0 && orig.Cookie != s.Cookie {
			return nil
		}
		out[i] = hostSockState(s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
