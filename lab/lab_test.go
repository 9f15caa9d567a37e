package lab

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
)

func TestParseScenario(t *testing.T) {
	for in, want := range map[string][2]string{
		"crash": {"crash", ""}, "path": {"path", ""}, "reboot": {"reboot", ""}, "nat": {"nat", ""},
		"nat-drop": {"nat", "drop"}, "NAT-RST": {"nat", "rst"}, "hung": {"hung", ""},
		"in-flight": {"in-flight", ""}, "inflight": {"in-flight", ""},
	} {
		sc, v, err := ParseScenario(in)
		if err != nil || string(sc) != want[0] || v != want[1] {
			t.Errorf("ParseScenario(%q) = %q %q %v, want %v", in, sc, v, err, want)
		}
	}
	if _, _, err := ParseScenario("meteor"); err == nil || !strings.Contains(err.Error(), "allowed") {
		t.Errorf("ParseScenario(meteor) error %v, want one naming the allowed values", err)
	}
}

func TestNormalizeRejects(t *testing.T) {
	for name, o := range map[string]Options{
		"scenario":    {Scenario: "meteor"},
		"mode":        {Mode: "telepathy"},
		"idle":        {Config: keepalive.Config{Idle: 1500 * time.Millisecond}},
		"count":       {Config: keepalive.Config{Count: 200}},
		"nat-expiry":  {Scenario: NAT, NATOnExpiry: "explode"},
		"nat-timeout": {Scenario: NAT, NATTimeout: 500 * time.Millisecond},
		"max":         {Max: 10 * time.Millisecond},
		"max-big":     {Max: 2 * MaxBound},
		"retries2":    {Retries2: 300},
		"runid":       {RunID: "Has Spaces"},
		"fault":       {FaultAfter: -time.Second},
	} {
		if _, err := o.normalize(); err == nil {
			t.Errorf("%s: %+v accepted", name, o)
		} else if !strings.Contains(err.Error(), "allowed") {
			t.Errorf("%s: error %q does not name the allowed range", name, err)
		}
	}
	o, err := Options{}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if o.Scenario != Crash || o.Mode != "kernel" || o.Config.Idle != DefaultIdle || o.FaultAfter != DefaultFaultAfter {
		t.Errorf("defaults: %+v", o)
	}
	o, _ = Options{Config: keepalive.Config{Idle: time.Second}}.normalize()
	if o.FaultAfter != 500*time.Millisecond {
		t.Errorf("fault after %s with idle 1s, want 500ms", o.FaultAfter)
	}
}

func TestDetectors(t *testing.T) {
	names := ModeNames()
	if len(names) < 3 || names[0] != "none" || names[1] != "kernel" || names[2] != "user-timeout" {
		t.Fatalf("ModeNames() = %v, want none, kernel, user-timeout first", names)
	}
	for _, n := range names {
		d, err := LookupDetector(n)
		if err != nil || d.Name() != n || d.Describe() == "" {
			t.Errorf("LookupDetector(%q) = %v, %v", n, d, err)
		}
	}
	if _, err := LookupDetector("nope"); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestPredictions(t *testing.T) {
	cfg := keepalive.Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3}
	cases := []struct {
		o        Options
		detected bool
		at       time.Duration
		errno    string
	}{
		// HZ=250: probes at 2.000–2.032, 3.024–3.056, 4.048–4.080 s; death 5.072–5.104 s.
		{Options{Scenario: Crash, Mode: "kernel"}, true, 5072 * time.Millisecond, "ETIMEDOUT"},
		{Options{Scenario: Crash, Mode: "none"}, false, 0, ""},
		{Options{Scenario: Crash, Mode: "user-timeout"}, true, 3024 * time.Millisecond, "ETIMEDOUT"},
		{Options{Scenario: Reboot, Mode: "kernel"}, true, 2*time.Second + 100*time.Microsecond, "ECONNRESET"},
		{Options{Scenario: NAT, NATOnExpiry: "rst", Mode: "kernel"}, true, 2*time.Second + 100*time.Microsecond, "ECONNRESET"},
		{Options{Scenario: Hung, Mode: "kernel"}, false, 0, ""},
		{Options{Scenario: Hung, Mode: "none"}, false, 0, ""},
		// One small write: the clock starts at the first RTO retransmission (≈ 0.41 s).
		{Options{Scenario: InFlight, Mode: "user-timeout"}, true, 3416 * time.Millisecond, "ETIMEDOUT"},
		// Several segments: the tail-loss probe comes after 2·srtt + 2 jiffies.
		{Options{Scenario: InFlight, Mode: "user-timeout", Segments: 3}, true, 3224 * time.Millisecond, "ETIMEDOUT"},
	}
	for _, c := range cases {
		c.o.Config = cfg
		c.o.HZ = 250
		p, err := Predict(c.o)
		if err != nil {
			t.Fatal(err)
		}
		if p.Detected != c.detected || p.Earliest != c.at || p.Error != c.errno {
			t.Errorf("%s/%s: detected %v from %s %s, want %v from %s %s", c.o.Scenario, c.o.Mode, p.Detected, p.Earliest, p.Error, c.detected, c.at, c.errno)
		}
	}
}

func TestAutoMax(t *testing.T) {
	o, _ := Options{Scenario: InFlight, Mode: "kernel"}.normalize()
	p := o.Detector.Predict(predictInput(o))
	if m := autoMax(o, p); m != 8*time.Second {
		t.Errorf("in-flight kernel (predicted %s): bound %s, want the nominal 8s", p.Detection, m)
	}
	o, _ = Options{Scenario: Crash, Mode: "kernel"}.normalize()
	p = o.Detector.Predict(predictInput(o))
	if m := autoMax(o, p); m != 7*time.Second {
		t.Errorf("crash kernel: bound %s, want 7s", m)
	}
}

func TestParseNetstat(t *testing.T) {
	b := []byte("TcpExt: SyncookiesSent TCPKeepAlive Other\nTcpExt: 1 42 7\nIpExt: A\nIpExt: 1\n")
	if v, err := parseNetstat(b, "TcpExt:", "TCPKeepAlive"); err != nil || v != 42 {
		t.Errorf("got %d %v", v, err)
	}
	if _, err := parseNetstat(b, "TcpExt:", "Missing"); err == nil {
		t.Error("missing field accepted")
	}
	if _, err := parseNetstat(b, "Udp:", "X"); err == nil {
		t.Error("missing section accepted")
	}
}

func sampleResult() Result {
	o, _ := Options{Scenario: Crash, Mode: "kernel", HZ: 250}.normalize()
	p := o.Detector.Predict(predictInput(o))
	r := Result{RunID: "x", Scenario: Crash, Mode: "kernel", Config: o.Config, Max: 7 * time.Second, Predicted: p,
		Detected: true, DetectedBy: "application", Error: "ETIMEDOUT", SinceLastActivity: 5100 * time.Millisecond,
		SinceFault: 4600 * time.Millisecond, FaultAt: 500 * time.Millisecond, Probes: 3,
		Measured: []keepalive.Event{{At: 0, Kind: keepalive.EventLastActivity}, {At: 500 * time.Millisecond, Kind: keepalive.EventFault},
			{At: 2030 * time.Millisecond, Kind: keepalive.EventProbe}, {At: 5100 * time.Millisecond, Kind: keepalive.EventError}}}
	judge(&r)
	return r
}

func TestJudge(t *testing.T) {
	r := sampleResult()
	if !r.Agree || r.Diff != 28*time.Millisecond || r.Distance != 0 || !strings.Contains(r.Verdict, "agrees") {
		t.Errorf("agree %v diff %s verdict %q", r.Agree, r.Diff, r.Verdict)
	}
	r.SinceLastActivity = 7 * time.Second
	judge(&r)
	if r.Agree || !strings.Contains(r.Verdict, "DISAGREES") || r.Distance != 7*time.Second-5104*time.Millisecond {
		t.Errorf("2 s late judged as agreeing: %q (distance %s)", r.Verdict, r.Distance)
	}
	r.SinceLastActivity = 5300 * time.Millisecond // 196 ms after the window: beyond WindowHigh
	judge(&r)
	if r.Agree {
		t.Errorf("196 ms after the window judged as agreeing: %q", r.Verdict)
	}
	r.SinceLastActivity, r.Error = 5080*time.Millisecond, "ECONNRESET"
	judge(&r)
	if r.Agree {
		t.Errorf("wrong errno judged as agreeing")
	}
	r.Detected = false
	judge(&r)
	if r.Agree || !strings.Contains(r.Verdict, "not detected") {
		t.Errorf("missed detection judged as agreeing: %q", r.Verdict)
	}
}

func TestRender(t *testing.T) {
	r := sampleResult()
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"from last activity", "5.100s", "5.072s", "+0.028s", "probe 1", "verdict:"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := WriteSVG(&b, r); err != nil || !strings.HasPrefix(b.String(), "<svg") || !strings.HasSuffix(b.String(), "</svg>\n") {
		t.Errorf("SVG: %v\n%s", err, b.String())
	}
	bad := r
	bad.SinceLastActivity = 9 * time.Second
	judge(&bad)
	b.Reset()
	if err := WriteMatrix(&b, []MatrixResult{{Cell: Cell{Scenario: Crash, Mode: "kernel"}, Result: r}, {Cell: Cell{Scenario: NAT, Variant: "rst", Mode: "kernel"}, Result: bad}, {Cell: Cell{Scenario: Hung, Mode: "none"}, Err: "boom"}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nat-rst", "DISAGREE", "LAB ERROR: boom", "1 of 3 runs agree"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("matrix lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCells(t *testing.T) {
	cells, err := MatrixOptions{Modes: []string{"none", "kernel"}}.Cells()
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 7*2 {
		t.Errorf("%d cells, want 14 (nat as drop and rst)", len(cells))
	}
	if _, err := (MatrixOptions{Scenarios: []string{"meteor"}}).Cells(); err == nil {
		t.Error("bad scenario accepted")
	}
	if _, err := (MatrixOptions{Modes: []string{"x"}}).Cells(); err == nil {
		t.Error("bad mode accepted")
	}
}

// testDetector is a mode defined outside the registry, used through Options.Detector.
type testDetector struct{ kernelDetector }

func (testDetector) Name() string { return "test-report" }
func (testDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	done := make(chan struct{})
	go func() {
		select {
		case <-time.After(300 * time.Millisecond):
			s.Report("", "test detector gives up on the peer")
		case <-done:
		}
	}()
	return func() { close(done) }, nil
}

func FuzzParseScenario(f *testing.F) {
	for _, s := range []string{"crash", "nat-rst", "NAT-DROP", " in-flight ", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, v, err := ParseScenario(s)
		if err != nil {
			return
		}
		if _, err := (Options{Scenario: sc, NATOnExpiry: v}).normalize(); err != nil {
			t.Errorf("ParseScenario(%q) = %q %q, which normalize rejects: %v", s, sc, v, err)
		}
	})
}

func FuzzParseNetstat(f *testing.F) {
	f.Add([]byte("TcpExt: A TCPKeepAlive\nTcpExt: 1 2\n"), "TCPKeepAlive")
	f.Add([]byte("TcpExt: TCPKeepAlive\nTcpExt:\n"), "TCPKeepAlive")
	f.Add([]byte("TcpExt: TCPKeepAlive\nTcpExt: -9\n"), "TCPKeepAlive")
	f.Fuzz(func(t *testing.T, b []byte, field string) {
		_, _ = parseNetstat(b, "TcpExt:", field) // must not panic
	})
}

func TestAgreement(t *testing.T) {
	rs := []MatrixResult{{Result: Result{Agree: true}}, {Result: Result{Agree: false}}, {Err: "veth failed"}, {Result: Result{Agree: true}}}
	if agree, failed := Agreement(rs); agree != 2 || failed != 1 {
		t.Fatalf("Agreement = %d, %d; want 2 agree, 1 failed", agree, failed)
	}
}
