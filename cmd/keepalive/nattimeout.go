package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/keepalive-dev/keepalive/internal/report"
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
			// In the library zero means "the default"; on the command line it is a mistake.
			for name, v := range map[string]time.Duration{"max": o.Max, "resolution": o.Resolution} {
				if cmd.Flags().Changed(name) && v <= 0 {
					return usagef("--%s %s out of range (allowed: --max 2s..24h, --resolution 100ms..1h)", name, v)
				}
			}
			if err := o.Validate(); err != nil {
				return usagef("%v", err)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			prog := report.NewNATProgress(g.Stderr)
			if !noProgress {
				o.Progress = prog.Show
			}
			res, err := nattimeout.Measure(ctx, args[0], o)
			prog.Clear()
			if err != nil {
				if ctx.Err() != nil {
					return &exitError{code: exitInterrupted, err: errors.New("interrupted")}
				}
				return err
			}
			out := report.NATMeasure{Result: res}
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
				if err := g.printJSON(report.NATToJSON(out)); err != nil {
					return err
				}
			} else {
				report.PrintNATResult(g.Stdout, out)
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
