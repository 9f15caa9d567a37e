package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/host"
)

// EnableSettings are keepalive settings in JSON (milliseconds).
type EnableSettings struct {
	Enabled       bool  `json:"enabled"`
	IdleMS        int64 `json:"idle_ms"`
	IntervalMS    int64 `json:"interval_ms"`
	Count         int   `json:"count"`
	UserTimeoutMS int64 `json:"user_timeout_ms"`
}

// EnableSettingsOf converts settings for JSON.
func EnableSettingsOf(s keepalive.Settings) EnableSettings {
	return EnableSettings{Enabled: s.Enabled, IdleMS: s.Idle.Milliseconds(), IntervalMS: s.Interval.Milliseconds(),
		Count: s.Count, UserTimeoutMS: s.UserTimeout.Milliseconds()}
}

// EnableResult is one connection changed (or not) by enable or enforce attach --existing.
type EnableResult struct {
	NetNS   string          `json:"netns,omitempty"`
	Local   string          `json:"local"`
	Peer    string          `json:"peer"`
	State   string          `json:"state"`
	Cookie  uint64          `json:"cookie"`
	PID     int             `json:"pid,omitempty"`
	Comm    string          `json:"comm,omitempty"`
	FD      int             `json:"fd,omitempty"`
	Before  *EnableSettings `json:"before,omitempty"`
	After   *EnableSettings `json:"after,omitempty"`
	Changed bool            `json:"changed"`
	Gone    bool            `json:"gone,omitempty"`
	Error   string          `json:"error,omitempty"`
	// Risk and Verdict judge the connection with its settings after the change (host.Assess,
	// against --env/--middlebox-timeout and --detect-within).
	Risk    host.RiskKind `json:"risk,omitempty"`
	AtRisk  bool          `json:"at_risk,omitempty"`
	Verdict string        `json:"verdict,omitempty"`
}

// EnableRound is one scan of enable (one object per round with --watch).
type EnableRound struct {
	Round   int            `json:"round,omitempty"`
	DryRun  bool           `json:"dry_run"`
	Config  EnableSettings `json:"config"`
	Source  string         `json:"source"`
	Results []EnableResult `json:"results"`
	Matched int            `json:"matched"`
	Changed int            `json:"changed"`
	Already int            `json:"unchanged"`
	Gone    int            `json:"gone"`
	Failed  int            `json:"failed"`
}

// EnableSettingsText renders settings like audit's KEEPALIVE column ("-" for nil).
func EnableSettingsText(s *EnableSettings) string {
	if s == nil {
		return "-"
	}
	st := keepalive.Settings{Enabled: s.Enabled, Config: keepalive.Config{Idle: time.Duration(s.IdleMS) * time.Millisecond,
		Interval: time.Duration(s.IntervalMS) * time.Millisecond, Count: s.Count, UserTimeout: time.Duration(s.UserTimeoutMS) * time.Millisecond}}
	return SettingsText(st)
}

// EnablePrint writes one round as a table and a summary line.
func EnablePrint(w io.Writer, rep *EnableRound, watch bool) {
	if watch && len(rep.Results) == 0 {
		return // quiet rounds stay quiet
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(rep.Results) == 0 {
		tw = tabwriter.NewWriter(io.Discard, 0, 0, 2, ' ', 0) // no empty table
	}
	verb := "changed"
	if rep.DryRun {
		verb = "would change"
	}
	fmt.Fprintln(tw, "LOCAL\tPEER\tPROCESS\tBEFORE\t\tAFTER\tRESULT")
	for i := range rep.Results {
		r := &rep.Results[i]
		proc := "-"
		if r.PID != 0 {
			proc = strconv.Itoa(r.PID) + "/" + r.Comm
		}
		result := "unchanged"
		switch {
		case r.Error != "" && r.Gone:
			result = "gone: " + r.Error
		case r.Error != "":
			result = "FAILED: " + r.Error
		case r.Changed:
			result = verb
		}
		local := r.Local
		if r.NetNS != "" {
			local = r.NetNS + " " + local
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t→\t%s\t%s\n", local, r.Peer, proc, EnableSettingsText(r.Before), EnableSettingsText(r.After), result)
	}
	tw.Flush()
	prefix := ""
	if rep.Round > 0 {
		prefix = fmt.Sprintf("round %d: ", rep.Round)
	}
	fmt.Fprintf(w, "%s%s: %d %s, %d already set, %d gone, %d failed (settings: %s, %s)\n", prefix,
		plural(rep.Matched, "connection"), rep.Changed, verb, rep.Already, rep.Gone, rep.Failed, EnableSettingsText(&rep.Config), rep.Source)
}

// EnforceRule is one rule of a cgroup's policy in JSON.
type EnforceRule struct {
	Match     enforce.Match  `json:"match"`
	Rule      string         `json:"rule"`
	Mode      enforce.Mode   `json:"mode"`
	Listeners bool           `json:"listeners,omitempty"`
	Settings  EnableSettings `json:"settings"`
}

// EnforceRuleOf converts a rule for JSON.
func EnforceRuleOf(r enforce.Rule) EnforceRule {
	return EnforceRule{Match: r.Match, Rule: r.Match.String(), Mode: r.Mode, Listeners: r.Listeners,
		Settings: EnableSettingsOf(keepalive.Settings{Enabled: true, Config: r.Config})}
}

// EnforceAttach is what enforce attach prints.
type EnforceAttach struct {
	DryRun   bool           `json:"dry_run"`
	Cgroup   string         `json:"cgroup"`
	CgroupID uint64         `json:"cgroup_id"`
	PinDir   string         `json:"pin_dir,omitempty"`
	Source   string         `json:"source"`
	Rules    []EnforceRule  `json:"rules"`
	Notes    []string       `json:"notes,omitempty"`
	Existing []EnableResult `json:"existing,omitempty"`
}

// EnforceAttachPrint writes an attach report for people.
func EnforceAttachPrint(w io.Writer, rep *EnforceAttach, existing bool) {
	verb := "attached"
	if rep.DryRun {
		verb = "would attach"
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, r := range rep.Rules {
		fmt.Fprintf(w, "%s to cgroup %s (id %d): %s → %s, mode %s (%s)\n", verb, rep.Cgroup, rep.CgroupID, r.Rule,
			EnableSettingsText(&r.Settings), r.Mode, rep.Source)
	}
	if !rep.DryRun {
		fmt.Fprintf(w, "pinned under %s; every new connection of the cgroup gets the policy when it is established\n", rep.PinDir)
	}
	if existing {
		changed := 0
		for _, e := range rep.Existing {
			if e.Changed {
				changed++
			}
		}
		fmt.Fprintf(w, "existing connections: %d found, %d changed\n", len(rep.Existing), changed)
		if len(rep.Existing) > 0 {
			rnd := EnableRound{DryRun: rep.DryRun, Results: rep.Existing}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LOCAL\tPEER\tPROCESS\tBEFORE\t\tAFTER\tRESULT")
			for _, r := range rnd.Results {
				res := "unchanged"
				switch {
				case r.Error != "":
					res = "FAILED: " + r.Error
				case r.Changed && rep.DryRun:
					res = "would change"
				case r.Changed:
					res = "changed"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%s\t→\t%s\t%s\n", r.Local, r.Peer, r.PID, r.Comm, EnableSettingsText(r.Before), EnableSettingsText(r.After), res)
			}
			tw.Flush()
		}
	}
}

// EnforceList is what enforce list prints.
type EnforceList struct {
	PinDir      string              `json:"pin_dir,omitempty"`
	Cgroup2     string              `json:"cgroup2_mount"`
	Attachments []EnforceAttachment `json:"attachments"`
}

// EnforceAttachment is one cgroup's policy in enforce list.
type EnforceAttachment struct {
	Cgroup    string           `json:"cgroup"`
	CgroupID  uint64           `json:"cgroup_id"`
	Owner     string           `json:"owner"`
	Since     time.Time        `json:"since"`
	Attached  bool             `json:"attached"`
	Rewriting bool             `json:"rewriting"`
	CoveredBy string           `json:"covered_by,omitempty"`
	Gone      bool             `json:"gone,omitempty"`
	Rules     []EnforceRule    `json:"rules"`
	Counters  enforce.Counters `json:"counters"`
	Pins      []string         `json:"pins,omitempty"`
}

// EnforceListPrint writes the attachments as a table.
func EnforceListPrint(w io.Writer, rep *EnforceList) {
	if len(rep.Attachments) == 0 {
		fmt.Fprintln(w, "no keepalive policy attached")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CGROUP\tOWNER\tPROGRAMS\tRULE\tMODE\tSETTINGS\tSEEN\tSET\tREWRITTEN\tFAILED")
	for _, a := range rep.Attachments {
		state := "sock_ops"
		if a.Rewriting {
			state += "+setsockopt"
		}
		switch {
		case a.Gone:
			state = "cgroup gone"
		case !a.Attached:
			state = "NOT attached"
		}
		failed := "-"
		if len(a.Counters.Failures) > 0 {
			var fs []string
			for _, f := range a.Counters.Failures {
				fs = append(fs, fmt.Sprintf("%s %d (errno %d: %s)", f.Option, f.Count, f.Errno, f.Error))
			}
			failed = strings.Join(fs, ", ")
		}
		for i, r := range a.Rules {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", a.Cgroup, a.Owner, state, r.Rule, r.Mode,
					EnableSettingsText(&r.Settings), a.Counters.Seen, a.Counters.Set, a.Counters.Rewritten, failed)
			} else {
				fmt.Fprintf(tw, "\t\t\t%s\t%s\t%s\t\t\t\t\n", r.Rule, r.Mode, EnableSettingsText(&r.Settings))
			}
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "pins: %s; cgroup2: %s\n", rep.PinDir, rep.Cgroup2)
}
