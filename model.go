package keepalive

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Scenario is a way a peer can disappear.
type Scenario string

// The scenarios the model predicts.
const (
	// ScenarioSilent: the peer crashed or the path went down; nothing answers.
	ScenarioSilent Scenario = "silent"
	// ScenarioReboot: the peer rebooted and forgot the connection; it answers the first probe
	// with RST and the application gets ECONNRESET.
	ScenarioReboot Scenario = "reboot"
	// ScenarioNAT: a middlebox on the path forgets the idle flow after MiddleboxTimeout and
	// then drops (or, with MiddleboxRST, resets) its packets.
	ScenarioNAT Scenario = "nat"
	// ScenarioInFlight: the peer vanishes while the local side has unacknowledged data:
	// keepalive sends no probes and the retransmission timer (tcp_retries2) or
	// TCP_USER_TIMEOUT decides.
	ScenarioInFlight Scenario = "in-flight"
)

// Scenarios lists every scenario in display order.
func Scenarios() []Scenario {
	return []Scenario{ScenarioSilent, ScenarioReboot, ScenarioNAT, ScenarioInFlight}
}

// ParseScenario accepts a scenario name (also "crash" and "path" for silent).
func ParseScenario(s string) (Scenario, error) {
	switch s {
	case "silent", "crash", "path", "":
		return ScenarioSilent, nil
	case "reboot":
		return ScenarioReboot, nil
	case "nat":
		return ScenarioNAT, nil
	case "in-flight", "inflight":
		return ScenarioInFlight, nil
	}
	return "", fmt.Errorf("unknown scenario %q (allowed: silent, reboot, nat, in-flight)", s)
}

// Model describes one connection for Predict. Time zero is the last activity: the last
// segment received from the peer (for ScenarioInFlight: the moment the unacknowledged data was
// sent). The peer is assumed to vanish right after it, the worst case.
//
// The zero value means one thing: SO_KEEPALIVE on with Linux's defaults (7200 s / 75 s / 9),
// the silent scenario, RTT 1 ms, tcp_retries2 15, one segment in flight, minimum and maximum
// RTO 200 ms and 120 s, and HZ unknown (the coarsest common value, 100, is assumed).
type Model struct {
	// Config holds the effective settings; zero fields are taken from Linux's defaults.
	Config Config `json:"config"`
	// Enabled is kept for compatibility and ignored: keepalive is on unless KeepaliveOff.
	//
	// Deprecated: use KeepaliveOff.
	Enabled bool `json:"-"`
	// KeepaliveOff reports SO_KEEPALIVE off. Then nothing is ever detected in the idle
	// scenarios.
	KeepaliveOff bool `json:"keepalive_off,omitempty"`
	// Scenario is the failure to predict ("" is ScenarioSilent).
	Scenario Scenario `json:"scenario"`
	// MiddleboxTimeout is the idle timeout of a NAT or firewall on the path (ScenarioNAT).
	MiddleboxTimeout time.Duration `json:"middlebox_timeout,omitempty"`
	// MiddleboxRST: after expiry the middlebox answers with RST instead of dropping.
	MiddleboxRST bool `json:"middlebox_rst,omitempty"`
	// RTT is the round-trip time to the peer (default 1 ms, at most MaxRTT).
	RTT time.Duration `json:"rtt,omitempty"`
	// Retries2 is net.ipv4.tcp_retries2 (default 15).
	Retries2 int `json:"retries2,omitempty"`
	// Horizon bounds the simulation (default 7 days): nothing detected by then means never.
	Horizon time.Duration `json:"horizon,omitempty"`
	// HZ is the kernel's CONFIG_HZ (timer ticks per second: 100, 250, 300 or 1000). Zero
	// means unknown: DefaultHZ, the coarsest common value, is assumed and a note says so.
	// The root package never reads it from the system; see the host package.
	HZ int `json:"hz,omitempty"`
	// RTOMin and RTOMax are the minimum and maximum retransmission timeouts in force
	// (net.ipv4.tcp_rto_min_us, net.ipv4.tcp_rto_max_ms, per-socket TCP_RTO_MAX_MS; defaults
	// 200 ms and 120 s).
	RTOMin time.Duration `json:"rto_min,omitempty"`
	RTOMax time.Duration `json:"rto_max,omitempty"`
	// Segments is how many segments are unacknowledged in ScenarioInFlight (default 1, an
	// application's typical single request). It decides the tail-loss probe's timeout.
	Segments int `json:"segments,omitempty"`
}

// Defaults and limits of a Model.
const (
	// DefaultHZ is assumed when the kernel's HZ is unknown: the coarsest common CONFIG_HZ,
	// whose timer granules are the widest, so the predicted windows contain the others'.
	DefaultHZ = 100
	// DefaultRTOMin and DefaultRTOMax are the kernel's TCP_RTO_MIN and TCP_RTO_MAX.
	DefaultRTOMin = 200 * time.Millisecond
	DefaultRTOMax = 120 * time.Second
	// MaxRTT is the largest RTT the model accepts.
	MaxRTT = time.Minute
	// MaxSegments is the largest segment count the model accepts.
	MaxSegments = 100000
)

// ErrUnknownScenario is returned (wrapped) for a scenario the model does not know.
var ErrUnknownScenario = errors.New("unknown scenario")

// Validate checks the fields that have no kernel default to fall back on: the scenario, HZ,
// RTT, the RTO bounds and the segment count. The error names the field, the value and the
// allowed range.
func (m Model) Validate() error {
	switch m.Scenario {
	case "", ScenarioSilent, ScenarioReboot, ScenarioNAT, ScenarioInFlight:
	default:
		return fmt.Errorf("scenario %q: %w (allowed: silent, reboot, nat, in-flight)", m.Scenario, ErrUnknownScenario)
	}
	if m.HZ != 0 && (m.HZ < 10 || m.HZ > 10000) {
		return fmt.Errorf("hz %d out of range (allowed: 10..10000, typically 100, 250, 300 or 1000; 0 for unknown)", m.HZ)
	}
	if m.RTT < 0 || m.RTT > MaxRTT {
		return fmt.Errorf("rtt %s out of range (allowed: 0..%s)", m.RTT, MaxRTT)
	}
	if m.RTOMax != 0 && (m.RTOMax < time.Second || m.RTOMax > DefaultRTOMax) {
		return fmt.Errorf("rto max %s out of range (allowed: 1s..120s, as net.ipv4.tcp_rto_max_ms)", m.RTOMax)
	}
	maxMin := DefaultRTOMax
	if m.RTOMax != 0 {
		maxMin = m.RTOMax
	}
	if m.RTOMin != 0 && (m.RTOMin < time.Millisecond || m.RTOMin > maxMin) {
		return fmt.Errorf("rto min %s out of range (allowed: 1ms..%s, as net.ipv4.tcp_rto_min_us)", m.RTOMin, maxMin)
	}
	if m.Segments < 0 || m.Segments > MaxSegments {
		return fmt.Errorf("segments %d out of range (allowed: 1..%d, or 0 for 1)", m.Segments, MaxSegments)
	}
	if m.Retries2 < 0 || m.Retries2 > 255 {
		return fmt.Errorf("retries2 %d out of range (allowed: 1..255, or 0 for 15)", m.Retries2)
	}
	return nil
}

// Event kinds in a Timeline.
const (
	EventLastActivity = "last-activity"
	EventFault        = "fault"
	EventProbe        = "probe"
	EventAck          = "ack"
	EventRST          = "rst"
	EventRetransmit   = "retransmit"
	EventMiddlebox    = "middlebox-expired"
	EventKill         = "kill"
	EventError        = "error"
)

// Event is one step of a Timeline, At measured from the last activity.
type Event struct {
	// At is the earliest time the event can happen.
	At     time.Duration `json:"at"`
	Kind   string        `json:"kind"`
	Detail string        `json:"detail"`
	// Slack is how much later than At the event can happen (the width of its window, from
	// the timer wheel's granules); zero for events that are not timer firings.
	Slack time.Duration `json:"slack,omitempty"`
}

// Window is a range of times, From ≤ To, measured from the last activity.
type Window struct {
	From time.Duration `json:"from"`
	To   time.Duration `json:"to"`
	// Detail says what happens in this window (used for candidate firings).
	Detail string `json:"detail,omitempty"`
}

// Timeline is the predicted course of events for one Model.
type Timeline struct {
	Model    Model   `json:"model"`
	Events   []Event `json:"events"`
	Detected bool    `json:"detected"`
	// Detection is the textbook time from last activity to the application's error, with
	// every kernel timer firing exactly on time (idle + count × interval for a silent peer):
	// what documentation quotes. The kernel cannot fire early, so its outcome lies in
	// [Earliest, Latest] — usually just after Detection, and with a user timeout just after a
	// nominal firing possibly a whole interval before it (see Candidates).
	Detection time.Duration `json:"detection"`
	// Earliest and Latest bound every outcome the kernel can produce at HZ: it never gets
	// there sooner than Earliest nor later than Latest.
	Earliest time.Duration `json:"earliest"`
	Latest   time.Duration `json:"latest"`
	// Candidates lists the timer firings that can end the connection when the outcome
	// depends on timer lateness (e.g. a user timeout just after a nominal firing), each with
	// its own window; empty when one firing decides.
	Candidates []Window `json:"candidates,omitempty"`
	// HZ is the CONFIG_HZ the prediction assumed.
	HZ int `json:"hz"`
	// Error is the errno the application sees: ETIMEDOUT or ECONNRESET.
	Error  string   `json:"error,omitempty"`
	Probes int      `json:"probes"`
	Notes  []string `json:"notes,omitempty"`
	// Invalid is set (and nothing predicted) when the Model fails Validate.
	Invalid string `json:"invalid,omitempty"`
}

// LinuxDefaults returns the per-namespace defaults of a fresh Linux network namespace
// (tcp_keepalive_time 7200 s, tcp_keepalive_intvl 75 s, tcp_keepalive_probes 9).
func LinuxDefaults() Config {
	return Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}
}

// TimerSlack is how late a Linux timer armed for d may fire at the coarsest common HZ
// (DefaultHZ): Granule(d, DefaultHZ).
func TimerSlack(d time.Duration) time.Duration { return Granule(d, DefaultHZ) }

// Granule is the granularity of the timer-wheel level a Linux timer armed for d lands in at
// the given HZ, which is also the most it fires late (kernel/time/timer.c): the wheel has 64
// buckets per level and each level is 8× coarser; a timer d jiffies away goes to level n when
// d < 63·8ⁿ jiffies and fires at the first multiple of 8ⁿ jiffies after its expiry — never
// early, up to one granule late. At HZ=250: < 0.252 s → 4 ms, < 2.016 s → 32 ms, < 16.1 s →
// 256 ms, < 129 s → 2.05 s, < 1032 s → 16.4 s. hz ≤ 0 means DefaultHZ.
func Granule(d time.Duration, hz int) time.Duration {
	k := newClock(hz)
	return k.dur(k.granule(k.jiffies(d)))
}

// clock converts between durations and jiffies at one HZ and knows the timer wheel.
type clock struct {
	hz    int64
	depth int
	exact bool // timers fire exactly at their expiry (the textbook timeline)
}

func newClock(hz int) clock {
	if hz <= 0 {
		hz = DefaultHZ
	}
	depth := 8 // LVL_DEPTH: 9 levels when HZ > 100
	if hz > 100 {
		depth = 9
	}
	return clock{hz: int64(hz), depth: depth}
}

// jiffies converts d, rounding up (msecs_to_jiffies, usecs_to_jiffies).
func (k clock) jiffies(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := int64(d)
	// ceil(n × hz / 1e9) without overflow for any positive Duration.
	q, r := n/int64(time.Second), n%int64(time.Second)
	return q*k.hz + (r*k.hz+int64(time.Second)-1)/int64(time.Second)
}

// dur converts jiffies to a duration.
func (k clock) dur(j int64) time.Duration {
	return time.Duration(j/k.hz*int64(time.Second) + j%k.hz*int64(time.Second)/k.hz)
}

// granule is the granularity in jiffies of the wheel level a timer delta jiffies away lands in.
func (k clock) granule(delta int64) int64 {
	for lvl := 0; lvl < k.depth; lvl++ {
		if delta < 63<<(3*lvl) {
			return 1 << (3 * lvl)
		}
	}
	return 1 << (3 * (k.depth - 1))
}

// fire is the absolute jiffy at which a timer armed at absolute jiffy at for delta jiffies
// runs: calc_index() rounds the expiry up to the next multiple of its level's granule.
func (k clock) fire(at, delta int64) int64 {
	if delta < 0 {
		delta = 0
	}
	if k.exact {
		return at + delta
	}
	g := k.granule(delta)
	e := at + delta
	return (e/g + 1) * g
}

// Predict follows the Linux keepalive and retransmission timers (net/ipv4/tcp_timer.c) and
// the timer wheel (kernel/time/timer.c) for m and returns the ordered events up to the
// application's error, each with the window in which the kernel can make it happen.
//
// The kernel facts it follows:
//   - Timers run on the timer wheel: a timer fires at the first multiple of its level's granule
//     after its expiry, never early, up to one granule late (see Granule). The granule depends
//     on HZ, so HZ is an input.
//   - The keepalive timer re-arms from the moment it actually fired, so lateness accumulates:
//     the k-th probe is at idle + (k−1)·interval + the sum of the lateness so far. Only the
//     first firing's lateness is uncertain (the phase of the last receive within the granule)
//     and that of a re-arm into a coarser level; a timer re-armed from a firing on a bucket
//     boundary is late by exactly g − (interval in jiffies mod g). (A firing that finds the
//     socket owned by user context retries HZ/20 later; an idle connection blocked in read
//     does not own it, so that is not modelled.)
//   - Without TCP_USER_TIMEOUT the connection dies when probes_out ≥ count at a firing: one
//     interval after the last probe. With it, count is ignored and the kernel kills at the
//     first firing where the *real* elapsed time since the last receive (in jiffies) ≥ the
//     user timeout and at least one probe is out — with accumulated lateness that can be one
//     whole interval before the nominal firing (idle 4 s, interval 3 s, user timeout 7.1 s at
//     HZ=250: killed at ≈ 7.1 s, not 10 s). Both candidate firings are then listed.
//   - A live flow whose probes are answered is refreshed every max(idle, interval): after an
//     answered probe the timer fires one interval later and only then re-arms for the rest of
//     idle.
//   - With data in flight keepalive sends nothing. A tail-loss probe (SACK negotiated, the
//     default) goes out 2·srtt + RTOMin after the write when exactly one segment is
//     outstanding, 2·srtt + 2 jiffies otherwise; the RTO timer is re-armed from it for the full
//     RTO (RTOMin + RTT); the first RTO retransmission sets retrans_stamp, from which both
//     tcp_retries2's bound and TCP_USER_TIMEOUT are counted; each further RTO doubles up to
//     RTOMax, and with a user timeout the last one is cut to the time left.
func Predict(m Model) Timeline {
	if err := m.Validate(); err != nil {
		return Timeline{Model: m, Invalid: err.Error(), Notes: []string{err.Error()}}
	}
	var notes []string
	if m.HZ == 0 {
		m.HZ = DefaultHZ
		notes = append(notes, fmt.Sprintf("kernel HZ unknown: assumed %d, the coarsest common value (widest windows)", DefaultHZ))
	}
	if m.RTT == 0 {
		m.RTT = time.Millisecond
	}
	if m.Retries2 == 0 {
		m.Retries2 = 15
	}
	if m.Horizon <= 0 {
		m.Horizon = 7 * 24 * time.Hour
	}
	if m.Scenario == "" {
		m.Scenario = ScenarioSilent
	}
	if m.RTOMax == 0 {
		m.RTOMax = DefaultRTOMax
	}
	if m.RTOMin == 0 {
		m.RTOMin = min(DefaultRTOMin, m.RTOMax)
	}
	if m.Segments == 0 {
		m.Segments = 1
	}
	// Negative values mean nothing to the kernel; treat them as unset.
	for _, d := range []*time.Duration{&m.Config.Idle, &m.Config.Interval, &m.Config.UserTimeout, &m.MiddleboxTimeout} {
		if *d < 0 {
			*d = 0
		}
	}
	if m.Config.Count < 0 {
		m.Config.Count = 0
	}
	m.Config = m.Config.WithDefaults(LinuxDefaults())
	m.Enabled = !m.KeepaliveOff
	t := Timeline{Model: m, HZ: m.HZ, Notes: notes}
	k := newClock(m.HZ)
	var sim func(p int64) simRun
	var gmax int64
	switch {
	case m.Scenario == ScenarioInFlight:
		t.Notes = append(t.Notes, "keepalive sends no probes while data is unacknowledged; only the retransmission timer can end the connection")
		sim = func(p int64) simRun { return simInFlight(k, m, p) }
		gmax = k.granule(max(k.jiffies(m.RTOMax), k.jiffies(m.Config.UserTimeout)))
	case m.KeepaliveOff:
		t.Events = []Event{{At: 0, Kind: EventLastActivity, Detail: "last segment received from the peer"}}
		if m.Scenario != ScenarioNAT {
			t.Events = append(t.Events, Event{At: 0, Kind: EventFault, Detail: faultText(m.Scenario)})
		}
		t.Notes = append(t.Notes, "SO_KEEPALIVE is off: an idle connection to a dead peer is never noticed")
		if m.Scenario == ScenarioNAT && m.MiddleboxTimeout > 0 {
			t.Events = append(t.Events, Event{At: m.MiddleboxTimeout, Kind: EventMiddlebox, Detail: "the middlebox forgets the idle flow"})
		}
		return t
	default:
		if m.Scenario == ScenarioNAT && m.MiddleboxTimeout <= 0 {
			t.Events = []Event{{At: 0, Kind: EventLastActivity, Detail: "last segment received from the peer"}}
			t.Notes = append(t.Notes, "no middlebox timeout given: the NAT scenario needs one")
			return t
		}
		sim = func(p int64) simRun { return simIdle(k, m, p) }
		gmax = k.granule(max(k.jiffies(m.Config.Idle), k.jiffies(m.Config.Interval)))
	}
	// The outcome depends on the phase of time zero within the coarsest granule involved:
	// try every phase (or 512 evenly spaced ones, widening the window by the step).
	step := int64(1)
	if gmax > 512 {
		step = gmax / 512
	}
	runs := make([]simRun, 0, gmax/step)
	for p := int64(0); p < gmax; p += step {
		runs = append(runs, sim(p))
	}
	merge(&t, k, runs, k.dur(step-1)+k.dur(1))
	if t.Detected && step > 1 {
		t.Latest += k.dur(step - 1) // phases between the sampled ones
	}
	// The textbook timeline: the same simulation with every timer exactly on time.
	exact := k
	exact.exact = true
	var nominal simRun
	if m.Scenario == ScenarioInFlight {
		nominal = simInFlight(exact, m, 0)
	} else {
		nominal = simIdle(exact, m, 0)
	}
	switch {
	case !t.Detected:
	case nominal.detected:
		t.Detection = time.Duration(nominal.at)
	default:
		t.Detection = t.Earliest
	}
	return t
}

// simEvent is one event of one simulated run, in nanoseconds from time zero.
type simEvent struct {
	at     int64
	kind   string
	detail string
}

// simRun is the course of one simulated run (one phase).
type simRun struct {
	events   []simEvent
	detected bool
	at       int64 // detection, ns
	errno    string
	probes   int
	why      string // what ends the connection, for candidate windows
	notes    []string
}

func (r *simRun) add(at int64, kind, detail string) {
	r.events = append(r.events, simEvent{at, kind, detail})
}

// simIdle runs the keepalive timer for time zero at absolute jiffy p.
func simIdle(k clock, m Model, p int64) simRun {
	c := m.Config
	jns := int64(time.Second) / k.hz
	ns := func(j int64) int64 { return int64(k.dur(j)) }
	idleJ, intvlJ, utJ := k.jiffies(c.Idle), k.jiffies(c.Interval), k.jiffies(c.UserTimeout.Truncate(time.Millisecond))
	rtt := int64(m.RTT)
	var r simRun
	r.add(0, EventLastActivity, "last segment received from the peer")
	nat := m.Scenario == ScenarioNAT
	rst := m.Scenario == ScenarioReboot
	if nat {
		rst = m.MiddleboxRST
	} else {
		r.add(0, EventFault, faultText(m.Scenario))
	}
	mb := int64(m.MiddleboxTimeout)
	rcv := int64(0)     // jiffy of the last receive, relative to p
	mapLast := int64(0) // ns of the last packet the middlebox saw
	expired := false
	probesOut, refreshes, sent := 0, 0, 0
	arm := func(from, delta int64) int64 { return k.fire(p+from, delta) - p }
	next := arm(0, idleJ)
	horizon := int64(m.Horizon)
	for i := 0; i < 100000 && ns(next) <= horizon; i++ {
		f := next
		now := ns(f)
		if nat && !expired && now-mapLast >= mb {
			expired = true
			what := "dropped"
			if rst {
				what = "answered with RST"
			}
			r.add(mapLast+mb, EventMiddlebox, "the middlebox forgets the idle flow; later packets are "+what)
		}
		el := f - rcv
		if el < idleJ {
			// Woken before idle is over (after an answered probe): re-arm for the rest.
			next = arm(f, idleJ-el)
			continue
		}
		if (utJ > 0 && el >= utJ && probesOut > 0) || (utJ == 0 && probesOut >= c.Count) {
			why := fmt.Sprintf("%d probes unanswered", probesOut)
			if utJ > 0 {
				why = fmt.Sprintf("idle %s ≥ user timeout %s with %d probe(s) out", fmtSeconds(k.dur(el)), fmtSeconds(c.UserTimeout), probesOut)
			}
			r.add(now, EventKill, why+": kernel sends RST and closes")
			r.add(now, EventError, "application gets ETIMEDOUT")
			r.detected, r.at, r.errno, r.probes = true, now, "ETIMEDOUT", sent
			r.why = fmt.Sprintf("killed at the firing after probe %d", sent)
			return r
		}
		probesOut++
		sent++
		r.probes = sent
		r.add(now, EventProbe, fmt.Sprintf("keepalive probe %d (SEQ = SND.UNA−1, no payload)", sent))
		if nat && !expired {
			r.add(now+rtt, EventAck, "peer ACKs: the flow is refreshed, idle starts again")
			mapLast = now + rtt
			rcv = (now + rtt) / jns
			probesOut = 0
			refreshes++
			if refreshes >= 3 || ns(f+max(idleJ, intvlJ)) > horizon {
				period := max(c.Idle, c.Interval)
				r.notes = append(r.notes, fmt.Sprintf("each answered probe refreshes the middlebox mapping; a live flow is refreshed every max(idle, interval) = %s (forgotten after %s): the connection stays up, nothing to detect", fmtSeconds(period), fmtSeconds(m.MiddleboxTimeout)))
				return r
			}
			next = arm(f, intvlJ)
			continue
		}
		if rst {
			who := "peer answers the probe with RST (it has no such connection)"
			if nat {
				who = "the middlebox answers the probe with RST"
			}
			r.add(now+rtt, EventRST, who)
			r.add(now+rtt, EventError, "application gets ECONNRESET")
			r.detected, r.at, r.errno = true, now+rtt, "ECONNRESET"
			r.why = fmt.Sprintf("RST answers probe %d", probesOut)
			return r
		}
		next = arm(f, intvlJ)
	}
	r.notes = append(r.notes, "nothing detected within the simulated horizon")
	return r
}

// simInFlight runs the retransmission timer for a write at absolute jiffy p.
func simInFlight(k clock, m Model, p int64) simRun {
	c := m.Config
	ns := func(j int64) int64 { return int64(k.dur(j)) }
	var r simRun
	r.add(0, EventLastActivity, fmt.Sprintf("application writes data (%d segment(s)); the peer never acknowledges it", m.Segments))
	r.add(0, EventFault, faultText(ScenarioInFlight))
	arm := func(from, delta int64) int64 { return k.fire(p+from, delta) - p }
	rtoMinJ, rtoMaxJ := k.jiffies(m.RTOMin), k.jiffies(m.RTOMax)
	// __tcp_set_rto: srtt + rttvar, rttvar at least the minimum RTO.
	rto := min(k.jiffies(m.RTOMin+m.RTT), rtoMaxJ)
	// tcp_schedule_loss_probe: 2·srtt, plus the minimum RTO with one segment out (to give
	// a delayed ACK its chance), else TCP_TIMEOUT_MIN (2 jiffies); never beyond the RTO.
	tlpJ := k.jiffies(2 * m.RTT)
	if m.Segments == 1 {
		tlpJ += rtoMinJ
	} else {
		tlpJ += 2
	}
	tlpJ = min(tlpJ, rto)
	f := arm(0, tlpJ)
	r.add(ns(f), EventRetransmit, "tail-loss probe (does not start the give-up clock)")
	f = arm(f, rto)
	stamp := f
	limit := retransmitTimeout(m.Retries2, m.RTOMax)
	why := fmt.Sprintf("tcp_retries2 = %d (%s after the first retransmission)", m.Retries2, fmtSeconds(limit))
	if c.UserTimeout > 0 {
		limit = c.UserTimeout.Truncate(time.Millisecond)
		why = fmt.Sprintf("TCP_USER_TIMEOUT %s (counted from the first retransmission)", fmtSeconds(limit))
	}
	r.add(ns(f), EventRetransmit, fmt.Sprintf("retransmission 1 (RTO %s): the give-up clock starts", fmtSeconds(k.dur(rto))))
	for n := 2; n < 1000; n++ {
		rto = min(2*rto, rtoMaxJ)
		wait := rto
		if c.UserTimeout > 0 {
			// tcp_clamp_rto_to_user_timeout: the last RTO is cut to the time left.
			left := limit - k.dur(f-stamp).Truncate(time.Millisecond)
			if left <= 0 {
				wait = 1
			} else {
				wait = min(wait, k.jiffies(left))
			}
		}
		f = arm(f, wait)
		if k.dur(f-stamp) >= limit {
			r.add(ns(f), EventKill, "retransmission gives up after "+why+": kernel closes the connection")
			r.add(ns(f), EventError, "application gets ETIMEDOUT")
			r.detected, r.at, r.errno = true, ns(f), "ETIMEDOUT"
			r.why = fmt.Sprintf("gives up at retransmission timer firing %d", n)
			return r
		}
		r.add(ns(f), EventRetransmit, fmt.Sprintf("retransmission %d (RTO %s)", n, fmtSeconds(k.dur(rto))))
		if ns(f) > int64(m.Horizon) {
			break
		}
	}
	r.notes = append(r.notes, "nothing detected within the simulated horizon")
	return r
}

// merge folds the runs of every phase into t: each event at its earliest time with its
// window as Slack, detection as [earliest, latest], and the candidate firings when runs end
// at different firings. widen is subtracted from every earliest time (time zero may lie
// anywhere within its jiffy, and phases may have been sampled).
func merge(t *Timeline, k clock, runs []simRun, widen time.Duration) {
	// Template: the run with the most events; events are matched by position and kind.
	tpl := runs[0]
	for _, r := range runs {
		if len(r.events) > len(tpl.events) {
			tpl = r
		}
	}
	lo := make([]int64, len(tpl.events))
	hi := make([]int64, len(tpl.events))
	for i := range lo {
		lo[i], hi[i] = -1, -1
	}
	type cand struct {
		lo, hi int64
		errno  string
		probes int
		count  int
	}
	cands := map[string]*cand{}
	var order []string
	detected := 0
	for _, r := range runs {
		for i, e := range r.events {
			if i >= len(tpl.events) || e.kind != tpl.events[i].kind {
				break
			}
			if lo[i] < 0 || e.at < lo[i] {
				lo[i] = e.at
			}
			if e.at > hi[i] {
				hi[i] = e.at
			}
		}
		if r.detected {
			detected++
			c, ok := cands[r.why]
			if !ok {
				c = &cand{lo: r.at, hi: r.at, errno: r.errno, probes: r.probes}
				cands[r.why] = c
				order = append(order, r.why)
			}
			c.lo, c.hi = min(c.lo, r.at), max(c.hi, r.at)
			c.count++
		}
	}
	w := int64(widen)
	for i, e := range tpl.events {
		at := lo[i]
		slack := hi[i] - lo[i]
		if e.kind != EventLastActivity && e.kind != EventFault && e.kind != EventMiddlebox && at > 0 {
			at = max(0, at-w)
			slack += min(w, lo[i])
		}
		t.Events = append(t.Events, Event{At: time.Duration(at), Kind: e.kind, Detail: e.detail, Slack: time.Duration(slack)})
	}
	sort.SliceStable(t.Events, func(i, j int) bool { return t.Events[i].At < t.Events[j].At })
	t.Notes = append(t.Notes, tpl.notes...)
	if detected == 0 {
		t.Probes = tpl.probes
		return
	}
	sort.Slice(order, func(i, j int) bool { return cands[order[i]].lo < cands[order[j]].lo })
	first, last := cands[order[0]], cands[order[0]]
	for _, key := range order {
		c := cands[key]
		if c.lo < first.lo {
			first = c
		}
		if c.hi > last.hi {
			last = c
		}
	}
	t.Detected = true
	t.Earliest = time.Duration(max(0, first.lo-w))
	t.Latest = time.Duration(last.hi)
	t.Error = last.errno
	t.Probes = last.probes
	if detected < len(runs) {
		t.Notes = append(t.Notes, fmt.Sprintf("detection depends on timer lateness: in %d of %d phases nothing is detected", len(runs)-detected, len(runs)))
	}
	if len(order) > 1 {
		var parts []string
		for _, key := range order {
			c := cands[key]
			from := time.Duration(max(0, c.lo-w))
			t.Candidates = append(t.Candidates, Window{From: from, To: time.Duration(c.hi), Detail: key})
			parts = append(parts, fmt.Sprintf("%s → %s (%s … %s)", key, c.errno, fmtSeconds(from), fmtSeconds(time.Duration(c.hi))))
			if c != last {
				// Name the other candidate firing in the timeline too.
				t.Events = append(t.Events,
					Event{At: from, Kind: EventKill, Detail: "if earlier timers ran late enough: " + key, Slack: time.Duration(c.hi) - from})
			}
		}
		t.Notes = append(t.Notes, "the outcome depends on how late the kernel's timers fire: "+strings.Join(parts, "; or "))
		sort.SliceStable(t.Events, func(i, j int) bool { return t.Events[i].At < t.Events[j].At })
	}
	t.Notes = append(t.Notes, fmt.Sprintf("kernel timers fire up to one timer-wheel granule late (HZ=%d), and the lateness accumulates: detection between %s and %s", k.hz, fmtSeconds(t.Earliest), fmtSeconds(t.Latest)))
}

func faultText(s Scenario) string {
	switch s {
	case ScenarioReboot:
		return "peer reboots and forgets the connection (it will answer with RST)"
	case ScenarioInFlight:
		return "peer vanishes with our data unacknowledged"
	}
	return "peer vanishes silently (crash or path down)"
}

// RetransmitTimeout returns how long the retransmission path waits before giving up with
// tcp_retries2 = retries: the kernel's retransmits_timed_out() bound computed with
// TCP_RTO_MIN as the base and the default maximum RTO (924.6 s for the default 15).
func RetransmitTimeout(retries int) time.Duration {
	return retransmitTimeout(retries, DefaultRTOMax)
}

// retransmitTimeout is tcp_model_timeout() with rto_base TCP_RTO_MIN (a constant, not the
// tcp_rto_min_us sysctl) and the maximum RTO in force.
func retransmitTimeout(retries int, rtoMax time.Duration) time.Duration {
	if rtoMax <= 0 {
		rtoMax = DefaultRTOMax
	}
	rtoMin := int64(DefaultRTOMin / time.Millisecond)
	thresh := 0 // ilog2(rto_max / rto_base)
	for v := int64(rtoMax/time.Millisecond) / rtoMin; v > 1; v >>= 1 {
		thresh++
	}
	var ms int64
	if retries <= thresh {
		ms = ((2 << retries) - 1) * rtoMin
	} else {
		ms = ((2<<thresh)-1)*rtoMin + int64(retries-thresh)*int64(rtoMax/time.Millisecond)
	}
	return time.Duration(ms) * time.Millisecond
}

// DetectionTime is the textbook time (every timer on time, Timeline.Detection) from last
// activity until the application learns that the peer is gone in scenario s, with
// SO_KEEPALIVE on and zero fields taken from Linux's defaults; Predict gives the kernel's
// window around it. ok is false when the scenario is never detected (e.g. NAT with a
// refreshing probe) or unknown.
func DetectionTime(cfg Config, s Scenario) (d time.Duration, ok bool) {
	t := Predict(Model{Config: cfg, Scenario: s})
	return t.Detection, t.Detected
}

// fmtSeconds renders a duration the way people read detection times: "2h11m15s", "5s", "1.5s".
func fmtSeconds(d time.Duration) string {
	if d >= time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.String()
}

// HumanDuration renders d like "2 h 11 min 15 s" for prose.
func HumanDuration(d time.Duration) string {
	if d < time.Second {
		return d.String()
	}
	d = d.Round(time.Second)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	mi := d / time.Minute
	d -= mi * time.Minute
	s := d / time.Second
	out := ""
	add := func(v time.Duration, unit string) {
		if v > 0 {
			if out != "" {
				out += " "
			}
			out += fmt.Sprintf("%d %s", v, unit)
		}
	}
	add(days, "d")
	add(h, "h")
	add(mi, "min")
	add(s, "s")
	return out
}
