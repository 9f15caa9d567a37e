package lab

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// MaxRandomParallel is the most random runs Random keeps going at once.
const MaxRandomParallel = 4

// RandomOptions configure Random.
type RandomOptions struct {
	// N is the number of random configurations (1..10000).
	N int
	// Seed makes the configurations reproducible.
	Seed int64
	// Parallel bounds the runs at once (default and at most MaxRandomParallel).
	Parallel int
	// IPv6 runs every configuration over IPv6.
	IPv6 bool
	// HZ is the kernel's CONFIG_HZ for the model (0: detect it once for all runs).
	HZ int
	// HelperPath as in Options.
	HelperPath string
	// OnResult, if set, is called as each run finishes (serialized).
	OnResult func(done, total int, r Result)
}

// RandomConfigs returns the n configurations of a seed, the same for every call:
// idle 1–6 s, interval 1–4 s, count 1–5, user timeout unset or fractional 2–12 s (whole
// milliseconds); scenarios crash (silent), reboot, and in-flight with one segment and with
// several (2–10). In-flight without a user timeout gets tcp_retries2 3–5 to stay short.
// Configurations with a user timeout use the "user-timeout" mode, the others "kernel".
func RandomConfigs(seed int64, n int) []Options {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x6b65657061))
	out := make([]Options, 0, n)
	for i := 0; i < n; i++ {
		c := keepalive.Config{
			Idle:     time.Duration(1+rng.IntN(6)) * time.Second,
			Interval: time.Duration(1+rng.IntN(4)) * time.Second,
			Count:    1 + rng.IntN(5),
		}
		if rng.IntN(2) == 1 {
			c.UserTimeout = time.Duration(2000+rng.IntN(10001)) * time.Millisecond
		}
		o := Options{Config: c, Mode: "kernel", RunID: fmt.Sprintf("r%d-%d", seed%100000, i)}
		if c.UserTimeout > 0 {
			o.Mode = "user-timeout"
		}
		switch rng.IntN(4) {
		case 0:
			o.Scenario = Crash
		case 1:
			o.Scenario = Reboot
		case 2:
			o.Scenario, o.Segments = InFlight, 1
		default:
			o.Scenario, o.Segments = InFlight, 2+rng.IntN(MaxSegments-1)
		}
		if o.Scenario == InFlight && c.UserTimeout == 0 {
			o.Retries2 = 3 + rng.IntN(3)
		}
		out = append(out, o)
	}
	return out
}

// RandomSummary sums up a Random run.
type RandomSummary struct {
	Seed  int64 `json:"seed"`
	Total int   `json:"total"`
	// Inside counts measurements inside the model's window (with the WindowLow/WindowHigh
	// allowance) with the right errno; Agree counts runs judged as agreeing.
	Inside    int `json:"inside"`
	ErrnoOK   int `json:"errno_ok"`
	Agree     int `json:"agree"`
	LabErrors int `json:"lab_errors"`
	// Worst is the largest distance of a measurement from its window (0 when all inside),
	// WorstRun the run it belongs to.
	Worst    time.Duration `json:"worst_distance"`
	WorstRun string        `json:"worst_run,omitempty"`
	// Tight counts windows no wider than 2 timer granules + 50 ms (or spanning named
	// candidate firings); WidestWindow is the widest single-candidate window.
	Tight        int           `json:"tight"`
	WidestWindow time.Duration `json:"widest_window"`
	HZ           int           `json:"hz"`
	HZSource     string        `json:"hz_source"`
	Elapsed      time.Duration `json:"elapsed"`
}

// Tight reports whether the window of p is no wider than two timer granules of the longest
// keepalive or retransmission timer involved plus 50 ms, or spans named candidate firings.
func Tight(p keepalive.Timeline) bool {
	if len(p.Candidates) > 0 || !p.Detected {
		return true
	}
	m := p.Model
	d := max(m.Config.Idle, m.Config.Interval)
	if m.Scenario == keepalive.ScenarioInFlight {
		d = max(p.Earliest/2, time.Second)
	}
	return p.Latest-p.Earliest <= 2*keepalive.Granule(d, p.HZ)+50*time.Millisecond
}

// Random runs RandomConfigs(Seed, N) on the real kernel, at most Parallel at once, each
// compared with the model's window, and sums them up. Results are in configuration order; a
// run the lab itself failed carries its error in MatrixResult.Err.
func Random(ctx context.Context, ro RandomOptions) ([]MatrixResult, RandomSummary, error) {
	sum := RandomSummary{Seed: ro.Seed, Total: ro.N}
	if ro.N < 1 || ro.N > 10000 {
		return nil, sum, fmt.Errorf("lab: random N %d not allowed (allowed: 1..10000)", ro.N)
	}
	par := ro.Parallel
	if par == 0 {
		par = MaxRandomParallel
	}
	if par < 1 || par > MaxRandomParallel {
		return nil, sum, fmt.Errorf("lab: random parallel %d not allowed (allowed: 1..%d)", par, MaxRandomParallel)
	}
	if err := preflight(); err != nil {
		return nil, sum, err
	}
	start := time.Now()
	hz := withHZ(ctx, Options{HZ: ro.HZ})
	sum.HZ, sum.HZSource = hz.HZ, hz.HZSource
	cfgs := RandomConfigs(ro.Seed, ro.N)
	out := make([]MatrixResult, len(cfgs))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, o := range cfgs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return out, sum, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o.IPv6, o.HelperPath, o.HZ, o.HZSource = ro.IPv6, ro.HelperPath, hz.HZ, hz.HZSource
			o.RunID = ""
			r, err := Run(ctx, o)
			mr := MatrixResult{Cell: Cell{Scenario: o.Scenario, Mode: o.Mode}, Result: r}
			if err != nil {
				mr.Err = err.Error()
				mr.Result.Config, mr.Result.Scenario, mr.Result.Mode = o.Config, o.Scenario, o.Mode
			}
			mu.Lock()
			out[i] = mr
			done++
			if ro.OnResult != nil {
				ro.OnResult(done, len(cfgs), r)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return out, sum, err
	}
	for i, mr := range out {
		if mr.Err != "" {
			sum.LabErrors++
			continue
		}
		r := mr.Result
		p := r.Predicted
		errnoOK := r.Detected == p.Detected && (!r.Detected || r.Error == p.Error)
		if errnoOK {
			sum.ErrnoOK++
		}
		inside := r.Detected && p.Detected && r.SinceLastActivity >= p.Earliest+WindowLow && r.SinceLastActivity <= p.Latest+WindowHigh
		if inside && errnoOK {
			sum.Inside++
		}
		if r.Agree {
			sum.Agree++
		}
		if d := absDur(r.Distance); d > absDur(sum.Worst) {
			sum.Worst, sum.WorstRun = r.Distance, fmt.Sprintf("#%d", i+1)
		}
		if Tight(p) {
			sum.Tight++
		}
		if len(p.Candidates) == 0 && p.Latest-p.Earliest > sum.WidestWindow {
			sum.WidestWindow = p.Latest - p.Earliest
		}
	}
	sum.Elapsed = time.Since(start)
	return out, sum, nil
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// WriteRandom renders the runs of Random as a table and its summary.
func WriteRandom(w io.Writer, rs []MatrixResult, sum RandomSummary) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tscenario\tsettings\tmeasured\tmodel window\tdistance\terror (meas/pred)\tverdict")
	for i, m := range rs {
		r := m.Result
		set := modeConfig(r)
		if r.Scenario == InFlight && r.Segments > 0 {
			set += fmt.Sprintf(", %d seg", r.Segments)
		}
		if r.Retries2 > 0 {
			set += fmt.Sprintf(", retries2 %d", r.Retries2)
		}
		if m.Err != "" {
			fmt.Fprintf(tw, "%d\t%s\t%s\t\t\t\t\tLAB ERROR: %s\n", i+1, r.Scenario, set, m.Err)
			continue
		}
		meas := "none in " + r.Max.String()
		if r.Detected {
			meas = fmtS(r.SinceLastActivity)
		}
		win := "never"
		if r.Predicted.Detected {
			win = fmtWindow(r.Predicted)
			if n := len(r.Predicted.Candidates); n > 0 {
				win += fmt.Sprintf(" (%d candidates)", n)
			}
		}
		v := "inside"
		if !r.Agree {
			v = "OUTSIDE: " + r.Disagreement
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s/%s\t%s\n", i+1, r.Scenario, set, meas, win, fmtDiff(r.Distance),
			orDash(r.Error), orDash(r.Predicted.Error), v)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nseed %d, HZ %d (%s): %d of %d inside the model's window with the right errno (allowance %s … +%s); errno right %d/%d; worst distance %s%s; windows tight %d/%d (widest single-candidate window %s); lab errors %d; %.1fs\n",
		sum.Seed, sum.HZ, sum.HZSource, sum.Inside, sum.Total, fmtDiff(WindowLow), fmtS(WindowHigh), sum.ErrnoOK, sum.Total,
		fmtDiff(sum.Worst), map[bool]string{true: " (run " + sum.WorstRun + ")", false: ""}[sum.WorstRun != ""],
		sum.Tight, sum.Total, fmtS(sum.WidestWindow), sum.LabErrors, sum.Elapsed.Seconds())
	_, err := io.WriteString(w, b.String())
	return err
}
