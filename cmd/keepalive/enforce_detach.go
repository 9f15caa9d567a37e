package main

import (
	"fmt"
	"strings"

	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/spf13/cobra"
)

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
