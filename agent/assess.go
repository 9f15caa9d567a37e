package agent

import (
	"time"

	"github.com/keepalive-dev/keepalive/host"
)

// Assessment is the agent's summary of host.Assess for one connection.
type Assessment struct {
	// Risk is the host.RiskKind ("ok" when a dead peer would be noticed in time).
	Risk string
	// AtRisk is host.Assessment.AtRisk.
	AtRisk bool
	// Keepalive is true when SO_KEEPALIVE is known to be on.
	Keepalive bool
	// Detect is the predicted time from the peer's death to the error (a lower
	// bound when only the kernel's timer was seen), 0 when never or unknown.
	Detect time.Duration
}

// AssessFunc assesses one connection given its namespace's sysctls.
type AssessFunc func(s *host.Socket, sys host.Sysctl) Assessment

// HostAssess returns the assessment of package host (host.Assess) with the
// namespace's sysctls filled in from sys; o sets the rest (HZ, middlebox,
// detection limit).
func HostAssess(o host.AssessOptions) AssessFunc {
	return func(s *host.Socket, sys host.Sysctl) Assessment {
		oo := o
		oo.Defaults, oo.Retries2, oo.RTOMin, oo.RTOMax = sys.Keepalive, sys.Retries2, sys.RTOMin, sys.RTOMax
		r := host.Assess(*s, oo)
		a := Assessment{Risk: string(r.Risk), AtRisk: r.AtRisk, Keepalive: r.Known && r.Enabled}
		switch {
		case r.Detected && r.Detection > 0:
			a.Detect = r.Detection
		case r.Bounded && r.DetectionMin > 0:
			a.Detect = r.DetectionMin
		}
		return a
	}
}
