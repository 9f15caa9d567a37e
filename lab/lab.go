// Package lab reproduces the failures TCP keepalive exists for on the real Linux kernel and
// measures how long an application takes to learn that its peer is gone.
//
// A run builds a small network out of network namespaces (client ↔ server over a veth pair, or
// client ↔ router ↔ server with masquerade and conntrack), starts a real server process in the
// server namespace and a real client connection in the client namespace, exchanges one greeting
// (the "last activity"), injects one failure (a Scenario) and waits until the client's
// connection fails or a bound expires. A Detector decides how the client tries to notice: none,
// kernel keepalive, TCP_USER_TIMEOUT, or later modes added in files detector_<mode>.go.
//
// Everything the lab creates is named with the prefix "kalab" followed by the PID of the
// running process and a random suffix, and is torn down when Run returns — on success, error,
// panic and context cancellation. Clean removes what a killed process left behind.
//
// The server is a separate process: the running binary re-executed with an environment
// variable. Every program that calls Run must therefore call RunHelperIfRequested first thing
// in main (and in TestMain for tests).
//
// Linux only; on other systems Run, Matrix and Clean return ErrUnsupportedOS.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
)

// Prefix starts the name of every namespace, interface and nftables table the lab creates.
const Prefix = "kalab"

// Scenario is the failure a run injects.
type Scenario string

// The scenarios.
const (
	// Crash: the server host vanishes; all its traffic is silently dropped.
	Crash Scenario = "crash"
	// Path: the router's link towards the server goes down (router topology).
	Path Scenario = "path"
	// Reboot: the server forgets the connection without telling the client and answers the
	// next segment with RST.
	Reboot Scenario = "reboot"
	// NAT: the router's conntrack entry expires while the connection is idle; later packets
	// are dropped (NATOnExpiry "drop") or answered with RST by the router ("rst").
	NAT Scenario = "nat"
	// Hung: the server process is frozen with SIGSTOP; its kernel keeps answering.
	Hung Scenario = "hung"
	// InFlight: the server vanishes while the client has unacknowledged data.
	InFlight Scenario = "in-flight"
)

// Defaults used when Options leave a field zero.
const (
	DefaultIdle       = 2 * time.Second
	DefaultInterval   = time.Second
	DefaultCount      = 3
	DefaultNATTimeout = time.Second
	DefaultFaultAfter = 500 * time.Millisecond
	// MaxBound is the longest run Options.Max accepts.
	MaxBound = time.Hour
	// MaxSegments is the most segments Options.Segments accepts (the initial congestion
	// window, so that all of them are in flight at once).
	MaxSegments = 10
)

// Options describe one lab run.
type Options struct {
	// Scenario is the failure to inject (default Crash).
	Scenario Scenario
	// NATOnExpiry is what the router does with packets of a forgotten flow: "drop" (default;
	// silent both ways) or "rst" (it answers the client with a TCP RST). Scenario NAT only.
	NATOnExpiry string
	// NATTimeout is the router's conntrack established timeout (default 1 s, whole seconds).
	NATTimeout time.Duration
	// Mode names the detector (default "kernel"); see Detectors.
	Mode string
	// Detector, when set, is used instead of looking Mode up.
	Detector Detector
	// Config holds the keepalive settings the detector uses; zero Idle, Interval and Count
	// take DefaultIdle, DefaultInterval and DefaultCount. UserTimeout is used by the
	// "user-timeout" mode.
	Config keepalive.Config
	// IPv6 runs over fd00:200::/64 instead of 10.200.0.0/16.
	IPv6 bool
	// Max bounds the wait for detection, measured from the last activity. Zero picks the
	// predicted detection plus 2 s, or the nominal keepalive time (idle + count × interval)
	// plus 3 s when nothing is predicted within 2 min.
	Max time.Duration
	// FaultAfter is when the fault is injected, after the last activity (default 500 ms,
	// at most half the idle time). Ignored by NAT, whose fault is the conntrack expiry.
	FaultAfter time.Duration
	// Retries2 sets net.ipv4.tcp_retries2 in the client namespace (0 keeps the namespace
	// default 15).
	Retries2 int
	// Segments is how many full-sized segments the InFlight scenario writes (default 1: a
	// small write; at most MaxSegments, which the initial congestion window sends at once).
	Segments int
	// HZ is the kernel's CONFIG_HZ for the model; 0 learns it with host.DetectTimers.
	HZ int
	// HZSource says where HZ came from (filled by Run and Predict when they learn it).
	HZSource string
	// Params are mode-specific parameters for detectors added later (e.g. a heartbeat
	// interval); they reach the server process too.
	Params map[string]string
	// RunID names the run; it must be unique among running labs. Default: "<pid>-<random>".
	RunID string
	// HelperPath is the executable started as the server process (default /proc/self/exe).
	// It must call RunHelperIfRequested at the top of main.
	HelperPath string
	// Progress, if set, is called about every 250 ms while waiting for detection.
	Progress func(Progress)
}

// Progress reports a run that is waiting for detection.
type Progress struct {
	RunID    string
	Elapsed  time.Duration // since the last activity
	Expected time.Duration // predicted detection, or the bound when nothing is predicted
	Max      time.Duration // the bound
	Probes   int           // keepalive probes seen so far
}

// Result is the outcome of one run.
type Result struct {
	RunID    string           `json:"run_id"`
	Scenario Scenario         `json:"scenario"`
	Variant  string           `json:"variant,omitempty"`
	Mode     string           `json:"mode"`
	IPv6     bool             `json:"ipv6"`
	Config   keepalive.Config `json:"config"`
	// NATTimeout is the router's conntrack timeout (Scenario NAT).
	NATTimeout time.Duration `json:"nat_timeout,omitempty"`
	// Max is the bound the run waited for.
	Max time.Duration `json:"max"`
	// FaultAt is when the fault was injected, from the last activity.
	FaultAt time.Duration `json:"fault_at"`
	// Detected reports whether the client learnt within Max that the peer is gone.
	Detected bool `json:"detected"`
	// DetectedBy is "application" (the connection failed) or the detector's name when the
	// detector itself concluded the peer is gone.
	DetectedBy string `json:"detected_by,omitempty"`
	// Error is the errno name the application got (ETIMEDOUT, ECONNRESET, EHOSTUNREACH…).
	Error string `json:"error,omitempty"`
	// ErrorText is the full error text.
	ErrorText string `json:"error_text,omitempty"`
	// SinceLastActivity is the time from the last activity (the greeting received; for
	// InFlight the unacknowledged write) to detection.
	SinceLastActivity time.Duration `json:"since_last_activity,omitempty"`
	// SinceFault is the time from the fault to detection.
	SinceFault time.Duration `json:"since_fault,omitempty"`
	// Probes is the number of keepalive probes the client sent (TcpExt TCPKeepAlive delta in
	// the client namespace).
	Probes int `json:"probes"`
	// Retransmits is the number of retransmitted segments (Tcp RetransSegs delta).
	Retransmits int `json:"retransmits"`
	// IgnoredICMP counts ICMP errors the client's kernel ignored as out of window (TcpExt
	// OutOfWindowIcmps delta): an ICMP error quoting a keepalive probe (SEQ = SND.UNA − 1)
	// never reaches the application, so a path failure still ends in ETIMEDOUT.
	IgnoredICMP int `json:"ignored_icmp"`
	// RTT and RTO are the kernel's smoothed round-trip time and retransmission timeout of
	// the client connection just before the fault (tcp_info).
	RTT time.Duration `json:"rtt"`
	RTO time.Duration `json:"rto"`
	// Measured is the observed timeline, from the last activity.
	Measured []keepalive.Event `json:"measured"`
	// Predicted is the model's timeline for this run.
	Predicted keepalive.Timeline `json:"predicted"`
	// ExpectedDetected is whether the model predicts detection within Max.
	ExpectedDetected bool `json:"expected_detected"`
	// Diff is measured minus predicted detection time: the window's earliest time for the
	// kernel model, Predicted.Detection for detectors with their own timing.
	Diff time.Duration `json:"diff,omitempty"`
	// Distance is how far the measurement lies outside the model's window [earliest,
	// latest]: 0 inside, negative before it, positive after it.
	Distance time.Duration `json:"distance"`
	// HZ is the CONFIG_HZ the prediction used, HZSource where it came from.
	HZ       int    `json:"hz,omitempty"`
	HZSource string `json:"hz_source,omitempty"`
	// Segments is the number of segments written in the InFlight scenario.
	Segments int `json:"segments,omitempty"`
	// Retries2 is net.ipv4.tcp_retries2 in the client namespace when the run set it.
	Retries2 int `json:"retries2,omitempty"`
	// Agree reports that measurement and model agree: same detected state within Max, the
	// same error, and the measured time within the model's window (see WindowLow and
	// WindowHigh; detectors with their own timing: within BandLow … BandHigh).
	Agree bool `json:"agree"`
	// Disagreement says why they do not agree.
	Disagreement string `json:"disagreement,omitempty"`
	// Verdict is a one-line summary.
	Verdict string `json:"verdict"`
}

// Agreement band of detectors with their own timing (no kernel window): measured − predicted
// must lie within [BandLow, BandHigh].
const (
	BandLow  = -200 * time.Millisecond
	BandHigh = 1500 * time.Millisecond
)

// Allowance around the kernel model's window [Earliest, Latest]: a measurement agrees when
// it lies within [Earliest + WindowLow, Latest + WindowHigh]. Time zero is read in user
// space just after the kernel received the last segment (a little late, so measurements
// come out a little early), and the application wakes up after the kernel reports the error:
// microseconds on a quiet machine, tens of milliseconds with several runs sharing two busy
// cores. The allowance covers that measurement error, not the model: its windows are exact.
const (
	WindowLow  = -10 * time.Millisecond
	WindowHigh = 150 * time.Millisecond
)

// windowDistance is how far d lies outside the model's window (0 inside; negative before it).
func windowDistance(d time.Duration, p keepalive.Timeline) time.Duration {
	switch {
	case d < p.Earliest:
		return d - p.Earliest
	case d > p.Latest:
		return d - p.Latest
	}
	return 0
}

// withHZ fills o.HZ from the running kernel when it is zero.
func withHZ(ctx context.Context, o Options) Options {
	if o.HZ != 0 {
		if o.HZSource == "" {
			o.HZSource = "given"
		}
		return o
	}
	t := host.DetectTimers(ctx)
	o.HZ, o.HZSource = t.HZ, t.HZSource
	return o
}

// ErrUnsupportedOS is returned on systems other than Linux. It matches errors.ErrUnsupported.
var ErrUnsupportedOS = fmt.Errorf("the lab works on Linux only (it needs network namespaces, veth and nftables): %w", errors.ErrUnsupported)

// ErrNotRoot is returned when the process lacks the privileges to build namespaces. It
// matches fs.ErrPermission.
var ErrNotRoot = fmt.Errorf("the lab needs root (CAP_SYS_ADMIN to create network namespaces and CAP_NET_ADMIN for veth, routes and nftables): %w", fs.ErrPermission)

// FeatureError names a kernel feature the lab needs but the running kernel lacks.
type FeatureError struct {
	Feature string // e.g. "veth (CONFIG_VETH)"
	Step    string // what the lab was doing
	Err     error
}

// Error names the feature, the step and the cause.
func (e *FeatureError) Error() string {
	return fmt.Sprintf("kernel feature missing: %s (while %s): %v", e.Feature, e.Step, e.Err)
}

// Unwrap returns the underlying error.
func (e *FeatureError) Unwrap() error { return e.Err }

// normalize fills defaults and validates o.
func (o Options) normalize() (Options, error) {
	if o.Scenario == "" {
		o.Scenario = Crash
	}
	sd, ok := lookupScenario(o.Scenario)
	if !ok {
		return o, fmt.Errorf("lab: unknown scenario %q (allowed: %s)", o.Scenario, strings.Join(scenarioIDs(), ", "))
	}
	if err := sd.normalize(&o); err != nil {
		return o, err
	}
	if o.Config.Idle == 0 {
		o.Config.Idle = DefaultIdle
	}
	if o.Config.Interval == 0 {
		o.Config.Interval = DefaultInterval
	}
	if o.Config.Count == 0 {
		o.Config.Count = DefaultCount
	}
	if _, err := o.Config.Validate("linux"); err != nil {
		return o, fmt.Errorf("lab: %w", err)
	}
	if o.Detector == nil {
		if o.Mode == "" {
			o.Mode = "kernel"
		}
		d, err := LookupDetector(o.Mode)
		if err != nil {
			return o, err
		}
		o.Detector = d
	}
	o.Mode = o.Detector.Name()
	if o.FaultAfter == 0 {
		o.FaultAfter = DefaultFaultAfter
		if half := o.Config.Idle / 2; half < o.FaultAfter {
			o.FaultAfter = half
		}
	}
	if o.FaultAfter < 0 || o.FaultAfter > MaxBound {
		return o, fmt.Errorf("lab: fault time %s not allowed (allowed: 0..%s)", o.FaultAfter, MaxBound)
	}
	if o.Max < 0 || o.Max > MaxBound {
		return o, fmt.Errorf("lab: bound %s not allowed (allowed: 1s..%s, or 0 for automatic)", o.Max, MaxBound)
	}
	if o.Max > 0 && o.Max < time.Second {
		return o, fmt.Errorf("lab: bound %s not allowed (allowed: 1s..%s, or 0 for automatic)", o.Max, MaxBound)
	}
	if o.Segments == 0 {
		o.Segments = 1
	}
	if o.Segments < 1 || o.Segments > MaxSegments {
		return o, fmt.Errorf("lab: segments %d not allowed (allowed: 1..%d)", o.Segments, MaxSegments)
	}
	if o.HZ != 0 && (o.HZ < 10 || o.HZ > 10000) {
		return o, fmt.Errorf("lab: hz %d not allowed (allowed: 10..10000, or 0 to detect it)", o.HZ)
	}
	if o.Retries2 < 0 || o.Retries2 > 255 {
		return o, fmt.Errorf("lab: tcp_retries2 %d not allowed (allowed: 1..255, or 0 to keep 15)", o.Retries2)
	}
	if o.RunID != "" {
		if err := checkRunID(o.RunID); err != nil {
			return o, err
		}
	}
	return o, nil
}

func checkRunID(id string) error {
	if len(id) > 40 {
		return fmt.Errorf("lab: run ID %q too long (allowed: at most 40 characters)", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("lab: run ID %q not allowed (allowed: lower-case letters, digits and '-')", id)
		}
	}
	return nil
}

// predictInput builds the model input of a run; the detector completes it.
func predictInput(o Options) PredictInput {
	in := PredictInput{
		Scenario: o.Scenario,
		Variant:  o.NATOnExpiry,
		Options:  o,
		Model: keepalive.Model{
			Config:           o.Config,
			MiddleboxTimeout: o.NATTimeout,
			RTT:              100 * time.Microsecond,
			Retries2:         o.Retries2,
			HZ:               o.HZ,
			Segments:         o.Segments,
		},
	}
	if sd, ok := lookupScenario(o.Scenario); ok {
		sd.model(o, &in.Model)
	}
	return in
}

// Predict returns the model's timeline for the run o describes, as Run would report it.
func Predict(o Options) (keepalive.Timeline, error) {
	o, err := o.normalize()
	if err != nil {
		return keepalive.Timeline{}, err
	}
	o = withHZ(context.Background(), o)
	p := o.Detector.Predict(predictInput(o))
	if o.Max == 0 {
		o.Max = autoMax(o, p)
		p = o.Detector.Predict(predictInput(o))
	}
	return p, nil
}

// autoMax picks the bound when Options.Max is zero: the predicted detection plus 2 s, or —
// when nothing is predicted or only after more than 2 min — the nominal keepalive time
// (idle + count × interval, or the user timeout) plus 3 s.
func autoMax(o Options, p keepalive.Timeline) time.Duration {
	if p.Detected {
		m := p.Detection + 2*time.Second
		if p.Latest > p.Detection {
			m = p.Latest + 2*time.Second
		}
		if m <= 2*time.Minute {
			return m.Round(time.Second)
		}
	}
	c := o.Config
	m := c.Idle + time.Duration(c.Count)*c.Interval + 3*time.Second
	if c.UserTimeout > 0 && c.UserTimeout+3*time.Second > m {
		m = c.UserTimeout + 3*time.Second
	}
	return min(m, 2*time.Minute)
}

// judge fills the comparison fields of r from its measurement and prediction.
func judge(r *Result) {
	p := r.Predicted
	r.ExpectedDetected = p.Detected && p.Detection <= r.Max
	var why []string
	if r.Detected != r.ExpectedDetected {
		if r.Detected {
			why = append(why, "detected although the model predicts no detection within the bound")
		} else {
			why = append(why, fmt.Sprintf("not detected within %s although the model predicts %s", fmtS(r.Max), fmtS(p.Detection)))
		}
	}
	if r.Detected && p.Detected {
		r.Diff = r.SinceLastActivity - p.Detection
		low, high := BandLow, BandHigh
		if p.HZ > 0 {
			// The kernel model states a window [Earliest, Latest]; the measurement may lie
			// WindowLow before it (time zero is taken in user space just after the kernel
			// received the greeting) and WindowHigh after it (the application's wake-up).
			r.Diff = r.SinceLastActivity - p.Earliest
			low, high = WindowLow, p.Latest-p.Earliest+WindowHigh
		} else if slack := p.Latest - p.Detection; slack > high {
			high = slack
		}
		r.Distance = windowDistance(r.SinceLastActivity, p)
		if r.Diff < low || r.Diff > high {
			why = append(why, fmt.Sprintf("measured − predicted %s outside %s … +%s", fmtDiff(r.Diff), fmtDiff(low), fmtS(high)))
		}
		if r.DetectedBy == "application" && p.Error != "" && r.Error != p.Error {
			why = append(why, fmt.Sprintf("error %s, model says %s", orDash(r.Error), p.Error))
		}
	}
	r.Agree = len(why) == 0
	r.Disagreement = strings.Join(why, "; ")
	switch {
	case r.Detected:
		by := ""
		if r.DetectedBy != "application" && r.DetectedBy != "" {
			by = " by " + r.DetectedBy
		}
		r.Verdict = fmt.Sprintf("detected%s after %s from last activity (%s after the fault), %s", by, fmtS(r.SinceLastActivity), fmtS(r.SinceFault), orDash(r.Error))
	default:
		r.Verdict = fmt.Sprintf("not detected within the %s bound", fmtS(r.Max))
	}
	if r.Agree {
		if r.Detected && p.Detected {
			r.Verdict += fmt.Sprintf("; predicted %s (%s): agrees with the model", fmtWindow(p), fmtDiff(r.Diff))
		} else {
			r.Verdict += "; as the model predicts"
		}
	} else {
		r.Verdict += "; DISAGREES with the model: " + r.Disagreement
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtS renders a duration in seconds with millisecond precision, e.g. "5.102s".
func fmtS(d time.Duration) string {
	return fmt.Sprintf("%.3fs", d.Seconds())
}

// fmtDiff renders a signed duration, e.g. "+0.102s".
func fmtDiff(d time.Duration) string {
	return fmt.Sprintf("%+.3fs", d.Seconds())
}
