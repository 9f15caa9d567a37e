package report

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/probe"
)

// ProbeRow is one connection in the output.
type ProbeRow struct {
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

// ProbeSummary counts verdicts.
type ProbeSummary struct {
	Connections int            `json:"connections"`
	Verdicts    map[string]int `json:"verdicts"`
	Skipped     int            `json:"skipped_not_established"`
	Reaped      int            `json:"reaped"`
	WouldReap   int            `json:"would_reap,omitempty"`
	// NotAlive counts dead, unreachable, reset and unknown verdicts (exit status 3).
	NotAlive int           `json:"not_alive"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// ProbeNotAlive counts the verdicts that make 'keepalive probe' exit 3.
func ProbeNotAlive(verdicts map[string]int) int {
	n := 0
	for _, v := range []probe.Verdict{probe.Dead, probe.Unreachable, probe.Reset, probe.Unknown} {
		n += verdicts[v.String()]
	}
	return n
}

// ProbeFormatRow renders one result row.
func ProbeFormatRow(r ProbeRow) string {
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

// ProbeFormatSummary renders the closing line.
func ProbeFormatSummary(s ProbeSummary) string {
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

// NSSuffix is " in network namespace NS", or "" for the current one.
func NSSuffix(ns string) string {
	if ns == "" {
		return ""
	}
	return " in network namespace " + ns
}
