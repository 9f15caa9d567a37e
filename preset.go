package keepalive

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Environment is a kind of middlebox (NAT, firewall, load balancer) with the idle timeout after
// which it forgets a TCP flow, and what it counts as activity.
type Environment struct {
	// Name is the preset's key, e.g. "aws-nat-gateway".
	Name string `json:"name"`
	// IdleTimeout is the idle timeout settings are planned for: the low end of the range when
	// the real value varies between devices or configurations (see MaxIdleTimeout).
	IdleTimeout time.Duration `json:"idle_timeout"`
	// MaxIdleTimeout is the high end of the range of timeouts met in practice; zero when the
	// preset is a single documented value.
	MaxIdleTimeout time.Duration `json:"max_idle_timeout,omitempty"`
	// OnExpiry is what happens to a forgotten flow: "drop" (packets silently dropped), "rst"
	// (answered with RST) or "fin" (the middlebox itself closes the connection with FIN).
	OnExpiry string `json:"on_expiry"`
	// Refresh is what resets the middlebox's idle timer: RefreshAnySegment (TCP keepalive
	// probes keep the flow) or RefreshDataOnly (only payload counts: keepalive cannot help).
	Refresh string `json:"refresh"`
	// RefreshSource is where Refresh comes from.
	RefreshSource string `json:"refresh_source"`
	// AfterFIN is the shorter timeout of a flow after a FIN (half-closed), where documented.
	AfterFIN time.Duration `json:"after_fin_timeout,omitempty"`
	// Direction describes documented direction-dependent behaviour (one direction timed out
	// sooner, flows seen in one direction only), "" when none is documented.
	Direction string `json:"direction,omitempty"`
	// Description says what the environment is.
	Description string `json:"description"`
	// Source is where the timeout figures come from.
	Source string `json:"source"`
}

// What refreshes a middlebox's idle timer (Environment.Refresh).
const (
	RefreshAnySegment = "any-segment"
	RefreshDataOnly   = "data-only"
)

// HeartbeatAdvice is what to do when the middlebox counts only data as activity.
const HeartbeatAdvice = "TCP keepalive cannot keep this flow: use application heartbeats (package heartbeat) or the protocol's own pings"

// ErrDataOnly is returned (wrapped) by Recommend for a middlebox that counts only data as
// activity; its text is HeartbeatAdvice.
var ErrDataOnly = errors.New(HeartbeatAdvice)

// KeepaliveRefreshes reports whether TCP keepalive probes reset the middlebox's idle timer.
func (e Environment) KeepaliveRefreshes() bool { return e.Refresh != RefreshDataOnly }

// Range renders the idle timeout, e.g. "1 min – 10 min" or "5 min 50 s".
func (e Environment) Range() string {
	if e.MaxIdleTimeout > e.IdleTimeout {
		return HumanDuration(e.IdleTimeout) + " – " + HumanDuration(e.MaxIdleTimeout)
	}
	return HumanDuration(e.IdleTimeout)
}

// Requirement returns what Recommend needs to plan for e: its (low-end) idle timeout, and
// whether only data refreshes it.
func (e Environment) Requirement() Requirement {
	return Requirement{MiddleboxTimeout: e.IdleTimeout, DataOnly: !e.KeepaliveRefreshes()}
}

// Environments returns the built-in presets, shortest idle timeout first. Presets whose
// timeout varies in practice keep the range and plan for its low end.
func Environments() []Environment {
	const seg = RefreshAnySegment
	conntrackRefresh := "net/netfilter/nf_conntrack_proto_tcp.c: every valid segment of the flow, either direction, renews the entry's timeout"
	envs := []Environment{
		{Name: "linux-conntrack", IdleTimeout: 432000 * time.Second, OnExpiry: "drop", Refresh: seg, RefreshSource: conntrackRefresh,
			AfterFIN:    60 * time.Second,
			Direction:   "a flow seen in one direction only (no reply yet) is kept nf_conntrack_tcp_timeout_unacknowledged = 300 s; after a FIN: close_wait 60 s, fin_wait 120 s",
			Description: "Linux netfilter conntrack (iptables/nftables NAT, Docker, Kubernetes nodes)",
			Source:      "net/netfilter/nf_conntrack_proto_tcp.c: nf_conntrack_tcp_timeout_established = 5 days"},
		{Name: "rfc5382", IdleTimeout: 7440 * time.Second, OnExpiry: "drop", Refresh: seg,
			RefreshSource: "RFC 5382 REQ-5: the timer is refreshed by packets of the connection (keepalive probes are such packets; §5 asks NATs not to ignore them)",
			Description:   "a NAT that follows RFC 5382 REQ-5 (the minimum a compliant NAT keeps an idle flow)",
			Source:        "RFC 5382 §5 REQ-5: established idle timeout ≥ 2 hours 4 minutes"},
		{Name: "corporate-firewall", IdleTimeout: 60 * time.Second, MaxIdleTimeout: 3600 * time.Second, OnExpiry: "drop", Refresh: seg,
			RefreshSource: "stateful firewalls count every packet of the session (Cisco ASA conn idle timer, PAN-OS session timeout)",
			AfterFIN:      600 * time.Second,
			Direction:     "Cisco ASA: half-closed connections time out after 10 min (timeout half-closed 0:10:00)",
			Description:   "enterprise stateful firewall (Cisco ASA, Palo Alto, Fortinet; site policies shorten it to 1 min)",
			Source:        "Cisco ASA command reference: timeout conn default 1:00:00; PAN-OS TCP timeout 3600 s; site policies as low as 1 min"},
		{Name: "consumer-router", IdleTimeout: 60 * time.Second, MaxIdleTimeout: 600 * time.Second, OnExpiry: "drop", Refresh: seg,
			RefreshSource: "home gateways track the flow by its packets in either direction (Hätönen et al. measured bindings kept alive by traffic)",
			Description:   "home router / CPE NAT",
			Source:        "Hätönen et al., IMC 2010, An Experimental Study of Home Gateway Characteristics: TCP binding timeouts from about 1 min upward, many under 10 min"},
		{Name: "carrier-grade-nat", IdleTimeout: 120 * time.Second, MaxIdleTimeout: 300 * time.Second, OnExpiry: "drop", Refresh: seg,
			RefreshSource: "RFC 6888 / RFC 5382: the mapping is refreshed by the connection's packets",
			Description:   "ISP carrier-grade NAT (CGN/LSN) on fixed lines",
			Source:        "RFC 6888 REQ-1 defers to RFC 5382; deployed CGNs commonly 2–5 min (operator configurations)"},
		{Name: "mobile-carrier-nat", IdleTimeout: 30 * time.Second, MaxIdleTimeout: 300 * time.Second, OnExpiry: "drop", Refresh: seg,
			RefreshSource: "cellular NAT/firewalls track the flow by its packets (Wang et al.: keepalive traffic keeps connections)",
			Description:   "mobile network operator NAT/firewall",
			Source:        "Wang et al., SIGCOMM 2011, An Untold Story of Middleboxes in Cellular Networks: idle TCP timeouts from ~30 s to several minutes"},
		{Name: "unknown-nat", IdleTimeout: 30 * time.Second, MaxIdleTimeout: 7440 * time.Second, OnExpiry: "drop", Refresh: seg,
			RefreshSource: "every common NAT and firewall counts any segment; load balancers that count only data (aws-alb, aws-elb) are not covered",
			Description:   "an unknown NAT or firewall: settings that survive every common middlebox (shortest common timeout, 30 s)",
			Source:        "the shortest timeouts in the other presets (mobile carrier NATs, ~30 s) up to RFC 5382's 2 h 4 min"},
		{Name: "aws-nat-gateway", IdleTimeout: 350 * time.Second, OnExpiry: "rst", Refresh: seg,
			RefreshSource: "AWS VPC user guide, NAT gateways: to prevent the connection from being dropped, initiate more traffic over it or enable TCP keepalive",
			Description:   "AWS NAT Gateway",
			Source:        "AWS VPC user guide, NAT gateways: idle timeout 350 s; an RST is returned to resources that continue the connection"},
		{Name: "aws-nlb", IdleTimeout: 350 * time.Second, MaxIdleTimeout: 6000 * time.Second, OnExpiry: "rst", Refresh: seg,
			RefreshSource: "AWS ELB user guide, Network Load Balancers: clients or targets can use TCP keepalive packets to reset the idle timeout",
			Description:   "AWS Network Load Balancer (TCP listener; default 350 s, configurable 60–6000 s)",
			Source:        "AWS ELB user guide, Network Load Balancers: TCP idle timeout 350 s by default; later packets get an RST"},
		{Name: "aws-alb", IdleTimeout: 60 * time.Second, MaxIdleTimeout: 4000 * time.Second, OnExpiry: "fin", Refresh: RefreshDataOnly,
			RefreshSource: "AWS ELB user guide, Application Load Balancers: the connection is closed if no data has been sent or received by the time the idle timeout elapses; TCP keepalive does not count",
			Description:   "AWS Application Load Balancer (closes idle connections itself with FIN; default 60 s, 1–4000 s)",
			Source:        "AWS ELB user guide: connection idle timeout default 60 seconds"},
		{Name: "aws-elb", IdleTimeout: 60 * time.Second, MaxIdleTimeout: 4000 * time.Second, OnExpiry: "fin", Refresh: RefreshDataOnly,
			RefreshSource: "AWS ELB user guide, Classic Load Balancers: if no data has been sent or received by the time the idle timeout elapses, the load balancer closes the connection",
			Description:   "AWS Classic Load Balancer (closes idle connections itself with FIN; default 60 s, 1–4000 s)",
			Source:        "AWS ELB user guide: connection idle timeout default 60 seconds"},
		{Name: "azure-lb", IdleTimeout: 240 * time.Second, MaxIdleTimeout: 6000 * time.Second, OnExpiry: "drop", Refresh: seg,
			RefreshSource: "Azure Load Balancer docs: use TCP keep-alive to keep the connection active beyond the idle timeout",
			Description:   "Azure Load Balancer / Azure outbound SNAT (default 4 min, configurable 4–100 min)",
			Source:        "Azure Load Balancer docs: TCP idle timeout default 4 minutes (4..100); TCP reset on idle off by default"},
		{Name: "gcp-lb", IdleTimeout: 600 * time.Second, OnExpiry: "drop", Refresh: seg,
			RefreshSource: "Google Cloud VPC firewall docs: connection tracking is renewed by the connection's packets; TCP keepalive keeps long-lived idle connections",
			Description:   "Google Cloud load balancer / VPC firewall connection tracking",
			Source:        "Google Cloud VPC firewall docs: established TCP connections tracked 10 minutes (600 s) idle"},
	}
	sort.SliceStable(envs, func(i, j int) bool { return envs[i].IdleTimeout < envs[j].IdleTimeout })
	return envs
}

// LookupEnvironment returns the preset called name; the error lists the valid names.
func LookupEnvironment(name string) (Environment, error) {
	var names []string
	for _, e := range Environments() {
		if strings.EqualFold(e.Name, name) {
			return e, nil
		}
		names = append(names, e.Name)
	}
	return Environment{}, fmt.Errorf("unknown environment %q (known: %s)", name, strings.Join(names, ", "))
}

// Requirement is what Recommend works from. At least one of DetectWithin and
// MiddleboxTimeout must be set.
type Requirement struct {
	// DetectWithin is the longest acceptable time from last activity to the error.
	DetectWithin time.Duration `json:"detect_within,omitempty"`
	// MiddleboxTimeout is the idle timeout of the shortest-lived middlebox on the path.
	MiddleboxTimeout time.Duration `json:"middlebox_timeout,omitempty"`
	// OS is the target system (default: the running one).
	OS string `json:"os,omitempty"`
	// DataOnly: the middlebox counts only data as activity (Environment.Refresh
	// RefreshDataOnly); Recommend then returns ErrDataOnly.
	DataOnly bool `json:"data_only,omitempty"`
}

// DefaultDetectWithin bounds the detection time Recommend plans for when no target is given:
// about what tcp_retries2 gives a connection with data in flight (≈ 15 min), so that an idle
// connection is not noticed more slowly than a busy one, and never slower than Linux's
// defaults (2 h 11 min 15 s) however long the middlebox keeps the flow.
const DefaultDetectWithin = 15 * time.Minute

// Recommendation is a Config that meets a Requirement, with the reasoning behind it.
type Recommendation struct {
	Config Config `json:"config"`
	// Detection is the worst-case nominal detection time for a silent peer.
	Detection time.Duration `json:"detection"`
	// Reasons explains each choice, in order.
	Reasons  []string  `json:"reasons"`
	Warnings []Warning `json:"warnings,omitempty"`
}

// recommendedCount is how many probes Recommend plans for: RFC 1122 forbids treating a single
// lost probe as death; three tolerates two losses in a row.
const recommendedCount = 3

// Recommend produces a Config that keeps a flow mapped through a middlebox (the first probe and
// every refresh after it — every max(idle, interval) — leave before the middlebox forgets the
// flow, with margin for timer slack and loss), detects a dead peer within the target (or
// DefaultDetectWithin when none is given), and stays within the target OS's limits. A
// middlebox that counts only data (Requirement.DataOnly) gets ErrDataOnly: keepalive cannot
// keep such a flow.
// On Linux it also sets TCP_USER_TIMEOUT to the detection target so that a peer that vanishes
// while data is in flight is caught in the same time instead of ≈ 15 min.
func Recommend(req Requirement) (Recommendation, error) {
	goos := req.OS
	if goos == "" {
		goos = GOOS
	}
	lim, ok := LimitsFor(goos)
	if !ok {
		return Recommendation{}, fmt.Errorf("no per-socket keepalive limits known for %q (supported: linux, darwin, windows, freebsd): %w", goos, ErrUnsupported)
	}
	if req.DetectWithin == 0 && req.MiddleboxTimeout == 0 {
		return Recommendation{}, fmt.Errorf("need a detection target or a middlebox timeout (or both)")
	}
	if req.DetectWithin < 0 || req.MiddleboxTimeout < 0 {
		return Recommendation{}, fmt.Errorf("detection target %s and middlebox timeout %s must be positive", req.DetectWithin, req.MiddleboxTimeout)
	}
	if req.DataOnly {
		return Recommendation{Reasons: []string{HeartbeatAdvice}}, fmt.Errorf("the middlebox counts only data as activity: %w", ErrDataOnly)
	}
	count := recommendedCount
	var r Recommendation
	if lim.FixedCount > 0 && goos == "windows" {
		r.Reasons = append(r.Reasons, "Windows before 10 1703 cannot set the probe count (SIO_KEEPALIVE_VALS uses 10); count 3 assumes TCP_KEEPCNT is available")
	}
	const minDetect = 3 * time.Second
	if req.DetectWithin != 0 && req.DetectWithin < minDetect {
		return r, fmt.Errorf("detection target %s is too short: at least %s is needed (idle ≥ 1 s plus 2 probes 1 s apart, in whole seconds)", req.DetectWithin, minDetect)
	}
	if req.MiddleboxTimeout != 0 && req.MiddleboxTimeout < 2*time.Second {
		return r, fmt.Errorf("middlebox timeout %s is too short: keepalive works in whole seconds, at least 2s is needed", req.MiddleboxTimeout)
	}
	// Idle: half the detection budget goes to noticing idleness, the rest to the probes.
	var idle time.Duration
	if req.DetectWithin > 0 {
		idle = req.DetectWithin / 2
		r.Reasons = append(r.Reasons, fmt.Sprintf("detect within %s: spend about half (%s) waiting for idleness, the rest on the probes", fmtSeconds(req.DetectWithin), fmtSeconds(idle)))
	}
	if mb := req.MiddleboxTimeout; mb > 0 {
		maxIdle := maxIdleFor(mb)
		margin := mb - maxIdle
		if idle == 0 || idle > maxIdle {
			idle = maxIdle
			r.Reasons = append(r.Reasons, fmt.Sprintf("the middlebox forgets an idle flow after %s: first probe at most %s idle (margin %s for timer slack and a lost probe)", fmtSeconds(mb), fmtSeconds(maxIdle), fmtSeconds(margin)))
		} else {
			r.Reasons = append(r.Reasons, fmt.Sprintf("idle %s is well inside the middlebox timeout %s: the probe refreshes the mapping", fmtSeconds(idle), fmtSeconds(mb)))
		}
	}
	idle = idle.Truncate(time.Second)
	if idle < time.Second {
		idle = time.Second
	}
	var intvl time.Duration
	if req.DetectWithin > 0 {
		intvl = ((req.DetectWithin - idle) / time.Duration(count)).Truncate(time.Second)
		if intvl < time.Second {
			// Make room: shrink idle so that count probes 1 s apart still fit.
			intvl = time.Second
			idle = req.DetectWithin - time.Duration(count)*intvl
			if idle < time.Second {
				count = 2
				idle = req.DetectWithin - time.Duration(count)*intvl
			}
			r.Reasons = append(r.Reasons, fmt.Sprintf("tight target: idle %s, probes 1 s apart", fmtSeconds(idle)))
		}
	} else {
		// No target: probe reasonably fast once idle, without flooding: a fifth of idle,
		// between 1 s and 75 s (Linux's default interval).
		intvl = (idle / 5).Truncate(time.Second)
		if intvl < time.Second {
			intvl = time.Second
		}
		if intvl > 75*time.Second {
			intvl = 75 * time.Second
		}
		r.Reasons = append(r.Reasons, fmt.Sprintf("no detection target: probes %s apart (a fifth of idle, 1..75 s)", fmtSeconds(intvl)))
	}
	if mb := req.MiddleboxTimeout; mb > 0 && intvl > maxIdleFor(mb) {
		// A live flow is refreshed every max(idle, interval): the interval must fit too.
		intvl = max(time.Second, maxIdleFor(mb))
		r.Reasons = append(r.Reasons, fmt.Sprintf("interval at most %s: a live flow is refreshed every max(idle, interval)", fmtSeconds(intvl)))
	}
	if req.DetectWithin > 0 {
		// Give whatever whole seconds are left of the budget to idle (fewer probes on a live
		// connection), as long as the middlebox allows it.
		if rest := req.DetectWithin - time.Duration(count)*intvl; rest.Truncate(time.Second) > idle {
			grown := rest.Truncate(time.Second)
			if req.MiddleboxTimeout == 0 || grown <= maxIdleFor(req.MiddleboxTimeout) {
				r.Reasons = append(r.Reasons, fmt.Sprintf("idle raised from %s to %s: whole-second probe intervals leave that much of the budget, and a longer idle means fewer probes on live connections", fmtSeconds(idle), fmtSeconds(grown)))
				idle = grown
			}
		}
	}
	if idle > lim.MaxIdle {
		idle = lim.MaxIdle
		r.Reasons = append(r.Reasons, fmt.Sprintf("idle capped at the %s maximum %s", goos, lim.MaxIdle))
	}
	if intvl > lim.MaxInterval {
		intvl = lim.MaxInterval
	}
	cfg := Config{Idle: idle, Interval: intvl, Count: count}
	r.Reasons = append(r.Reasons, fmt.Sprintf("%d probes %s apart: a silent peer is declared dead %s after the first probe (RFC 1122: never after a single lost probe)", count, fmtSeconds(intvl), fmtSeconds(time.Duration(count)*intvl)))
	det := idle + time.Duration(count)*intvl
	if lim.UserTimeout != "" && (goos == "linux" || goos == "android") {
		cfg.UserTimeout = det
		r.Reasons = append(r.Reasons, fmt.Sprintf("TCP_USER_TIMEOUT %s: a peer that vanishes while data is in flight is caught about as fast (user timeout counted from the first retransmission) instead of after tcp_retries2 (≈ 15 min); with it set Linux ends keepalive at the first probe firing where idle ≥ %s, which is the same moment", fmtSeconds(det), fmtSeconds(det)))
	} else if lim.UserTimeout != "" {
		ut := det.Round(time.Second)
		cfg.UserTimeout = ut
		r.Reasons = append(r.Reasons, fmt.Sprintf("%s %s bounds unacknowledged data on %s", lim.UserTimeout, fmtSeconds(ut), goos))
	} else {
		r.Reasons = append(r.Reasons, goos+" has no TCP_USER_TIMEOUT: data in flight to a dead peer is bounded only by the retransmission limit")
	}
	if req.DetectWithin == 0 && det > DefaultDetectWithin {
		// No target given: do not advise anything slower than the stated default target.
		req.DetectWithin = DefaultDetectWithin
		rr, err := Recommend(req)
		if err == nil {
			rr.Reasons = append([]string{fmt.Sprintf("no detection target given and the middlebox allows %s of idleness: detection bounded by the default target %s (DefaultDetectWithin)", fmtSeconds(req.MiddleboxTimeout), HumanDuration(DefaultDetectWithin))}, rr.Reasons...)
		}
		return rr, err
	}
	ws, err := cfg.Validate(goos)
	if err != nil {
		return r, fmt.Errorf("recommendation does not fit %s limits: %w", goos, err)
	}
	r.Warnings = append(ws, cfg.CheckMiddlebox(req.MiddleboxTimeout)...)
	r.Config = cfg
	r.Detection = det
	if req.DetectWithin > 0 && det > req.DetectWithin {
		r.Warnings = append(r.Warnings, Warning{"detection", fmt.Sprintf("cannot detect within %s while keeping the flow mapped: best is %s", req.DetectWithin, det)})
	}
	return r, nil
}

// maxIdleFor is the longest idle time that still refreshes a middlebox mapping that expires
// after mb: a fifth of mb, at least twice the timer slack and at least 1 s, is kept as margin.
func maxIdleFor(mb time.Duration) time.Duration {
	margin := mb / 5
	if s := 2 * TimerSlack(mb); s > margin {
		margin = s
	}
	if margin < time.Second {
		margin = time.Second
	}
	return (mb - margin).Truncate(time.Second)
}
