package keepalive

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const s = time.Second

// within reports whether d lies in the timeline's window.
func within(tl Timeline, d time.Duration) bool { return tl.Earliest <= d && d <= tl.Latest }

func TestPredictKernelFacts(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name     string
		m        Model
		detected bool
		nominal  time.Duration // textbook time (every timer on time)
		errno    string
		probes   int
	}{
		// KERNEL_NOTES: idle 2, intvl 1, cnt 3 → probes at 2, 3, 4 s, ETIMEDOUT at 5 s.
		{"silent 2/1/3", Model{Config: Config{Idle: 2 * s, Interval: s, Count: 3}}, true, 5 * s, "ETIMEDOUT", 3},
		// Linux defaults: 7200 + 9 × 75 = 7875 s = 2 h 11 min 15 s.
		{"silent defaults", Model{}, true, 7875 * s, "ETIMEDOUT", 9},
		{"keepalive off", Model{Config: Config{Idle: 2 * s}, KeepaliveOff: true}, false, 0, "", 0},
		// Reboot: the first probe gets an RST one RTT later.
		{"reboot", Model{Config: Config{Idle: 2 * s, Interval: s, Count: 3}, Scenario: ScenarioReboot, RTT: 10 * ms}, true, 2*s + 10*ms, "ECONNRESET", 1},
		// User timeout: count ignored; first firing with idle ≥ UT and ≥ 1 probe out.
		{"ut below idle", Model{Config: Config{Idle: 5 * s, Interval: 2 * s, Count: 9, UserTimeout: 3 * s}}, true, 7 * s, "ETIMEDOUT", 1},
		{"ut between probes", Model{Config: Config{Idle: 2 * s, Interval: 2 * s, Count: 9, UserTimeout: 5 * s}}, true, 6 * s, "ETIMEDOUT", 2},
		// NAT: idle beyond the middlebox timeout → the probe is dropped, silent detection.
		{"nat expired drop", Model{Config: Config{Idle: 400 * s, Interval: 10 * s, Count: 3}, Scenario: ScenarioNAT, MiddleboxTimeout: 350 * s}, true, 0, "ETIMEDOUT", 3},
		{"nat expired rst", Model{Config: Config{Idle: 400 * s, Interval: 10 * s, Count: 3}, Scenario: ScenarioNAT, MiddleboxTimeout: 350 * s, MiddleboxRST: true}, true, 0, "ECONNRESET", 1},
		{"nat kept mapped", Model{Config: Config{Idle: 300 * s, Interval: 10 * s, Count: 3}, Scenario: ScenarioNAT, MiddleboxTimeout: 350 * s}, false, 0, "", 3},
		// In flight: keepalive irrelevant; tcp_retries2 = 15 → 924.6 s after the first RTO.
		{"in-flight retries2", Model{Config: Config{Idle: s, Interval: s, Count: 1}, Scenario: ScenarioInFlight}, true, 0, "ETIMEDOUT", 0},
	} {
		for _, hz := range []int{100, 250, 1000} {
			t.Run(fmt.Sprintf("%s/HZ=%d", tc.name, hz), func(t *testing.T) {
				m := tc.m
				m.HZ = hz
				tl := Predict(m)
				if tl.Detected != tc.detected || tl.Error != tc.errno || tl.Probes != tc.probes {
					t.Fatalf("Predict = detected %v err %q probes %d; want %v %q %d\n%+v", tl.Detected, tl.Error, tl.Probes, tc.detected, tc.errno, tc.probes, tl.Events)
				}
				if tl.HZ != hz {
					t.Fatalf("HZ %d, want %d", tl.HZ, hz)
				}
				if tc.nominal != 0 && tl.Detection != tc.nominal {
					t.Fatalf("Detection (textbook) = %s, want %s", tl.Detection, tc.nominal)
				}
				// Timers never fire early: the earliest time is at most one jiffy before the
				// textbook time, and the window is never inverted.
				if tc.nominal != 0 && tl.Earliest < tc.nominal-time.Second/time.Duration(hz) {
					t.Fatalf("Earliest %s before the textbook %s", tl.Earliest, tc.nominal)
				}
				if tl.Detected && (tl.Latest < tl.Earliest || tl.Earliest == 0) {
					t.Fatalf("window %s … %s", tl.Earliest, tl.Latest)
				}
				for i := 1; i < len(tl.Events); i++ {
					if tl.Events[i].At < tl.Events[i-1].At {
						t.Fatalf("events out of order: %+v", tl.Events)
					}
				}
			})
		}
	}
}

func TestGranule(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		d    time.Duration
		hz   int
		want time.Duration
	}{
		// HZ=1000: 1 ms below 63 ms, 8 ms below 504 ms, 64 ms below 4.032 s …
		{10 * ms, 1000, ms}, {s, 1000, 64 * ms}, {10 * s, 1000, 512 * ms}, {7200 * s, 1000, 262144 * ms},
		// HZ=250 (these machines): 4 ms < 0.252 s, 32 ms < 2.016 s, 256 ms < 16.1 s, 2.048 s < 129 s.
		{200 * ms, 250, 4 * ms}, {2 * s, 250, 32 * ms}, {3 * s, 250, 256 * ms}, {100 * s, 250, 2048 * ms}, {400 * s, 250, 16384 * ms},
		// HZ=100: 10 ms < 0.63 s, 80 ms < 5.04 s, 640 ms < 40.3 s.
		{500 * ms, 100, 10 * ms}, {2 * s, 100, 80 * ms}, {30 * s, 100, 640 * ms},
	} {
		if got := Granule(tc.d, tc.hz); got != tc.want {
			t.Errorf("Granule(%s, %d) = %s, want %s", tc.d, tc.hz, got, tc.want)
		}
	}
	if TimerSlack(2*s) != Granule(2*s, DefaultHZ) {
		t.Errorf("TimerSlack is not the DefaultHZ granule")
	}
}

// A timer re-armed from a firing on a bucket boundary is late by exactly g − (interval in
// jiffies mod g): at HZ=250 a 2 s interval (500 jiffies, g = 8) comes every 2.016 s, a 3 s one
// (750 jiffies, g = 64) every 3.072 s. Only the first firing is uncertain.
func TestLatenessAccumulates(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		intvl, period time.Duration
	}{{2 * s, 2016 * ms}, {3 * s, 3072 * ms}, {s, 1024 * ms}} {
		tl := Predict(Model{Config: Config{Idle: 4 * s, Interval: tc.intvl, Count: 4}, HZ: 250})
		var probes []Event
		for _, e := range tl.Events {
			if e.Kind == EventProbe {
				probes = append(probes, e)
			}
		}
		for i := 1; i < len(probes); i++ {
			if d := probes[i].At - probes[i-1].At; d != tc.period || probes[i].Slack != probes[0].Slack {
				t.Errorf("interval %s: probe %d %s after the previous (slack %s vs %s), want %s", tc.intvl, i+1, d, probes[i].Slack, probes[0].Slack, tc.period)
			}
		}
	}
}

// idle 4 s, interval 3 s, user timeout 7.1 s at HZ=250: measured 7.118 s (probe at 4.042 s).
// The model must contain it, never claim an earliest time after it, and name both candidate
// firings (7.1 s or 10.1 s).
func TestUserTimeoutCandidates(t *testing.T) {
	ms := time.Millisecond
	tl := Predict(Model{Config: Config{Idle: 4 * s, Interval: 3 * s, Count: 9, UserTimeout: 7100 * ms}, HZ: 250})
	if !within(tl, 7118*ms) || len(tl.Candidates) != 2 || tl.Detection != 10*s {
		t.Fatalf("window %s … %s (textbook %s), candidates %+v: want 7.118s inside, two candidates, textbook 10s", tl.Earliest, tl.Latest, tl.Detection, tl.Candidates)
	}
	c0, c1 := tl.Candidates[0], tl.Candidates[1]
	if !(c0.From <= 7118*ms && 7118*ms <= c0.To) || c1.From < 10*s || c1.To > 10500*ms {
		t.Fatalf("candidates %+v", tl.Candidates)
	}
	kills := 0
	for _, e := range tl.Events {
		if e.Kind == EventKill {
			kills++
		}
	}
	if kills != 2 {
		t.Fatalf("timeline shows %d kill firings, want both candidates: %+v", kills, tl.Events)
	}
	// A user timeout that falls clearly between firings has one candidate and a tight window.
	tl = Predict(Model{Config: Config{Idle: 4 * s, Interval: 3 * s, Count: 9, UserTimeout: 8500 * ms}, HZ: 250})
	if len(tl.Candidates) != 0 || tl.Latest-tl.Earliest > 2*Granule(3*s, 250)+50*ms {
		t.Fatalf("UT 8.5s: window %s … %s, candidates %+v", tl.Earliest, tl.Latest, tl.Candidates)
	}
}

// Windows are tight: at most two granules of the interval's level plus 50 ms wide unless
// they span two candidate firings.
func TestWindowsTight(t *testing.T) {
	for _, hz := range []int{100, 250, 1000} {
		for idle := 1; idle <= 6; idle++ {
			for intvl := 1; intvl <= 4; intvl++ {
				for cnt := 1; cnt <= 5; cnt++ {
					for _, ut := range []time.Duration{0, 2500 * time.Millisecond, 7300 * time.Millisecond, 11900 * time.Millisecond} {
						m := Model{Config: Config{Idle: time.Duration(idle) * s, Interval: time.Duration(intvl) * s, Count: cnt, UserTimeout: ut}, HZ: hz}
						tl := Predict(m)
						g := Granule(max(m.Config.Idle, m.Config.Interval), hz)
						if !tl.Detected || (len(tl.Candidates) == 0 && tl.Latest-tl.Earliest > 2*g+50*time.Millisecond) {
							t.Fatalf("%+v HZ=%d: window %s … %s (granule %s), candidates %+v", m.Config, hz, tl.Earliest, tl.Latest, g, tl.Candidates)
						}
					}
				}
			}
		}
	}
}

// One small write to a silent peer (HZ=250): tail-loss probe ≈ 0.205 s, first RTO
// retransmission ≈ 0.413 s, then 0.829, 1.661, 3.325 s; UT 3 s → ≈ 3.42 s, UT 11 s → ≈ 11.42 s.
// Several segments: the tail-loss probe after 2·srtt + 2 jiffies, the first RTO ≈ 0.22 s.
func TestInFlightSegments(t *testing.T) {
	ms := time.Millisecond
	one := Model{Config: Config{UserTimeout: 3 * s}, Scenario: ScenarioInFlight, HZ: 250, RTT: 100 * time.Microsecond}
	tl := Predict(one)
	if !within(tl, 3418*ms) {
		t.Fatalf("UT 3s, 1 segment: window %s … %s, want 3.418s inside", tl.Earliest, tl.Latest)
	}
	var rtx []Event
	for _, e := range tl.Events {
		if e.Kind == EventRetransmit {
			rtx = append(rtx, e)
		}
	}
	for i, want := range []time.Duration{205 * ms, 413 * ms, 829 * ms, 1661 * ms, 3325 * ms} {
		if i >= len(rtx) || want < rtx[i].At-ms || want > rtx[i].At+rtx[i].Slack+ms {
			t.Fatalf("retransmission %d: %+v, want %s inside", i, rtx, want)
		}
	}
	one.Config.UserTimeout = 11 * s
	if tl := Predict(one); !within(tl, 11420*ms) {
		t.Fatalf("UT 11s: window %s … %s, want 11.42s inside", tl.Earliest, tl.Latest)
	}
	several := Model{Config: Config{UserTimeout: 3 * s}, Scenario: ScenarioInFlight, HZ: 250, RTT: 100 * time.Microsecond, Segments: 3}
	tl = Predict(several)
	if !within(tl, 3224*ms) || tl.Earliest > Predict(Model{Config: Config{UserTimeout: 3 * s}, Scenario: ScenarioInFlight, HZ: 250, RTT: 100 * time.Microsecond}).Earliest-150*ms {
		t.Fatalf("UT 3s, 3 segments: window %s … %s, want 3.224s inside and ≈ 0.2 s sooner than one segment", tl.Earliest, tl.Latest)
	}
	// The minimum RTO is an input: 50 ms instead of 200 ms moves the first retransmission.
	fast := Predict(Model{Config: Config{UserTimeout: 3 * s}, Scenario: ScenarioInFlight, HZ: 250, RTOMin: 50 * ms})
	if fast.Earliest >= tl.Earliest {
		t.Fatalf("RTOMin 50ms: %s, not sooner than %s", fast.Earliest, tl.Earliest)
	}
}

// Retransmission timeouts are clamped at the maximum RTO in force.
func TestRTOClamp(t *testing.T) {
	tl := Predict(Model{Scenario: ScenarioInFlight, HZ: 1000, RTOMax: 2 * s, Retries2: 8})
	var prev time.Duration
	for _, e := range tl.Events {
		if e.Kind == EventRetransmit || e.Kind == EventKill {
			if prev > 0 && e.At-prev > 2*s+Granule(2*s, 1000)+time.Millisecond {
				t.Fatalf("retransmissions %s apart with RTOMax 2s: %+v", e.At-prev, tl.Events)
			}
			prev = e.At
		}
	}
	if got, want := retransmitTimeout(15, 2*s), 200*time.Millisecond*(2<<3-1)+12*2*s; got != want {
		t.Fatalf("retransmitTimeout(15, 2s) = %s, want %s", got, want)
	}
	for _, m := range []Model{{RTT: 1e9 * s}, {RTT: -s}, {RTOMax: 500 * time.Second}, {RTOMin: time.Microsecond}, {HZ: 5}, {Segments: -1}, {Scenario: "bogus"}} {
		if err := m.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", m)
		} else if !strings.Contains(err.Error(), "allowed") {
			t.Errorf("Validate(%+v) = %v: no allowed range", m, err)
		}
		if tl := Predict(m); tl.Detected || tl.Invalid == "" {
			t.Errorf("Predict(%+v) predicted from an invalid model", m)
		}
	}
}

// A live flow is refreshed every max(idle, interval): idle 60 s, interval 600 s behind a
// 350 s NAT that resets → the mapping expires and the second probe (≈ 660 s) gets the RST.
func TestRefreshPeriod(t *testing.T) {
	tl := Predict(Model{Config: Config{Idle: 60 * s, Interval: 600 * s, Count: 3}, Scenario: ScenarioNAT, MiddleboxTimeout: 350 * s, MiddleboxRST: true, HZ: 250})
	if !tl.Detected || tl.Error != "ECONNRESET" || tl.Earliest < 660*s || tl.Latest > 660*s+2*Granule(600*s, 250) || tl.Detection != 660*s+time.Millisecond {
		t.Fatalf("60s/600s behind 350s: %+v", tl)
	}
	tl = Predict(Model{Config: Config{Idle: 60 * s, Interval: 60 * s, Count: 3}, Scenario: ScenarioNAT, MiddleboxTimeout: 350 * s, HZ: 250})
	if tl.Detected {
		t.Fatalf("60s/60s behind 350s: detected %+v", tl)
	}
	if ws := (Config{Idle: 60 * s, Interval: 600 * s, Count: 3}).CheckMiddlebox(350 * s); len(ws) != 1 || ws[0].Field != "interval" {
		t.Fatalf("CheckMiddlebox(60s/600s, 350s) = %v", ws)
	}
}

// Zero values mean one thing: defaults filled, keepalive on, unknown scenarios rejected.
func TestZeroValues(t *testing.T) {
	if ws := (Config{}).CheckMiddlebox(350 * s); len(ws) == 0 {
		t.Fatal("Config{}.CheckMiddlebox(350s): no warning, but the 7200 s default idle is far beyond")
	}
	if tl := Predict(Model{}); !tl.Detected || tl.Detection != 7875*s {
		t.Fatalf("Predict(Model{}) = detected %v at %s, want the defaults' 2 h 11 min 15 s", tl.Detected, tl.Detection)
	}
	if tl := Predict(Model{}); tl.HZ != DefaultHZ || !strings.Contains(strings.Join(tl.Notes, " "), "HZ unknown") {
		t.Fatalf("Predict(Model{}) HZ %d notes %v: should assume %d and say so", tl.HZ, tl.Notes, DefaultHZ)
	}
	if _, ok := DetectionTime(Config{}, Scenario("bogus")); ok {
		t.Fatal(`DetectionTime(Scenario("bogus")) returned a time`)
	}
	if err := (Model{Scenario: "bogus"}).Validate(); !errors.Is(err, ErrUnknownScenario) {
		t.Fatalf("Validate(bogus) = %v", err)
	}
}

func TestRetransmitTimeout(t *testing.T) {
	if got, want := RetransmitTimeout(15), 924600*time.Millisecond; got != want {
		t.Fatalf("RetransmitTimeout(15) = %s, want %s", got, want)
	}
	if got, want := RetransmitTimeout(3), 3*s; got != want { // 0.2+0.4+0.8+1.6
		t.Fatalf("RetransmitTimeout(3) = %s, want %s", got, want)
	}
}

func TestDetectionTimeDefaults(t *testing.T) {
	tl := Predict(Model{Config: Config{}})
	if HumanDuration(tl.Detection) != "2 h 11 min 15 s" || tl.Earliest < tl.Detection-10*time.Millisecond {
		t.Fatalf("default detection = %s earliest %s, want 2 h 11 min 15 s", tl.Detection, tl.Earliest)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		os      string
		cfg     Config
		field   string // "" = valid
		warn    string
		unsup   bool
		message string
	}{
		{"linux", Config{Idle: s, Interval: s, Count: 1}, "", "count", false, ""},
		{"linux", Config{Idle: 32767 * s, Interval: 32767 * s, Count: 127, UserTimeout: time.Millisecond}, "", "count", false, ""},
		{"linux", Config{Idle: 32768 * s}, "idle", "", false, "idle 9h6m8s: out of range (allowed on linux: 1s..32767s in whole seconds)"},
		{"linux", Config{Idle: 500 * time.Millisecond}, "idle", "", false, ""},
		{"linux", Config{Interval: 1500 * time.Millisecond}, "interval", "", false, "not a multiple of 1s"},
		{"linux", Config{Interval: -s}, "interval", "", false, ""},
		{"linux", Config{Count: 128}, "count", "", false, "count 128: out of range (allowed on linux: 1..127 probes)"},
		{"linux", Config{Count: -1}, "count", "", false, ""},
		{"linux", Config{UserTimeout: 500 * time.Microsecond}, "user-timeout", "", false, ""},
		{"freebsd", Config{UserTimeout: s}, "user-timeout", "", true, ""},
		{"darwin", Config{UserTimeout: 1500 * time.Millisecond}, "user-timeout", "", false, ""},
		{"windows", Config{Count: 200}, "", "", false, ""},
		{"windows", Config{Idle: 30 * s, Interval: 5 * s}, "", "count", false, ""},
		{"openbsd", Config{Idle: s}, "idle", "", true, ""},
		{"openbsd", Config{}, "", "", false, ""},
	} {
		ws, err := tc.cfg.Validate(tc.os)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s %+v: unexpected error %v", tc.os, tc.cfg, err)
			}
		} else {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("%s %+v: error %v, want a FieldError on %s", tc.os, tc.cfg, err, tc.field)
				continue
			}
			if tc.unsup != errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("%s %+v: errors.Is(ErrUnsupported) = %v", tc.os, tc.cfg, !tc.unsup)
			}
			if !tc.unsup && !strings.Contains(err.Error(), "allowed on "+tc.os) {
				t.Errorf("%s %+v: error %q does not name the allowed range", tc.os, tc.cfg, err)
			}
			if tc.message != "" && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("%s %+v: error %q does not contain %q", tc.os, tc.cfg, err, tc.message)
			}
		}
		if tc.warn != "" && (len(ws) == 0 || ws[0].Field != tc.warn) {
			t.Errorf("%s %+v: warnings %v, want one on %s", tc.os, tc.cfg, ws, tc.warn)
		}
	}
}

func TestCheckMiddlebox(t *testing.T) {
	if ws := (Config{Idle: 7200 * s, Interval: 75 * s}).CheckMiddlebox(350 * s); len(ws) != 1 || !strings.Contains(ws[0].Message, "5m50s") {
		t.Fatalf("CheckMiddlebox = %v", ws)
	}
	if ws := (Config{Idle: 300 * s}).CheckMiddlebox(350 * s); len(ws) != 0 {
		t.Fatalf("CheckMiddlebox = %v, want none", ws)
	}
}

// TestRecommendProperties checks every preset and a grid of targets: the flow stays mapped,
// death is detected within the target, the OS limits hold.
func TestRecommendProperties(t *testing.T) {
	var reqs []Requirement
	for _, env := range Environments() {
		if !env.KeepaliveRefreshes() {
			continue
		}
		for _, d := range []time.Duration{0, 30 * s, 2 * time.Minute, 15 * time.Minute} {
			reqs = append(reqs, Requirement{MiddleboxTimeout: env.IdleTimeout, DetectWithin: d})
		}
	}
	for _, d := range []time.Duration{3 * s, 4 * s, 10 * s, 59 * s, time.Hour} {
		reqs = append(reqs, Requirement{DetectWithin: d})
	}
	for _, goos := range []string{"linux", "darwin", "windows", "freebsd"} {
		for _, req := range reqs {
			req.OS = goos
			r, err := Recommend(req)
			if err != nil {
				t.Fatalf("Recommend(%+v): %v", req, err)
			}
			c := r.Config
			if _, err := c.Validate(goos); err != nil {
				t.Fatalf("Recommend(%+v) = %+v invalid: %v", req, c, err)
			}
			if c.Count < 2 {
				t.Fatalf("Recommend(%+v): count %d < 2", req, c.Count)
			}
			if mb := req.MiddleboxTimeout; mb > 0 {
				if p := max(c.Idle, c.Interval); p+TimerSlack(p) >= mb {
					t.Fatalf("Recommend(%+v) = %+v: probes do not refresh a mapping that expires after %s", req, c, mb)
				}
				tl := Predict(Model{Config: c, Scenario: ScenarioNAT, MiddleboxTimeout: mb})
				if tl.Detected {
					t.Fatalf("Recommend(%+v) = %+v: NAT still expires: %+v", req, c, tl.Events)
				}
			}
			det, ok := DetectionTime(c, ScenarioSilent)
			if !ok || det != r.Detection {
				t.Fatalf("Recommend(%+v): Detection %s but model says %s", req, r.Detection, det)
			}
			if req.DetectWithin == 0 && det > DefaultDetectWithin {
				t.Fatalf("Recommend(%+v) = %+v: detection %s beyond the default target %s", req, c, det, DefaultDetectWithin)
			}
			if req.DetectWithin > 0 && det > req.DetectWithin && len(r.Warnings) == 0 {
				t.Fatalf("Recommend(%+v) = %+v: detection %s beyond target without a warning", req, c, det)
			}
			if goos == "linux" {
				if c.UserTimeout != det {
					t.Fatalf("Recommend(%+v): user timeout %s, want %s", req, c.UserTimeout, det)
				}
				if d, _ := DetectionTime(c, ScenarioInFlight); d < det || d > det+2*time.Second+TimerSlack(det) {
					t.Fatalf("Recommend(%+v): in-flight detection %s, want %s", req, d, det)
				}
			}
			if len(r.Reasons) == 0 {
				t.Fatalf("Recommend(%+v): no reasons", req)
			}
		}
	}
}

func TestRecommendErrors(t *testing.T) {
	for _, req := range []Requirement{{}, {DetectWithin: 2 * s}, {MiddleboxTimeout: s}, {DetectWithin: -s}, {DetectWithin: time.Minute, OS: "plan9"}} {
		if _, err := Recommend(req); err == nil {
			t.Errorf("Recommend(%+v) succeeded, want an error", req)
		}
	}
}

func TestEnvironments(t *testing.T) {
	want := map[string]time.Duration{"linux-conntrack": 432000 * s, "aws-nat-gateway": 350 * s, "azure-lb": 4 * time.Minute,
		"aws-elb": 60 * s, "aws-nlb": 350 * s, "gcp-lb": 600 * s, "rfc5382": 7440 * s, "mobile-carrier-nat": 30 * s,
		"consumer-router": 0, "carrier-grade-nat": 0, "corporate-firewall": 0}
	for name, d := range want {
		e, err := LookupEnvironment(name)
		if err != nil {
			t.Fatal(err)
		}
		if d != 0 && e.IdleTimeout != d {
			t.Errorf("%s = %s, want %s", name, e.IdleTimeout, d)
		}
		if e.Source == "" || e.RefreshSource == "" || (e.OnExpiry != "drop" && e.OnExpiry != "rst" && e.OnExpiry != "fin") ||
			(e.Refresh != RefreshAnySegment && e.Refresh != RefreshDataOnly) {
			t.Errorf("%s: source %q on-expiry %q", name, e.Source, e.OnExpiry)
		}
	}
	if _, err := LookupEnvironment("nope"); err == nil || !strings.Contains(err.Error(), "aws-nat-gateway") {
		t.Fatalf("unknown env error %v should list the names", err)
	}
}

func TestNetConfigRoundTrip(t *testing.T) {
	c := Config{Idle: 30 * s, Interval: 5 * s, Count: 4}
	back, ok := FromNetConfig(c.NetConfig())
	if !ok || back != c {
		t.Fatalf("round trip = %+v %v", back, ok)
	}
	k := Config{}.NetConfig()
	if k.Idle != -1 || k.Interval != -1 || k.Count != -1 || !k.Enable {
		t.Fatalf("zero Config → %+v", k)
	}
}

func TestConfigJSON(t *testing.T) {
	c := Config{Idle: 30 * s, Interval: 5 * s, Count: 4, UserTimeout: 1500 * time.Millisecond}
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := back.UnmarshalJSON(b); err != nil || back != c {
		t.Fatalf("JSON round trip %s → %+v, %v", b, back, err)
	}
}

// FuzzPredict: any model gives ordered events and never hangs or panics.
func FuzzPredict(f *testing.F) {
	f.Add(int64(2), int64(1), 3, int64(0), 0, int64(0), false)
	f.Add(int64(400), int64(10), 3, int64(0), 2, int64(350), true)
	f.Add(int64(-1), int64(-1), -1, int64(-5), 3, int64(-1), false)
	f.Add(int64(1), int64(1), 127, int64(1), 1, int64(1), true)
	f.Fuzz(func(t *testing.T, idle, intvl int64, cnt int, ut int64, sc int, mb int64, rst bool) {
		scs := Scenarios()
		m := Model{Config: Config{Idle: time.Duration(idle) * time.Second, Interval: time.Duration(intvl) * time.Second, Count: cnt % 1000, UserTimeout: time.Duration(ut) * time.Millisecond},
			Enabled: true, Scenario: scs[((sc%len(scs))+len(scs))%len(scs)], MiddleboxTimeout: time.Duration(mb) * time.Second, MiddleboxRST: rst}
		tl := Predict(m)
		for i := 1; i < len(tl.Events); i++ {
			if tl.Events[i].At < tl.Events[i-1].At {
				t.Fatalf("events out of order: %+v", tl.Events)
			}
		}
		if tl.Detected && tl.Error == "" {
			t.Fatalf("detected without an error: %+v", tl)
		}
	})
}

// Presets keep their ranges, plan for the low end, say what refreshes them, and a data-only
// middlebox gets the heartbeat advice instead of keepalive settings.
func TestPresetsRefreshAndRanges(t *testing.T) {
	for name, lo := range map[string]time.Duration{"consumer-router": time.Minute, "carrier-grade-nat": 2 * time.Minute,
		"corporate-firewall": time.Minute, "mobile-carrier-nat": 30 * s, "unknown-nat": 30 * s} {
		e, err := LookupEnvironment(name)
		if err != nil {
			t.Fatal(err)
		}
		if e.IdleTimeout != lo || e.MaxIdleTimeout <= e.IdleTimeout || !strings.Contains(e.Range(), "–") {
			t.Errorf("%s: %s … %s (%s), want a range from %s", name, e.IdleTimeout, e.MaxIdleTimeout, e.Range(), lo)
		}
		r, err := Recommend(e.Requirement())
		if err != nil {
			t.Fatal(err)
		}
		if p := max(r.Config.Idle, r.Config.Interval); p+TimerSlack(p) >= lo {
			t.Errorf("%s: %s does not keep a %s middlebox (the range's low end)", name, r.Config, lo)
		}
	}
	for _, name := range []string{"aws-alb", "aws-elb"} {
		e, _ := LookupEnvironment(name)
		if e.KeepaliveRefreshes() || e.OnExpiry != "fin" || e.RefreshSource == "" {
			t.Errorf("%s: refresh %q on expiry %q: want data-only, closed with FIN", name, e.Refresh, e.OnExpiry)
		}
		_, err := Recommend(e.Requirement())
		if !errors.Is(err, ErrDataOnly) || !strings.Contains(err.Error(), HeartbeatAdvice) {
			t.Errorf("%s: Recommend error %v, want the heartbeat advice", name, err)
		}
	}
	for _, name := range []string{"aws-nlb", "aws-nat-gateway"} {
		if e, _ := LookupEnvironment(name); !e.KeepaliveRefreshes() {
			t.Errorf("%s counts keepalive probes (AWS docs)", name)
		}
	}
	// No advice slower than the default target, however long the middlebox keeps the flow.
	e, _ := LookupEnvironment("linux-conntrack")
	r, err := Recommend(e.Requirement())
	if err != nil || r.Detection > DefaultDetectWithin || r.Detection >= 7875*s {
		t.Fatalf("linux-conntrack: %+v %v: detection beyond %s", r.Config, err, DefaultDetectWithin)
	}
	if e.Direction == "" || e.AfterFIN == 0 {
		t.Errorf("linux-conntrack: documented per-direction and after-FIN timeouts missing")
	}
}
