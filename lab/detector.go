package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Detector is one way for the client to notice that its peer is gone (a "mode").
//
// The lab calls, in order:
//
//  1. Predict, to get the model's timeline for the run (before anything is built);
//  2. Attach, in the lab process, right after the greeting that marks the last activity
//     (the client connection is established and idle). Attach may set socket options on
//     s.Conn, start goroutines, open sockets in the client namespace with s.Do, and call
//     s.Report when it concludes on its own that the peer is gone. It returns a stop function
//     the lab calls once the run is over (after detection or at the bound).
//
// The run ends at the first of: the client connection fails (the application's error), the
// detector calls s.Report, or the bound expires. Scenarios never look at the detector, so a
// new mode needs no change anywhere else.
//
// A detector that needs its own server behaviour (an application heartbeat responder)
// also implements ServerDetector; the server process then hands it the accepted connection.
//
// # Adding a mode
//
// Create lab/detector_<mode>.go with a type implementing Detector, and add one value of it to
// the list in Detectors (platformDetectors for a Linux-only one): the command line, the matrix
// and the server process then all know the new mode. A detector for tests only lives in a
// _test.go file, is passed as Options.Detector, and is handed to RunHelperIfRequested in the
// test binary's TestMain so that its server side runs too.
type Detector interface {
	// Name is the mode name on the command line, e.g. "kernel". Lower case, no spaces.
	Name() string
	// Describe is a one-line description for help texts.
	Describe() string
	// Predict returns the expected timeline for the run. in.Model is filled from the
	// scenario and the run's keepalive Config with SO_KEEPALIVE on; the detector adjusts it
	// (e.g. KeepaliveOff, or drop UserTimeout) and usually calls PredictKernel. A detector
	// with its own timing (heartbeats) builds the Timeline itself.
	Predict(in PredictInput) keepalive.Timeline
	// Attach starts detecting on the client connection. See the type documentation.
	Attach(ctx context.Context, s *Session) (stop func(), err error)
}

// ServerDetector is a Detector with a server side (for example an application heartbeat
// responder). Serve runs in the server process on the accepted connection after the greeting
// and until the connection ends or ctx is cancelled. Detectors without a server side get the
// default server, which reads and discards whatever arrives.
type ServerDetector interface {
	Detector
	Serve(ctx context.Context, conn net.Conn, params map[string]string) error
}

// PredictInput is what a Detector's Predict gets.
type PredictInput struct {
	// Scenario is the lab scenario; Variant is "drop" or "rst" for NAT.
	Scenario Scenario
	Variant  string
	// Model is the model input derived from the scenario and Options.Config, keepalive on.
	Model keepalive.Model
	// Options are the run's normalized options (Params included).
	Options Options
}

// Session is what a Detector's Attach gets: the client's side of the run.
type Session struct {
	// Conn is the client's connection, as the application holds it. The lab reads from it
	// to observe the application's error; a detector must not read from it.
	Conn *net.TCPConn
	// Local and Remote are the connection's addresses as the client sees them.
	Local, Remote netip.AddrPort
	// Namespace is the path of the client's network namespace (/var/run/netns/...).
	Namespace string
	// ServerPID is the PID of the server process (in the server namespace).
	ServerPID int
	// Options are the run's normalized options.
	Options Options
	// Do runs fn on an OS thread inside the client namespace (sockets created there belong to
	// it; /proc/thread-self/net shows it).
	Do func(fn func() error) error
	// ClientPID is the PID of the process holding Conn: the lab process itself.
	ClientPID int
	// Start is the last activity: the greeting answer was received just before Attach.
	Start time.Time
	// ReadsConn is set by Attach when the detector reads Conn itself (an application
	// heartbeat): the lab then does not read, and the detector must pass the connection's
	// read error to ReportError.
	ReadsConn bool

	report    func(by, errno, text string)
	reportErr func(err error)
}

// ReportError passes the error a detector's own read of Conn returned (see ReadsConn); it
// counts as the application's error, errno and all.
func (s *Session) ReportError(err error) {
	if s.reportErr != nil {
		s.reportErr(err)
	}
}

// Report declares the peer gone on the detector's own authority (errno may be "" and text
// says why). The first Report or application error ends the run; later calls are ignored.
func (s *Session) Report(errno, text string) {
	if s.report != nil {
		s.report(s.Options.Mode, errno, text)
	}
}

// Detectors returns every detector in display order: the baselines, then the ways the
// project offers, then the platform's own (enforce on Linux). The list is explicit: adding a
// mode is one file and one line here.
func Detectors() []Detector {
	ds := []Detector{noneDetector{}, kernelDetector{}, userTimeoutDetector{}, retrofitDetector{}, probeDetector{}, heartbeatDetector{}}
	return append(ds, platformDetectors()...)
}

// ModeNames lists the names of Detectors.
func ModeNames() []string {
	var ns []string
	for _, d := range Detectors() {
		ns = append(ns, d.Name())
	}
	return ns
}

// LookupDetector returns the detector of a mode name.
func LookupDetector(name string) (Detector, error) { return lookupDetector(name, nil) }

// lookupDetector looks name up in Detectors and then in extra.
func lookupDetector(name string, extra []Detector) (Detector, error) {
	for _, d := range append(Detectors(), extra...) {
		if d.Name() == name {
			return d, nil
		}
	}
	return nil, fmt.Errorf("lab: unknown mode %q (allowed: %s)", name, strings.Join(ModeNames(), ", "))
}

// PredictKernel is the prediction for a client relying on the kernel alone (keepalive and
// retransmission timers) with in.Model as given. It handles the scenario the model does not
// know: Hung, where the peer's kernel keeps answering and nothing is detected.
func PredictKernel(in PredictInput) keepalive.Timeline {
	m := in.Model
	if in.Scenario != Hung {
		return keepalive.Predict(m)
	}
	// A frozen process: its kernel answers every probe, so keepalive sees a live peer.
	t := keepalive.Timeline{Model: m, Events: []keepalive.Event{
		{At: 0, Kind: keepalive.EventLastActivity, Detail: "last segment received from the peer"},
		{At: 0, Kind: keepalive.EventFault, Detail: "server process frozen (SIGSTOP); its kernel still answers"},
	}}
	if m.RTT <= 0 {
		m.RTT = time.Millisecond
	}
	if !m.KeepaliveOff {
		// One probe per idle period, each ACKed, up to the bound (at least one cycle).
		c := m.Config.WithDefaults(keepalive.LinuxDefaults())
		for at := c.Idle; t.Probes == 0 || at <= in.Options.Max; at += c.Idle + m.RTT {
			t.Probes++
			t.Events = append(t.Events,
				keepalive.Event{At: at, Kind: keepalive.EventProbe, Detail: fmt.Sprintf("keepalive probe %d", t.Probes), Slack: keepalive.Granule(c.Idle, m.HZ)},
				keepalive.Event{At: at + m.RTT, Kind: keepalive.EventAck, Detail: "the peer's kernel ACKs: idle starts again"})
		}
		t.Notes = append(t.Notes, "the frozen process's kernel answers every probe: keepalive cannot tell, only an application heartbeat can")
	} else {
		t.Notes = append(t.Notes, "SO_KEEPALIVE is off and the connection is idle: nothing is ever noticed")
	}
	t.Detected, t.Detection, t.Latest, t.Error = false, 0, 0, ""
	return t
}

// noneDetector is the baseline: SO_KEEPALIVE off, no user timeout.
type noneDetector struct{}

func (noneDetector) Name() string { return "none" }
func (noneDetector) Describe() string {
	return "baseline: SO_KEEPALIVE off, no TCP_USER_TIMEOUT; only the retransmission timer (tcp_retries2) can notice"
}
func (noneDetector) Predict(in PredictInput) keepalive.Timeline {
	in.Model.KeepaliveOff = true
	in.Model.Config.UserTimeout = 0
	return PredictKernel(in)
}
func (noneDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	if err := s.Conn.SetKeepAlive(false); err != nil {
		return nil, fmt.Errorf("lab: none: SO_KEEPALIVE off: %w", err)
	}
	return func() {}, nil
}

// kernelDetector applies idle, interval and count with keepalive.Apply.
type kernelDetector struct{}

func (kernelDetector) Name() string { return "kernel" }
func (kernelDetector) Describe() string {
	return "kernel keepalive: SO_KEEPALIVE with --idle, --interval, --count (keepalive.Apply)"
}
func (kernelDetector) Predict(in PredictInput) keepalive.Timeline {
	in.Model.Config.UserTimeout = 0
	return PredictKernel(in)
}
func (kernelDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	c := s.Options.Config
	c.UserTimeout = 0
	if err := keepalive.Apply(s.Conn, c); err != nil {
		return nil, fmt.Errorf("lab: kernel: %w", err)
	}
	return func() {}, nil
}

// userTimeoutDetector is kernel keepalive plus TCP_USER_TIMEOUT.
type userTimeoutDetector struct{}

func (userTimeoutDetector) Name() string { return "user-timeout" }
func (userTimeoutDetector) Describe() string {
	return "kernel keepalive plus TCP_USER_TIMEOUT (--user-timeout, default idle + interval)"
}
func (userTimeoutDetector) Predict(in PredictInput) keepalive.Timeline {
	in.Model.Config = userTimeoutConfig(in.Options.Config)
	return PredictKernel(in)
}
func (userTimeoutDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	if err := keepalive.Apply(s.Conn, userTimeoutConfig(s.Options.Config)); err != nil {
		return nil, fmt.Errorf("lab: user-timeout: %w", err)
	}
	return func() {}, nil
}

// userTimeoutConfig fills a missing user timeout with idle + interval.
func userTimeoutConfig(c keepalive.Config) keepalive.Config {
	if c.UserTimeout == 0 {
		c.UserTimeout = c.Idle + c.Interval
	}
	return c
}
