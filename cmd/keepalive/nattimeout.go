package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/viz"
	"github.com/keepalive-dev/keepalive/nattimeout"
)

func newNATTimeoutCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nat-timeout",
		Short: "Measure how long the path's NAT/firewall keeps an idle connection",
		Long: `nat-timeout measures the idle timeout of the middleboxes (NATs, stateful firewalls, load
balancers) between this host and a server, to about a second, in little more than the
timeout itself, and turns it into keepalive settings.

Run 'serve' at the far end and 'measure' at the near end. measure opens test connections
through the path, lets them idle and checks whether a 32-byte message still passes, in
each direction separately (client→server and server→client differ in real NATs); it
reports how the middlebox forgets a flow (silently, with an RST, or by closing it), and
whether TCP keepalive probes count as activity. The search is adaptive: a geometric ladder
of idle times up to --max, then bisection inside the bracket found, reusing connections.`,
		Example: `  keepalive nat-timeout serve --listen :7414 --token s3cret
  keepalive nat-timeout measure server.example:7414 --token s3cret
  keepalive nat-timeout measure 203.0.113.7:7414 --max 30m --resolution 2s --max-conns 24 --json`,
	}
	cmd.AddCommand(newNATServeCmd(g), newNATMeasureCmd(g))
	return cmd
}

func newNATServeCmd(g *globalOptions) *cobra.Command {
	var (
		listen string
		cfg    nattimeout.ServerConfig
	)
	cmd := &cobra.Command{
		Use:   "serve --listen ADDR",
		Short: "Be the far end of a measurement",
		Long: `serve accepts measurement connections until interrupted (then it closes them all and
exits with 130). It is reachable by strangers, so it only speaks a fixed 32-byte protocol,
sends nothing but one error frame before a valid token (--token), and caps concurrent
connections per client address and in total, and the idle time of every connection.
The first line printed is the listening address (useful with port 0).`,
		Example: `  keepalive nat-timeout serve --listen :7414 --token s3cret
  keepalive nat-timeout serve --listen 127.0.0.1:0 --max-per-client 32 --max-idle 1h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if listen == "" {
				return usagef("--listen is required (e.g. --listen :7414)")
			}
			if err := cfg.Validate(); err != nil {
				return usagef("%v", err)
			}
			p := &hbPrinter{g: g}
			cfg.Logf = func(format string, a ...any) {
				msg := fmt.Sprintf(format, a...)
				p.emit(map[string]any{"event": "log", "message": msg}, "%s", msg)
			}
			srv, err := nattimeout.NewServer(cfg)
			if err != nil {
				return usagef("%v", err)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			lc := net.ListenConfig{KeepAlive: -1}
			ln, err := lc.Listen(ctx, "tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			p.emit(map[string]any{"event": "listening", "addr": ln.Addr().String()}, "listening on %s", ln.Addr())
			if err := srv.Serve(ctx, ln); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return &exitError{code: exitInterrupted}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address to listen on, e.g. :7414 or 127.0.0.1:0")
	f.StringVar(&cfg.Token, "token", "", "shared token clients must present (empty: none)")
	f.IntVar(&cfg.MaxPerClient, "max-per-client", nattimeout.DefaultMaxPerClient, "concurrent connections allowed per client address (2..4096)")
	f.IntVar(&cfg.MaxTotal, "max-total", nattimeout.DefaultMaxTotal, "concurrent connections allowed in total")
	f.DurationVar(&cfg.MaxIdle, "max-idle", nattimeout.DefaultMaxIdle, "close connections idle longer than this (1s..25h)")
	return cmd
}

// natMeasureOutput is what 'nat-timeout measure --json' prints.
type natMeasureOutput struct {
	nattimeout.Result
	Advice nattimeout.Advice `json:"advice"`
	// Goal is the wall-time goal (1.25 T + 10 s) for the shorter measured direction.
	Goal    time.Duration `json:"goal,omitempty"`
	GoalMet *bool         `json:"goal_met,omitempty"`
}

func newNATMeasureCmd(g *globalOptions) *cobra.Command {
	var (
		o          nattimeout.Options
		direction  string
		noProgress bool
		noKeep     bool
	)
	cmd := &cobra.Command{
		Use:   "measure ADDR",
		Short: "Measure the idle timeout of the path to a nat-timeout server",
		Long: `measure finds, for each direction, the idle time after which the path forgets a TCP
connection, within --resolution, for timeouts up to --max; then whether keepalive probes
count as activity (connections with TCP keepalive every second, idle of data past the
timeout, must survive), and what to configure.

Wall time: about the timeout itself (goal: 1.25 × T + 10 s per direction; both directions
run at the same time; the keepalive pass waits until its connections have been idle of
data for 1.25 × T). It needs a handful of concurrent connections (--max-conns, lowered to
the server's per-client cap); with fewer, it takes longer.

Exit codes: 0 measured; 1 error; 2 usage; 3 the path does not count keepalive probes
(TCP keepalive cannot keep its flows); 130 interrupted.`,
		Example: `  keepalive nat-timeout measure server.example:7414 --token s3cret
  keepalive nat-timeout measure 10.0.0.5:7414 --max 10m --direction client-to-server
  keepalive nat-timeout measure 203.0.113.7:7414 --max-conns 16 --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("measure needs exactly one ADDR (host:port of 'keepalive nat-timeout serve'), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := net.SplitHostPort(args[0]); err != nil {
				return usagef("ADDR %q is not host:port: %v", args[0], err)
			}
			switch direction {
			case "both":
			case "client-to-server", "up":
				o.SkipDown = true
			case "server-to-client", "down":
				o.SkipUp = true
			default:
				return usagef("--direction %q is not one of both, client-to-server, server-to-client", direction)
			}
			o.SkipKeepalive = noKeep
			if err := o.Validate(); err != nil {
				return usagef("%v", err)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			prog := newNATProgress(g.Stderr)
			if !noProgress {
				o.Progress = prog.show
			}
			res, err := nattimeout.Measure(ctx, args[0], o)
			prog.clear()
			if err != nil {
				if ctx.Err() != nil {
					return &exitError{code: exitInterrupted, err: errors.New("interrupted")}
				}
				return err
			}
			out := natMeasureOutput{Result: res}
			out.Advice, err = nattimeout.Advise(res)
			if err != nil {
				return err
			}
			if t := res.Timeout(); t > 0 {
				out.Goal = nattimeout.Goal(t)
				met := true
				for _, d := range []*nattimeout.DirectionResult{res.Up, res.Down} {
					if d != nil && d.Expired && d.Wall > nattimeout.Goal(d.Upper) {
						met = false
					}
				}
				out.GoalMet = &met
			}
			if g.JSON {
				if err := g.printJSON(natToJSON(out)); err != nil {
					return err
				}
			} else {
				printNATResult(g.Stdout, out)
			}
			if out.Advice.Heartbeat {
				return &exitError{code: exitFound}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Token, "token", "", "the server's shared token")
	f.DurationVar(&o.Max, "max", nattimeout.DefaultMax, "longest idle time tested (2s..24h)")
	f.DurationVar(&o.Resolution, "resolution", nattimeout.DefaultResolution, "error bound of the result (100ms..1h)")
	f.IntVar(&o.MaxConns, "max-conns", nattimeout.DefaultMaxConns, "concurrent connections to the server, control included (6..4096); carrier NATs limit ports per subscriber")
	f.StringVar(&direction, "direction", "both", "both, client-to-server or server-to-client")
	f.BoolVar(&noKeep, "no-keepalive-pass", false, "skip the check whether keepalive probes count as activity")
	f.BoolVar(&noProgress, "no-progress", false, "do not print progress on stderr")
	return cmd
}

// natProgress prints progress on stderr: one line redrawn with \r on a terminal, a plain
// line every 30 s otherwise.
type natProgress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	last     int
	printed  time.Time
}

func newNATProgress(w io.Writer) *natProgress {
	p := &natProgress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func bracketText(e *nattimeout.Estimate) string {
	if e == nil {
		return "-"
	}
	if e.Expired {
		return fmt.Sprintf("(%s, %s]", fmtSec(e.Lower), fmtSec(e.Upper))
	}
	return "> " + fmtSec(e.Lower)
}

func fmtSec(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func (p *natProgress) show(pr nattimeout.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	eta := "ETA " + pr.ETA.Round(time.Second).String()
	if pr.ETAIsBound {
		eta = "ETA ≤ " + pr.ETA.Round(time.Second).String()
	}
	const width = 20
	filled := 0
	if total := pr.Elapsed + pr.ETA; total > 0 {
		filled = int(int64(width) * int64(pr.Elapsed) / int64(total))
	}
	bar := "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
	s := fmt.Sprintf("%s %s %s  %s  client→server %s  server→client %s", bar, pr.Phase, pr.Elapsed.Round(time.Second),
		eta, bracketText(pr.Up), bracketText(pr.Down))
	if !p.terminal {
		if time.Since(p.printed) >= 30*time.Second {
			fmt.Fprintln(p.w, s)
			p.printed = time.Now()
		}
		return
	}
	pad := ""
	if n := p.last - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", s, pad)
	p.last = len(s)
}

func (p *natProgress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.last > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.last))
		p.last = 0
	}
}

func behaviourText(o nattimeout.Outcome) string {
	switch o {
	case nattimeout.Silent:
		return "silently (later segments are dropped)"
	case nattimeout.RST:
		return "with an RST"
	case nattimeout.FIN:
		return "by closing the connection itself (FIN)"
	}
	return o.String()
}

func printNATResult(w io.Writer, r natMeasureOutput) {
	fmt.Fprintf(w, "Path to %s (resolution %s, max %s, %d test connections per direction)\n", r.Server, r.Resolution, r.Max, r.ConnsPerDirection)
	for _, d := range []*nattimeout.DirectionResult{r.Up, r.Down} {
		if d == nil {
			continue
		}
		name := "client → server"
		if d.Direction == nattimeout.Down {
			name = "server → client"
		}
		switch {
		case d.Expired:
			fmt.Fprintf(w, "  %s: flow forgotten after %s idle (between %s and %s), %s; measured in %s (goal %s)\n",
				name, fmtSec(d.Upper), fmtSec(d.Lower), fmtSec(d.Upper), behaviourText(d.Behaviour), d.Wall.Round(100*time.Millisecond), fmtSec(nattimeout.Goal(d.Upper)))
		default:
			fmt.Fprintf(w, "  %s: no timeout up to %s\n", name, fmtSec(d.Lower))
		}
		if d.Flapping {
			fmt.Fprintf(w, "    the path flapped (a shorter idle failed after a longer one passed); the shorter value is kept\n")
		}
		if !d.Complete {
			fmt.Fprintf(w, "    incomplete: ran out of time or connections before reaching the resolution\n")
		}
	}
	k := r.Keepalive
	switch {
	case !k.Tested:
		fmt.Fprintf(w, "  keepalive probes: %s\n", orText(k.Detail, "not tested"))
	case k.Recognised:
		fmt.Fprintf(w, "  keepalive probes: count as activity (%s)\n", k.Detail)
	default:
		fmt.Fprintf(w, "  keepalive probes: do NOT count as activity (%s)\n", k.Detail)
	}
	fmt.Fprintf(w, "Total time %s.\n\n", r.Wall.Round(100*time.Millisecond))
	fmt.Fprintln(w, r.Advice.Text)
	if rec := r.Advice.Recommendation; rec != nil {
		for _, why := range rec.Reasons {
			fmt.Fprintf(w, "  - %s\n", why)
		}
		for _, wn := range rec.Warnings {
			fmt.Fprintf(w, "  ! %s\n", wn)
		}
		tl := keepalive.Predict(keepalive.Model{Config: rec.Config, Enabled: true, Scenario: keepalive.ScenarioSilent, MiddleboxTimeout: r.Timeout()})
		fmt.Fprintln(w)
		viz.Text(w, []viz.Track{{Label: "Timeline of a dead peer with these settings (from the last segment received):", Events: tl.Events}}, 60)
		fmt.Fprintf(w, "See it in detail: keepalive plan --middlebox-timeout %s\n", r.Timeout().Round(time.Second))
	}
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// JSON form of a measurement: durations in seconds, like the rest of the CLI's output.

type natCheckJSON struct {
	IdleSeconds float64 `json:"idle_seconds"`
	Outcome     string  `json:"outcome"`
	Unasked     bool    `json:"unasked,omitempty"`
}

type natDirJSON struct {
	Direction      string         `json:"direction"`
	Expired        bool           `json:"expired"`
	LowerSeconds   float64        `json:"lower_seconds"`
	UpperSeconds   float64        `json:"upper_seconds,omitempty"`
	TimeoutSeconds float64        `json:"timeout_seconds,omitempty"`
	ErrorSeconds   float64        `json:"error_seconds,omitempty"`
	Behaviour      string         `json:"behaviour,omitempty"`
	Flapping       bool           `json:"flapping"`
	Complete       bool           `json:"complete"`
	Checks         int            `json:"checks"`
	Opened         int            `json:"connections_opened"`
	WallSeconds    float64        `json:"wall_seconds"`
	GoalSeconds    float64        `json:"goal_seconds,omitempty"`
	History        []natCheckJSON `json:"history"`
}

type natJSON struct {
	Server                string      `json:"server"`
	MaxSeconds            float64     `json:"max_seconds"`
	ResolutionSeconds     float64     `json:"resolution_seconds"`
	ConnsPerDirection     int         `json:"conns_per_direction"`
	ServerMaxIdleSeconds  float64     `json:"server_max_idle_seconds"`
	GraceSeconds          float64     `json:"grace_seconds"`
	Up                    *natDirJSON `json:"client_to_server,omitempty"`
	Down                  *natDirJSON `json:"server_to_client,omitempty"`
	TimeoutSeconds        float64     `json:"timeout_seconds"`
	KeepaliveTested       bool        `json:"keepalive_tested"`
	KeepaliveRecognised   bool        `json:"keepalive_recognised"`
	KeepaliveIdleSeconds  float64     `json:"keepalive_probe_every_seconds"`
	KeepaliveDataIdle     float64     `json:"keepalive_data_idle_seconds,omitempty"`
	KeepaliveOutcome      string      `json:"keepalive_outcome,omitempty"`
	KeepaliveDetail       string      `json:"keepalive_detail"`
	WallSeconds           float64     `json:"wall_seconds"`
	GoalMet               *bool       `json:"goal_met,omitempty"`
	Heartbeat             bool        `json:"heartbeat_needed"`
	Advice                string      `json:"advice"`
	Recommendation        any         `json:"recommendation,omitempty"`
	RecommendationCommand string      `json:"plan_command,omitempty"`
}

func natDirToJSON(d *nattimeout.DirectionResult) *natDirJSON {
	if d == nil {
		return nil
	}
	j := &natDirJSON{Direction: string(d.Direction), Expired: d.Expired, LowerSeconds: d.Lower.Seconds(),
		Flapping: d.Flapping, Complete: d.Complete, Checks: d.Checks, Opened: d.Opened, WallSeconds: d.Wall.Seconds(),
		History: []natCheckJSON{}}
	if d.Expired {
		j.UpperSeconds, j.TimeoutSeconds = d.Upper.Seconds(), d.Upper.Seconds()
		j.ErrorSeconds = (d.Upper - d.Lower).Seconds()
		j.Behaviour = d.Behaviour.String()
		j.GoalSeconds = nattimeout.Goal(d.Upper).Seconds()
	}
	for _, c := range d.History {
		j.History = append(j.History, natCheckJSON{IdleSeconds: c.Idle.Seconds(), Outcome: c.Outcome.String(), Unasked: c.Unasked})
	}
	return j
}

func natToJSON(r natMeasureOutput) natJSON {
	k := r.Keepalive
	j := natJSON{Server: r.Server, MaxSeconds: r.Max.Seconds(), ResolutionSeconds: r.Resolution.Seconds(),
		ConnsPerDirection: r.ConnsPerDirection, ServerMaxIdleSeconds: r.ServerMaxIdle.Seconds(), GraceSeconds: r.Grace.Seconds(),
		Up: natDirToJSON(r.Up), Down: natDirToJSON(r.Down), TimeoutSeconds: r.Timeout().Seconds(),
		KeepaliveTested: k.Tested, KeepaliveRecognised: k.Recognised, KeepaliveIdleSeconds: k.Idle.Seconds(),
		KeepaliveDetail: k.Detail, WallSeconds: r.Wall.Seconds(), GoalMet: r.GoalMet,
		Heartbeat: r.Advice.Heartbeat, Advice: r.Advice.Text}
	if k.Tested {
		j.KeepaliveDataIdle, j.KeepaliveOutcome = k.DataIdle.Seconds(), k.Outcome.String()
	}
	if r.Advice.Recommendation != nil {
		j.Recommendation = r.Advice.Recommendation
		j.RecommendationCommand = fmt.Sprintf("keepalive plan --middlebox-timeout %s", r.Timeout().Round(time.Second))
	}
	return j
}
