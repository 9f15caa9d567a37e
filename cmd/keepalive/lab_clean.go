package main

import (
	"fmt"

	"github.com/keepalive-dev/keepalive/lab"
	"github.com/spf13/cobra"
)

func newLabCleanCmd(g *globalOptions) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "clean",
		Short: "Remove namespaces, interfaces and nftables tables left by killed lab runs",
		Long: `keepalive lab clean removes what lab runs that were killed left behind: named network
namespaces /var/run/netns/kalab-*, and interfaces and nftables tables named kalab* in
the current namespace. Namespaces of lab processes that are still running are kept
unless --all is given. Nothing without the kalab prefix is touched.`,
		Example: `  sudo keepalive lab clean
  sudo keepalive lab clean --all --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive lab clean"); err != nil {
				return err
			}
			rep, err := lab.Clean(all)
			err = labAdvice(err)
			if g.JSON {
				if jerr := g.printJSON(rep); jerr != nil {
					return jerr
				}
				return err
			}
			for _, l := range rep.Removed {
				fmt.Fprintf(g.Stdout, "removed %s\n", l)
			}
			for _, l := range rep.Skipped {
				fmt.Fprintf(g.Stdout, "kept %s (lab process %d is still running; --all removes it)\n", l, l.PID)
			}
			if len(rep.Removed) == 0 && len(rep.Skipped) == 0 && err == nil {
				fmt.Fprintln(g.Stdout, "nothing to clean")
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also remove namespaces of lab processes that are still running")
	return cmd
}
