package host

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Source says where an assessment's keepalive settings came from.
type Source string

const (
	// SourceSocket: read from the socket itself through an owner's descriptor (exact).
	SourceSocket Source = "socket"
	// SourceTimer: inferred from the kernel's pending timer (on/off, and bounds when on).
	SourceTimer Source = "timer"
	// SourceUnknown: the pending timer hides whether keepalive is on (e.g. a retransmission).
	SourceUnknown Source = "unknown"
)

// RiskKind classifies an assessment.
type RiskKind string

const (
	// RiskNoKeepalive: keepalive is off, a silent peer is never noticed.
	RiskNoKeepalive RiskKind = "no-keepalive"
	// RiskMiddlebox: the first probe, or the refresh period max(idle, interval), comes after
	// the middlebox in front has forgotten the idle flow.
	RiskMiddlebox RiskKind = "middlebox"
	// RiskInFlight: data is unacknowledged and no TCP_USER_TIMEOUT is set: only
	// net.ipv4.tcp_retries2 ends the connection.
	RiskInFlight RiskKind = "in-flight"
	// RiskSlow: detection takes longer than AssessOptions.DetectWithin.
	RiskSlow RiskKind = "slow"
	// RiskUnknown: not enough is known to judge (no risk claimed).
	RiskUnknown RiskKind = "unknown"
	// RiskOK: no risk found.
	RiskOK RiskKind = "ok"
	// RiskNotAssessed: the state is not one a dead peer matters in (only ESTABLISHED and
	// CLOSE-WAIT are judged).
	RiskNotAssessed RiskKind = "not-assessed"
)

// AssessOptions are what a connection is judged against.
type AssessOptions struct {
	// Defaults are the namespace's keepalive sysctls (net.ipv4.tcp_keepalive_time, _intvl,
	// _probes) that apply to settings the socket leaves at zero; zero fields mean the Linux
	// defaults (keepalive.LinuxDefaults).
	Defaults keepalive.Config
	// Retries2 is the namespace's net.ipv4.tcp_retries2 (0: the default, 15).
	Retries2 int
	// HZ is the kernel's CONFIG_HZ for the detection model (0: keepalive.DefaultHZ, the
	// coarsest common value, which is what the model assumes when HZ is unknown).
	HZ int
	// Middlebox is the idle timeout of the NAT, firewall or load balancer in front (0: none
	// judged); MiddleboxName names it in verdicts ("" → "middlebox").
	Middlebox     time.Duration
	MiddleboxName string
	// RTOMin and RTOMax are the namespace's net.ipv4.tcp_rto_min_us / tcp_rto_max_ms (0: the
	// kernel's fixed 200 ms and 120 s). A socket's own TCP_RTO_MAX_MS (Socket.RTOMax) wins.
	RTOMin, RTOMax time.Duration
	// DetectWithin flags connections that take longer than this to notice a dead peer (0:
	// no limit).
	DetectWithin time.Duration
}

// Assessment is the judgement of one connection: its effective keepalive settings and where
// they came from, how long it would take to notice a peer that vanished silently, how often
// keepalive refreshes its flow through a middlebox, and whether it is at risk.
type Assessment struct {
	// Source says where the settings came from. Known is false when the kernel's timer hides
	// whether keepalive is on (Source is then SourceUnknown).
	Source  Source `json:"source"`
	Known   bool   `json:"known"`
	Enabled bool   `json:"enabled"`
	// Config holds the socket's own settings as read (zero fields: the namespace's default)
	// and Effective the settings in force (Config completed by AssessOptions.Defaults); both
	// are zero when the settings were not read (Source is not SourceSocket).
	Config    keepalive.Config `json:"config"`
	Effective keepalive.Config `json:"effective"`
	// Bounded is true when keepalive is on but its settings were not read: Bounds holds what
	// the kernel's keepalive timer proves (Socket.KeepaliveBounds).
	Bounded bool            `json:"bounded,omitempty"`
	Bounds  KeepaliveBounds `json:"bounds,omitempty"`
	// InFlight is true when data is unacknowledged or unsent: the retransmission timer, not
	// keepalive, then decides.
	InFlight bool `json:"in_flight"`
	// Detected says whether a silent peer is noticed at all; Detection is the model's
	// textbook time from the last received segment to the application's error (Error, e.g.
	// ETIMEDOUT), and Earliest/Latest the window the kernel's timers can produce at HZ.
	Detected  bool          `json:"detected"`
	Detection time.Duration `json:"detection,omitempty"`
	Earliest  time.Duration `json:"earliest,omitempty"`
	Latest    time.Duration `json:"latest,omitempty"`
	Error     string        `json:"error,omitempty"`
	HZ        int           `json:"hz,omitempty"`
	// DetectionMin is a lower bound of the detection time when the settings are only bounded.
	DetectionMin time.Duration `json:"detection_min,omitempty"`
	// Refresh is the period at which keepalive refreshes an idle flow through a middlebox,
	// max(idle, interval) (a lower bound when Bounded); 0 when keepalive is off or unknown.
	Refresh time.Duration `json:"refresh,omitempty"`
	// AtRisk, Risk and Verdict are the judgement: Verdict is one line for people.
	AtRisk  bool     `json:"at_risk"`
	Risk    RiskKind `json:"risk"`
	Verdict string   `json:"verdict"`
}

// Assess judges one connection (see Assessment). It uses the socket's exact settings when
// they were read (Socket.Settings, ListOptions.Deep), otherwise only what the kernel's timer
// proves, never the namespace defaults, which the socket may have overridden: a risk is then
// reported only when the bounds prove it, and the verdict says it rests on bounds.
// Only ESTABLISHED and CLOSE-WAIT connections are judged (others: RiskNotAssessed).
//
// Assess reads nothing from the system and is safe for concurrent use. It runs the detection
// model (about a millisecond): to judge many sockets, use an Assessor.
func Assess(s Socket, o AssessOptions) Assessment {
	a := assessSettings(&s)
	if s.RTOMax > 0 {
		o.RTOMax = s.RTOMax
	}
	a.InFlight = s.SendQ > 0 || (s.Info != nil && (s.Info.Unacked > 0 || s.Info.NotSent > 0))
	assess := s.State == StateEstablished || s.State == StateCloseWait
	if a.Source == SourceSocket {
		a.Effective = a.Config.WithDefaults(o.Defaults.WithDefaults(keepalive.LinuxDefaults()))
	}
	if a.Enabled {
		if a.Bounded {
			a.Refresh = a.Bounds.RefreshMin
		} else {
			a.Refresh = max(a.Effective.Idle, a.Effective.Interval)
		}
	}
	if !assess {
		a.Risk, a.Verdict = RiskNotAssessed, "-"
		return a
	}
	o.Defaults = o.Defaults.WithDefaults(keepalive.LinuxDefaults())
	if o.Retries2 == 0 {
		o.Retries2 = 15
	}
	if o.MiddleboxName == "" {
		o.MiddleboxName = "middlebox"
	}
	assessJudge(&a, &o)
	return a
}

// assessSettings fills Source, Known, Enabled, Config, Bounded and Bounds.
func assessSettings(s *Socket) Assessment {
	if s.Settings != nil {
		return Assessment{Source: SourceSocket, Known: true, Enabled: s.Settings.Enabled, Config: s.Settings.Config}
	}
	on, known := s.KeepaliveArmed()
	switch {
	case !known:
		return Assessment{Source: SourceUnknown}
	case !on:
		return Assessment{Source: SourceTimer, Known: true}
	}
	b, _ := s.KeepaliveBounds()
	return Assessment{Source: SourceTimer, Known: true, Enabled: true, Bounded: true, Bounds: b}
}

func (a *Assessment) predict(m keepalive.Model, o *AssessOptions) {
	m.HZ, m.Retries2, m.RTOMin, m.RTOMax = o.HZ, o.Retries2, o.RTOMin, o.RTOMax
	tl := keepalive.Predict(m)
	a.Detected, a.Detection, a.Error = tl.Detected, tl.Detection, tl.Error
	a.Earliest, a.Latest, a.HZ = tl.Earliest, tl.Latest, tl.HZ
}

func assessJudge(a *Assessment, o *AssessOptions) {
	if a.InFlight {
		ut := time.Duration(0)
		if a.Known {
			ut = a.Config.UserTimeout
		}
		a.predict(keepalive.Model{Config: keepalive.Config{UserTimeout: ut}.WithDefaults(o.Defaults),
			Enabled: a.Enabled, Scenario: keepalive.ScenarioInFlight}, o)
		if ut == 0 {
			a.AtRisk, a.Risk = true, RiskInFlight
			a.Verdict = "data in flight and no user timeout: ≈ " + keepalive.HumanDuration(a.Detection)
			if !a.Known {
				a.Verdict += " (keepalive setting hidden by the retransmission timer)"
			} else if a.Bounded {
				a.Verdict += " (user timeout not readable without the owner's descriptor)"
			}
			return
		}
		a.Risk, a.Verdict = RiskOK, "data in flight, user timeout "+ut.String()
		assessWithin(a, o)
		return
	}
	if !a.Known {
		a.Risk, a.Verdict = RiskUnknown, "keepalive unknown (timer hides it; grant CAP_SYS_PTRACE for the exact value)"
		return
	}
	if !a.Enabled {
		a.AtRisk, a.Risk, a.Verdict = true, RiskNoKeepalive, "no keepalive: a dead peer is never noticed"
		if o.Middlebox > 0 {
			a.Verdict += fmt.Sprintf("; the %s forgets the idle flow after %s", o.MiddleboxName, FormatSeconds(o.Middlebox))
		}
		return
	}
	if a.Bounded {
		assessBounded(a, o)
		return
	}
	cfg := a.Effective
	a.predict(keepalive.Model{Config: cfg, Enabled: true, Scenario: keepalive.ScenarioSilent}, o)
	if o.Middlebox > 0 && cfg.Idle >= o.Middlebox {
		a.AtRisk, a.Risk = true, RiskMiddlebox
		a.Verdict = fmt.Sprintf("first probe after %s but the %s forgets after %s", FormatSeconds(cfg.Idle), o.MiddleboxName, FormatSeconds(o.Middlebox))
		return
	}
	// Refresh period: after an answered probe the next comes one interval later, so a live
	// flow is refreshed every max(idle, interval) (keepalive.Config.CheckMiddlebox).
	if o.Middlebox > 0 && cfg.Interval > cfg.Idle && cfg.Interval >= o.Middlebox {
		a.AtRisk, a.Risk = true, RiskMiddlebox
		a.Verdict = fmt.Sprintf("refreshed every max(idle, interval) = %s but the %s forgets after %s", FormatSeconds(cfg.Interval), o.MiddleboxName, FormatSeconds(o.Middlebox))
		return
	}
	a.Risk, a.Verdict = RiskOK, "ok"
	if a.Detected {
		a.Verdict = "ok: dead peer noticed after " + keepalive.HumanDuration(a.Detection)
	}
	assessWithin(a, o)
}

// assessBounded judges a socket whose keepalive is on but whose settings are only bounded
// by the kernel timer: a risk is reported only when the bounds prove it. Keepalive refreshes
// an idle flow every max(idle, interval) (after an answered probe the timer fires one
// interval later), which is ≥ RefreshMin; a silent peer is noticed after idle +
// count·interval ≥ max(idle, interval), so no sooner than that either.
func assessBounded(a *Assessment, o *AssessOptions) {
	const why = "grant CAP_SYS_PTRACE for the exact settings"
	rmin := a.Bounds.RefreshMin
	r := FormatSeconds(rmin)
	a.DetectionMin = rmin
	switch {
	case o.Middlebox > 0 && rmin >= o.Middlebox:
		a.AtRisk, a.Risk = true, RiskMiddlebox
		a.Verdict = fmt.Sprintf("on bounds: keepalive refreshes the flow every max(idle, interval) ≥ %s but the %s forgets after %s", r, o.MiddleboxName, FormatSeconds(o.Middlebox))
	case o.DetectWithin > 0 && rmin > o.DetectWithin:
		a.AtRisk, a.Risk = true, RiskSlow
		a.Verdict = fmt.Sprintf("on bounds: dead peer noticed after ≥ %s, more than %s", r, FormatSeconds(o.DetectWithin))
	case o.Middlebox > 0 || o.DetectWithin > 0:
		a.Risk = RiskUnknown
		a.Verdict = fmt.Sprintf("keepalive on, settings unreadable (kernel timer: max(idle, interval) ≥ %s): cannot tell; %s", r, why)
	default:
		a.Risk = RiskOK
		a.Verdict = fmt.Sprintf("ok on bounds: keepalive on, max(idle, interval) ≥ %s (settings unreadable)", r)
	}
}

func assessWithin(a *Assessment, o *AssessOptions) {
	if o.DetectWithin > 0 && a.Detected && a.Detection > o.DetectWithin {
		a.AtRisk, a.Risk = true, RiskSlow
		a.Verdict = fmt.Sprintf("dead peer noticed after %s, more than %s", keepalive.HumanDuration(a.Detection), FormatSeconds(o.DetectWithin))
	}
}

// FormatSeconds renders whole seconds as "350 s", other durations in Go syntax ("1.5s").
func FormatSeconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + " s"
	}
	return d.String()
}

// Assessor memoizes Assess for one set of options: sockets that agree on everything the
// judgement depends on (whether the state is judged, data in flight, the settings and where
// they came from, the refresh bound) share one computation. The model's prediction costs about
// a millisecond, and a host may hold 100 000 sockets of a few kinds. An Assessor is safe for
// concurrent use; it keeps at most 4096 kinds (then starts over).
type Assessor struct {
	opts  AssessOptions
	mu    sync.Mutex
	cache map[assessKey]Assessment
}

type assessKey struct {
	judged, inFlight, known, enabled, bounded bool
	source                                    Source
	cfg                                       keepalive.Config
	refreshMin                                time.Duration
	rtoMax                                    time.Duration
}

// NewAssessor returns an Assessor judging with o.
func NewAssessor(o AssessOptions) *Assessor {
	return &Assessor{opts: o, cache: map[assessKey]Assessment{}}
}

// Assess returns Assess(s, o) for the Assessor's options.
func (as *Assessor) Assess(s Socket) Assessment {
	a := assessSettings(&s)
	k := assessKey{judged: s.State == StateEstablished || s.State == StateCloseWait,
		inFlight: s.SendQ > 0 || (s.Info != nil && (s.Info.Unacked > 0 || s.Info.NotSent > 0)),
		known:    a.Known, enabled: a.Enabled, bounded: a.Bounded, source: a.Source, cfg: a.Config, refreshMin: a.Bounds.RefreshMin, rtoMax: s.RTOMax}
	as.mu.Lock()
	v, ok := as.cache[k]
	as.mu.Unlock()
	if !ok {
		v = Assess(s, as.opts)
		as.mu.Lock()
		if len(as.cache) >= 4096 {
			clear(as.cache)
		}
		as.cache[k] = v
		as.mu.Unlock()
	}
	v.Bounds = a.Bounds // only RefreshMin enters the judgement; the rest is the socket's own
	return v
}
