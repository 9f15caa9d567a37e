package keepalive

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const s = time.Second

func TestPredictKernelFacts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		m         Model
		detected  bool
		detection time.Duration
		errno     string
		probes    int
	}{
		// KERNEL_NOTES: idle 2, intvl 1, cnt 3 → probes at 2, 3, 4 s, ETIMEDOUT at 5 s.
		{"silent 2/1/3", Model{Config: Config{Idle: 2 * s, Interval: s, Count: 3}, Enabled: true}, true, 5 * s, "ETIMEDOUT", 3},
		// Linux defaults: 7200 + 9 × 75 = 7875 s = 2 h 11 min 15 s.
		{"silent defaults", Model{Enabled: true}, true, 7875 * s, "ETIMEDOUT", 9},
		{"keepalive off", Model{Config: Config{Idle: 2 * s}, Enabled: false}, false, 0, "", 0},
		// Reboot: the first probe gets an RST one RTT later.
		{"reboot", Model{Config: Config{Idle: 2 * s, Interval: s, Count: 3}, Enabled: true, Scenario: ScenarioReboot, RTT: 10 * time.Millisecond}, true, 2*s + 10*time.Millisecond, "ECONNRESET", 1},
		// User timeout: count ignored; first firing with idle ≥ UT and ≥ 1 probe out.
		{"ut below idle", Model{Config: Config{Idle: 5 * s, Interval: 2 * s, Count: 9, UserTimeout: 3 * s}, Enabled: true}, true, 7 * s, "ETIMEDOUT", 1},
		{"ut between probes", Model{Config: Config{Idle: 2 * s, Interval: 2 * s, Count: 9, UserTimeout: 5 * s}, Enabled: true}, true, 6 * s, "ETIMEDOUT", 2},
		{"ut exact", Model{Config: Config{Idle: 2 * s, Interval: s, Count: 3, UserTimeout: 5 * s}, Enabled: true}, true, 5 * s, "ETIMEDOUT", 3},
		{"ut above count", Model{Config: Config{Idle: 2 * s, Interval: s, Count: 2, UserTimeout: 6 * s}, Enabled: true}, true, 6 * s, "ETIMEDOUT", 4},
		// NAT: idle beyond the middlebox timeout → the probe is dropped, silent detection.
		{"nat expired drop", Model{Config: Config{Idle: 400 * s, Interval: 10 * s, Count: 3}, Enabled: true, Scenario: ScenarioNAT, MiddleboxTimeout: 350 * s}, true, 430 * s, "ETIMEDOUT", 3},
		{"nat expired rst", Model{Config: Config{Idle: 400 * s, Interval: 10 * s, Count: 3}, Enabled: true, Scenario: ScenarioNAT, MiddleboxTimeout: 350 * s, MiddleboxRST: true, RTT: time.Millisecond}, true, 400*s + time.Millisecond, "ECONNRESET", 1},
		{"nat kept mapped", Model{Config: Config{Idle: 300 * s, Interval: 10 * s, Count: 3}, Enabled: true, Scenario: ScenarioNAT, MiddleboxTimeout: 350 * s}, false, 0, "", 1},
		// In flight: keepalive irrelevant; tcp_retries2 = 15 → ≥ 924.6 s.
		{"in-flight retries2", Model{Config: Config{Idle: s, Interval: s, Count: 1}, Enabled: true, Scenario: ScenarioInFlight, RTT: time.Millisecond}, true, 0, "ETIMEDOUT", 0},
		// Lab-measured: the clock starts at the first RTO retransmission (≈ 0.22 s).
		{"in-flight user timeout", Model{Config: Config{Idle: s, Interval: s, Count: 1, UserTimeout: 3 * s}, Enabled: true, Scenario: ScenarioInFlight}, true, 3*s + 225*time.Millisecond, "ETIMEDOUT", 0},
		// Lab-measured: tcp_retries2 = 3 gives up at ≈ 6.5 s (retransmissions at 0.22, 0.66, 1.48, 3.14 s).
		{"in-flight retries2=3", Model{Config: Config{Idle: s}, Enabled: true, Scenario: ScenarioInFlight, Retries2: 3}, true, 6351 * time.Millisecond, "ETIMEDOUT", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := Predict(tc.m)
			if tl.Detected != tc.detected || tl.Error != tc.errno || tl.Probes != tc.probes {
				t.Fatalf("Predict = detected %v err %q probes %d; want %v %q %d\n%+v", tl.Detected, tl.Error, tl.Probes, tc.detected, tc.errno, tc.probes, tl.Events)
			}
			if tc.name == "in-flight retries2" {
				// The nominal bound plus the expected lateness of sixteen timer firings.
				if tl.Detection < RetransmitTimeout(15) || tl.Detection > RetransmitTimeout(15)+30*s {
					t.Fatalf("in-flight detection %s, want ≈ %s", tl.Detection, RetransmitTimeout(15))
				}
			} else if tl.Detection != tc.detection {
				t.Fatalf("Detection = %s, want %s\n%+v", tl.Detection, tc.detection, tl.Events)
			}
			for i := 1; i < len(tl.Events); i++ {
				if tl.Events[i].At < tl.Events[i-1].At {
					t.Fatalf("events out of order: %+v", tl.Events)
				}
			}
			if tl.Detected && tl.Latest < tl.Detection {
				t.Fatalf("Latest %s < Detection %s", tl.Latest, tl.Detection)
			}
		})
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

func TestTimerSlack(t *testing.T) {
	for _, tc := range []struct{ d, want time.Duration }{
		{10 * time.Millisecond, time.Millisecond},
		{time.Second, 64 * time.Millisecond},
		{10 * s, 512 * time.Millisecond},
		{7200 * s, 262144 * time.Millisecond}, // KERNEL_NOTES: a 7200 s timer may fire ~262 s late
	} {
		if got := TimerSlack(tc.d); got != tc.want {
			t.Errorf("TimerSlack(%s) = %s, want %s", tc.d, got, tc.want)
		}
	}
}

func TestDetectionTimeDefaults(t *testing.T) {
	d, ok := DetectionTime(Config{}, ScenarioSilent)
	if !ok || HumanDuration(d) != "2 h 11 min 15 s" {
		t.Fatalf("default detection = %s (%v), want 2 h 11 min 15 s", HumanDuration(d), ok)
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
	if ws := (Config{Idle: 7200 * s}).CheckMiddlebox(350 * s); len(ws) != 1 || !strings.Contains(ws[0].Message, "5m50s") {
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
				if c.Idle+TimerSlack(c.Idle) >= mb || c.Interval >= mb {
					t.Fatalf("Recommend(%+v) = %+v: probes do not refresh a mapping that expires after %s", req, c, mb)
				}
				tl := Predict(Model{Config: c, Enabled: true, Scenario: ScenarioNAT, MiddleboxTimeout: mb})
				if tl.Detected {
					t.Fatalf("Recommend(%+v) = %+v: NAT still expires: %+v", req, c, tl.Events)
				}
			}
			det, ok := DetectionTime(c, ScenarioSilent)
			if !ok || det != r.Detection {
				t.Fatalf("Recommend(%+v): Detection %s but model says %s", req, r.Detection, det)
			}
			if req.DetectWithin > 0 && det > req.DetectWithin && len(r.Warnings) == 0 {
				t.Fatalf("Recommend(%+v) = %+v: detection %s beyond target without a warning", req, c, det)
			}
			if goos == "linux" {
				if c.UserTimeout != det {
					t.Fatalf("Recommend(%+v): user timeout %s, want %s", req, c.UserTimeout, det)
				}
				if d, _ := DetectionTime(c, ScenarioInFlight); d < det || d > det+time.Second+TimerSlack(det) {
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
		if e.Source == "" || (e.OnExpiry != "drop" && e.OnExpiry != "rst") {
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
