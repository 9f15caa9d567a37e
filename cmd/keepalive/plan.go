package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
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
	hz                      int
	segments                int
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
	// Earliest and Latest bound the detection time on a kernel with HZ (HZSource says where
	// the value came from); Detection is the textbook time with every timer on time.
	Earliest time.Duration `json:"earliest"`
	Latest   time.Duration `json:"latest"`
	HZ       int           `json:"hz"`
	HZSource string        `json:"hz_source"`
	// RTOSource says where the minimum and maximum RTO of the timeline came from.
	RTOSource string `json:"rto_source,omitempty"`
	// Advice is set when TCP keepalive cannot keep the flow (a middlebox that counts only
	// data as activity).
	Advice string `json:"advice,omitempty"`
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

func planListEnvs(g *globalOptions) error {
	envs := keepalive.Environments()
	if g.JSON {
		return g.printJSON(envs)
	}
	tw := tabwriter.NewWriter(g.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIDLE TIMEOUT\tPLANNED FOR\tREFRESHED BY\tON EXPIRY\tDESCRIPTION")
	for _, e := range envs {
		by := "any segment"
		if !e.KeepaliveRefreshes() {
			by = "data only"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Range(), keepalive.HumanDuration(e.IdleTimeout), by, e.OnExpiry, e.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(g.Stdout, "\nRanges are planned for their low end. 'data only': TCP keepalive cannot keep the flow;")
	fmt.Fprintln(g.Stdout, "use application heartbeats (package heartbeat) or the protocol's own pings.")
	fmt.Fprintln(g.Stdout, "Sources, refresh rules and per-direction notes: keepalive plan --list-envs --json")
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
	case env != nil && !env.KeepaliveRefreshes() && o.middlebox == 0:
		// A middlebox that counts only data: no keepalive setting keeps the flow.
		cfg = lim.Defaults
		res.Advice = keepalive.HeartbeatAdvice
		res.Source = o.goos + " defaults (no keepalive setting keeps this flow)"
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
	if explicit && env != nil && !env.KeepaliveRefreshes() {
		res.Advice = keepalive.HeartbeatAdvice
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s counts only data as activity: %s", env.Name, keepalive.HeartbeatAdvice))
	} else if explicit {
		for _, w := range cfg.CheckMiddlebox(mb) {
			res.Warnings = append(res.Warnings, w.String())
		}
	}
	res.Config = cfg
	if sc == keepalive.ScenarioNAT && mb == 0 {
		return nil, usagef("--scenario nat needs --middlebox-timeout or --env")
	}
	tm := planTimers(o)
	m := keepalive.Model{Config: cfg, Scenario: sc, MiddleboxTimeout: mb, RTT: o.rtt, HZ: tm.HZ,
		RTOMin: tm.RTOMin, RTOMax: tm.RTOMax, Segments: o.segments}
	if env != nil && env.OnExpiry == "rst" {
		m.MiddleboxRST = true
	}
	if err := m.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	tl := keepalive.Predict(m)
	res.HZ, res.HZSource, res.RTOSource = tl.HZ, tm.HZSource, tm.RTOSource
	if tm.HZ == 0 {
		res.HZSource = fmt.Sprintf("unknown: assumed %d, the coarsest common value", keepalive.DefaultHZ)
	}
	res.Earliest, res.Latest = tl.Earliest, tl.Latest
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
	if sc != keepalive.ScenarioInFlight && o.goos == "linux" && cfg.UserTimeout == 0 && res.Advice == "" {
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
		s["sysctl"] = strings.Join(host.SysctlLines(cfg), "\n") +
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
	if r.Advice != "" {
		fmt.Fprintf(w, "%s\n", r.Advice)
		if e := r.Environment; e != nil {
			fmt.Fprintf(w, "  %s counts only data as activity: %s\n", e.Name, e.RefreshSource)
			fmt.Fprintf(w, "  (it closes a connection idle of data after %s: %s on expiry)\n\n", e.Range(), e.OnExpiry)
		}
	}
	fmt.Fprintf(w, "Settings (%s, %s):\n", r.Source, r.OS)
	fmt.Fprintf(w, "  idle %s, interval %s, count %d", keepalive.HumanDuration(c.Idle), keepalive.HumanDuration(c.Interval), c.Count)
	if c.UserTimeout > 0 {
		ut := keepalive.HumanDuration(c.UserTimeout)
		if c.UserTimeout%time.Second != 0 {
			ut = c.UserTimeout.String()
		}
		fmt.Fprintf(w, ", user timeout %s", ut)
	}
	fmt.Fprintln(w)
	if e := r.Environment; e != nil {
		by := "any segment refreshes it"
		if !e.KeepaliveRefreshes() {
			by = "only data refreshes it"
		}
		fmt.Fprintf(w, "  middlebox: %s forgets idle flows after %s (%s on expiry; %s)", e.Name, e.Range(), e.OnExpiry, by)
		if e.MaxIdleTimeout > e.IdleTimeout {
			fmt.Fprintf(w, ", planned for the low end %s", keepalive.HumanDuration(e.IdleTimeout))
		}
		fmt.Fprintln(w)
		if e.Direction != "" {
			fmt.Fprintf(w, "  direction: %s\n", e.Direction)
		}
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
		fmt.Fprintf(w, "the application gets %s between %s and %s", tl.Error, planDur(tl.Earliest), planDur(tl.Latest))
		if tl.Detection != tl.Earliest {
			fmt.Fprintf(w, " (textbook: %s)", planDur(tl.Detection))
		}
		fmt.Fprintln(w)
		for i, c := range tl.Candidates {
			fmt.Fprintf(w, "  candidate %d: %s … %s — %s\n", i+1, planDur(c.From), planDur(c.To), c.Detail)
		}
	} else {
		fmt.Fprintln(w, "nothing is detected")
	}
	fmt.Fprintf(w, "Timers: HZ %d (%s)", r.HZ, r.HZSource)
	if r.RTOSource != "" && tl.Model.Scenario == keepalive.ScenarioInFlight {
		fmt.Fprintf(w, "; RTO %s..%s (%s)", tl.Model.RTOMin, tl.Model.RTOMax, r.RTOSource)
	}
	fmt.Fprintln(w)
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

// planDur renders a detection time: "5.072 s" below a minute, "2 h 11 min 31 s" above.
func planDur(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.3f s", d.Seconds())
	}
	return keepalive.HumanDuration(d)
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
