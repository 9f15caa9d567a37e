package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/internal/report"
	"github.com/spf13/cobra"
)

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
	// Resolve the cgroup before anything changes on the host (opening for writing may mount
	// a bpffs): a wrong --cgroup leaves nothing behind.
	ro, err := enforce.Open(enforce.Options{PinDir: o.common.pinDir, ReadOnly: true})
	if err != nil {
		return err
	}
	rel, id, note, err := resolveEnforceCgroup(ro, o.common.cgroup)
	ro.Close()
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		return fmt.Errorf("enforce attach: %w", err)
	}
	h, err := openEnforce(g, &o.common, o.common.dryRun)
	if err != nil {
		return err
	}
	defer h.Close()
	rep := report.EnforceAttach{DryRun: o.common.dryRun, Cgroup: rel, CgroupID: id, PinDir: h.PinDir(), Source: source, Rules: []report.EnforceRule{}}
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
		rep.Rules = append(rep.Rules, report.EnforceRuleOf(r))
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
			j := report.EnableResult{NetNS: r.Socket.NetNS, Local: r.Socket.Local.String(), Peer: r.Socket.Remote.String(),
				State: r.Socket.State.String(), Cookie: r.Socket.Cookie, PID: r.Owner.PID, Comm: r.Owner.Comm, FD: r.Owner.FD, Changed: r.Changed}
			if r.Err == nil {
				b, a := report.EnableSettingsOf(r.Before), report.EnableSettingsOf(r.After)
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
		report.EnforceAttachPrint(g.Stdout, &rep, o.existing)
	}
	if firstErr != nil {
		return fmt.Errorf("enforce attach --existing: some connections could not be changed: %w", firstErr)
	}
	return nil
}
