package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepalive-dev/keepalive"
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

// resolveEnforceCgroup turns --cgroup into a path relative to the cgroup2 mount; a container
// id is resolved through its processes' cgroups, a pod UID through the kubelet's directory
// names. The note says what was done on the way.
func resolveEnforceCgroup(h *enforce.Host, arg string) (rel string, id uint64, note string, err error) {
	if arg == "" {
		return "", 0, "", usagef("say which cgroup: --cgroup PATH (relative to the cgroup2 mount, absolute, or a container id)")
	}
	rel, id, err = h.ResolveCgroup(arg)
	if err == nil {
		return rel, id, "", nil
	}
	if enforce.IsPodUID(arg) {
		prel, perr := enforce.PodCgroup(arg)
		if perr != nil {
			return "", 0, "", perr
		}
		rel, id, err = h.ResolveCgroup(prel)
		return rel, id, "pod " + arg + " is cgroup " + prel, err
	}
	if enforce.IsContainerID(arg) {
		crel, cnote, cerr := enforce.ContainerCgroup(arg)
		if cerr != nil {
			return "", 0, "", cerr
		}
		rel, id, err = h.ResolveCgroup(crel)
		return rel, id, cnote, err
	}
	return "", 0, "", err
}

type enforceRuleJSON struct {
	Match     enforce.Match      `json:"match"`
	Rule      string             `json:"rule"`
	Mode      enforce.Mode       `json:"mode"`
	Listeners bool               `json:"listeners,omitempty"`
	Settings  enableSettingsJSON `json:"settings"`
}

func ruleJSON(r enforce.Rule) enforceRuleJSON {
	return enforceRuleJSON{Match: r.Match, Rule: r.Match.String(), Mode: r.Mode, Listeners: r.Listeners,
		Settings: enableSettings(keepalive.Settings{Enabled: true, Config: r.Config})}
}

type enforceAttachJSON struct {
	DryRun   bool               `json:"dry_run"`
	Cgroup   string             `json:"cgroup"`
	CgroupID uint64             `json:"cgroup_id"`
	PinDir   string             `json:"pin_dir,omitempty"`
	Source   string             `json:"source"`
	Rules    []enforceRuleJSON  `json:"rules"`
	Notes    []string           `json:"notes,omitempty"`
	Existing []enableResultJSON `json:"existing,omitempty"`
}

type enforceAttachOptions struct {
	common                  enforceCommon
	match                   matchFlags
	settings                configFlags
	env                     string
	middlebox, detectWithin time.Duration
	mode                    string
	existing                bool
	listeners               bool
	owner                   string
	takeover                bool
}

func newEnforceAttachCmd(g *globalOptions) *cobra.Command {
	var o enforceAttachOptions
	cmd := &cobra.Command{
		Use:   "attach",
		Short: "Attach a keepalive policy to a cgroup",
		Long: `attach stores a policy for the cgroup and attaches the programs to it. Without --port,
--local-port, --remote-port or --peer the policy is the cgroup's default; with them it is a
rule for the connections they match. Attaching again replaces the same rule.

Settings come from --idle --interval --count --user-timeout, or are recommended for
--env NAME / --middlebox-timeout T / --detect-within D (as in 'keepalive enable'); they
pass the same validation as everywhere else. Unset fields are left to the system default.

--existing also applies the policy, now, to the established connections that the cgroup's
processes already hold (through pidfd_getfd, like 'keepalive enable'), so no connection of
the cgroup is left without it.

` + enforcePrecedence,
		Example: `  keepalive enforce attach --cgroup /system.slice/api.service --idle 60 --interval 10 --count 5 --user-timeout 90s
  keepalive enforce attach --cgroup /sys/fs/cgroup/unified/myapp --env azure-lb --mode enforce
  keepalive enforce attach --cgroup myapp --peer 10.0.0.0/8 --idle 30 --interval 5 --count 3 --existing
  keepalive enforce attach --cgroup myapp --idle 60 --dry-run --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive enforce"); err != nil {
				return err
			}
			return enforceAttachRun(cmd, g, &o)
		},
	}
	o.common.register(cmd)
	o.match.register(cmd, "rule for")
	f := cmd.Flags()
	o.settings.register(f)
	f.StringVar(&o.env, "env", "", "recommend settings for this environment preset (see 'keepalive plan --list-envs')")
	f.Var(newDurationValue(&o.middlebox), "middlebox-timeout", "recommend settings that keep a flow alive through a middlebox with this idle timeout")
	f.Var(newDurationValue(&o.detectWithin), "detect-within", "recommend settings that notice a dead peer within this time")
	f.StringVar(&o.mode, "mode", "default", "default (set at establishment) or enforce (also rewrite the application's own setsockopt)")
	f.BoolVar(&o.existing, "existing", false, "also apply the policy now to connections the cgroup's processes already hold")
	f.BoolVar(&o.listeners, "listeners", false, "with --mode enforce: also rewrite listening sockets' own setsockopt (default: only connections)")
	f.StringVar(&o.owner, "owner", "cli", "who owns the attachment (the agent uses \"agent\")")
	f.BoolVar(&o.takeover, "takeover", false, "change an attachment that another owner made")
	return cmd
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

func enforceAttachRun(cmd *cobra.Command, g *globalOptions, o *enforceAttachOptions) error {
	mode, err := enforce.ParseMode(o.mode)
	if err != nil {
		return usagef("invalid --mode: %v", err)
	}
	if o.listeners && mode != enforce.ModeEnforce {
		return usagef("--listeners needs --mode enforce (default mode never touches an application's own calls)")
	}
	matches, err := o.match.matches()
	if err != nil {
		return err
	}
	cfg, source, err := enableConfig(&o.settings, o.env, o.middlebox, o.detectWithin)
	if err != nil {
		return err
	}
	for _, m := range matches {
		if err := m.Check(); err != nil {
			return usagef("%v", err)
		}
	}
	h, err := openEnforce(g, &o.common, o.common.dryRun)
	if err != nil {
		return err
	}
	defer h.Close()
	rel, id, note, err := resolveEnforceCgroup(h, o.common.cgroup)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		return fmt.Errorf("enforce attach: %w", err)
	}
	rep := enforceAttachJSON{DryRun: o.common.dryRun, Cgroup: rel, CgroupID: id, PinDir: h.PinDir(), Source: source, Rules: []enforceRuleJSON{}}
	if note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	for _, m := range matches {
		r := enforce.Rule{Match: m, Config: cfg, Mode: mode, Listeners: o.listeners}
		if !o.common.dryRun {
			if _, err := h.Attach(enforce.AttachRequest{Cgroup: rel, Rule: r, Owner: o.owner, Takeover: o.takeover}); err != nil {
				return fmt.Errorf("enforce attach: %w", err)
			}
		}
		rep.Rules = append(rep.Rules, ruleJSON(r))
	}
	var firstErr error
	if o.existing {
		var pending []enforce.Rule
		if o.common.dryRun {
			// Nothing is attached: show what the new rules would do to existing connections.
			for _, m := range matches {
				pending = append(pending, enforce.Rule{Match: m, Config: cfg, Mode: mode, Listeners: o.listeners})
			}
		}
		res, err := h.RetrofitExisting(cmd.Context(), rel, enforce.ExistingOptions{DryRun: o.common.dryRun, Pending: pending})
		if err != nil {
			return fmt.Errorf("enforce attach --existing: %w", err)
		}
		for _, r := range res {
			j := enableResultJSON{NetNS: r.Socket.NetNS, Local: r.Socket.Local.String(), Peer: r.Socket.Remote.String(),
				State: r.Socket.State.String(), Cookie: r.Socket.Cookie, PID: r.Owner.PID, Comm: r.Owner.Comm, FD: r.Owner.FD, Changed: r.Changed}
			if r.Err == nil {
				b, a := enableSettings(r.Before), enableSettings(r.After)
				j.Before, j.After = &b, &a
			} else {
				j.Error = r.Err.Error()
				if firstErr == nil {
					firstErr = r.Err
				}
			}
			rep.Existing = append(rep.Existing, j)
		}
	}
	if g.JSON {
		if err := g.printJSON(rep); err != nil {
			return err
		}
	} else {
		enforceAttachPrint(g.Stdout, &rep, o.existing)
	}
	if firstErr != nil {
		return fmt.Errorf("enforce attach --existing: some connections could not be changed: %w", firstErr)
	}
	return nil
}

func enforceAttachPrint(w io.Writer, rep *enforceAttachJSON, existing bool) {
	verb := "attached"
	if rep.DryRun {
		verb = "would attach"
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, r := range rep.Rules {
		fmt.Fprintf(w, "%s to cgroup %s (id %d): %s → %s, mode %s (%s)\n", verb, rep.Cgroup, rep.CgroupID, r.Rule,
			enableSettingsText(&r.Settings), r.Mode, rep.Source)
	}
	if !rep.DryRun {
		fmt.Fprintf(w, "pinned under %s; every new connection of the cgroup gets the policy when it is established\n", rep.PinDir)
	}
	if existing {
		changed := 0
		for _, e := range rep.Existing {
			if e.Changed {
				changed++
			}
		}
		fmt.Fprintf(w, "existing connections: %d found, %d changed\n", len(rep.Existing), changed)
		if len(rep.Existing) > 0 {
			rnd := enableRound{DryRun: rep.DryRun, Results: rep.Existing}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LOCAL\tPEER\tPROCESS\tBEFORE\t\tAFTER\tRESULT")
			for _, r := range rnd.Results {
				res := "unchanged"
				switch {
				case r.Error != "":
					res = "FAILED: " + r.Error
				case r.Changed && rep.DryRun:
					res = "would change"
				case r.Changed:
					res = "changed"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%s\t→\t%s\t%s\n", r.Local, r.Peer, r.PID, r.Comm, enableSettingsText(r.Before), enableSettingsText(r.After), res)
			}
			tw.Flush()
		}
	}
}

type enforceListJSON struct {
	PinDir      string                  `json:"pin_dir,omitempty"`
	Cgroup2     string                  `json:"cgroup2_mount"`
	Attachments []enforceAttachmentJSON `json:"attachments"`
}

type enforceAttachmentJSON struct {
	Cgroup    string            `json:"cgroup"`
	CgroupID  uint64            `json:"cgroup_id"`
	Owner     string            `json:"owner"`
	Since     time.Time         `json:"since"`
	Attached  bool              `json:"attached"`
	Rewriting bool              `json:"rewriting"`
	CoveredBy string            `json:"covered_by,omitempty"`
	Gone      bool              `json:"gone,omitempty"`
	Rules     []enforceRuleJSON `json:"rules"`
	Counters  enforce.Counters  `json:"counters"`
	Pins      []string          `json:"pins,omitempty"`
}

func newEnforceListCmd(g *globalOptions) *cobra.Command {
	var c enforceCommon
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Show the attached policies and their counters, per cgroup",
		Long: `list shows every cgroup with a keepalive policy pinned under the BPF filesystem, whichever
process attached it: its rules (most specific first), whether the programs are attached,
and the counters — connections seen and set, the application setsockopt calls rewritten in
enforce mode, and the options the kernel refused (with the errno).

` + enforcePrecedence,
		Example: `  keepalive enforce list
  keepalive enforce list --cgroup myapp --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive enforce"); err != nil {
				return err
			}
			h, err := openEnforce(g, &c, true)
			if err != nil {
				return fmt.Errorf("enforce list: %w", err)
			}
			defer h.Close()
			atts, err := h.List()
			if err != nil {
				return fmt.Errorf("enforce list: %w", err)
			}
			want := ""
			if c.cgroup != "" {
				want, _, _, err = resolveEnforceCgroup(h, c.cgroup)
				if err != nil {
					want = c.cgroup // a cgroup that is gone can still be listed by its path
				}
			}
			rep := enforceListJSON{PinDir: h.PinDir(), Cgroup2: h.Cgroup2(), Attachments: []enforceAttachmentJSON{}}
			for _, a := range atts {
				if want != "" && a.Cgroup != want {
					continue
				}
				j := enforceAttachmentJSON{Cgroup: a.Cgroup, CgroupID: a.CgroupID, Owner: a.Owner, Since: a.Since, Attached: a.Linked, Rewriting: a.Rewriting,
					CoveredBy: a.CoveredBy, Gone: a.Gone, Counters: a.Counters, Pins: a.Pins, Rules: []enforceRuleJSON{}}
				for _, r := range a.Rules {
					j.Rules = append(j.Rules, ruleJSON(r))
				}
				rep.Attachments = append(rep.Attachments, j)
			}
			if g.JSON {
				return g.printJSON(rep)
			}
			enforceListPrint(g.Stdout, &rep)
			return nil
		},
	}
	c.register(cmd)
	cmd.Flags().MarkHidden("dry-run")
	return cmd
}

func enforceListPrint(w io.Writer, rep *enforceListJSON) {
	if len(rep.Attachments) == 0 {
		fmt.Fprintln(w, "no keepalive policy attached")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CGROUP\tOWNER\tPROGRAMS\tRULE\tMODE\tSETTINGS\tSEEN\tSET\tREWRITTEN\tFAILED")
	for _, a := range rep.Attachments {
		state := "sock_ops"
		if a.Rewriting {
			state += "+setsockopt"
		}
		switch {
		case a.Gone:
			state = "cgroup gone"
		case !a.Attached:
			state = "NOT attached"
		}
		failed := "-"
		if len(a.Counters.Failures) > 0 {
			var fs []string
			for _, f := range a.Counters.Failures {
				fs = append(fs, fmt.Sprintf("%s %d (errno %d: %s)", f.Option, f.Count, f.Errno, f.Error))
			}
			failed = strings.Join(fs, ", ")
		}
		for i, r := range a.Rules {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", a.Cgroup, a.Owner, state, r.Rule, r.Mode,
					enableSettingsText(&r.Settings), a.Counters.Seen, a.Counters.Set, a.Counters.Rewritten, failed)
			} else {
				fmt.Fprintf(tw, "\t\t\t%s\t%s\t%s\t\t\t\t\n", r.Rule, r.Mode, enableSettingsText(&r.Settings))
			}
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "pins: %s; cgroup2: %s\n", rep.PinDir, rep.Cgroup2)
}

type enforceDetachOptions struct {
	common enforceCommon
	match  matchFlags
	owner  string
	force  bool
}

func newEnforceDetachCmd(g *globalOptions) *cobra.Command {
	var o enforceDetachOptions
	cmd := &cobra.Command{
		Use:   "detach",
		Short: "Remove a cgroup's keepalive policy (or one rule of it)",
		Long: `detach removes the cgroup's policy: every rule, its counters, and the programs attached to
it; connections made afterwards get the system defaults again (or the policy of an attached
ancestor cgroup). With --port/--local-port/--remote-port/--peer only that rule goes.
Connections that already exist keep the settings they have.

An attachment made by another owner (the agent) is detached only with --force.`,
		Example: `  keepalive enforce detach --cgroup myapp
  keepalive enforce detach --cgroup myapp --remote-port 5432
  keepalive enforce detach --cgroup /system.slice/api.service --force --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive enforce"); err != nil {
				return err
			}
			return enforceDetachRun(g, &o)
		},
	}
	o.common.register(cmd)
	o.match.register(cmd, "remove only the rule for")
	cmd.Flags().StringVar(&o.owner, "owner", "cli", "who is detaching (must match the attachment's owner unless --force)")
	cmd.Flags().BoolVar(&o.force, "force", false, "detach an attachment that another owner made")
	return cmd
}

func enforceDetachRun(g *globalOptions, o *enforceDetachOptions) error {
	if o.common.cgroup == "" {
		return usagef("say which cgroup: --cgroup PATH")
	}
	var matches []*enforce.Match
	if o.match.given() {
		ms, err := o.match.matches()
		if err != nil {
			return err
		}
		for i := range ms {
			matches = append(matches, &ms[i])
		}
	} else {
		matches = []*enforce.Match{nil}
	}
	h, err := openEnforce(g, &o.common, o.common.dryRun)
	if err != nil {
		return fmt.Errorf("enforce detach: %w", err)
	}
	defer h.Close()
	atts, err := h.List()
	if err != nil {
		return fmt.Errorf("enforce detach: %w", err)
	}
	rel := o.common.cgroup
	if r, _, _, err := resolveEnforceCgroup(h, o.common.cgroup); err == nil {
		rel = r
	} else if !strings.HasPrefix(rel, "/") {
		rel = "/" + rel
	}
	var found *enforce.Attachment
	for i := range atts {
		if atts[i].Cgroup == rel {
			found = &atts[i]
		}
	}
	if found == nil {
		return fmt.Errorf("enforce detach: cgroup %s: %w", rel, enforce.ErrNotAttached)
	}
	if found.Owner != o.owner && !o.force {
		return fmt.Errorf("enforce detach: cgroup %s was attached by %q: add --force to detach it anyway", rel, found.Owner)
	}
	type detachJSON struct {
		DryRun  bool     `json:"dry_run"`
		Cgroup  string   `json:"cgroup"`
		Removed []string `json:"removed"`
	}
	rep := detachJSON{DryRun: o.common.dryRun, Cgroup: rel, Removed: []string{}}
	for _, m := range matches {
		if !o.common.dryRun {
			if err := h.Detach(rel, m, o.owner, o.force); err != nil {
				return fmt.Errorf("enforce detach: %w", err)
			}
		}
		if m == nil {
			rep.Removed = append(rep.Removed, "all rules")
		} else {
			rep.Removed = append(rep.Removed, m.String())
		}
	}
	if g.JSON {
		return g.printJSON(rep)
	}
	verb := "detached"
	if rep.DryRun {
		verb = "would detach"
	}
	fmt.Fprintf(g.Stdout, "%s %s from cgroup %s\n", verb, strings.Join(rep.Removed, ", "), rel)
	return nil
}
