package keepalive

import (
	"fmt"
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
type Model struct {
	// Config holds the effective settings; zero fields are taken from Linux's defaults.
	Config Config `json:"config"`
	// Enabled reports SO_KEEPALIVE. With it off nothing is ever detected in the idle
	// scenarios.
	Enabled bool `json:"enabled"`
	// Scenario is the failure to predict.
	Scenario Scenario `json:"scenario"`
	// MiddleboxTimeout is the idle timeout of a NAT or firewall on the path (ScenarioNAT).
	MiddleboxTimeout time.Duration `json:"middlebox_timeout,omitempty"`
	// MiddleboxRST: after expiry the middlebox answers with RST instead of dropping.
	MiddleboxRST bool `json:"middlebox_rst,omitempty"`
	// RTT is the round-trip time to the peer (default 1 ms).
	RTT time.Duration `json:"rtt,omitempty"`
	// Retries2 is net.ipv4.tcp_retries2 (default 15).
	Retries2 int `json:"retries2,omitempty"`
	// Horizon bounds the simulation (default 7 days): nothing detected by then means never.
	Horizon time.Duration `json:"horizon,omitempty"`
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
	At     time.Duration `json:"at"`
	Kind   string        `json:"kind"`
	Detail string        `json:"detail"`
	// Slack is how late the kernel timer behind this event may fire (timer-wheel granularity
	// at HZ=1000); zero for events that are not timer firings.
	Slack time.Duration `json:"slack,omitempty"`
}

// Timeline is the predicted course of events for one Model.
type Timeline struct {
	Model    Model   `json:"model"`
	Events   []Event `json:"events"`
	Detected bool    `json:"detected"`
	// Detection is the time from last activity to the application's error (the nominal,
	// earliest time; Latest adds worst-case timer slack).
	Detection time.Duration `json:"detection"`
	Latest    time.Duration `json:"latest"`
	// Lateness is expected timer lateness already included in Detection (the retransmission
	// path, where lateness decides which firing gives up); Detection − Lateness is the
	// earliest the kernel can get there. Zero for keepalive timelines, whose Detection is
	// already the earliest (nominal) time.
	Lateness time.Duration `json:"lateness,omitempty"`
	// Error is the errno the application sees: ETIMEDOUT or ECONNRESET.
	Error  string   `json:"error,omitempty"`
	Probes int      `json:"probes"`
	Notes  []string `json:"notes,omitempty"`
}

// LinuxDefaults returns the per-namespace defaults of a fresh Linux network namespace
// (tcp_keepalive_time 7200 s, tcp_keepalive_intvl 75 s, tcp_keepalive_probes 9).
func LinuxDefaults() Config {
	return Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}
}

// TimerSlack is how late a Linux timer armed for d may fire at HZ=1000: the timer wheel files
// a timer into a level whose granularity grows 8× per level (1 ms, 8 ms, 64 ms, 512 ms, 4.1 s,
// 33 s, 262 s, 2097 s), and the expiry is rounded up to that granularity.
func TimerSlack(d time.Duration) time.Duration {
	j := int64(d / time.Millisecond)
	gran := int64(1)
	start := int64(63)
	for level := 0; level < 8; level++ {
		if j < start {
			return time.Duration(gran) * time.Millisecond
		}
		gran *= 8
		start *= 8
	}
	return time.Duration(gran) * time.Millisecond
}

// Predict follows the Linux keepalive and retransmission timers (net/ipv4/tcp_timer.c) for m
// and returns the ordered events up to the application's error.
//
// Without TCP_USER_TIMEOUT the connection dies when probes_out ≥ count at the next firing,
// i.e. one interval after the last probe: death = idle + count × interval. With a user timeout
// the count is ignored: death comes at the first firing where idle ≥ user timeout and at least
// one probe was sent. Probes are never sent while data is in flight.
func Predict(m Model) Timeline {
	if m.RTT <= 0 {
		m.RTT = time.Millisecond
	}
	if m.Retries2 <= 0 {
		m.Retries2 = 15
	}
	if m.Horizon <= 0 {
		m.Horizon = 7 * 24 * time.Hour
	}
	if m.Scenario == "" {
		m.Scenario = ScenarioSilent
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
	c := m.Config.WithDefaults(LinuxDefaults())
	m.Config = c
	t := Timeline{Model: m}
	add := func(at time.Duration, kind, detail string, slack time.Duration) {
		t.Events = append(t.Events, Event{At: at, Kind: kind, Detail: detail, Slack: slack})
		t.Latest += slack
	}
	last := "last segment received from the peer"
	if m.Scenario == ScenarioInFlight {
		last = "application writes data; the peer never acknowledges it"
	}
	add(0, EventLastActivity, last, 0)

	switch m.Scenario {
	case ScenarioInFlight:
		predictInFlight(&t, c, m, add)
	default:
		if !m.Enabled {
			t.Notes = append(t.Notes, "SO_KEEPALIVE is off: an idle connection to a dead peer is never noticed")
			if m.Scenario == ScenarioNAT && m.MiddleboxTimeout > 0 {
				add(m.MiddleboxTimeout, EventMiddlebox, "the middlebox forgets the idle flow", 0)
			}
			break
		}
		predictIdle(&t, c, m, add)
	}
	t.Latest += t.Detection
	if t.Detected && t.Lateness > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("expected at %s, counting each retransmission timer half a timer-wheel granule late; possible from %s (timers on time) to %s (all a full granule late)", fmtSeconds(t.Detection), fmtSeconds(t.Detection-t.Lateness), fmtSeconds(t.Latest)))
	} else if t.Detected {
		t.Notes = append(t.Notes, fmt.Sprintf("kernel timers fire late by up to the timer-wheel granularity (HZ=1000): worst case %s instead of %s", fmtSeconds(t.Latest), fmtSeconds(t.Detection)))
	} else {
		t.Latest = 0
	}
	return t
}

type addFunc func(at time.Duration, kind, detail string, slack time.Duration)

func predictIdle(t *Timeline, c Config, m Model, add addFunc) {
	// Where the peer is gone from the start (silent, reboot); for NAT the peer is alive and
	// the middlebox breaks the path once the flow has been idle for MiddleboxTimeout.
	breakAt := time.Duration(0)
	rst := m.Scenario == ScenarioReboot
	if m.Scenario == ScenarioNAT {
		if m.MiddleboxTimeout <= 0 {
			t.Notes = append(t.Notes, "no middlebox timeout given: the NAT scenario needs one")
			return
		}
		breakAt = m.MiddleboxTimeout
		rst = m.MiddleboxRST
	} else {
		add(0, EventFault, faultText(m.Scenario), 0)
	}
	lastRecv := time.Duration(0) // time of the last segment received (resets idle)
	probesOut := 0
	next := c.Idle
	slack := TimerSlack(c.Idle)
	// Bounded: at most maxFirings timer firings are simulated.
	const maxFirings = 100000
	for i := 0; next <= m.Horizon && i < maxFirings; i++ {
		now := next
		elapsed := now - lastRecv
		if m.Scenario == ScenarioNAT && breakAt > 0 && lastRecv+breakAt <= now && !hasKind(t.Events, EventMiddlebox) {
			add(lastRecv+breakAt, EventMiddlebox, "the middlebox forgets the idle flow; later packets are "+map[bool]string{true: "answered with RST", false: "dropped"}[rst], 0)
		}
		if (c.UserTimeout > 0 && elapsed >= c.UserTimeout && probesOut > 0) ||
			(c.UserTimeout == 0 && probesOut >= c.Count) {
			why := fmt.Sprintf("%d probes unanswered", probesOut)
			if c.UserTimeout > 0 {
				why = fmt.Sprintf("idle %s ≥ user timeout %s with %d probe(s) out", fmtSeconds(elapsed), fmtSeconds(c.UserTimeout), probesOut)
			}
			add(now, EventKill, why+": kernel sends RST and closes", slack)
			add(now, EventError, "application gets ETIMEDOUT", 0)
			t.Detected, t.Detection, t.Error, t.Probes = true, now, "ETIMEDOUT", probesOut
			return
		}
		probesOut++
		t.Probes = probesOut
		add(now, EventProbe, fmt.Sprintf("keepalive probe %d (SEQ = SND.UNA−1, no payload)", probesOut), slack)
		peerGone := m.Scenario != ScenarioNAT || hasKind(t.Events, EventMiddlebox)
		if !peerGone {
			add(now+m.RTT, EventAck, "peer ACKs: the flow is refreshed, idle starts again", 0)
			lastRecv = now + m.RTT
			probesOut = 0
			next = lastRecv + c.Idle
			slack = TimerSlack(c.Idle)
			// A live, mapped flow: loop until the horizon only if the middlebox could still
			// expire; otherwise it stays alive forever.
			if m.Scenario != ScenarioNAT || c.Idle < breakAt {
				t.Notes = append(t.Notes, fmt.Sprintf("first probe after %s idle refreshes the middlebox mapping (forgets after %s): the connection stays up, nothing to detect", fmtSeconds(c.Idle), fmtSeconds(breakAt)))
				return
			}
			continue
		}
		if rst {
			add(now+m.RTT, EventRST, rstText(m.Scenario), 0)
			add(now+m.RTT, EventError, "application gets ECONNRESET", 0)
			t.Detected, t.Detection, t.Error = true, now+m.RTT, "ECONNRESET"
			return
		}
		next = now + c.Interval
		slack = TimerSlack(c.Interval)
	}
	t.Notes = append(t.Notes, "nothing detected within the simulated horizon")
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

func rstText(s Scenario) string {
	if s == ScenarioNAT {
		return "the middlebox answers the probe with RST"
	}
	return "peer answers the probe with RST (it has no such connection)"
}

func hasKind(es []Event, kind string) bool {
	for _, e := range es {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// tcpRTOMin and tcpRTOMax are the kernel's TCP_RTO_MIN and TCP_RTO_MAX.
const (
	tcpRTOMin = 200 * time.Millisecond
	tcpRTOMax = 120 * time.Second
)

// RetransmitTimeout returns how long the retransmission path waits before giving up with
// tcp_retries2 = retries: the kernel's retransmits_timed_out() bound computed with
// TCP_RTO_MIN (924.6 s for the default 15).
func RetransmitTimeout(retries int) time.Duration {
	rtoMin := int64(tcpRTOMin / time.Millisecond)
	thresh := 0 // ilog2(TCP_RTO_MAX / rto_base)
	for v := int64(tcpRTOMax/time.Millisecond) / rtoMin; v > 1; v >>= 1 {
		thresh++
	}
	var ms int64
	if retries <= thresh {
		ms = ((2 << retries) - 1) * rtoMin
	} else {
		ms = ((2<<thresh)-1)*rtoMin + int64(retries-thresh)*int64(tcpRTOMax/time.Millisecond)
	}
	return time.Duration(ms) * time.Millisecond
}

func predictInFlight(t *Timeline, c Config, m Model, add addFunc) {
	add(0, EventFault, faultText(ScenarioInFlight), 0)
	t.Notes = append(t.Notes, "keepalive sends no probes while data is unacknowledged; only the retransmission timer can end the connection")
	// A tail-loss probe goes out after about two RTTs (at least 10 ms) and re-arms the
	// retransmission timer; the first RTO retransmission sets retrans_stamp, the moment from
	// which both tcp_retries2 and TCP_USER_TIMEOUT are counted (tcp_timer.c).
	tlp := 2 * m.RTT
	if tlp < 10*time.Millisecond {
		tlp = 10 * time.Millisecond
	}
	tlp += 10 * time.Millisecond
	add(tlp, EventRetransmit, "tail-loss probe (does not start the give-up clock)", 0)
	rto := tcpRTOMin + m.RTT
	limit := RetransmitTimeout(m.Retries2)
	why := fmt.Sprintf("tcp_retries2 = %d (%s after the first retransmission)", m.Retries2, fmtSeconds(limit))
	if c.UserTimeout > 0 {
		limit = c.UserTimeout
		why = fmt.Sprintf("TCP_USER_TIMEOUT %s (counted from the first retransmission)", fmtSeconds(limit))
	}
	first := tlp + rto
	add(first, EventRetransmit, fmt.Sprintf("retransmission 1 (RTO %s): the give-up clock starts", fmtSeconds(rto)), TimerSlack(rto))
	now := first
	n := 1
	// The kernel compares real elapsed time at each firing, and each retransmission timer
	// fires on average half a timer-wheel granule late; that lateness decides whether the
	// firing at the nominal tcp_retries2 bound already gives up (it is 0.2 s short of it with
	// a 200 ms RTO). So retransmission firings are placed at their expected time.
	for i := 0; i < 1000; i++ {
		rto *= 2
		if rto > tcpRTOMax {
			rto = tcpRTOMax
		}
		wait := rto
		if c.UserTimeout > 0 && now+wait > first+limit {
			// tcp_clamp_rto_to_user_timeout: the last RTO is cut to the time left.
			wait = first + limit - now
		}
		fire := now + wait + TimerSlack(wait)/2
		t.Lateness += TimerSlack(wait) / 2
		if fire-first >= limit {
			add(fire, EventKill, "retransmission gives up after "+why+": kernel closes the connection", TimerSlack(wait)/2)
			add(fire, EventError, "application gets ETIMEDOUT", 0)
			t.Detected, t.Detection, t.Error = true, fire, "ETIMEDOUT"
			return
		}
		n++
		add(fire, EventRetransmit, fmt.Sprintf("retransmission %d (RTO %s)", n, fmtSeconds(rto)), TimerSlack(wait)/2)
		now = fire
	}
}

// DetectionTime is the nominal time from last activity until the application learns that the
// peer is gone in scenario s, with SO_KEEPALIVE on and zero fields taken from Linux's defaults.
// ok is false when the scenario is never detected (e.g. NAT with a refreshing probe).
func DetectionTime(cfg Config, s Scenario) (d time.Duration, ok bool) {
	t := Predict(Model{Config: cfg, Enabled: true, Scenario: s})
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
