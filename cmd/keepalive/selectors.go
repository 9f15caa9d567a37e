package main

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive/host"
	"github.com/spf13/pflag"
)

// selectorFlags are the connection selectors shared by audit, enable, reap and probe:
//
//	var sf selectorFlags
//	sf.register(cmd.Flags())
//	...
//	opt, err := sf.listOptions() // host.ListOptions with Selector, NetNS, AllNetNS filled
//
// Every flag may be repeated or take a comma-separated list; values of one flag are ORed,
// different flags are ANDed.
type selectorFlags struct {
	ports    []string
	peers    []string
	pids     []string
	comms    []string
	states   []string
	idleOver time.Duration
	netns    string
	allNetNS bool
}

// register adds --port --peer --pid --comm --state --idle-over --netns --all-netns to fs.
func (s *selectorFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&s.ports, "port", nil, "local or remote port (repeatable, comma-separated)")
	fs.StringSliceVar(&s.peers, "peer", nil, "peer address or CIDR prefix, e.g. 10.0.0.5 or 10.0.0.0/8 (repeatable)")
	fs.StringSliceVar(&s.pids, "pid", nil, "owning process ID (repeatable)")
	fs.StringSliceVar(&s.comms, "comm", nil, "owning process name as in /proc/PID/comm (repeatable)")
	fs.StringSliceVar(&s.states, "state", nil, "TCP state: established, syn-sent, fin-wait-1, fin-wait-2, close-wait, last-ack, closing, time-wait, listen (default: all connected states)")
	fs.Var(newDurationValue(&s.idleOver), "idle-over", "only connections idle (nothing received) for longer than this, e.g. 10m")
	fs.StringVar(&s.netns, "netns", "", "named network namespace to look in (/var/run/netns/NAME)")
	fs.BoolVar(&s.allNetNS, "all-netns", false, "look in the current and every named network namespace")
}

// given reports whether at least one selector narrows the set (the namespace flags do not
// count: they say where to look, not what).
func (s *selectorFlags) given() bool {
	return len(s.ports) > 0 || len(s.peers) > 0 || len(s.pids) > 0 || len(s.comms) > 0 ||
		len(s.states) > 0 || s.idleOver > 0
}

// selector parses the flags into a host.Selector; errors are usage errors naming the value.
func (s *selectorFlags) selector() (host.Selector, error) {
	var sel host.Selector
	for _, p := range s.ports {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
		if err != nil || n == 0 {
			return sel, usagef("invalid --port %q (allowed: 1..65535)", p)
		}
		sel.Ports = append(sel.Ports, uint16(n))
	}
	for _, p := range s.peers {
		p = strings.TrimSpace(p)
		var pfx netip.Prefix
		if strings.Contains(p, "/") {
			var err error
			if pfx, err = netip.ParsePrefix(p); err != nil {
				return sel, usagef("invalid --peer %q: %v (want an address like 10.0.0.5 or a prefix like 10.0.0.0/8)", p, err)
			}
			pfx = pfx.Masked()
		} else {
			a, err := netip.ParseAddr(strings.Trim(p, "[]"))
			if err != nil {
				return sel, usagef("invalid --peer %q (want an address like 10.0.0.5 or ::1, or a prefix like 10.0.0.0/8)", p)
			}
			a = a.Unmap()
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), max(0, pfx.Bits()-96))
		}
		sel.Peers = append(sel.Peers, pfx)
	}
	for _, p := range s.pids {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 1<<22 {
			return sel, usagef("invalid --pid %q (allowed: 1..4194304)", p)
		}
		sel.PIDs = append(sel.PIDs, n)
	}
	for _, c := range s.comms {
		c = strings.TrimSpace(c)
		if c == "" || len(c) > 15 {
			return sel, usagef("invalid --comm %q (a process name of 1..15 characters, as in /proc/PID/comm)", c)
		}
		sel.Comms = append(sel.Comms, c)
	}
	for _, st := range s.states {
		v, err := host.ParseState(st)
		if err != nil {
			return sel, usagef("invalid --state: %v", err)
		}
		sel.States = append(sel.States, v)
	}
	sel.IdleOver = s.idleOver
	return sel, nil
}

// listOptions returns host.ListOptions for the selectors and namespace flags.
func (s *selectorFlags) listOptions() (host.ListOptions, error) {
	sel, err := s.selector()
	if err != nil {
		return host.ListOptions{}, err
	}
	if s.netns != "" && s.allNetNS {
		return host.ListOptions{}, usagef("--netns %q and --all-netns exclude each other", s.netns)
	}
	if strings.ContainsAny(s.netns, "/\x00") || s.netns == "." || s.netns == ".." {
		return host.ListOptions{}, usagef("invalid --netns %q (a name from 'ip netns list')", s.netns)
	}
	return host.ListOptions{Selector: sel, NetNS: s.netns, AllNetNS: s.allNetNS}, nil
}

// describe renders the active selectors for messages, e.g. "--port 443 --comm nginx".
func (s *selectorFlags) describe() string {
	var parts []string
	add := func(flag string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, "--"+flag+" "+strings.Join(vals, ","))
		}
	}
	add("port", s.ports)
	add("peer", s.peers)
	add("pid", s.pids)
	add("comm", s.comms)
	add("state", s.states)
	if s.idleOver > 0 {
		parts = append(parts, "--idle-over "+s.idleOver.String())
	}
	if s.netns != "" {
		parts = append(parts, "--netns "+s.netns)
	}
	if s.allNetNS {
		parts = append(parts, "--all-netns")
	}
	return strings.Join(parts, " ")
}
