package host

import (
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
)

func TestAssess(t *testing.T) {
	exact := func(on bool, idle, intvl time.Duration, cnt int, ut time.Duration) *keepalive.Settings {
		return &keepalive.Settings{Enabled: on, Config: keepalive.Config{Idle: idle, Interval: intvl, Count: cnt, UserTimeout: ut}}
	}
	est := func(s *keepalive.Settings) Socket { return Socket{State: StateEstablished, Settings: s} }
	sec := time.Second
	mb := AssessOptions{Middlebox: 350 * sec, MiddleboxName: "aws-nat-gateway"}
	tests := []struct {
		name    string
		s       Socket
		o       AssessOptions
		src     Source
		risk    RiskKind
		atRisk  bool
		detect  time.Duration // Detection when Detected
		min     time.Duration // DetectionMin
		refresh time.Duration
		verdict string // substring
	}{
		{"listen not assessed", Socket{State: StateListen}, AssessOptions{}, SourceUnknown, RiskNotAssessed, false, 0, 0, 0, "-"},
		{"off", est(exact(false, 0, 0, 0, 0)), AssessOptions{}, SourceSocket, RiskNoKeepalive, true, 0, 0, 0, "never noticed"},
		{"off behind middlebox", est(exact(false, 0, 0, 0, 0)), mb, SourceSocket, RiskNoKeepalive, true, 0, 0, 0, "the aws-nat-gateway forgets the idle flow after 350 s"},
		{"defaults ok", est(exact(true, 0, 0, 0, 0)), AssessOptions{}, SourceSocket, RiskOK, false, 7875 * sec, 0, 7200 * sec, "ok: dead peer noticed after"},
		{"namespace defaults apply", est(exact(true, 0, 0, 0, 0)), AssessOptions{Defaults: keepalive.Config{Idle: 60 * sec, Interval: 10 * sec, Count: 3}}, SourceSocket, RiskOK, false, 90 * sec, 0, 60 * sec, "ok"},
		{"idle beyond middlebox", est(exact(true, 0, 0, 0, 0)), mb, SourceSocket, RiskMiddlebox, true, 7875 * sec, 0, 7200 * sec, "first probe after 7200 s but the aws-nat-gateway forgets after 350 s"},
		{"interval beyond middlebox", est(exact(true, 60*sec, 400*sec, 2, 0)), mb, SourceSocket, RiskMiddlebox, true, 860 * sec, 0, 400 * sec, "refreshed every max(idle, interval) = 400 s"},
		{"slow", est(exact(true, 60*sec, 10*sec, 3, 0)), AssessOptions{DetectWithin: 30 * sec}, SourceSocket, RiskSlow, true, 90 * sec, 0, 60 * sec, "more than 30 s"},
		{"in flight, no user timeout", Socket{State: StateEstablished, SendQ: 10, Settings: exact(true, 60*sec, 10*sec, 3, 0)}, AssessOptions{}, SourceSocket, RiskInFlight, true, 935040 * time.Millisecond, 0, 60 * sec, "data in flight and no user timeout"},
		{"in flight, user timeout", Socket{State: StateEstablished, Info: &TCPInfo{Unacked: 1}, Settings: exact(true, 60*sec, 10*sec, 3, 30*sec)}, AssessOptions{}, SourceSocket, RiskOK, false, 30420 * time.Millisecond, 0, 60 * sec, "user timeout 30s"},
		{"timer hides", Socket{State: StateEstablished, Timer: TimerRetransmit}, AssessOptions{}, SourceUnknown, RiskUnknown, false, 0, 0, 0, "keepalive unknown"},
		{"timer: off", Socket{State: StateCloseWait, Timer: TimerNone}, AssessOptions{}, SourceTimer, RiskNoKeepalive, true, 0, 0, 0, "never noticed"},
		{"bounds ok", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 6999 * time.Millisecond}, AssessOptions{}, SourceTimer, RiskOK, false, 0, 7 * sec, 7 * sec, "ok on bounds"},
		{"bounds prove middlebox", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 400 * sec}, mb, SourceTimer, RiskMiddlebox, true, 0, 400 * sec, 400 * sec, "on bounds: keepalive refreshes the flow every max(idle, interval) ≥ 400 s"},
		{"bounds prove slow", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 400 * sec}, AssessOptions{DetectWithin: time.Minute}, SourceTimer, RiskSlow, true, 0, 400 * sec, 400 * sec, "more than 60 s"},
		{"bounds cannot tell", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 10 * sec}, mb, SourceTimer, RiskUnknown, false, 0, 10 * sec, 10 * sec, "cannot tell"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := Assess(tc.s, tc.o)
			// An Assessor gives the same judgement, also from its cache.
			as := NewAssessor(tc.o)
			if first, second := as.Assess(tc.s), as.Assess(tc.s); first != a || second != a {
				t.Fatalf("Assessor: %+v then %+v, Assess: %+v", first, second, a)
			}
			if a.Source != tc.src || a.Risk != tc.risk || a.AtRisk != tc.atRisk || a.DetectionMin != tc.min || a.Refresh != tc.refresh {
				t.Fatalf("got source %s risk %s at risk %v min %v refresh %v, want %s %s %v %v %v (%+v)", a.Source, a.Risk, a.AtRisk, a.DetectionMin, a.Refresh, tc.src, tc.risk, tc.atRisk, tc.min, tc.refresh, a)
			}
			if tc.detect > 0 && (!a.Detected || a.Detection != tc.detect) {
				t.Fatalf("detection %v (detected %v), want %v", a.Detection, a.Detected, tc.detect)
			}
			if a.Detected && (a.Earliest > a.Latest || a.Latest < a.Detection || a.HZ != keepalive.DefaultHZ) {
				t.Fatalf("window [%v, %v] at HZ %d does not hold %v", a.Earliest, a.Latest, a.HZ, a.Detection)
			}
			if !strings.Contains(a.Verdict, tc.verdict) {
				t.Fatalf("verdict %q lacks %q", a.Verdict, tc.verdict)
			}
		})
	}
}

// The model's HZ enters the windows, never the textbook detection time.
func TestAssessHZ(t *testing.T) {
	s := Socket{State: StateEstablished, Settings: &keepalive.Settings{Enabled: true, Config: keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 3}}}
	a100, a1000 := Assess(s, AssessOptions{}), Assess(s, AssessOptions{HZ: 1000})
	if a100.HZ != keepalive.DefaultHZ || a1000.HZ != 1000 || a100.Detection != a1000.Detection || a1000.Latest-a1000.Detection > a100.Latest-a100.Detection {
		t.Fatalf("HZ 100: %+v\nHZ 1000: %+v", a100, a1000)
	}
	if a1000.Effective != (keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 3}) {
		t.Fatalf("effective %+v", a1000.Effective)
	}
}

func TestFormatSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{350 * time.Second: "350 s", 1500 * time.Millisecond: "1.5s", 0: "0 s"} {
		if got := FormatSeconds(d); got != want {
			t.Errorf("FormatSeconds(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestAssessRTOBounds: with data in flight and no user timeout, death comes after the
// tcp_retries2 budget of retransmissions whose timeout doubles up to the maximum RTO in
// force, so a lower net.ipv4.tcp_rto_max_ms (or the socket's TCP_RTO_MAX_MS, which wins)
// shortens the predicted detection.
func TestAssessRTOBounds(t *testing.T) {
	s := Socket{State: StateEstablished, SendQ: 100, Settings: &keepalive.Settings{Enabled: true, Config: keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 3}}}
	def := Assess(s, AssessOptions{HZ: 250})
	ns := Assess(s, AssessOptions{HZ: 250, RTOMax: 5 * time.Second})
	s.RTOMax = 2 * time.Second
	own := Assess(s, AssessOptions{HZ: 250, RTOMax: 5 * time.Second})
	if !def.InFlight || !def.Detected || !ns.Detected || !own.Detected {
		t.Fatalf("not judged in flight: %+v / %+v / %+v", def, ns, own)
	}
	if !(own.Detection < ns.Detection && ns.Detection < def.Detection) {
		t.Fatalf("detection with RTO max 120s %v, namespace 5s %v, socket 2s %v: want strictly shorter", def.Detection, ns.Detection, own.Detection)
	}
	as := NewAssessor(AssessOptions{HZ: 250})
	s2 := s
	s2.RTOMax = 0
	if a, b := as.Assess(s), as.Assess(s2); a.Detection == b.Detection {
		t.Fatalf("Assessor shared a verdict across different TCP_RTO_MAX_MS: %v", a.Detection)
	}
}
