package main

import (
	"fmt"
	"net/netip"

	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/spf13/cobra"
)

const enforcePrecedence = `Precedence: one policy map keyed by cgroup id. For a connection, the attached cgroups
from its own up to the root are looked at in turn and the first (most specific) one with
a matching policy decides (only the nearest attachment's program runs, so a parent never
overrides a child). Within a cgroup: a --remote-port rule, then a --local-port rule, then
a --peer-only rule, then the cgroup's default (attach without --port/--peer); among rules
of one kind the longer --peer prefix wins.`

func newEnforceCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enforce",
		Short: "Set keepalive on every new connection of a cgroup, in the kernel (eBPF)",
		Long: `enforce attaches eBPF programs to a cgroup v2 directory so that every TCP connection of its
processes (and of cgroups below it) gets SO_KEEPALIVE, idle, interval, count and
TCP_USER_TIMEOUT from a policy the moment it is established — set by the kernel before
connect() or accept() returns, with nothing changed in the application and nothing to
restart. Works for static binaries too (no LD_PRELOAD). Linux only; needs root (CAP_BPF,
CAP_NET_ADMIN), cgroup v2 (found in /proc/self/mountinfo, e.g. /sys/fs/cgroup/unified on
a hybrid host) and a kernel with sock_ops (4.13) and cgroup/setsockopt (5.3) programs.

Two modes:
  default  the policy is set at establishment; an application that sets its own keepalive
           afterwards (Go does on every connection: 15 s) keeps its own values.
  enforce  also rewrites the application's later setsockopt of SO_KEEPALIVE, TCP_KEEPIDLE,
           TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT to the policy (the call succeeds,
           the value is ours); 'enforce list' counts the rewrites. An application that tunes
           keepalive on purpose loses its tuning: use default mode or a narrower rule for it.

` + enforcePrecedence + `

Attachments are pinned under the host's BPF filesystem (<bpffs>/keepalive, bpffs mounted
at /sys/fs/bpf if none is; from inside a container, bind-mount the host's /sys/fs/bpf or
the pins stay private to it). They outlive this command; 'enforce list' finds them again,
and the agent shares the same pins.`,
		Example: `  keepalive enforce attach --cgroup /system.slice/redis.service --idle 60 --interval 10 --count 5 --user-timeout 90s
  keepalive enforce attach --cgroup myapp --env aws-nat-gateway --mode enforce --existing
  keepalive enforce attach --cgroup myapp --remote-port 5432 --idle 30 --interval 5 --count 3
  keepalive enforce list --json
  keepalive enforce detach --cgroup myapp`,
	}
	cmd.AddCommand(newEnforceAttachCmd(g), newEnforceListCmd(g), newEnforceDetachCmd(g))
	return cmd
}

// enforceCommon are the flags every enforce subcommand has.
type enforceCommon struct {
	cgroup string
	pinDir string
	dryRun bool
}

func (c *enforceCommon) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.cgroup, "cgroup", "", "cgroup v2 directory: a path relative to the cgroup2 mount, an absolute path, a container id or a Kubernetes pod UID")
	f.StringVar(&c.pinDir, "pin-dir", "", "where the programs and maps are pinned (default <bpffs>/keepalive)")
	f.BoolVar(&c.dryRun, "dry-run", false, "show what would be done, change nothing")
}

// matchFlags are --port --local-port --remote-port --peer.
type matchFlags struct {
	port, local, remote uint16
	peer                string
}

func (m *matchFlags) register(cmd *cobra.Command, verb string) {
	f := cmd.Flags()
	f.Uint16Var(&m.port, "port", 0, verb+" connections whose local or remote port is this (two rules: local and remote)")
	f.Uint16Var(&m.local, "local-port", 0, verb+" connections whose local port is this")
	f.Uint16Var(&m.remote, "remote-port", 0, verb+" connections whose remote port is this")
	f.StringVar(&m.peer, "peer", "", verb+" connections whose remote address is in this prefix (IPv4 or IPv6), e.g. 10.0.0.0/8")
}

func (m *matchFlags) given() bool {
	return m.port != 0 || m.local != 0 || m.remote != 0 || m.peer != ""
}

// matches returns the rule matches the flags stand for (the zero Match: the default).
func (m *matchFlags) matches() ([]enforce.Match, error) {
	n := 0
	for _, p := range []uint16{m.port, m.local, m.remote} {
		if p != 0 {
			n++
		}
	}
	if n > 1 {
		return nil, usagef("give one of --port, --local-port, --remote-port")
	}
	var peer netip.Prefix
	if m.peer != "" {
		var err error
		peer, err = netip.ParsePrefix(m.peer)
		if err != nil {
			a, aerr := netip.ParseAddr(m.peer)
			if aerr != nil {
				return nil, usagef("invalid --peer %q (allowed: an address or CIDR prefix, e.g. 10.0.0.0/8 or fd00::/8)", m.peer)
			}
			peer = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		peer = netip.PrefixFrom(peer.Addr().Unmap(), peer.Bits()).Masked()
		if peer.Bits() < 0 {
			return nil, usagef("invalid --peer %q", m.peer)
		}
	}
	switch {
	case m.port != 0:
		return []enforce.Match{{LocalPort: m.port, Peer: peer}, {RemotePort: m.port, Peer: peer}}, nil
	case m.local != 0:
		return []enforce.Match{{LocalPort: m.local, Peer: peer}}, nil
	case m.remote != 0:
		return []enforce.Match{{RemotePort: m.remote, Peer: peer}}, nil
	}
	return []enforce.Match{{Peer: peer}}, nil
}

// resolveEnforceCgroup turns --cgroup into a path relative to the cgroup2 mount
// (enforce.Host.ResolveTarget: a path, a container id or a pod UID).
func resolveEnforceCgroup(h *enforce.Host, arg string) (rel string, id uint64, note string, err error) {
	if arg == "" {
		return "", 0, "", usagef("say which cgroup: --cgroup PATH (relative to the cgroup2 mount, absolute, or a container id)")
	}
	return h.ResolveTarget(arg)
}

func openEnforce(g *globalOptions, c *enforceCommon, readOnly bool) (*enforce.Host, error) {
	h, err := enforce.Open(enforce.Options{PinDir: c.pinDir, MountBPFFS: true, ReadOnly: readOnly})
	if err != nil {
		return nil, err
	}
	for _, n := range h.Notes() {
		fmt.Fprintln(g.Stderr, "keepalive:", n)
	}
	return h, nil
}
