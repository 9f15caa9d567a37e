package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/probe"
	"github.com/spf13/cobra"
)

// probeOptions are the flags of 'keepalive probe'.
type probeOptions struct {
	self     selfGuard
	sel      selectorFlags
	count    int
	interval time.Duration
	timeout  time.Duration
	rate     int
	reap     bool
	dryRun   bool
	owners   bool
}

// probeRow is one connection in the output.
type probeRow struct {
	probe.Result
	NetNS  string       `json:"netns,omitempty"`
	Owners []host.Owner `json:"owners,omitempty"`
	// Reaped is "destroyed", "would destroy" or the error when --reap acted on the row.
	Reaped string `json:"reaped,omitempty"`
	// Risk and KeepaliveVerdict say how the connection's own keepalive would fare against a dead
	// peer (host.Assess with the namespace's defaults): what probing found out sooner.
	Risk             host.RiskKind `json:"risk,omitempty"`
	KeepaliveVerdict string        `json:"keepalive_verdict,omitempty"`
}

// probeSummary counts verdicts.
type probeSummary struct {
	Connections int            `json:"connections"`
	Verdicts    map[string]int `json:"verdicts"`
	Skipped     int            `json:"skipped_not_established"`
	Reaped      int            `json:"reaped"`
	WouldReap   int            `json:"would_reap,omitempty"`
	// NotAlive counts dead, unreachable, reset and unknown verdicts (exit status 3).
	NotAlive int           `json:"not_alive"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

func newProbeCmd(g *globalOptions) *cobra.Command {
	o := &probeOptions{}
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Send a real keepalive probe to established connections now and report who answers",
		Long: `Send the RFC 1122 keepalive probe (SEQ = SND.NXT-1, ACK = RCV.NXT, no payload) to every
selected ESTABLISHED connection on this host, from outside the processes that own them, and
classify the answer:

  alive        the peer answered (RTT shown)
  reset        the peer answered RST: it forgot the connection (rebooted, restarted). The
               local kernel accepts the RST and tears the socket down itself; its owner
               gets ECONNRESET.
  dead         no answer to --count probes --interval apart
  unreachable  no answer, and an ICMP destination unreachable came back (counts as
               dead); or the local link toward the peer is down (no carrier)
  gone         the local socket closed or left ESTABLISHED meanwhile
  unknown      the connection could not be probed (busy, and none of its segments seen;
               or no probe was seen leaving): neither alive nor dead

Only a segment captured after the probe left may decide: both times are the kernel's
capture timestamps (the probe's own copy on the capture, and the answer's), so a segment
that was already on its way before the probe is never taken as its answer. The RTT is
the difference, always positive; --json names the deciding segment (decided_by).

How: the local socket's sequence numbers are learned by injecting into the local stack a
zero-length ACK that claims to come from the peer; the kernel answers with a duplicate ACK
that reveals SND.NXT and RCV.NXT. This is done only while the socket has nothing in flight
and nothing unsent (checked with sock_diag just before: checks are batched, at most about
100 ms ahead of the injection); busy connections are learned from
their own segments instead and probed only with the zero-length form. Zero-length probes to
one peer are spaced at least 0.6 s apart (Linux answers such segments at most once per
tcp_invalid_ratelimit); a quicker retry on an idle socket uses the 1-byte probe (a duplicate
byte the peer discards). Nothing reaches the owning processes.

--reap destroys (SOCK_DESTROY) the connections found dead or unreachable; reset ones are
already gone and alive ones are never touched, nor are connections whose local link is down
(the peer may be fine once the link is back). Add --dry-run to only list them.

--interval is at least 600 ms (more when net.ipv4.tcp_invalid_ratelimit is raised above
its default 500 ms), --timeout at least 100 ms.

Needs root (CAP_NET_RAW for raw sockets and packet capture, CAP_NET_ADMIN for --reap).
Exit status 3 when any probed connection is not alive: dead, unreachable, reset or
unknown (each row gives its reason); 0 when all are alive or gone.`,
		Example: `  # Probe every established connection to port 5432 (PostgreSQL clients or servers)
  sudo keepalive probe --port 5432

  # Which of nginx's upstream peers are still there? One probe each, 2 s to answer
  sudo keepalive probe --comm nginx --count 1 --timeout 2s

  # Connections idle for over 10 minutes to 10.0.0.0/8: probe, and destroy the dead ones
  sudo keepalive probe --peer 10.0.0.0/8 --idle-over 10m --reap

  # What would be destroyed, as JSON
  sudo keepalive probe --peer 10.0.0.0/8 --reap --dry-run --json

  # Connections of a container's namespace
  sudo keepalive probe --netns web1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProbe(cmd.Context(), g, o)
		},
	}
	o.sel.register(cmd.Flags())
	f := cmd.Flags()
	f.IntVar(&o.count, "count", probe.DefaultCount, fmt.Sprintf("probes per connection before declaring the peer dead (1..%d)", probe.MaxCount))
	f.Var(newDurationValue(&o.interval), "interval", "time between probes to one connection (default 1s, minimum 600ms)")
	f.Var(newDurationValue(&o.timeout), "timeout", "how long to wait for an answer to each probe (default: --interval, minimum 100ms)")
	f.IntVar(&o.rate, "rate", probe.DefaultRate, fmt.Sprintf("maximum packets injected per second (1..%d)", probe.MaxRate))
	f.BoolVar(&o.reap, "reap", false, "destroy (SOCK_DESTROY) connections whose peer is dead or unreachable")
	f.BoolVar(&o.dryRun, "dry-run", false, "with --reap: list what would be destroyed, destroy nothing")
	o.self.registerSelf(f)
	f.BoolVar(&o.owners, "owners", false, "show the owning processes (one pass over /proc/*/fd; implied by --pid and --comm)")
	return cmd
}

func (o *probeOptions) config() (probe.Config, error) {
	if o.count < 1 || o.count > probe.MaxCount {
		return probe.Config{}, usagef("invalid --count %d (allowed: 1..%d)", o.count, probe.MaxCount)
	}
	if minI := probe.MinSpacing(0); o.interval != 0 && (o.interval < minI || o.interval > probe.MaxInterval) {
		return probe.Config{}, usagef("invalid --interval %v (allowed: %v..%v; the kernel answers zero-length segments at most once per net.ipv4.tcp_invalid_ratelimit, %v by default, per socket)",
			o.interval, minI, probe.MaxInterval, probe.DefaultRateLimit)
	}
	if o.timeout != 0 && (o.timeout < probe.CommandMinTimeout || o.timeout > probe.MaxInterval) {
		return probe.Config{}, usagef("invalid --timeout %v (allowed: %v..%v; an answer takes a round trip plus the scheduling delay of a loaded host)",
			o.timeout, probe.CommandMinTimeout, probe.MaxInterval)
	}
	if o.rate < 1 || o.rate > probe.MaxRate {
		return probe.Config{}, usagef("invalid --rate %d (allowed: 1..%d packets/s)", o.rate, probe.MaxRate)
	}
	if o.dryRun && !o.reap {
		return probe.Config{}, usagef("--dry-run only makes sense with --reap")
	}
	if o.reap && !o.sel.narrows() {
		return probe.Config{}, usagef("--reap destroys connections: narrow them with --port, --peer, --pid, --comm, --cgroup, --container or --cookie (--state and --idle-over alone select every connection)")
	}
	return probe.Config{Count: o.count, Interval: o.interval, Timeout: o.timeout}, nil
}

func runProbe(ctx context.Context, g *globalOptions, o *probeOptions) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	lopt, err := o.sel.listOptions()
	if err != nil {
		return err
	}
	if err := linuxOnly("keepalive probe"); err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	lopt.Owners = o.owners || o.reap // --reap leaves the session's own connections alone
	o.self.init()
	if len(lopt.Selector.States) == 0 {
		// Only ESTABLISHED connections can be probed: let the kernel filter.
		lopt.Selector.States = []host.State{host.StateEstablished}
	}
	socks, err := host.List(ctx, lopt)
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	// Only ESTABLISHED connections can be probed.
	skipped := 0
	byNS := map[string][]host.Socket{}
	var nsOrder []string
	for _, s := range socks {
		if s.State != host.StateEstablished || !s.Local.IsValid() || !s.Remote.IsValid() {
			skipped++
			continue
		}
		if _, ok := byNS[s.NetNS]; !ok {
			nsOrder = append(nsOrder, s.NetNS)
		}
		byNS[s.NetNS] = append(byNS[s.NetNS], s)
	}
	total := len(socks) - skipped
	// Zero-length segments to one socket must be spaced beyond the rate
	// limit of the namespace's kernel (and of the peer's, assumed default).
	spacing := map[string]time.Duration{}
	for _, ns := range nsOrder {
		rl, err := probe.InvalidRateLimit(ns)
		if err != nil {
			rl = 0 // unreadable: assume the kernel default
		}
		sp := probe.MinSpacing(rl)
		spacing[ns] = sp
		if o.interval != 0 && o.interval < sp {
			return usagef("invalid --interval %v: at least %v here (net.ipv4.tcp_invalid_ratelimit%s = %v: the kernel answers zero-length segments at most once per %v per socket)",
				o.interval, sp, probeNSSuffix(ns), rl, rl)
		}
	}
	if total == 0 {
		msg := "no established connections match"
		if d := o.sel.describe(); d != "" {
			msg += " " + d
		}
		if skipped > 0 {
			msg += fmt.Sprintf(" (%d in other states skipped)", skipped)
		}
		if g.JSON {
			return g.printJSON(struct {
				Connections []probeRow   `json:"connections"`
				Summary     probeSummary `json:"summary"`
			}{[]probeRow{}, probeSummary{Verdicts: map[string]int{}, Skipped: skipped}})
		}
		fmt.Fprintln(g.Stderr, msg)
		return nil
	}
	start := time.Now()
	if !g.JSON {
		fmt.Fprintf(g.Stdout, "%-24s %-24s %-11s %-10s %s\n", "LOCAL", "REMOTE", "VERDICT", "RTT/PROBES", "EVIDENCE")
	}
	var rows []probeRow
	lastProgress := time.Now()
	sockOf := map[string]map[probe.Flow]host.Socket{}
	for _, ns := range nsOrder {
		group := byNS[ns]
		doneBefore := len(rows)
		bySock := make(map[probe.Flow]host.Socket, len(group))
		sockOf[ns] = bySock
		flows := make([]probe.Flow, 0, len(group))
		for _, s := range group {
			f := probe.Flow{Local: s.Local, Remote: s.Remote}.Normalize()
			if _, dup := bySock[f]; dup {
				continue
			}
			bySock[f] = s
			flows = append(flows, f)
		}
		p, err := probe.New(probe.NewOptions{Netns: ns, Checker: probe.HostChecker(ns, group...)})
		if err != nil {
			if errors.Is(err, probe.ErrPermission) {
				return fmt.Errorf("keepalive probe needs root or CAP_NET_RAW (raw sockets and packet capture): %w", err)
			}
			return err
		}
		emit := func(r probe.Result) {
			s := bySock[r.Flow]
			row := probeRow{Result: r, NetNS: ns, Owners: s.Owners}
			if s.Cookie != 0 || s.Local.IsValid() {
				as := host.Assess(s, host.AssessOptions{})
				row.Risk, row.KeepaliveVerdict = as.Risk, as.Verdict
			}
			rows = append(rows, row)
			if !g.JSON {
				fmt.Fprintln(g.Stdout, probeFormatRow(row))
			}
		}
		nsCfg := cfg
		nsCfg.Spacing = spacing[ns]
		if nsCfg.Interval == 0 {
			nsCfg.Interval = max(probe.DefaultInterval, nsCfg.Spacing)
		}
		opt := probe.Options{Config: nsCfg, Rate: o.rate, Progress: func(pr probe.Progress) {
			if time.Since(lastProgress) < time.Second {
				return
			}
			lastProgress = time.Now()
			fmt.Fprintf(g.Stderr, "probing: %d/%d connections answered or settled, %d packets sent, %s elapsed\n",
				doneBefore+pr.Done, total, pr.Sent, time.Since(start).Round(time.Millisecond))
		}}
		_, err = p.Probe(ctx, flows, opt, emit)
		p.Close()
		if err != nil {
			return fmt.Errorf("probe%s: %w", probeNSSuffix(ns), err)
		}
	}
	sum := probeSummary{Connections: len(rows), Verdicts: map[string]int{}, Skipped: skipped}
	for i := range rows {
		r := &rows[i]
		sum.Verdicts[r.Verdict.String()]++
		if !o.reap || !r.Verdict.Dead() {
			continue
		}
		s := sockOf[r.NetNS][r.Flow]
		switch {
		case o.self.protects(&s):
			r.Reaped = "kept: carries this session (--include-self)"
		case r.LinkDown != "":
			// The local link is down: nothing is known about the peer, and
			// the connection may well survive the outage.
			r.Reaped = "kept: local link down, the peer may be fine"
		case o.dryRun:
			r.Reaped = "would destroy"
			sum.WouldReap++
		default:
			if err := host.Destroy(ctx, s); err != nil {
				r.Reaped = "destroy failed: " + err.Error()
			} else {
				r.Reaped = "destroyed"
				sum.Reaped++
			}
		}
	}
	sum.Elapsed = time.Since(start)
	// Every probed connection that is not alive is a finding, unknown
	// included (it was not shown to be alive); gone is not: its owner closed
	// it meanwhile.
	failed := probeNotAlive(sum.Verdicts)
	sum.NotAlive = failed
	if g.JSON {
		if err := g.printJSON(struct {
			Connections []probeRow   `json:"connections"`
			Summary     probeSummary `json:"summary"`
		}{rows, sum}); err != nil {
			return err
		}
	} else {
		for _, r := range rows {
			if r.Reaped != "" {
				fmt.Fprintf(g.Stdout, "reap %s -> %s: %s\n", r.Flow.Local, r.Flow.Remote, r.Reaped)
			}
		}
		fmt.Fprintln(g.Stdout, probeFormatSummary(sum))
	}
	if failed > 0 {
		return &exitError{code: exitFound}
	}
	return nil
}

// probeNotAlive counts the verdicts that make 'keepalive probe' exit 3.
func probeNotAlive(verdicts map[string]int) int {
	n := 0
	for _, v := range []probe.Verdict{probe.Dead, probe.Unreachable, probe.Reset, probe.Unknown} {
		n += verdicts[v.String()]
	}
	return n
}

func probeNSSuffix(ns string) string {
	if ns == "" {
		return ""
	}
	return " in network namespace " + ns
}

// probeFormatRow renders one result row.
func probeFormatRow(r probeRow) string {
	var rp string
	switch {
	case r.Verdict == probe.Alive:
		rp = probeFormatRTT(r.RTT)
	default:
		rp = fmt.Sprintf("%d probes", r.Probes)
		if r.Probes == 1 {
			rp = "1 probe"
		}
	}
	ev := r.Evidence
	var notes []string
	if r.Busy {
		notes = append(notes, "busy: zero-length probes only")
	}
	if r.OneByte > 0 {
		notes = append(notes, fmt.Sprintf("%d one-byte", r.OneByte))
	}
	var procs []string
	for _, ow := range r.Owners {
		procs = append(procs, fmt.Sprintf("%s[%d]", ow.Comm, ow.PID))
	}
	if len(procs) > 0 {
		notes = append(notes, strings.Join(slices.Compact(procs), ","))
	}
	if len(notes) > 0 {
		ev += " (" + strings.Join(notes, "; ") + ")"
	}
	return fmt.Sprintf("%-24s %-24s %-11s %-10s %s", r.Flow.Local, r.Flow.Remote, r.Verdict, rp, ev)
}

func probeFormatRTT(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}

// probeFormatSummary renders the closing line.
func probeFormatSummary(s probeSummary) string {
	var parts []string
	for _, v := range []string{"alive", "reset", "dead", "unreachable", "gone", "unknown"} {
		if n := s.Verdicts[v]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, v))
		}
	}
	out := fmt.Sprintf("probed %d connections in %s: %s", s.Connections, s.Elapsed.Round(time.Millisecond), strings.Join(parts, ", "))
	if s.NotAlive > 0 {
		out += fmt.Sprintf("; %d not alive (reasons above)", s.NotAlive)
	}
	if s.Skipped > 0 {
		out += fmt.Sprintf("; %d not ESTABLISHED skipped", s.Skipped)
	}
	if s.Reaped > 0 {
		out += fmt.Sprintf("; %d destroyed", s.Reaped)
	}
	if s.WouldReap > 0 {
		out += fmt.Sprintf("; %d would be destroyed (dry run)", s.WouldReap)
	}
	return out
}
