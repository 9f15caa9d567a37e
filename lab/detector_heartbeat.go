package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/heartbeat"
)

// heartbeatDetector runs the heartbeat protocol: the client PINGs after Time without reading
// (--idle, or Params["time"]) and declares the peer dead when nothing arrives within Timeout
// (--interval × --count, or Params["timeout"]); the server process answers PONGs.
type heartbeatDetector struct{}

func (heartbeatDetector) Name() string { return "heartbeat" }
func (heartbeatDetector) Describe() string {
	return "application heartbeats (package heartbeat): PING after --idle without reading, dead after --interval × --count without an answer; detects a hung peer"
}

// heartbeatTimes returns Time and Timeout for a run.
func heartbeatTimes(o Options) (tm, timeout time.Duration, err error) {
	tm, timeout = o.Config.Idle, o.Config.Interval*time.Duration(max(o.Config.Count, 1))
	for k, d := range map[string]*time.Duration{"time": &tm, "timeout": &timeout} {
		if v, ok := o.Params[k]; ok {
			if *d, err = time.ParseDuration(v); err != nil {
				return 0, 0, fmt.Errorf("lab: heartbeat: param %s=%q: %w", k, v, err)
			}
		}
	}
	return tm, timeout, heartbeat.Options{Time: tm, Timeout: timeout}.Validate()
}

func (heartbeatDetector) Predict(in PredictInput) keepalive.Timeline {
	tm, to, _ := heartbeatTimes(in.Options)
	t := keepalive.Timeline{Model: in.Model, Detected: true, Detection: tm + to, Latest: tm + to + 10*time.Millisecond}
	t.Events = []keepalive.Event{
		{At: 0, Kind: keepalive.EventLastActivity, Detail: "last frame read from the peer"},
		{At: tm, Kind: keepalive.EventProbe, Detail: "heartbeat PING (nothing read for Time)"},
	}
	switch {
	case in.Scenario == NAT && in.Model.MiddleboxTimeout > tm:
		// Every PING is traffic: the conntrack entry never expires, nothing goes wrong.
		t.Detected, t.Detection, t.Latest = false, 0, 0
		t.Notes = append(t.Notes, "a PING every Time keeps the NAT entry alive: the flow never expires")
		return t
	case in.Scenario == Reboot || (in.Scenario == NAT && in.Model.MiddleboxRST):
		t.Detection, t.Latest, t.Error = tm+in.Model.RTT, tm+in.Model.RTT+10*time.Millisecond, "ECONNRESET"
		t.Events = append(t.Events, keepalive.Event{At: t.Detection, Kind: keepalive.EventRST, Detail: "the PING is answered with RST"})
	case in.Scenario == InFlight:
		// Last activity is the unacknowledged write, FaultAfter after the last byte read;
		// heartbeats count from the last byte read.
		d := tm + to - in.Options.FaultAfter
		t.Detection, t.Latest = d, d+10*time.Millisecond
		t.Events[1].At = tm - in.Options.FaultAfter
		t.Events = append(t.Events, keepalive.Event{At: d, Kind: keepalive.EventError, Detail: "no frame within Timeout after the PING: peer unresponsive"})
	default:
		t.Events = append(t.Events, keepalive.Event{At: tm + to, Kind: keepalive.EventError, Detail: "no frame within Timeout after the PING: peer unresponsive"})
	}
	t.Probes = 1
	t.Notes = append(t.Notes, "application heartbeats are answered by the peer application, so a frozen (hung) peer is detected too")
	return t
}

func (heartbeatDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	tm, to, err := heartbeatTimes(s.Options)
	if err != nil {
		return nil, err
	}
	c, err := heartbeat.Client(s.Conn, heartbeat.Options{Time: tm, Timeout: to})
	if err != nil {
		return nil, fmt.Errorf("lab: heartbeat: %w", err)
	}
	s.ReadsConn = true
	go func() {
		buf := make([]byte, 512)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue
			}
			if errors.Is(err, heartbeat.ErrPeerUnresponsive) || errors.Is(err, heartbeat.ErrGoAway) {
				s.Report("", err.Error())
			} else {
				s.ReportError(err) // ECONNRESET, EOF...: the application's own error
			}
			return
		}
	}()
	return func() { c.Close() }, nil
}

func (heartbeatDetector) Serve(ctx context.Context, conn net.Conn, params map[string]string) error {
	return heartbeat.Answer(ctx, conn, heartbeat.Options{Time: heartbeat.MaxDuration, Timeout: heartbeat.MaxDuration})
}
