package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/probe"
)

type probeDetector struct{}

func (probeDetector) Name() string { return "probe" }
func (probeDetector) Describe() string {
	return "user-space keepalive probes (keepalive probe): a cycle of count probes, interval apart, every idle period"
}

// Predict: same timing as the kernel's keepalive with the same idle/interval/count. Unlike
// the kernel, the prober also probes a connection with data in flight: it learns the sequence
// numbers from the next segment the connection sends (a retransmission) after idle, then
// sends count zero-length probes interval apart.
func (probeDetector) Predict(in PredictInput) keepalive.Timeline {
	in.Model.KeepaliveOff = false
	in.Model.Config.UserTimeout = 0
	k := ownTiming(PredictKernel(in))
	if in.Scenario != InFlight {
		return k
	}
	c := in.Model.Config.WithDefaults(keepalive.LinuxDefaults())
	t := keepalive.Timeline{Model: k.Model}
	learn := time.Duration(-1)
	// Idle counts from the last receive, FaultAfter before the write (time zero).
	idleAt := c.Idle - in.Options.FaultAfter
	for _, e := range k.Events {
		if e.Kind == keepalive.EventRetransmit && e.At >= idleAt {
			learn = e.At
			break
		}
		if e.Kind != keepalive.EventKill && e.Kind != keepalive.EventError {
			t.Events = append(t.Events, e)
		}
	}
	det := learn + time.Duration(c.Count)*c.Interval
	if learn < 0 || (k.Detected && k.Detection <= det) {
		return k
	}
	t.Events = append(t.Events, keepalive.Event{At: learn, Kind: keepalive.EventRetransmit,
		Detail: "a retransmission seen on the capture: sequence numbers learned without injecting"})
	for i := 0; i < c.Count; i++ {
		t.Events = append(t.Events, keepalive.Event{At: learn + time.Duration(i)*c.Interval, Kind: keepalive.EventProbe,
			Detail: fmt.Sprintf("user-space probe %d (zero-length, the connection is busy)", i+1)})
	}
	t.Events = append(t.Events, keepalive.Event{At: det, Kind: keepalive.EventKill,
		Detail: fmt.Sprintf("no answer to %d probes: verdict dead", c.Count)})
	t.Detected, t.Detection, t.Earliest, t.Latest, t.Probes = true, det, det, det, c.Count
	t.Notes = append(t.Notes, "user-space probes work with data in flight, where kernel keepalive never probes")
	return t
}

// ownTiming marks a timeline as driven by user-space timers (exact, textbook timing) rather
// than the kernel's timer wheel: the lab then judges it with its band, not a kernel window.
func ownTiming(t keepalive.Timeline) keepalive.Timeline {
	t.HZ, t.Earliest, t.Candidates = 0, t.Detection, nil
	if t.Latest < t.Detection {
		t.Latest = t.Detection
	}
	return t
}

func (probeDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	chk, err := probe.ConnChecker(s.Conn)
	if err != nil {
		return nil, err
	}
	p, err := probe.New(probe.NewOptions{Netns: s.Namespace, Checker: chk})
	if err != nil {
		return nil, err
	}
	cfg := s.Options.Config
	opt := probe.Options{Config: probe.Config{Count: cfg.Count, Interval: cfg.Interval}}
	flow := probe.Flow{Local: s.Local, Remote: s.Remote}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(cfg.Idle - time.Since(s.Start))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			res, err := p.Probe(ctx, []probe.Flow{flow}, opt, nil)
			if err != nil || len(res) != 1 {
				return
			}
			switch r := res[0]; {
			case r.Verdict.Dead():
				s.Report("", fmt.Sprintf("%s: %s", r.Verdict, r.Evidence))
				return
			case r.Verdict == probe.Reset:
				s.Report("ECONNRESET", r.Evidence)
				return
			case r.Verdict == probe.Gone:
				return
			}
			t.Reset(cfg.Idle)
		}
	}()
	return func() { cancel(); <-done; p.Close() }, nil
}
