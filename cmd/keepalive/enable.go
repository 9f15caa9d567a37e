package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/spf13/cobra"
)

type enableOptions struct {
	sel                     selectorFlags
	all                     bool
	settings                configFlags
	env                     string
	middlebox, detectWithin time.Duration
	dryRun                  bool
	watch                   time.Duration
	rounds                  int
}

func newEnableCmd(g *globalOptions) *cobra.Command {
	var o enableOptions
	cmd := &cobra.Command{
		Use:   "enable",
		Short: "Turn on keepalive in running processes, without restarting them",
		Long: `enable sets SO_KEEPALIVE, idle, interval, count and TCP_USER_TIMEOUT on the selected
connections of running processes. It duplicates each socket's descriptor out of its
owner with pidfd_getfd (Linux ≥ 5.6; CAP_SYS_PTRACE, or the same user with
kernel.yama.ptrace_scope=0), sets the options on the duplicate (which changes the shared
socket), reads them back to verify and closes the duplicate. The process is not stopped
and notices nothing, except that a dead peer now makes its next call fail.

Select connections with --port --peer --pid --comm --cgroup --container --cookie
--state --idle-over (ANDed), or --all for every established connection. --pid, --comm,
--cgroup and --container find the processes' sockets in whatever network namespace they
live (a container's, say); --all-netns looks in every namespace of the host. By default only ESTABLISHED connections are
changed; add --state listen to change listening sockets, whose future connections
inherit the settings.

Settings come from --idle --interval --count --user-timeout (unset ones keep the
socket's value), or are recommended for --env NAME / --middlebox-timeout T and
--detect-within D (see 'keepalive plan'); flags given with --env override the recommended
fields they name. Setting the idle time re-arms the keepalive
timer for the remaining idle time; sockets that already have the settings are left alone.

--dry-run shows exactly what would change (before → after) and changes nothing.
--watch INTERVAL keeps applying the policy to new connections every INTERVAL until
interrupted (each round is one sock_diag scan, about 1.5 µs of CPU per socket on the
host, so use tens of seconds on a host with 100 000 connections; memory is bounded by
the connections that exist). With --json, one object is printed per round. A socket that vanished or whose process exited meanwhile is reported
and skipped. Exit status 1 when a socket could not be changed for another reason.`,
		Example: `  keepalive enable --comm redis-server --idle 60 --interval 10 --count 5 --dry-run
  keepalive enable --pid 4242 --env aws-nat-gateway
  keepalive enable --peer 10.0.0.0/8 --port 5432 --detect-within 2m --user-timeout 2m
  keepalive enable --all --idle 300 --interval 30 --count 4
  keepalive enable --comm java --env azure-lb --watch 30s
  keepalive enable --container 3f2a9c1e0b7d --env aws-nat-gateway`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive enable"); err != nil {
				return err
			}
			return enableRun(cmd, g, &o)
		},
	}
	f := cmd.Flags()
	o.sel.register(f)
	f.BoolVar(&o.all, "all", false, "select every established connection (instead of selectors)")
	o.settings.register(f)
	f.StringVar(&o.env, "env", "", "recommend settings for this environment preset (see 'keepalive plan --list-envs')")
	f.Var(newDurationValue(&o.middlebox), "middlebox-timeout", "recommend settings that keep a flow alive through a middlebox with this idle timeout")
	f.Var(newDurationValue(&o.detectWithin), "detect-within", "recommend settings that notice a dead peer within this time")
	f.BoolVar(&o.dryRun, "dry-run", false, "show what would change, change nothing")
	f.Var(newDurationValue(&o.watch), "watch", "re-scan every INTERVAL (≥ 1s) and apply to new connections until interrupted")
	f.IntVar(&o.rounds, "rounds", 0, "with --watch: stop after this many scans (0 = until interrupted)")
	return cmd
}

// enableConfig works out the settings from the flags: explicit values, else a recommendation.
func enableConfig(settings *configFlags, env string, middlebox, detectWithin time.Duration) (keepalive.Config, string, error) {
	explicit := settings.given()
	cfg, err := settings.config()
	if err != nil {
		return cfg, "", err
	}
	flagCfg := cfg
	source := "flags"
	mb := middlebox
	dataOnly := false // the preset counts only data: keepalive cannot keep the flow
	if env != "" {
		e, err := keepalive.LookupEnvironment(env)
		if err != nil {
			return cfg, "", usagef("invalid --env: %v", err)
		}
		if mb == 0 {
			mb = e.IdleTimeout
			dataOnly = !e.KeepaliveRefreshes()
		}
	}
	switch {
	case mb > 0 || detectWithin > 0:
		rec, err := keepalive.Recommend(keepalive.Requirement{DetectWithin: detectWithin, MiddleboxTimeout: mb, OS: "linux", DataOnly: dataOnly})
		if err != nil {
			return cfg, "", usagef("cannot recommend settings: %v", err)
		}
		source = "recommended"
		if env != "" {
			source += " for " + env
		}
		if explicit {
			// Explicit flags override the recommended fields they name.
			rec.Config = flagCfg.WithDefaults(rec.Config)
			source += ", overridden by flags"
		}
		cfg = rec.Config
	case !explicit:
		return cfg, "", usagef("say what to set: --idle/--interval/--count/--user-timeout, or --env NAME, --middlebox-timeout T or --detect-within D for a recommendation")
	}
	if _, err := cfg.Validate("linux"); err != nil {
		return cfg, "", &usageError{fmt.Errorf("invalid settings: %w", err)}
	}
	return cfg, source, nil
}

type enableSettingsJSON struct {
	Enabled       bool  `json:"enabled"`
	IdleMS        int64 `json:"idle_ms"`
	IntervalMS    int64 `json:"interval_ms"`
	Count         int   `json:"count"`
	UserTimeoutMS int64 `json:"user_timeout_ms"`
}

func enableSettings(s keepalive.Settings) enableSettingsJSON {
	return enableSettingsJSON{Enabled: s.Enabled, IdleMS: s.Idle.Milliseconds(), IntervalMS: s.Interval.Milliseconds(),
		Count: s.Count, UserTimeoutMS: s.UserTimeout.Milliseconds()}
}

type enableResultJSON struct {
	NetNS   string              `json:"netns,omitempty"`
	Local   string              `json:"local"`
	Peer    string              `json:"peer"`
	State   string              `json:"state"`
	Cookie  uint64              `json:"cookie"`
	PID     int                 `json:"pid,omitempty"`
	Comm    string              `json:"comm,omitempty"`
	FD      int                 `json:"fd,omitempty"`
	Before  *enableSettingsJSON `json:"before,omitempty"`
	After   *enableSettingsJSON `json:"after,omitempty"`
	Changed bool                `json:"changed"`
	Gone    bool                `json:"gone,omitempty"`
	Error   string              `json:"error,omitempty"`
	// Risk and Verdict judge the connection with its settings after the change (host.Assess,
	// against --env/--middlebox-timeout and --detect-within).
	Risk    host.RiskKind `json:"risk,omitempty"`
	AtRisk  bool          `json:"at_risk,omitempty"`
	Verdict string        `json:"verdict,omitempty"`
}

type enableRound struct {
	Round   int                `json:"round,omitempty"`
	DryRun  bool               `json:"dry_run"`
	Config  enableSettingsJSON `json:"config"`
	Source  string             `json:"source"`
	Results []enableResultJSON `json:"results"`
	Matched int                `json:"matched"`
	Changed int                `json:"changed"`
	Already int                `json:"unchanged"`
	Gone    int                `json:"gone"`
	Failed  int                `json:"failed"`
}

func enableRun(cmd *cobra.Command, g *globalOptions, o *enableOptions) error {
	if !o.sel.given() && !o.all {
		return usagef("enable changes running processes: select connections with --port, --peer, --pid, --comm, --cgroup, --container, --cookie, --state or --idle-over, or pass --all")
	}
	opt, err := o.sel.listOptions()
	if err != nil {
		return err
	}
	if len(opt.Selector.States) == 0 {
		opt.Selector.States = []host.State{host.StateEstablished}
	}
	opt.Owners = true
	opt.NoInfo = true // tcp_info is not shown; --idle-over still gets it
	cfg, source, err := enableConfig(&o.settings, o.env, o.middlebox, o.detectWithin)
	if err != nil {
		return err
	}
	if o.watch != 0 && o.watch < time.Second {
		return usagef("invalid --watch %s (allowed: ≥ 1s)", o.watch)
	}
	if o.rounds < 0 {
		return usagef("invalid --rounds %d (allowed: ≥ 0)", o.rounds)
	}
	ctx := cmd.Context()
	want := keepalive.Settings{Enabled: true, Config: cfg}
	aopt := host.AssessOptions{Middlebox: o.middlebox, DetectWithin: o.detectWithin}
	if e, err := keepalive.LookupEnvironment(o.env); o.env != "" && err == nil && aopt.Middlebox == 0 {
		aopt.Middlebox, aopt.MiddleboxName = e.IdleTimeout, e.Name
	}
	handled := map[uint64]bool{} // cookies done in earlier rounds (--watch)
	var firstErr error
	for round := 1; ; round++ {
		socks, err := host.List(ctx, opt)
		if err != nil {
			if ctx.Err() != nil && o.watch > 0 {
				return nil
			}
			return fmt.Errorf("enable: %w", err)
		}
		seen := make(map[uint64]bool, len(socks))
		todo := socks[:0]
		for _, s := range socks {
			seen[s.Cookie] = true
			if !handled[s.Cookie] {
				todo = append(todo, s)
			}
		}
		// Forget sockets that no longer exist: memory stays bounded by the live set.
		for c := range handled {
			if !seen[c] {
				delete(handled, c)
			}
		}
		res := host.Retrofit(ctx, todo, cfg, host.RetrofitOptions{DryRun: o.dryRun})
		rep := enableRound{DryRun: o.dryRun, Config: enableSettings(want), Source: source, Matched: len(res), Results: []enableResultJSON{}}
		if o.watch > 0 {
			rep.Round = round
		}
		for _, r := range res {
			if !o.dryRun && (r.Err == nil || errors.Is(r.Err, host.ErrGone)) {
				handled[r.Socket.Cookie] = true
			}
			j := enableResultJSON{NetNS: nsText(&r.Socket), Local: r.Socket.Local.String(), Peer: r.Socket.Remote.String(),
				State: r.Socket.State.String(), Cookie: r.Socket.Cookie, PID: r.Owner.PID, Comm: r.Owner.Comm, FD: r.Owner.FD, Changed: r.Changed}
			switch {
			case r.Err == nil:
				b, a := enableSettings(r.Before), enableSettings(r.After)
				j.Before, j.After = &b, &a
				s := r.Socket
				s.Settings = &r.After
				as := host.Assess(s, aopt)
				j.Risk, j.AtRisk, j.Verdict = as.Risk, as.AtRisk, as.Verdict
				if r.Changed {
					rep.Changed++
				} else {
					rep.Already++
				}
			case errors.Is(r.Err, host.ErrGone):
				j.Gone, j.Error = true, r.Err.Error()
				rep.Gone++
			default:
				j.Error = r.Err.Error()
				rep.Failed++
				if firstErr == nil {
					firstErr = r.Err
				}
			}
			rep.Results = append(rep.Results, j)
		}
		if g.JSON {
			if err := g.printJSON(rep); err != nil {
				return err
			}
		} else {
			enablePrint(g.Stdout, &rep, o.watch > 0)
		}
		if o.watch == 0 || (o.rounds > 0 && round >= o.rounds) {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.watch):
		}
	}
	if firstErr != nil {
		return fmt.Errorf("enable: some sockets could not be changed: %w", firstErr)
	}
	return nil
}

func enableSettingsText(s *enableSettingsJSON) string {
	if s == nil {
		return "-"
	}
	st := keepalive.Settings{Enabled: s.Enabled, Config: keepalive.Config{Idle: time.Duration(s.IdleMS) * time.Millisecond,
		Interval: time.Duration(s.IntervalMS) * time.Millisecond, Count: s.Count, UserTimeout: time.Duration(s.UserTimeoutMS) * time.Millisecond}}
	return auditKAText(auditKA{known: true, enabled: st.Enabled, cfg: st.Config})
}

func enablePrint(w io.Writer, rep *enableRound, watch bool) {
	if watch && len(rep.Results) == 0 {
		return // quiet rounds stay quiet
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(rep.Results) == 0 {
		tw = tabwriter.NewWriter(io.Discard, 0, 0, 2, ' ', 0) // no empty table
	}
	verb := "changed"
	if rep.DryRun {
		verb = "would change"
	}
	fmt.Fprintln(tw, "LOCAL\tPEER\tPROCESS\tBEFORE\t\tAFTER\tRESULT")
	for i := range rep.Results {
		r := &rep.Results[i]
		proc := "-"
		if r.PID != 0 {
			proc = strconv.Itoa(r.PID) + "/" + r.Comm
		}
		result := "unchanged"
		switch {
		case r.Error != "" && r.Gone:
			result = "gone: " + r.Error
		case r.Error != "":
			result = "FAILED: " + r.Error
		case r.Changed:
			result = verb
		}
		local := r.Local
		if r.NetNS != "" {
			local = r.NetNS + " " + local
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t→\t%s\t%s\n", local, r.Peer, proc, enableSettingsText(r.Before), enableSettingsText(r.After), result)
	}
	tw.Flush()
	prefix := ""
	if rep.Round > 0 {
		prefix = fmt.Sprintf("round %d: ", rep.Round)
	}
	fmt.Fprintf(w, "%s%s: %d %s, %d already set, %d gone, %d failed (settings: %s, %s)\n", prefix,
		plural(rep.Matched, "connection"), rep.Changed, verb, rep.Already, rep.Gone, rep.Failed, enableSettingsText(&rep.Config), rep.Source)
}
