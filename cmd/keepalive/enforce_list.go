package main

import (
	"fmt"

	"github.com/keepalive-dev/keepalive/internal/report"
	"github.com/spf13/cobra"
)

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
			rep := report.EnforceList{PinDir: h.PinDir(), Cgroup2: h.Cgroup2(), Attachments: []report.EnforceAttachment{}}
			for _, a := range atts {
				if want != "" && a.Cgroup != want {
					continue
				}
				j := report.EnforceAttachment{Cgroup: a.Cgroup, CgroupID: a.CgroupID, Owner: a.Owner, Since: a.Since, Attached: a.Linked, Rewriting: a.Rewriting,
					CoveredBy: a.CoveredBy, Gone: a.Gone, Counters: a.Counters, Pins: a.Pins, Rules: []report.EnforceRule{}}
				for _, r := range a.Rules {
					j.Rules = append(j.Rules, report.EnforceRuleOf(r))
				}
				rep.Attachments = append(rep.Attachments, j)
			}
			if g.JSON {
				return g.printJSON(rep)
			}
			report.EnforceListPrint(g.Stdout, &rep)
			return nil
		},
	}
	c.register(cmd)
	cmd.Flags().MarkHidden("dry-run")
	return cmd
}
