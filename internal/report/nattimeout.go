package report

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/viz"
	"github.com/keepalive-dev/keepalive/nattimeout"
)

// NATMeasure is what 'nat-timeout measure --json' prints.
type NATMeasure struct {
	nattimeout.Result
	Advice nattimeout.Advice `json:"advice"`
	// Goal is the wall-time goal (1.25 T + 10 s) for the shorter measured direction.
	Goal    time.Duration `json:"goal,omitempty"`
	GoalMet *bool         `json:"goal_met,omitempty"`
}

// NATProgress prints progress on stderr: one line redrawn with \r on a terminal, a plain
// line every 30 s otherwise.
type NATProgress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	last     int
	printed  time.Time
}

// NewNATProgress writes progress to w.
func NewNATProgress(w io.Writer) *NATProgress {
	p := &NATProgress{w: w}
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

// PrintNATResult writes a measurement for people.
func PrintNATResult(w io.Writer, r NATMeasure) {
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

// NATDir is one direction of a measurement in JSON.
type NATDir struct {
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

// NATJSON is a measurement in JSON.
type NATJSON struct {
	Server                string  `json:"server"`
	MaxSeconds            float64 `json:"max_seconds"`
	ResolutionSeconds     float64 `json:"resolution_seconds"`
	ConnsPerDirection     int     `json:"conns_per_direction"`
	ServerMaxIdleSeconds  float64 `json:"server_max_idle_seconds"`
	GraceSeconds          float64 `json:"grace_seconds"`
	Up                    *NATDir `json:"client_to_server,omitempty"`
	Down                  *NATDir `json:"server_to_client,omitempty"`
	TimeoutSeconds        float64 `json:"timeout_seconds"`
	KeepaliveTested       bool    `json:"keepalive_tested"`
	KeepaliveRecognised   bool    `json:"keepalive_recognised"`
	KeepaliveIdleSeconds  float64 `json:"keepalive_probe_every_seconds"`
	KeepaliveDataIdle     float64 `json:"keepalive_data_idle_seconds,omitempty"`
	KeepaliveOutcome      string  `json:"keepalive_outcome,omitempty"`
	KeepaliveDetail       string  `json:"keepalive_detail"`
	WallSeconds           float64 `json:"wall_seconds"`
	GoalMet               *bool   `json:"goal_met,omitempty"`
	Heartbeat             bool    `json:"heartbeat_needed"`
	Advice                string  `json:"advice"`
	Recommendation        any     `json:"recommendation,omitempty"`
	RecommendationCommand string  `json:"plan_command,omitempty"`
}

func natDirToJSON(d *nattimeout.DirectionResult) *NATDir {
	if d == nil {
		return nil
	}
	j := &NATDir{Direction: string(d.Direction), Expired: d.Expired, LowerSeconds: d.Lower.Seconds(),
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

// NATToJSON converts a measurement for JSON.
func NATToJSON(r NATMeasure) NATJSON {
	k := r.Keepalive
	j := NATJSON{Server: r.Server, MaxSeconds: r.Max.Seconds(), ResolutionSeconds: r.Resolution.Seconds(),
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

// Show updates the progress line.
func (p *NATProgress) Show(pr nattimeout.Progress) {
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

// Clear removes the progress line.
func (p *NATProgress) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.last > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.last))
		p.last = 0
	}
}
