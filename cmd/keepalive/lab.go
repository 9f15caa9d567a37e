package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/progress"
	"github.com/keepalive-dev/keepalive/internal/report"
	"github.com/keepalive-dev/keepalive/lab"
	"github.com/spf13/cobra"
)

// labFlags are the options of 'keepalive lab'.
type labFlags struct {
	scenario    string
	mode        string
	idle        time.Duration
	interval    time.Duration
	count       int
	userTimeout time.Duration
	natTimeout  time.Duration
	natExpiry   string
	max         time.Duration
	faultAfter  time.Duration
	retries2    int
	ipv6        bool
	svg         string
	matrix      bool
	parallel    int
	noProgress  bool
	segments    int
	hz          int
	random      int
	seed        int64
}

func newLabCmd(g *globalOptions) *cobra.Command {
	f := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Reproduce dead-peer failures in network namespaces and measure detection",
		Long: `keepalive lab builds a small network of Linux network namespaces, starts a real
server process and a real client connection, injects one failure and measures how
long the client takes to learn that its peer is gone — beside what the model
('keepalive plan') predicts. It needs root and removes everything it built when it
ends, also on Ctrl-C; 'keepalive lab clean' removes what a killed run left behind.

Scenarios (--scenario):
` + labScenariosHelp() + `

Modes (--mode):
` + labModesHelp() + `

The time from the last activity (the greeting the server answered; for in-flight the
write the server never acknowledges) to the application's error is compared with
the prediction; probes are counted on the wire (TcpExt TCPKeepAlive in the client
namespace). Exit status 3 when nothing was detected within the bound.

--matrix runs every scenario × mode with short settings, several at once, and prints
one table marking where the kernel and the model disagree (exit status 3 if any do).

--random N runs N random configurations (idle 1–6 s, interval 1–4 s, count 1–5, user
timeout unset or fractional 2–12 s; crash, reboot, in-flight with one and with several
segments) up to 4 at a time and compares each with the model's window [earliest,
latest] for this kernel's HZ: how a user checks the model on their own kernel. The
summary says how many fell inside and the worst distance (exit status 3 if any did not).
--seed makes the configurations reproducible.`,
		Example: `  # Crash with keepalive 2s/1s/3: detected after about 5 s
  sudo keepalive lab --scenario crash --mode kernel --idle 2s --interval 1s --count 3

  # A NAT that forgets the idle flow after 1 s and resets it, over IPv6, as JSON
  sudo keepalive lab --scenario nat-rst --ipv6 --json

  # Unacknowledged data: keepalive never probes, TCP_USER_TIMEOUT decides
  sudo keepalive lab --scenario in-flight --mode user-timeout --user-timeout 3s

  # Timeline picture
  sudo keepalive lab --scenario reboot --svg reboot.svg

  # Every scenario × mode in parallel, one table
  sudo keepalive lab --matrix

  # Check the model on this kernel: 200 random configurations, 4 at a time
  sudo keepalive lab --random 200 --seed 1

  # Remove what a killed run left behind
  sudo keepalive lab clean`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive lab"); err != nil {
				return err
			}
			if f.matrix && f.random > 0 {
				return usagef("--matrix and --random cannot be combined")
			}
			if f.matrix {
				return labMatrix(cmd.Context(), g, f, cmd.Flags().Changed)
			}
			if cmd.Flags().Changed("random") || cmd.Flags().Changed("seed") {
				return labRandom(cmd.Context(), g, f, cmd.Flags().Changed)
			}
			return labRun(cmd.Context(), g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scenario, "scenario", "crash", "failure to inject: "+strings.Join(lab.ScenarioNames(), ", "))
	fl.StringVar(&f.mode, "mode", "kernel", "how the client detects: "+strings.Join(lab.ModeNames(), ", "))
	f.idle = lab.DefaultIdle
	fl.Var(newDurationValue(&f.idle), "idle", "keepalive idle time before the first probe (whole seconds)")
	f.interval = lab.DefaultInterval
	fl.Var(newDurationValue(&f.interval), "interval", "time between unanswered probes (whole seconds)")
	fl.IntVar(&f.count, "count", lab.DefaultCount, "unanswered probes before the peer is declared dead (1..127)")
	fl.Var(newDurationValue(&f.userTimeout), "user-timeout", "TCP_USER_TIMEOUT for --mode user-timeout (default idle + interval)")
	f.natTimeout = lab.DefaultNATTimeout
	fl.Var(newDurationValue(&f.natTimeout), "nat-timeout", "conntrack established timeout of the router (nat scenario, whole seconds)")
	fl.StringVar(&f.natExpiry, "nat-expiry", "", "what the router does with a forgotten flow: drop or rst (nat scenario; default drop)")
	fl.Var(newDurationValue(&f.max), "max", "give up after this long from the last activity (default: predicted detection + 2s, or idle + count×interval + 3s)")
	fl.Var(newDurationValue(&f.faultAfter), "fault-after", "inject the fault this long after the last activity (default 500ms, at most idle/2)")
	fl.IntVar(&f.retries2, "retries2", 0, "net.ipv4.tcp_retries2 in the client namespace (default: keep 15)")
	fl.BoolVar(&f.ipv6, "ipv6", false, "use IPv6 (fd00:200::/64) instead of IPv4 (10.200.0.0/16)")
	fl.StringVar(&f.svg, "svg", "", "also draw the measured and predicted timelines to this SVG file")
	fl.BoolVar(&f.matrix, "matrix", false, "run every scenario × mode with short settings in parallel and print one table")
	fl.IntVar(&f.parallel, "parallel", 8, "runs at once with --matrix (1..64)")
	fl.BoolVar(&f.noProgress, "no-progress", false, "do not print the progress line on stderr")
	fl.IntVar(&f.segments, "segments", 1, "segments in flight for the in-flight scenario (1 = one small write; 1..10)")
	fl.IntVar(&f.hz, "hz", 0, "kernel CONFIG_HZ for the model (default: detected from /proc/config.gz, /boot/config-*, or the kernel's timers)")
	fl.IntVar(&f.random, "random", 0, "run N random configurations (up to 4 at once) and compare each with the model's window")
	fl.Int64Var(&f.seed, "seed", 0, "seed for --random (default: time-based, printed)")
	cmd.AddCommand(newLabCleanCmd(g))
	return cmd
}

// labModesHelp lists every detector with its description.
// labScenariosHelp lists the scenarios, from the lab's registry.
func labScenariosHelp() string {
	var b strings.Builder
	for _, s := range lab.Scenarios() {
		lines := strings.Split(s.Help(), "\n")
		fmt.Fprintf(&b, "  %-12s%s\n", s, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "%14s%s\n", "", l)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func labModesHelp() string {
	var b strings.Builder
	for _, d := range lab.Detectors() {
		fmt.Fprintf(&b, "  %-13s %s\n", d.Name(), d.Describe())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// labOptions turns the flags into lab.Options, validated.
func labOptions(f *labFlags) (lab.Options, error) {
	sc, variant, err := lab.ParseScenario(f.scenario)
	if err != nil {
		return lab.Options{}, usagef("--scenario: %v", err)
	}
	if f.natExpiry != "" {
		if variant != "" && variant != f.natExpiry {
			return lab.Options{}, usagef("--nat-expiry %s contradicts --scenario %s", f.natExpiry, f.scenario)
		}
		variant = f.natExpiry
	}
	if variant != "" && sc != lab.NAT {
		return lab.Options{}, usagef("--nat-expiry applies to the nat scenario only (got --scenario %s)", f.scenario)
	}
	o := lab.Options{Scenario: sc, NATOnExpiry: variant, NATTimeout: f.natTimeout, Mode: f.mode,
		Config: keepalive.Config{Idle: f.idle, Interval: f.interval, Count: f.count, UserTimeout: f.userTimeout},
		Max:    f.max, FaultAfter: f.faultAfter, Retries2: f.retries2, IPv6: f.ipv6, Segments: f.segments, HZ: f.hz}
	if f.segments != 1 && sc != lab.InFlight {
		return o, usagef("--segments applies to the in-flight scenario only (got --scenario %s)", f.scenario)
	}
	if f.segments < 1 || f.segments > lab.MaxSegments {
		return o, usagef("--segments %d out of range (allowed: 1..%d)", f.segments, lab.MaxSegments)
	}
	if f.hz != 0 && (f.hz < 10 || f.hz > 10000) {
		return o, usagef("--hz %d out of range (allowed: 10..10000, typically 100, 250, 300 or 1000)", f.hz)
	}
	if f.userTimeout != 0 && f.mode != "user-timeout" {
		return o, usagef("--user-timeout %s needs --mode user-timeout (got --mode %s)", f.userTimeout, f.mode)
	}
	if f.count < 1 || f.count > 127 {
		return o, usagef("--count %d out of range (allowed: 1..127)", f.count)
	}
	if f.idle <= 0 || f.interval <= 0 {
		return o, usagef("--idle %s and --interval %s must be positive whole seconds (allowed: 1s..32767s)", f.idle, f.interval)
	}
	if _, err := lab.Predict(o); err != nil {
		return o, usagef("%v", strings.TrimPrefix(err.Error(), "lab: "))
	}
	return o, nil
}

func labRun(ctx context.Context, g *globalOptions, f *labFlags) error {
	o, err := labOptions(f)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	prog := progress.New(g.Stderr, progress.DefaultEvery)
	if !f.noProgress {
		o.Progress = func(p lab.Progress) {
			prog.Show(fmt.Sprintf("waiting: %.1fs elapsed / %.1fs expected (bound %s), %d probe(s) seen",
				p.Elapsed.Seconds(), p.Expected.Seconds(), p.Max, p.Probes))
		}
	}
	r, err := lab.Run(ctx, o)
	prog.Clear()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &exitError{code: exitError1, err: errors.New("lab interrupted; everything it built was removed")}
		}
		return labAdvice(err)
	}
	if f.svg != "" {
		if err := report.LabSVG(f.svg, r); err != nil {
			return err
		}
	}
	if g.JSON {
		if err := g.printJSON(r); err != nil {
			return err
		}
	} else if err := lab.WriteText(g.Stdout, r); err != nil {
		return err
	}
	if !r.Detected {
		return &exitError{code: exitFound}
	}
	return nil
}

// labAdvice adds what to do to a missing privilege (the lab's error names only what is missing).
func labAdvice(err error) error {
	if errors.Is(err, lab.ErrNotRoot) {
		return fmt.Errorf("%w; run it with sudo", err)
	}
	return err
}
