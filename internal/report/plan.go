package report

import (
	"errors"
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
)

// PlanResult is what `keepalive plan --json` prints.
type PlanResult struct {
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

// ListEnvs writes the middlebox presets as a table.
func ListEnvs(w io.Writer) error {
	envs := keepalive.Environments()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
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
	fmt.Fprintln(w, "\nRanges are planned for their low end. 'data only': TCP keepalive cannot keep the flow;")
	fmt.Fprintln(w, "use application heartbeats (package heartbeat) or the protocol's own pings.")
	fmt.Fprintln(w, "Sources, refresh rules and per-direction notes: keepalive plan --list-envs --json")
	return nil
}

// PlanInput is what 'keepalive plan' was asked, already parsed.
type PlanInput struct {
	OS       string
	Scenario keepalive.Scenario
	// Settings are the flags' values; Explicit says whether any was given.
	Settings keepalive.Config
	Explicit bool
	Env      *keepalive.Environment
	// Middlebox is --middlebox-timeout (0: the environment's, if any).
	Middlebox, DetectWithin, RTT time.Duration
	Segments                     int
	Timers                       host.Timers
}

// InputError is an input that makes the plan impossible (a usage error for the command).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *InputError) Unwrap() error { return e.Err }

// Plan evaluates, recommends or explains keepalive settings (see 'keepalive plan').
func Plan(in PlanInput) (*PlanResult, error) {
	lim, _ := keepalive.LimitsFor(in.OS)
	res := &PlanResult{OS: in.OS, Snippets: map[string]string{}}
	env := in.Env
	res.Environment = env
	mb := in.Middlebox
	if mb == 0 && env != nil {
		mb = env.IdleTimeout
	}
	res.Middlebox = mb
	explicit := in.Explicit
	var cfg keepalive.Config
	switch {
	case explicit:
		cfg = in.Settings
		ws, err := cfg.Validate(in.OS)
		if err != nil {
			return nil, &InputError{fmt.Errorf("invalid settings: %w", err)}
		}
		for _, w := range ws {
			res.Warnings = append(res.Warnings, w.String())
		}
		res.Source = "flags (unset fields: " + in.OS + " defaults)"
		cfg = cfg.WithDefaults(lim.Defaults)
	case env != nil && !env.KeepaliveRefreshes() && in.Middlebox == 0:
		// A middlebox that counts only data: no keepalive setting keeps the flow.
		cfg = lim.Defaults
		res.Advice = keepalive.HeartbeatAdvice
		res.Source = in.OS + " defaults (no keepalive setting keeps this flow)"
	case in.DetectWithin > 0 || mb > 0:
		rec, err := keepalive.Recommend(keepalive.Requirement{DetectWithin: in.DetectWithin, MiddleboxTimeout: mb, OS: in.OS})
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
		res.Source = in.OS + " defaults"
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
	if in.Scenario == keepalive.ScenarioNAT && mb == 0 {
		return nil, &InputError{errors.New("--scenario nat needs --middlebox-timeout or --env")}
	}
	tm := in.Timers
	m := keepalive.Model{Config: cfg, Scenario: in.Scenario, MiddleboxTimeout: mb, RTT: in.RTT, HZ: tm.HZ,
		RTOMin: tm.RTOMin, RTOMax: tm.RTOMax, Segments: in.Segments}
	if env != nil && env.OnExpiry == "rst" {
		m.MiddleboxRST = true
	}
	if err := m.Validate(); err != nil {
		return nil, &InputError{err}
	}
	tl := keepalive.Predict(m)
	res.HZ, res.HZSource, res.RTOSource = tl.HZ, tm.HZSource, tm.RTOSource
	if tm.HZ == 0 {
		res.HZSource = fmt.Sprintf("unknown: assumed %d, the coarsest common value", keepalive.DefaultHZ)
	}
	res.Earliest, res.Latest = tl.Earliest, tl.Latest
	if in.OS != "linux" {
		tl.Notes = append(tl.Notes, "the timeline follows Linux's timers; "+in.OS+" declares death after count unanswered probes the same way, with its own timer granularity")
	}
	if in.OS == "windows" {
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
	if in.Scenario != keepalive.ScenarioInFlight && in.OS == "linux" && cfg.UserTimeout == 0 && res.Advice == "" {
		d := keepalive.RetransmitTimeout(15)
		res.Warnings = append(res.Warnings, fmt.Sprintf("user-timeout: not set: a peer that vanishes while data is in flight is noticed only after tcp_retries2 (≈ %s); set --user-timeout", keepalive.HumanDuration(d)))
	}
	res.Snippets = planSnippets(cfg, in.OS)
	if peer, ok := planProbePeer(in.Scenario, m); ok && tl.Detected {
		sim, err := probe.Simulate(peer, probe.Config{}, in.RTT)
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

// PlanRender writes the plan for people; svg names the picture written, if any.
func PlanRender(w io.Writer, r *PlanResult, svg string) {
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
	if svg != "" {
		fmt.Fprintf(w, "\nTimeline picture written to %s\n", svg)
	}
}

// planDur renders a detection time: "5.072 s" below a minute, "2 h 11 min 31 s" above.
func planDur(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.3f s", d.Seconds())
	}
	return keepalive.HumanDuration(d)
}

// PlanSVG writes the plan's timeline as an SVG picture to path.
func PlanSVG(path string, r *PlanResult) error {
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
