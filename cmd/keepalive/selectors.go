package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
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
	// warn receives warnings (skipped namespaces); nil means os.Stderr.
	warn       io.Writer
	ports      []string
	peers      []string
	pids       []string
	comms      []string
	states     []string
	idleOver   time.Duration
	netns      string
	allNetNS   bool
	cgroups    []string
	containers []string
	cookies    []string
}

// containerName is what Docker accepts as a container name.
var containerName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// register adds --port --peer --pid --comm --state --idle-over --cgroup --container --cookie
// --netns --all-netns to fs.
func (s *selectorFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&s.ports, "port", nil, "local or remote port (repeatable, comma-separated)")
	fs.StringSliceVar(&s.peers, "peer", nil, "peer address or CIDR prefix, e.g. 10.0.0.5 or 10.0.0.0/8 (repeatable)")
	fs.StringSliceVar(&s.pids, "pid", nil, "owning process ID (repeatable)")
	fs.StringSliceVar(&s.comms, "comm", nil, "owning process name as in /proc/PID/comm (repeatable)")
	fs.StringSliceVar(&s.states, "state", nil, "TCP state: established, syn-sent, fin-wait-1, fin-wait-2, close-wait, last-ack, closing, time-wait, listen (default: all connected states)")
	fs.Var(newDurationValue(&s.idleOver), "idle-over", "only connections idle (nothing received) for longer than this, e.g. 10m")
	fs.StringSliceVar(&s.cgroups, "cgroup", nil, "owning process in this cgroup or below: a path relative to the cgroup root (/system.slice/nginx.service) or under /sys/fs/cgroup (repeatable)")
	fs.StringSliceVar(&s.containers, "container", nil, "owning process in this container: docker/containerd/cri-o ID or prefix (≥ 4 characters), Kubernetes pod UID, or Docker container name (repeatable)")
	fs.StringSliceVar(&s.cookies, "cookie", nil, "socket cookie, as audit --json and reap --json print it (repeatable)")
	fs.StringVar(&s.netns, "netns", "", "network namespace to look in: a name from 'ip netns list' or a path (/var/run/docker/netns/ID, /proc/PID/ns/net); default: the current one, or where the --pid/--comm/--cgroup/--container processes live")
	fs.BoolVar(&s.allNetNS, "all-netns", false, "look in every network namespace of the host: ip netns, containers' and every process's")
}

// given reports whether at least one selector narrows the set (the namespace flags do not
// count: they say where to look, not what).
func (s *selectorFlags) given() bool {
	return len(s.ports) > 0 || len(s.peers) > 0 || len(s.pids) > 0 || len(s.comms) > 0 ||
		len(s.states) > 0 || s.idleOver > 0 || s.narrows()
}

// narrows reports whether a selector picks particular connections or processes (--state and
// --idle-over alone pick every connection in that state or that idle).
func (s *selectorFlags) narrows() bool {
	return len(s.ports) > 0 || len(s.peers) > 0 || len(s.pids) > 0 || len(s.comms) > 0 ||
		len(s.cgroups) > 0 || len(s.containers) > 0 || len(s.cookies) > 0
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
	for _, c := range s.cgroups {
		c = strings.TrimSpace(c)
		if c == "" || strings.ContainsRune(c, 0) || slices.Contains(strings.Split(c, "/"), "..") {
			return sel, usagef("invalid --cgroup %q (a cgroup path such as /system.slice/nginx.service)", c)
		}
		sel.Cgroups = append(sel.Cgroups, c)
	}
	for _, c := range s.containers {
		c = strings.TrimSpace(c)
		lc := strings.ToLower(c)
		switch {
		case len(lc) >= 4 && len(lc) <= 64 && strings.Trim(lc, "0123456789abcdef-_") == "" && strings.Trim(lc[:1], "0123456789abcdef") == "":
			sel.Containers = append(sel.Containers, lc) // ID, ID prefix or pod UID
		case containerName.MatchString(c):
			// A name, as 'docker ps' shows it: the engine knows its ID.
			id, err := host.DockerContainerID(context.Background(), "", c)
			if err != nil {
				return sel, err
			}
			sel.Containers = append(sel.Containers, id)
		default:
			return sel, usagef("invalid --container %q (a container ID or prefix of 4..64 hex digits, a pod UID, or a Docker container name)", c)
		}
	}
	for _, c := range s.cookies {
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(c), "0x"), cookieBase(c), 64)
		if err != nil || n == 0 {
			return sel, usagef("invalid --cookie %q (a socket cookie: a decimal or 0x-prefixed number, 1..2^64-1)", c)
		}
		sel.Cookies = append(sel.Cookies, n)
	}
	return sel, nil
}

func cookieBase(c string) int {
	if strings.HasPrefix(strings.TrimSpace(c), "0x") {
		return 16
	}
	return 10
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
	if err := validNetNS(s.netns); err != nil {
		return host.ListOptions{}, err
	}
	opt := host.ListOptions{Selector: sel, NetNS: s.netns, AllNetNS: s.allNetNS}
	w := s.warn
	if w == nil {
		w = os.Stderr
	}
	opt.Warn = func(err error) { fmt.Fprintln(w, "keepalive: warning:", err) }
	return opt, nil
}

// validNetNS checks a --netns value: a name from 'ip netns list', or an absolute path to a
// namespace file.
func validNetNS(ns string) error {
	if strings.ContainsRune(ns, 0) || ns == "." || ns == ".." ||
		(strings.Contains(ns, "/") && (!strings.HasPrefix(ns, "/") || slices.Contains(strings.Split(ns, "/"), ".."))) {
		return usagef("invalid --netns %q (a name from 'ip netns list', or an absolute path such as /var/run/docker/netns/ID or /proc/PID/ns/net)", ns)
	}
	return nil
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
	add("cgroup", s.cgroups)
	add("container", s.containers)
	add("cookie", s.cookies)
	if s.allNetNS {
		parts = append(parts, "--all-netns")
	}
	return strings.Join(parts, " ")
}

// selfGuard keeps destructive commands off the connections of the invoking session: those
// owned by this process or one of its ancestors (the sshd session, the shell, sudo).
type selfGuard struct {
	pids    map[int]bool
	include bool
}

// registerSelf adds --include-self to fs.
func (g *selfGuard) registerSelf(fs *pflag.FlagSet) {
	fs.BoolVar(&g.include, "include-self", false, "also destroy connections of this command's own session (its ancestor processes, e.g. the sshd session you are logged in through)")
}

// init records the session's processes; call once before protects.
func (g *selfGuard) init() {
	g.pids = map[int]bool{}
	for _, p := range host.SessionPIDs(os.Getpid()) {
		g.pids[p] = true
	}
}

// protects reports whether s carries the invoking session and must be left alone.
func (g *selfGuard) protects(s *host.Socket) bool {
	if g.include {
		return false
	}
	for _, o := range s.Owners {
		if g.pids[o.PID] {
			return true
		}
	}
	return false
}

// nsText names a socket's network namespace for output: its label (name, container, first
// process), "" for the current namespace.
func nsText(s *host.Socket) string {
	if l := s.Namespace.Label(); l != "" {
		return l
	}
	return s.NetNS
}
