package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/probe"
)

// Probe is the "probe" mode: keepalive probes sent from user space, from outside the
// application (what 'keepalive probe' does), one cycle per idle period.
func (modes) Probe() Detector { return probeDetector{} }

type probeDetector struct{}

func (probeDetector) Name() string { return "probe" }
func (probeDetector) Describe() string {
	return "user-space keepalive probes (keepalive probe): a cycle of count probes, interval apart, every idle period"
}

// Predict: same timing as the kernel's keepalive with the same idle/interval/count.
func (probeDetector) Predict(in PredictInput) keepalive.Timeline {
	in.Model.Enabled = true
	in.Model.Config.UserTimeout = 0
	return PredictKernel(in)
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
