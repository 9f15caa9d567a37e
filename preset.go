package keepalive

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Environment is a kind of middlebox (NAT, firewall, load balancer) with the idle timeout after
// which it forgets a TCP flow.
type Environment struct {
	// Name is the preset's key, e.g. "aws-nat-gateway".
	Name string `json:"name"`
	// IdleTimeout is how long an idle established TCP flow is kept.
	IdleTimeout time.Duration `json:"idle_timeout"`
	// OnExpiry is what happens to packets of a forgotten flow: "drop" (silently) or "rst".
	OnExpiry string `json:"on_expiry"`
	// Description says what the environment is.
	Description string `json:"description"`
	// Source is where the figure comes from.
	Source string `json:"source"`
}

// Environments returns the built-in presets, shortest idle timeout first.
func Environments() []Environment {
	envs := []Environment{
		// Linux nf_conntrack_tcp_timeout_established default: 5 days
		// (net/netfilter/nf_conntrack_proto_tcp.c, tcp_timeouts[TCP_CONNTRACK_ESTABLISHED]).
		{"linux-conntrack", 432000 * time.Second, "drop", "Linux netfilter conntrack (iptables/nftables NAT, Docker, Kubernetes nodes)",
			"net/netfilter/nf_conntrack_proto_tcp.c: nf_conntrack_tcp_timeout_established = 5 days"},
		// RFC 5382 REQ-5: the established-connection idle timeout MUST NOT be less than 2 h 4 min.
		{"rfc5382", 7440 * time.Second, "drop", "a NAT that follows RFC 5382 REQ-5 (the minimum a compliant NAT keeps an idle flow)",
			"RFC 5382 §5 REQ-5: established idle timeout ≥ 2 hours 4 minutes"},
		// Cisco ASA "timeout conn 1:00:00" and Palo Alto "TCP timeout 3600" defaults.
		{"corporate-firewall", 3600 * time.Second, "drop", "enterprise stateful firewall (Cisco ASA, Palo Alto, Fortinet defaults)",
			"Cisco ASA command reference: timeout conn default 1:00:00; PAN-OS session settings: TCP timeout 3600 s"},
		// Home gateways: Hätönen et al., "An Experimental Study of Home Gateway Characteristics",
		// IMC 2010 — TCP binding timeouts from under 5 minutes upward; plan for the short end.
		{"consumer-router", 300 * time.Second, "drop", "home router / CPE NAT (short end of measured binding timeouts)",
			"Hätönen et al., IMC 2010, An Experimental Study of Home Gateway Characteristics: several gateways under 5 min"},
		// Carrier-grade NAT (RFC 6888 defers to RFC 5382, deployed CGNs use far less).
		{"carrier-grade-nat", 240 * time.Second, "drop", "ISP carrier-grade NAT (CGN/LSN) on fixed lines",
			"RFC 6888 REQ-1 defers to RFC 5382; operator CGN configurations commonly 4 min (e.g. Juniper/A10 CGN TCP idle defaults)"},
		// Mobile operators' NAT/firewalls expire idle TCP flows in tens of seconds to minutes.
		{"mobile-carrier-nat", 30 * time.Second, "drop", "mobile network operator NAT/firewall (worst observed)",
			"Wang et al., SIGCOMM 2011, An Untold Story of Middleboxes in Cellular Networks: idle TCP timeouts as low as ~30 s"},
		// AWS NAT Gateway: 350 s, then RST to the instance that sends next.
		{"aws-nat-gateway", 350 * time.Second, "rst", "AWS NAT Gateway",
			"AWS VPC user guide, NAT gateways: idle timeout 350 s; an RST is returned to resources that continue the connection"},
		// AWS Network Load Balancer: TCP idle timeout 350 s.
		{"aws-nlb", 350 * time.Second, "rst", "AWS Network Load Balancer (TCP listener)",
			"AWS ELB user guide, Network Load Balancers: TCP idle timeout 350 s; later packets get an RST"},
		// AWS Classic ELB / ALB: connection idle timeout default 60 s (configurable 1..4000 s).
		{"aws-elb", 60 * time.Second, "rst", "AWS Application / Classic Load Balancer (default idle timeout)",
			"AWS ELB user guide: connection idle timeout default 60 seconds"},
		// Azure Load Balancer: default idle timeout 4 minutes, silent drop unless TCP reset is enabled.
		{"azure-lb", 240 * time.Second, "drop", "Azure Load Balancer / Azure outbound SNAT (default)",
			"Azure Load Balancer docs: TCP idle timeout default 4 minutes (4..100); TCP reset on idle off by default"},
		// Google Cloud: VPC firewall connection tracking and load balancers keep idle TCP 10 min.
		{"gcp-lb", 600 * time.Second, "drop", "Google Cloud load balancer / VPC firewall connection tracking",
			"Google Cloud VPC firewall docs: established TCP connections tracked 10 minutes (600 s) idle"},
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
}

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
// every probe after it leave before the middlebox forgets the flow, with margin for timer slack
// and loss), detects a dead peer within the target, and stays within the target OS's limits.
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
		r.Reasons = append(r.Reasons, fmt.Sprintf("detect within %s: spend about half (%s) waiting for idleness, the rest on %d probes", fmtSeconds(req.DetectWithin), fmtSeconds(idle), count))
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
	if mb := req.MiddleboxTimeout; mb > 0 && intvl >= mb {
		intvl = (mb / 2).Truncate(time.Second)
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
