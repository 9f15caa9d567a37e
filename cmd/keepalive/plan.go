package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/viz"
	"github.com/keepalive-dev/keepalive/probe"
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
}

// planResult is what `keepalive plan --json` prints.
type planResult struct {
	OS            string                    `json:"os"`
	Source        string                    `json:"source"`
	Config        keepalive.Config          `json:"config"`
	Environment   *keepalive.Environment    `json:"environment,omitempty"`
	Middlebox     time.Duration             `json:"middlebox_timeout,omitempty"`
	Recommend     *keepalive.Recommendation `json:"recommendation,omitempty"`
	Detection     time.Duration             `json:"detection"`
	DetectionText string                    `json:"detection_text"`
	Detected      bool                      `json:"detected"`
	Timeline      keepalive.Timeline        `json:"timeline"`
	Warnings      []string                  `json:"warnings"`
	Snippets      map[string]string         `json:"snippets"`
	// Probe is the same failure met by 'keepalive probe' with its defaults, simulated with
	// the prober's own state machine.
	Probe *probe.Simulation `json:"probe,omitempty"`
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
The timeline follows the Linux kernel (net/ipv4/tcp_timer.c); timers may fire late by
the timer-wheel granularity, which the output states.`,
		Example: `  keepalive plan
  keepalive plan --env aws-nat-gateway
  keepalive plan --detect-within 30s --middlebox-timeout 4m
  keepalive plan --idle 2s --interval 1s --count 3 --scenario reboot
  keepalive plan --idle 60 --interval 10 --count 5 --scenario in-flight --user-timeout 90s
  keepalive plan --list-envs
  keepalive plan --env azure-lb --svg timeline.svg --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.listEnvs {
				return planListEnvs(g)
			}
			res, err := planCompute(&o)
			if err != nil {
				return err
			}
			if o.svg != "" {
				if err := planWriteSVG(o.svg, res); err != nil {
					return err
				}
			}
			if g.JSON {
				return g.printJSON(res)
			}
			planRender(g.Stdout, res, o)
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
	f.Var(newDurationValue(&o.rtt), "rtt", "round-trip time to the peer used in the timeline (default 1ms)")
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

func planListEnvs(g *globalOptions) error {
	envs := keepalive.Environments()
	if g.JSON {
		return g.printJSON(envs)
	}
	tw := tabwriter.NewWriter(g.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIDLE TIMEOUT\tON EXPIRY\tDESCRIPTION")
	for _, e := range envs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, keepalive.HumanDuration(e.IdleTimeout), e.OnExpiry, e.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(g.Stdout, "\nSources: keepalive plan --list-envs --json")
	return nil
}

func planCompute(o *planOptions) (*planResult, error) {
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
	lim, _ := keepalive.LimitsFor(o.goos)
	res := &planResult{OS: o.goos, Snippets: map[string]string{}}
	var env *keepalive.Environment
	if o.env != "" {
		e, err := keepalive.LookupEnvironment(o.env)
		if err != nil {
			return nil, usagef("invalid --env: %v", err)
		}
		env = &e
		res.Environment = env
	}
	mb := o.middlebox
	if mb == 0 && env != nil {
		mb = env.IdleTimeout
	}
	res.Middlebox = mb
	explicit := o.settings.given()
	var cfg keepalive.Config
	switch {
	case explicit:
		cfg = flagCfg
		ws, err := cfg.Validate(o.goos)
		if err != nil {
			return nil, &usageError{fmt.Errorf("invalid settings: %w", err)}
		}
		for _, w := range ws {
			res.Warnings = append(res.Warnings, w.String())
		}
		res.Source = "flags (unset fields: " + o.goos + " defaults)"
		cfg = cfg.WithDefaults(lim.Defaults)
	case o.detectWithin > 0 || mb > 0:
		rec, err := keepalive.Recommend(keepalive.Requirement{DetectWithin: o.detectWithin, MiddleboxTimeout: mb, OS: o.goos})
		if err != nil {
			return nil, fmt.Errorf("cannot recommend: %w", err)
		}
		res.Recommend = &rec
		cfg = rec.Config
		for _, w := range rec.Warnings {
			res.Warnings = append(res.Warnings, w.String())
		}
		res.Source = "recommended"
	default:
		cfg = lim.Defaults
		res.Source = o.goos + " defaults"
	}
	if explicit {
		for _, w := range cfg.CheckMiddlebox(mb) {
			res.Warnings = append(res.Warnings, w.String())
		}
	}
	res.Config = cfg
	if sc == keepalive.ScenarioNAT && mb == 0 {
		return nil, usagef("--scenario nat needs --middlebox-timeout or --env")
	}
	m := keepalive.Model{Config: cfg, Enabled: true, Scenario: sc, MiddleboxTimeout: mb, RTT: o.rtt}
	if env != nil && env.OnExpiry == "rst" {
		m.MiddleboxRST = true
	}
	tl := keepalive.Predict(m)
	if o.goos != "linux" {
		tl.Notes = append(tl.Notes, "the timeline follows Linux's timers; "+o.goos+" declares death after count unanswered probes the same way, with its own timer granularity")
	}
	if o.goos == "windows" {
		tl.Notes = append(tl.Notes, "Windows before 10 1703 ignores the count and always sends 10 probes (SIO_KEEPALIVE_VALS)")
	}
	res.Timeline = tl
	res.Detected = tl.Detected
	res.Detection = tl.Detection
	if tl.Detected {
		res.DetectionText = keepalive.HumanDuration(tl.Detection)
	} else {
		res.DetectionText = "never"
	}
	if sc != keepalive.ScenarioInFlight && o.goos == "linux" && cfg.UserTimeout == 0 {
		d := keepalive.RetransmitTimeout(15)
		res.Warnings = append(res.Warnings, fmt.Sprintf("user-timeout: not set: a peer that vanishes while data is in flight is noticed only after tcp_retries2 (≈ %s); set --user-timeout", keepalive.HumanDuration(d)))
	}
	res.Snippets = planSnippets(cfg, o.goos)
	if peer, ok := planProbePeer(sc, m); ok && tl.Detected {
		sim, err := probe.Simulate(peer, probe.Config{}, o.rtt)
		if err != nil {
			return nil, err
		}
		res.Probe = &sim
	}
	return res, nil
}

// planProbePeer maps a scenario to the peer a user-space probe meets; in-flight has no
// counterpart (the prober learns a busy connection from its own segments).
func planProbePeer(sc keepalive.Scenario, m keepalive.Model) (probe.Peer, bool) {
	switch sc {
	case keepalive.ScenarioSilent:
		return probe.PeerSilent, true
	case keepalive.ScenarioReboot:
		return probe.PeerReset, true
	case keepalive.ScenarioNAT:
		if m.MiddleboxRST {
			return probe.PeerReset, true
		}
		return probe.PeerSilent, true
	}
	return "", false
}

func planSnippets(cfg keepalive.Config, goos string) map[string]string {
	s := map[string]string{}
	s["go"] = fmt.Sprintf(`cfg := keepalive.Config{Idle: %s, Interval: %s, Count: %d, UserTimeout: %s}
conn, err := keepalive.Dial(ctx, "tcp", addr, cfg)          // or keepalive.Apply(tcpConn, cfg)
ln, err := keepalive.Listen(ctx, "tcp", ":8080", cfg)       // accepted conns inherit it`,
		goLit(cfg.Idle), goLit(cfg.Interval), cfg.Count, goLit(cfg.UserTimeout))
	s["go-net"] = fmt.Sprintf(`d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: %s, Interval: %s, Count: %d}}
// net.KeepAliveConfig has no user timeout: use keepalive.Control(cfg) as d.Control for it.`,
		goLit(cfg.Idle), goLit(cfg.Interval), cfg.Count)
	if goos == "linux" {
		s["sysctl"] = strings.Join(keepalive.SysctlLines(cfg), "\n") +
			"\n# system-wide defaults only for sockets that enable SO_KEEPALIVE; no sysctl for TCP_USER_TIMEOUT"
	}
	return s
}

func goLit(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%d * time.Hour", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d * time.Minute", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%d * time.Second", d/time.Second)
	}
	return fmt.Sprintf("%d * time.Millisecond", d/time.Millisecond)
}

func planRender(w io.Writer, r *planResult, o planOptions) {
	c := r.Config
	fmt.Fprintf(w, "Settings (%s, %s):\n", r.Source, r.OS)
	fmt.Fprintf(w, "  idle %s, interval %s, count %d", keepalive.HumanDuration(c.Idle), keepalive.HumanDuration(c.Interval), c.Count)
	if c.UserTimeout > 0 {
		fmt.Fprintf(w, ", user timeout %s", keepalive.HumanDuration(c.UserTimeout))
	}
	fmt.Fprintln(w)
	if r.Environment != nil {
		fmt.Fprintf(w, "  middlebox: %s forgets idle flows after %s (%s on expiry)\n", r.Environment.Name, keepalive.HumanDuration(r.Environment.IdleTimeout), r.Environment.OnExpiry)
	} else if r.Middlebox > 0 {
		fmt.Fprintf(w, "  middlebox: forgets idle flows after %s\n", keepalive.HumanDuration(r.Middlebox))
	}
	if r.Recommend != nil {
		fmt.Fprintln(w, "\nWhy:")
		for _, s := range r.Recommend.Reasons {
			fmt.Fprintf(w, "  - %s\n", s)
		}
	}
	tl := r.Timeline
	fmt.Fprintf(w, "\nScenario %s: ", tl.Model.Scenario)
	if tl.Detected {
		fmt.Fprintf(w, "the application gets %s after %s (worst case with timer slack: %s)\n", tl.Error, keepalive.HumanDuration(tl.Detection), keepalive.HumanDuration(tl.Latest))
	} else {
		fmt.Fprintln(w, "nothing is detected")
	}
	fmt.Fprintln(w)
	viz.Text(w, []viz.Track{{Label: "Timeline (from the last segment received):", Events: tl.Events}}, 60)
	for _, n := range tl.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if p := r.Probe; p != nil {
		c := p.Config
		fmt.Fprintf(w, "\nOr find out now: 'keepalive probe' (count %d, interval %s) sends the RFC 1122 probe from\nuser space and reaches its verdict %s after it starts — simulated with the prober's state machine:\n",
			c.Count, c.Interval, keepalive.HumanDuration(p.Result.Elapsed))
		for _, e := range p.Events {
			fmt.Fprintf(w, "  %10s  %s\n", viz.FormatAt(e.At), e.Detail)
		}
	}
	if r.Source == r.OS+" defaults" && r.OS == "linux" {
		fmt.Fprint(w, `
These are Linux's defaults: a dead peer is noticed after 2 h 11 min 15 s, and only on
sockets that enable SO_KEEPALIVE at all (it is off unless the application asks).
Behind a NAT or load balancer the flow is usually forgotten long before the first probe.
Instead:
  keepalive plan --env aws-nat-gateway           settings for a known middlebox
  keepalive plan --detect-within 30s             settings for a detection target
  keepalive sysctl                               this host's system-wide defaults
`)
	}
	fmt.Fprintln(w, "\nApply it:")
	for _, k := range []string{"go", "go-net", "sysctl"} {
		if s, ok := r.Snippets[k]; ok {
			fmt.Fprintf(w, "  # %s\n", map[string]string{"go": "Go, with this library", "go-net": "Go, standard library only", "sysctl": "system-wide (/etc/sysctl.d), Linux"}[k])
			for _, l := range strings.Split(s, "\n") {
				fmt.Fprintf(w, "  %s\n", l)
			}
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, s := range r.Warnings {
			fmt.Fprintf(w, "  ! %s\n", s)
		}
	}
	if o.svg != "" {
		fmt.Fprintf(w, "\nTimeline picture written to %s\n", o.svg)
	}
}

func planWriteSVG(path string, r *planResult) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	title := fmt.Sprintf("keepalive plan: %s, scenario %s — detected after %s", r.Config, r.Timeline.Model.Scenario, r.DetectionText)
	track := viz.Track{Label: "predicted", Events: r.Timeline.Events}
	if r.Middlebox > 0 {
		track.Marks = []viz.Mark{{At: r.Middlebox, Label: "middlebox expiry"}}
	}
	if err := viz.SVG(f, title, []viz.Track{track}); err != nil {
		f.Close()
		return fmt.Errorf("--svg: %w", err)
	}
	return f.Close()
}
