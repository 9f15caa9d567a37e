package agent

import (
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
)

// Risk kinds, the values of the risk label.
const (
	RiskNone        = "none"
	RiskNoKeepalive = "no-keepalive"
	RiskInFlight    = "in-flight"
	RiskMiddlebox   = "middlebox"
	RiskUnknown     = "unknown"
	RiskNotAssessed = "not-assessed"
)

// Assessment is the agent's view of one connection.
type Assessment struct {
	// Risk is one of the Risk* kinds ("none" when a dead peer would be noticed in time).
	Risk string
	// Keepalive is true when SO_KEEPALIVE is known to be on.
	Keepalive bool
	// Detect is the predicted time from the peer's death to the error, 0 when never or unknown.
	Detect time.Duration
}

// AtRisk reports whether the assessment found a risk.
func (a Assessment) AtRisk() bool {
	return a.Risk != RiskNone && a.Risk != RiskUnknown && a.Risk != RiskNotAssessed
}

// AssessFunc assesses one connection given its namespace's sysctls.
type AssessFunc func(s *host.Socket, sys keepalive.Sysctl) Assessment

// BasicAssess is the assessment used when Options.Assess is nil: from
// sock_diag alone (or the exact settings when the socket carries them) it tells
// connections without keepalive, with data in flight and no user timeout, and
// with a keepalive idle time at or above middlebox (when middlebox > 0).
func BasicAssess(middlebox time.Duration) AssessFunc {
	return func(s *host.Socket, sys keepalive.Sysctl) Assessment {
		if s.State != host.StateEstablished && s.State != host.StateCloseWait {
			return Assessment{Risk: RiskNotAssessed}
		}
		var on, known bool
		var cfg keepalive.Config
		if s.Settings != nil {
			on, known, cfg = s.Settings.Enabled, true, s.Settings.Config
		} else {
			on, known = s.KeepaliveArmed()
		}
		inflight := s.SendQ > 0 || (s.Info != nil && (s.Info.Unacked > 0 || s.Info.NotSent > 0))
		if inflight {
			if cfg.UserTimeout > 0 {
				return Assessment{Risk: RiskNone, Keepalive: on, Detect: cfg.UserTimeout}
			}
			tl := keepalive.Predict(keepalive.Model{Config: sys.Keepalive, KeepaliveOff: !on,
				Scenario: keepalive.ScenarioInFlight, Retries2: sys.Retries2})
			return Assessment{Risk: RiskInFlight, Keepalive: on, Detect: tl.Detection}
		}
		if !known {
			return Assessment{Risk: RiskUnknown}
		}
		if !on {
			return Assessment{Risk: RiskNoKeepalive}
		}
		eff := cfg.WithDefaults(sys.Keepalive)
		a := Assessment{Risk: RiskNone, Keepalive: true}
		predict := true
		if s.Settings == nil {
			// Only bounds are known: a risk is reported when they prove it, and the
			// namespace's defaults are used for the prediction when they fit the bounds.
			if b, ok := s.KeepaliveBounds(); ok {
				if middlebox > 0 && b.RefreshMin >= middlebox {
					a.Risk = RiskMiddlebox
				}
				predict = b.RefreshMin <= max(eff.Idle, eff.Interval) && (b.IdleMax == 0 || eff.Idle <= b.IdleMax)
			}
		} else if middlebox > 0 && eff.Idle >= middlebox {
			a.Risk = RiskMiddlebox
		}
		if predict {
			tl := keepalive.Predict(keepalive.Model{Config: eff, Scenario: keepalive.ScenarioSilent, Retries2: sys.Retries2})
			if tl.Detected {
				a.Detect = tl.Detection
			}
		}
		return a
	}
}
