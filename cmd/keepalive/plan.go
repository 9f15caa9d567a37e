package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/report"
	"github.com/spf13/cobra"
)

type planOptions struct {
	settings                configFlags
	env                     string
	detectWithin, middlebox time.Duration
	goos                    string
	scenario                string
	svg                     string
	listEnvs                bool
	rtt                     time.Duration
	hz                      int
	segments                int
}

func newPlanCmd(g *globalOptions) *cobra.Command {
	var o planOptions
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Predict when a dead peer is noticed and recommend keepalive settings",
		Long: `plan shows what a keepalive configuration means: the worst-case time until the
application learns its peer is gone, the exact course of the kernel's timers (probes,
kill, error) for a failure scenario, and snippets to apply it.

Three ways to use it:
  evaluate     --idle/--interval/--count/--user-timeout: what these settings do
               (unset fields take the --os default);
  recommend    --env NAME, or --detect-within D and/or --middlebox-timeout T: settings
               that keep the flow mapped through the middlebox and detect death in time;
  explain      no flags: what the Linux defaults (2 h 11 min 15 s) mean and what to do.

Durations accept Go syntax (90s, 5m, 1h30m) or a plain number of seconds.
The timeline follows the Linux kernel (net/ipv4/tcp_timer.c, kernel/time/timer.c): timers
fire up to one timer-wheel granule late and the lateness accumulates, so every time is a
window [earliest, latest] for the kernel's HZ (detected on this host from /proc/config.gz,
/boot/config-*, or the kernel's own timers; --hz sets it; unknown → 100, the coarsest).
When the outcome depends on that lateness, both candidate firings are shown.`,
		Example: `  keepalive plan
  keepalive plan --env aws-nat-gateway
  keepalive plan --detect-within 30s --middlebox-timeout 4m
  keepalive plan --idle 2s --interval 1s --count 3 --scenario reboot
  keepalive plan --idle 60 --interval 10 --count 5 --scenario in-flight --user-timeout 90s
  keepalive plan --list-envs
  keepalive plan --idle 4 --interval 3 --user-timeout 7.1s --hz 250
  keepalive plan --scenario in-flight --user-timeout 3s --segments 3
  keepalive plan --env azure-lb --svg timeline.svg --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.listEnvs {
				if g.JSON {
					return g.printJSON(keepalive.Environments())
				}
				return report.ListEnvs(g.Stdout)
			}
			res, err := planCompute(&o)
			if err != nil {
				return err
			}
			if o.svg != "" {
				if err := report.PlanSVG(o.svg, res); err != nil {
					return err
				}
			}
			if g.JSON {
				return g.printJSON(res)
			}
			report.PlanRender(g.Stdout, res, o.svg)
			return nil
		},
	}
	f := cmd.Flags()
	o.settings.register(f)
	f.StringVar(&o.env, "env", "", "middlebox preset to plan for (see --list-envs)")
	f.Var(newDurationValue(&o.detectWithin), "detect-within", "recommend settings that detect a dead peer within this time")
	f.Var(newDurationValue(&o.middlebox), "middlebox-timeout", "idle timeout of the NAT/firewall/load balancer on the path")
	f.StringVar(&o.goos, "os", "linux", "target OS: linux, darwin, windows, freebsd")
	f.StringVar(&o.scenario, "scenario", "silent", "failure to predict: silent (crash/path down), reboot, nat, in-flight")
	f.StringVar(&o.svg, "svg", "", "also write the timeline as an SVG picture to `FILE`")
	f.BoolVar(&o.listEnvs, "list-envs", false, "list the middlebox presets and exit")
	f.Var(newDurationValue(&o.rtt), "rtt", "round-trip time to the peer used in the timeline (default 1ms, at most 1m)")
	f.IntVar(&o.hz, "hz", 0, "kernel CONFIG_HZ for the timer windows (default: detected on this host; 100 when unknown)")
	f.IntVar(&o.segments, "segments", 1, "segments in flight for --scenario in-flight (1 = one small request)")
	_ = cmd.RegisterFlagCompletionFunc("env", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var names []string
		for _, e := range keepalive.Environments() {
			names = append(names, e.Name+"\t"+e.Description)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.RegisterFlagCompletionFunc("os", cobra.FixedCompletions([]string{"linux", "darwin", "windows", "freebsd"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("scenario", cobra.FixedCompletions([]string{"silent", "reboot", "nat", "in-flight"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// planCompute parses the flags and asks report.Plan.
func planCompute(o *planOptions) (*report.PlanResult, error) {
	switch o.goos {
	case "linux", "darwin", "windows", "freebsd":
	default:
		return nil, usagef("invalid --os %q (allowed: linux, darwin, windows, freebsd)", o.goos)
	}
	sc, err := keepalive.ParseScenario(o.scenario)
	if err != nil {
		return nil, usagef("invalid --scenario: %v", err)
	}
	flagCfg, err := o.settings.config()
	if err != nil {
		return nil, err
	}
	if o.rtt < 0 || o.rtt > keepalive.MaxRTT {
		return nil, usagef("invalid --rtt %s (allowed: 0..%s)", o.rtt, keepalive.MaxRTT)
	}
	if o.hz != 0 && (o.hz < 10 || o.hz > 10000) {
		return nil, usagef("invalid --hz %d (allowed: 10..10000, typically 100, 250, 300 or 1000)", o.hz)
	}
	if o.segments < 1 || o.segments > keepalive.MaxSegments {
		return nil, usagef("invalid --segments %d (allowed: 1..%d)", o.segments, keepalive.MaxSegments)
	}
	if o.segments != 1 && sc != keepalive.ScenarioInFlight {
		return nil, usagef("--segments applies to --scenario in-flight only")
	}
	in := report.PlanInput{OS: o.goos, Scenario: sc, Settings: flagCfg, Explicit: o.settings.given(), Middlebox: o.middlebox,
		DetectWithin: o.detectWithin, RTT: o.rtt, Segments: o.segments, Timers: planTimers(o)}
	if o.env != "" {
		e, err := keepalive.LookupEnvironment(o.env)
		if err != nil {
			return nil, usagef("invalid --env: %v", err)
		}
		in.Env = &e
	}
	res, err := report.Plan(in)
	var ie *report.InputError
	if errors.As(err, &ie) {
		return nil, &usageError{ie.Err}
	}
	return res, err
}

// planTimers is the kernel timer parameters for the model: --hz, else this host's when
// planning for Linux on Linux, else unknown.
func planTimers(o *planOptions) host.Timers {
	var tm host.Timers
	if o.goos == "linux" && keepalive.GOOS == "linux" {
		tm = host.DetectTimers(context.Background())
	}
	if o.hz != 0 {
		tm.HZ, tm.HZSource = o.hz, "--hz"
	}
	if tm.HZSource == "" {
		tm.HZSource = fmt.Sprintf("unknown (planning for %s): assumed %d, the coarsest common value", o.goos, keepalive.DefaultHZ)
	}
	return tm
}
