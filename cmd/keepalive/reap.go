package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/report"
	"github.com/spf13/cobra"
)

type reapOptions struct {
	sel    selectorFlags
	self   selfGuard
	dryRun bool
}

type reapResultJSON struct {
	NetNS     string `json:"netns,omitempty"`
	Local     string `json:"local"`
	Peer      string `json:"peer"`
	State     string `json:"state"`
	Cookie    uint64 `json:"cookie"`
	Process   string `json:"process"`
	IdleMS    int64  `json:"idle_ms"`
	Destroyed bool   `json:"destroyed"`
	Gone      bool   `json:"gone,omitempty"`
	Protected bool   `json:"protected,omitempty"`
	Error     string `json:"error,omitempty"`
}

type reapReport struct {
	DryRun    bool             `json:"dry_run"`
	Selector  string           `json:"selector"`
	Results   []reapResultJSON `json:"results"`
	Matched   int              `json:"matched"`
	Destroyed int              `json:"destroyed"`
	Gone      int              `json:"gone"`
	Failed    int              `json:"failed"`
	Skipped   int              `json:"skipped,omitempty"`
	// Protected counts matching connections of this command's own session, left alone.
	Protected int `json:"protected,omitempty"`
}

func newReapCmd(g *globalOptions) *cobra.Command {
	var o reapOptions
	cmd := &cobra.Command{
		Use:   "reap",
		Short: "Destroy matching TCP connections now (SOCK_DESTROY)",
		Long: `reap closes the selected connections in the kernel with SOCK_DESTROY, as 'ss -K' does:
the owning process's next call on the socket fails with ECONNABORTED and the peer
receives an RST. Each connection is addressed by its exact identity (addresses, ports
and socket cookie), so a newer connection that reused the same addresses is never hit.

At least one narrowing selector is required (--port --peer --pid --comm --cgroup
--container --cookie); --state and --idle-over only narrow further, and there is
deliberately no --all. Connections of the session you run it from (owned by this command's
ancestor processes, such as the sshd session) are never destroyed unless --include-self. Without --state, every connected state is matched
(established, syn-sent, fin-wait-*, close-wait, last-ack, closing). Use --dry-run
first to see what would be destroyed; 'keepalive audit' with the same selectors shows
why. Needs CAP_NET_ADMIN and a kernel with CONFIG_INET_DIAG_DESTROY. A connection that
closed by itself meanwhile is reported as gone. Exit status 1 when one could not be
destroyed.`,
		Example: `  keepalive reap --peer 10.1.2.3 --dry-run
  keepalive reap --comm myapp --state close-wait
  keepalive reap --port 5432 --idle-over 2h
  keepalive reap --netns blue --peer 10.200.0.0/16 --json
  keepalive reap --container 3f2a9c1e0b7d --state close-wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive reap"); err != nil {
				return err
			}
			return reapRun(cmd, g, &o)
		},
	}
	o.sel.register(cmd.Flags())
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "list what would be destroyed, destroy nothing")
	o.self.registerSelf(cmd.Flags())
	return cmd
}

func reapRun(cmd *cobra.Command, g *globalOptions, o *reapOptions) error {
	if !o.sel.narrows() {
		return usagef("reap destroys connections: select them with --port, --peer, --pid, --comm, --cgroup, --container or --cookie (--state and --idle-over alone would select every connection of the host; there is no --all)")
	}
	o.self.init()
	opt, err := o.sel.listOptions()
	if err != nil {
		return err
	}
	opt.Owners = true
	ctx := cmd.Context()
	socks, err := host.List(ctx, opt)
	if err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	rep := reapReport{DryRun: o.dryRun, Selector: o.sel.describe(), Matched: len(socks), Results: []reapResultJSON{}}
	var firstErr error
	for i := range socks {
		s := &socks[i]
		r := reapResultJSON{NetNS: nsText(s), Local: s.Local.String(), Peer: s.Remote.String(), State: s.State.String(),
			Cookie: s.Cookie, Process: report.Owners(s.Owners), IdleMS: s.Idle().Milliseconds()}
		if o.self.protects(s) {
			r.Protected, r.Error = true, "carries this session (owned by an ancestor of this command; --include-self to destroy it)"
			rep.Protected++
			rep.Results = append(rep.Results, r)
			continue
		}
		if !o.dryRun {
			switch err := host.Destroy(ctx, *s); {
			case err == nil:
				r.Destroyed = true
				rep.Destroyed++
			case errors.Is(err, host.ErrGone):
				r.Gone, r.Error = true, "already gone"
				rep.Gone++
			default:
				r.Error = err.Error()
				rep.Failed++
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		rep.Results = append(rep.Results, r)
		if errors.Is(firstErr, os.ErrPermission) {
			rep.Skipped = len(socks) - i - 1 // every other attempt would fail the same way
			break
		}
	}
	if rep.Destroyed == 0 && rep.Gone == 0 && errors.Is(firstErr, os.ErrPermission) {
		// Nothing could be done at all: the error alone, no table of failures.
		return fmt.Errorf("reap: %w", firstErr)
	}
	if g.JSON {
		if err := g.printJSON(rep); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(g.Stdout, 0, 0, 2, ' ', 0)
		if len(rep.Results) == 0 {
			tw = tabwriter.NewWriter(io.Discard, 0, 0, 2, ' ', 0) // no empty table
		}
		fmt.Fprintln(tw, "LOCAL\tPEER\tSTATE\tPROCESS\tIDLE\tRESULT")
		for _, r := range rep.Results {
			res := "destroyed"
			switch {
			case o.dryRun:
				res = "would destroy"
			case r.Protected:
				res = "kept: carries this session (--include-self)"
			case r.Gone:
				res = "already gone"
			case r.Error != "":
				res = "FAILED: " + r.Error
			}
			local := r.Local
			if r.NetNS != "" {
				local = r.NetNS + " " + local
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", local, r.Peer, r.State, r.Process, report.Dur(time.Duration(r.IdleMS)*time.Millisecond), res)
		}
		tw.Flush()
		if o.dryRun {
			fmt.Fprintf(g.Stdout, "%s %s; nothing destroyed (--dry-run)\n", plural(rep.Matched, "connection"), matchVerb(rep.Matched)+" "+rep.Selector)
		} else {
			fmt.Fprintf(g.Stdout, "%s %s: %d destroyed, %d already gone, %d failed", plural(rep.Matched, "connection"), matchVerb(rep.Matched)+" "+rep.Selector, rep.Destroyed, rep.Gone, rep.Failed)
			if rep.Skipped > 0 {
				fmt.Fprintf(g.Stdout, ", %d not tried", rep.Skipped)
			}
			if rep.Protected > 0 {
				fmt.Fprintf(g.Stdout, ", %d kept (this session's)", rep.Protected)
			}
			fmt.Fprintln(g.Stdout)
		}
	}
	if firstErr != nil {
		return fmt.Errorf("reap: %d of %s could not be destroyed: %w", rep.Failed+rep.Skipped, plural(rep.Matched, "connection"), firstErr)
	}
	return nil
}

// matchVerb agrees "match" with a count.
func matchVerb(n int) string {
	if n == 1 {
		return "matches"
	}
	return "match"
}
