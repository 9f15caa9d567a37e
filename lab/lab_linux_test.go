//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

func TestMain(m *testing.M) {
	RunHelperIfRequested(testOnlyHeartbeat{})
	code := m.Run()
	// Zero leftovers: nothing this test process created may survive it.
	if left, err := Leftovers(); err == nil {
		for _, l := range left {
			if l.PID == os.Getpid() || l.Kind != "netns" {
				fmt.Fprintf(os.Stderr, "lab tests left behind: %s\n", l)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// requireRoot skips (or fails under CI=true) when the lab cannot run here.
func requireRoot(t *testing.T) {
	t.Helper()
	err := preflight()
	nstest.Need(t, err == nil, fmt.Sprintf("lab prerequisites: %v", err))
}

// fast is the keepalive setting of the integration tests: death after 3 s.
var fastCfg = keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2}

// runLab runs o under a unique run ID and checks that nothing of it is left afterwards.
func runLab(t *testing.T, o Options) Result {
	t.Helper()
	o.RunID = "t" + randomID()
	t.Cleanup(func() { assertNoLeftovers(t, o.RunID) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run(%s/%s): %v", o.Scenario, o.Mode, err)
	}
	t.Logf("%s/%s%s: %s", o.Scenario, r.Mode, map[bool]string{true: " ipv6"}[o.IPv6], r.Verdict)
	return r
}

func assertNoLeftovers(t *testing.T, runID string) {
	t.Helper()
	left, err := Leftovers()
	if err != nil {
		t.Errorf("Leftovers: %v", err)
		return
	}
	for _, l := range left {
		if strings.Contains(l.Name, "-"+runID+"-") || l.Kind != "netns" {
			t.Errorf("left behind: %s", l)
		}
	}
}

func assertDetected(t *testing.T, r Result, errnos ...string) {
	t.Helper()
	if !r.Detected {
		t.Fatalf("not detected within %s; predicted %s", r.Max, r.Predicted.Detection)
	}
	if !slices.Contains(errnos, r.Error) {
		t.Errorf("error %s (%s), want one of %v", r.Error, r.ErrorText, errnos)
	}
	if !r.Predicted.Detected {
		t.Fatalf("model predicts no detection")
	}
	d := r.SinceLastActivity - r.Predicted.Detection
	if d < BandLow || d > BandHigh {
		t.Errorf("detected after %s, predicted %s: difference %s outside %s…%s", r.SinceLastActivity, r.Predicted.Detection, d, BandLow, BandHigh)
	}
}

func TestScenariosKernel(t *testing.T) {
	requireRoot(t)
	cases := []struct {
		name    string
		o       Options
		errnos  []string // nil: must not be detected
		minProb int
	}{
		{"crash", Options{Scenario: Crash}, []string{"ETIMEDOUT"}, 2},
		{"path", Options{Scenario: Path}, []string{"ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"}, 2},
		{"reboot", Options{Scenario: Reboot}, []string{"ECONNRESET"}, 1},
		{"nat-drop", Options{Scenario: NAT, NATOnExpiry: "drop"}, []string{"ETIMEDOUT"}, 2},
		{"nat-rst", Options{Scenario: NAT, NATOnExpiry: "rst"}, []string{"ECONNRESET"}, 1},
		{"hung", Options{Scenario: Hung, Max: 5 * time.Second}, nil, 2},
		{"in-flight", Options{Scenario: InFlight, Max: 5 * time.Second}, nil, 0},
		{"crash-ipv6", Options{Scenario: Crash, IPv6: true}, []string{"ETIMEDOUT"}, 2},
		{"nat-rst-ipv6", Options{Scenario: NAT, NATOnExpiry: "rst", IPv6: true}, []string{"ECONNRESET"}, 1},
		{"reboot-ipv6", Options{Scenario: Reboot, IPv6: true}, []string{"ECONNRESET"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.o.Mode = "kernel"
			c.o.Config = fastCfg
			r := runLab(t, c.o)
			if c.errnos == nil {
				if r.Detected {
					t.Fatalf("detected (%s after %s) although kernel keepalive cannot see this failure", r.Error, r.SinceLastActivity)
				}
				if c.o.Scenario == InFlight && r.Probes != 0 {
					t.Errorf("%d keepalive probes with data in flight, want 0", r.Probes)
				}
			} else {
				assertDetected(t, r, c.errnos...)
			}
			if r.Probes < c.minProb {
				t.Errorf("%d probes on the wire, want at least %d", r.Probes, c.minProb)
			}
			if !r.Agree && c.name != "path" {
				t.Errorf("disagrees with the model: %s", r.Disagreement)
			}
		})
	}
}

func TestNoneBaseline(t *testing.T) {
	requireRoot(t)
	for _, sc := range []Scenario{Crash, NAT} {
		t.Run(string(sc), func(t *testing.T) {
			t.Parallel()
			r := runLab(t, Options{Scenario: sc, Mode: "none", Config: fastCfg, Max: 4 * time.Second})
			if r.Detected {
				t.Fatalf("baseline detected %s after %s", r.Error, r.SinceLastActivity)
			}
			if r.Probes != 0 {
				t.Errorf("%d keepalive probes with SO_KEEPALIVE off", r.Probes)
			}
			if !r.Agree {
				t.Errorf("disagrees with the model: %s", r.Disagreement)
			}
		})
	}
}

func TestUserTimeout(t *testing.T) {
	requireRoot(t)
	t.Run("in-flight", func(t *testing.T) {
		t.Parallel()
		cfg := fastCfg
		cfg.UserTimeout = 2 * time.Second
		r := runLab(t, Options{Scenario: InFlight, Mode: "user-timeout", Config: cfg})
		assertDetected(t, r, "ETIMEDOUT")
		if r.Probes != 0 {
			t.Errorf("%d keepalive probes with data in flight, want 0", r.Probes)
		}
		if r.Retransmits == 0 {
			t.Errorf("no retransmissions seen")
		}
	})
	t.Run("crash", func(t *testing.T) {
		t.Parallel()
		cfg := keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 9, UserTimeout: 2 * time.Second}
		r := runLab(t, Options{Scenario: Crash, Mode: "user-timeout", Config: cfg})
		assertDetected(t, r, "ETIMEDOUT")
	})
}

// One small write against several segments in flight (issue 9): the tail-loss probe waits
// the minimum RTO only when one segment is out, so a 3 s user timeout fires ≈ 0.19 s later
// with one segment; both inside the model's window.
func TestInFlightSegments(t *testing.T) {
	requireRoot(t)
	cfg := keepalive.Config{Idle: 2 * time.Second, Interval: time.Second, Count: 2, UserTimeout: 3 * time.Second}
	var got [2]Result
	for i, n := range []int{1, 4} {
		t.Run(fmt.Sprintf("segments=%d", n), func(t *testing.T) {
			r := runLab(t, Options{Scenario: InFlight, Mode: "user-timeout", Config: cfg, Segments: n})
			assertDetected(t, r, "ETIMEDOUT")
			if !r.Agree || r.Segments != n || r.HZ == 0 {
				t.Errorf("%d segment(s): %s (HZ %d)", n, r.Verdict, r.HZ)
			}
			got[i] = r
		})
	}
	if d := got[0].Predicted.Earliest - got[1].Predicted.Earliest; d < 150*time.Millisecond || d > 250*time.Millisecond {
		t.Errorf("one segment predicted %s later than several, want ≈ the 200 ms minimum RTO", d)
	}
}

// A NAT whose timeout is shorter than the keepalive interval (but longer than idle) loses the
// flow: a live flow is refreshed every max(idle, interval).
func TestNATIntervalBeyondTimeout(t *testing.T) {
	requireRoot(t)
	for _, c := range RefreshCells() {
		t.Run(c.Label(), func(t *testing.T) {
			t.Parallel()
			r := runLab(t, Options{Scenario: c.Scenario, NATOnExpiry: c.Variant, Mode: c.Mode, Config: *c.Config, NATTimeout: c.NATTimeout})
			want := "ETIMEDOUT"
			if c.Variant == "rst" {
				want = "ECONNRESET"
			}
			assertDetected(t, r, want)
			if !r.Agree {
				t.Errorf("%s", r.Verdict)
			}
		})
	}
}

func TestDetectorHook(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	r := runLab(t, Options{Scenario: Hung, Detector: testDetector{}, Config: fastCfg, Max: 4 * time.Second})
	if !r.Detected || r.DetectedBy != "test-report" {
		t.Fatalf("detected %v by %q, want the detector's own report", r.Detected, r.DetectedBy)
	}
	if r.SinceLastActivity < 300*time.Millisecond || r.SinceLastActivity > 2*time.Second {
		t.Errorf("reported after %s, want about 300ms", r.SinceLastActivity)
	}
}

func TestMatrixSmall(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	var calls int
	rs, err := Matrix(context.Background(), MatrixOptions{Config: fastCfg, Scenarios: []string{"crash", "reboot"},
		Modes: []string{"none", "kernel"}, Max: 4 * time.Second, Parallel: 4,
		OnResult: func(done, total int, r Result) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 || calls != 4 {
		t.Fatalf("%d results, %d callbacks, want 4", len(rs), calls)
	}
	for _, m := range rs {
		if m.Err != "" {
			t.Errorf("%s/%s: %s", m.Cell.Label(), m.Cell.Mode, m.Err)
			continue
		}
		assertNoLeftovers(t, m.Result.RunID)
		if want := m.Cell.Mode == "kernel"; m.Result.Detected != want {
			t.Errorf("%s/%s: detected %v, want %v", m.Cell.Label(), m.Cell.Mode, m.Result.Detected, want)
		}
	}
}

func TestNotRootMessage(t *testing.T) {
	if !strings.Contains(ErrNotRoot.Error(), "root") || !strings.Contains(ErrUnsupportedOS.Error(), "Linux") {
		t.Error("errors do not say what is needed")
	}
	fe := &FeatureError{Feature: "veth (CONFIG_VETH)", Step: "creating veth", Err: os.ErrNotExist}
	if !strings.Contains(fe.Error(), "CONFIG_VETH") {
		t.Errorf("feature error %q does not name the feature", fe)
	}
}

func TestLeftoverBlocks(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	id := "t" + randomID()
	name := nsName(os.Getpid(), id, "c")
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := netnsDir + "/" + name
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	_, err := Run(context.Background(), Options{RunID: id, Config: fastCfg})
	if err == nil || !strings.Contains(err.Error(), "lab clean") || !strings.Contains(err.Error(), name) {
		t.Fatalf("Run with a leftover namespace: %v, want an error naming it and 'lab clean'", err)
	}
	os.Remove(p)
	assertNoLeftovers(t, id)
}

// panicDetector panics in Attach, after the topology and the server process exist.
type panicDetector struct{ kernelDetector }

func (panicDetector) Name() string { return "test-panic" }
func (panicDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	panic("detector bug")
}

func TestTeardownOnPanicAndCancel(t *testing.T) {
	requireRoot(t)
	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		id := "t" + randomID()
		func() {
			defer func() {
				if v := recover(); v != "detector bug" {
					t.Errorf("recovered %v", v)
				}
			}()
			_, _ = Run(context.Background(), Options{RunID: id, Detector: panicDetector{}, Config: fastCfg})
		}()
		assertNoLeftovers(t, id)
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		id := "t" + randomID()
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Run(ctx, Options{RunID: id, Scenario: Hung, Config: fastCfg, Max: time.Minute})
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run with a cancelled context: %v", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %s to stop after cancel", el)
		}
		assertNoLeftovers(t, id)
	})
}

// testOnlyHeartbeat is a mode that exists only in the test binary (which is also the server
// process: TestMain hands it to RunHelperIfRequested), exercising ServerDetector, ReadsConn
// and Report the way package heartbeat does.
type testOnlyHeartbeat struct{ noneDetector }

func (testOnlyHeartbeat) Name() string { return "test-heartbeat" }

func (testOnlyHeartbeat) Serve(ctx context.Context, conn net.Conn, params map[string]string) error {
	every, err := time.ParseDuration(params["every"])
	if err != nil {
		return err
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
			if _, err := io.WriteString(conn, "beat\n"); err != nil {
				return err
			}
		}
	}
}

func (testOnlyHeartbeat) Attach(ctx context.Context, s *Session) (func(), error) {
	s.ReadsConn = true
	var mu sync.Mutex
	last := time.Now()
	go func() {
		b := make([]byte, 64)
		for {
			if _, err := s.Conn.Read(b); err != nil {
				s.ReportError(err)
				return
			}
			mu.Lock()
			last = time.Now()
			mu.Unlock()
		}
	}()
	done := make(chan struct{})
	go func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				mu.Lock()
				quiet := time.Since(last)
				mu.Unlock()
				if quiet > 500*time.Millisecond {
					s.Report("", "no heartbeat for "+quiet.Round(time.Millisecond).String())
					return
				}
			}
		}
	}()
	return func() { close(done) }, nil
}

func TestServerDetectorHook(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	if _, err := LookupDetector("test-heartbeat"); err == nil {
		t.Fatal("the test-only detector is among the command's modes")
	}
	r := runLab(t, Options{Scenario: Hung, Detector: testOnlyHeartbeat{}, Config: fastCfg, Max: 4 * time.Second,
		Params: map[string]string{"every": "100ms"}})
	if !r.Detected || r.DetectedBy != "test-heartbeat" {
		t.Fatalf("detected %v by %q (%s), want the heartbeat's own report", r.Detected, r.DetectedBy, r.ErrorText)
	}
	if r.SinceFault < 400*time.Millisecond || r.SinceFault > 1500*time.Millisecond {
		t.Errorf("frozen server noticed %s after the fault, want about 0.5 s", r.SinceFault)
	}
}
