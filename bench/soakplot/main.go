// Command soakplot draws the CSV of bench/agent-soak.sh as one SVG picture and prints a short
// verdict.
//
// The picture has four stacked panels sharing the time axis: the agent's resident memory
// (MiB), its open descriptors, its goroutines, and the longest sweep of each sample against
// the sweep interval. The verdict (on stderr) compares the median of the first quarter of the
// samples with that of the last quarter for each of the first three series, gives the
// least-squares slope per hour, calls a series "flat" when the change between the two medians
// is within the tolerance (-tolerance of the first-quarter median, and at least 2 for the
// counts), and puts the longest sweep next to the interval.
//
//	soakplot [-o soak.svg] [-interval 15s] [-title T] [-note N] [-blackholes holes.csv] [soak.csv]
//
// Without a file argument (or with "-") the CSV is read from stdin. Without -o the SVG goes to
// stdout. Columns are found by the header's names: elapsed_s, rss_kib, fds and goroutines are
// required; sweep_max_s, overruns, dead_peers and reaps are used when present. Empty fields
// (a sample the agent did not answer) are left out of the lines and the statistics; lines
// starting with # are ignored. When the CSV has the columns sockets and namespaces (what the
// agent's sweeps saw), their range is given under the picture.
//
// -blackholes names the script's second CSV, one line per black-holed server (start_s, end_s,
// pair, created, idle_over_at_start, found, reaped, left): those windows are shaded in every
// panel, and the dead peers created and found are added up.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "soakplot:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// options are the command line of soakplot.
type options struct {
	out       string
	interval  time.Duration
	title     string
	note      string
	tolerance float64
	holes     string
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soakplot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.out, "o", "", "write the SVG to this file (default stdout)")
	fs.DurationVar(&o.interval, "interval", 15*time.Second, "the agent's sweep interval, drawn as a line in the sweep panel")
	fs.StringVar(&o.title, "title", "keepalive agent soak: memory, descriptors, goroutines, sweeps", "title of the picture")
	fs.StringVar(&o.note, "note", "", "second line under the title: where and how it ran")
	fs.Float64Var(&o.tolerance, "tolerance", 0.10, "a series is flat when its last-quarter median is within this fraction of its first-quarter median")
	fs.StringVar(&o.holes, "blackholes", "", "CSV of the black holes (start_s, end_s, pair, created, found, …) to shade and add up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("at most one CSV file, got %d arguments: %w", fs.NArg(), flag.ErrHelp)
	}
	in := stdin
	if name := fs.Arg(0); name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("open soak CSV: %w", err)
		}
		defer f.Close()
		in = f
	}
	s, err := parse(in)
	if err != nil {
		return err
	}
	var holes []blackhole
	if o.holes != "" {
		f, err := os.Open(o.holes)
		if err != nil {
			return fmt.Errorf("open black holes CSV: %w", err)
		}
		holes, err = parseBlackholes(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	v := s.verdict(o.interval, o.tolerance)
	v.holes = holes
	var w io.Writer = stdout
	var f *os.File
	if o.out != "" {
		if f, err = os.Create(o.out); err != nil {
			return fmt.Errorf("create SVG: %w", err)
		}
		w = f
	}
	err = s.svg(w, o, v, holes)
	if f != nil {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write SVG: %w", cerr)
		}
	}
	if err != nil {
		return err
	}
	v.write(stderr)
	return nil
}

// Column names of the soak CSV.
const (
	colElapsed  = "elapsed_s"
	colRSS      = "rss_kib"
	colFDs      = "fds"
	colRoutines = "goroutines"
	colSweep    = "sweep_max_s"
	colOverruns = "overruns"
	colDead     = "dead_peers"
	colReaps    = "reaps"
	colSockets  = "sockets"
	colNS       = "namespaces"
)

// soak is the parsed CSV: the elapsed time of each sample and every column by name, NaN
// where a field was empty.
type soak struct {
	t    []float64
	cols map[string][]float64
}

// openCSV reads the header of a CSV file (what names it in errors) and checks that it has
// the required columns; idx maps each column name to its index.
func openCSV(r io.Reader, what string, required ...string) (cr *csv.Reader, idx map[string]int, err error) {
	cr = csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("read %s CSV header: %w", what, err)
	}
	idx = map[string]int{}
	for i, h := range header {
		idx[strings.TrimSpace(h)] = i
	}
	for _, c := range required {
		if _, ok := idx[c]; !ok {
			return nil, nil, fmt.Errorf("%s CSV has no %q column (header %q)", what, c, strings.Join(header, ","))
		}
	}
	return cr, idx, nil
}

func parse(r io.Reader) (*soak, error) {
	cr, idx, err := openCSV(r, "soak", colElapsed, colRSS, colFDs, colRoutines)
	if err != nil {
		return nil, err
	}
	s := &soak{cols: map[string][]float64{}}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read soak CSV: %w", err)
		}
		t, err := field(rec, idx[colElapsed])
		if err != nil || math.IsNaN(t) {
			return nil, fmt.Errorf("soak CSV line %d: elapsed_s %q is not a number", line, get(rec, idx[colElapsed]))
		}
		s.t = append(s.t, t)
		for name, i := range idx {
			v, err := field(rec, i)
			if err != nil {
				return nil, fmt.Errorf("soak CSV line %d, column %s: %w", line, name, err)
			}
			s.cols[name] = append(s.cols[name], v)
		}
	}
	if len(s.t) == 0 {
		return nil, errors.New("soak CSV has no samples")
	}
	return s, nil
}

func get(rec []string, i int) string {
	if i < len(rec) {
		return strings.TrimSpace(rec[i])
	}
	return ""
}

// field parses rec[i]; an empty or missing field, or "?" (not counted), is NaN.
func field(rec []string, i int) (float64, error) {
	f := get(rec, i)
	if f == "" || f == "?" {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", f)
	}
	return v, nil
}

// col returns a column scaled by k, or nil when the CSV does not have it.
func (s *soak) col(name string, k float64) []float64 {
	c := s.cols[name]
	if c == nil {
		return nil
	}
	out := make([]float64, len(c))
	for i, v := range c {
		out[i] = v * k
	}
	return out
}

// series is one panel's data and how it is named.
type series struct {
	name  string // in the verdict
	label string // axis label, with unit
	unit  string // after numbers in the verdict ("MiB", "")
	count bool   // an integer count: the tolerance is at least minCountTolerance
	v     []float64
}

// minCountTolerance is the smallest change of a count (descriptors, goroutines) that is not
// called flat: one or two more goroutines or descriptors than at the start are noise.
const minCountTolerance = 2

func (s *soak) series() []series {
	return []series{
		{name: "RSS", label: "RSS (MiB)", unit: " MiB", v: s.col(colRSS, 1.0/1024)},
		{name: "descriptors", label: "open descriptors", count: true, v: s.col(colFDs, 1)},
		{name: "goroutines", label: "goroutines", count: true, v: s.col(colRoutines, 1)},
	}
}

// trend is the verdict on one series.
type trend struct {
	series
	first, last    float64 // medians of the first and last quarter of the samples
	slope, slopeLt float64 // least squares, per hour: whole run, and after the first quarter
	tol            float64 // allowed |last-first|
	flat           bool
}

// verdict is what soakplot prints to stderr.
type verdict struct {
	samples      int
	span, every  float64 // seconds: elapsed at the last sample, mean time between samples
	quarter      int     // samples per quarter
	tolerance    float64
	trends       []trend
	interval     time.Duration
	sweepMax     float64 // NaN when unknown
	sweepAt      float64
	overruns     float64 // NaN when unknown
	dead, reaps  float64 // NaN when unknown
	holes        []blackhole
	sockets, nss []float64 // nil when unknown
}

func (s *soak) verdict(interval time.Duration, tolerance float64) verdict {
	n := len(s.t)
	v := verdict{samples: n, span: s.t[n-1], quarter: max(1, (n+3)/4), tolerance: tolerance,
		interval: interval, sweepMax: math.NaN(), overruns: math.NaN(), dead: math.NaN(), reaps: math.NaN()}
	if n > 1 {
		v.every = (s.t[n-1] - s.t[0]) / float64(n-1)
	}
	for _, sr := range s.series() {
		tr := trend{series: sr}
		tr.first = median(sr.v[:v.quarter])
		tr.last = median(sr.v[n-v.quarter:])
		tr.slope = slope(s.t, sr.v) * 3600
		tr.slopeLt = slope(s.t[v.quarter:], sr.v[v.quarter:]) * 3600
		tr.tol = tolerance * math.Abs(tr.first)
		if sr.count {
			tr.tol = max(tr.tol, minCountTolerance)
		}
		tr.flat = math.Abs(tr.last-tr.first) <= tr.tol
		v.trends = append(v.trends, tr)
	}
	if sw := s.cols[colSweep]; sw != nil {
		for i, x := range sw {
			if !math.IsNaN(x) && (math.IsNaN(v.sweepMax) || x > v.sweepMax) {
				v.sweepMax, v.sweepAt = x, s.t[i]
			}
		}
	}
	v.overruns = lastValid(s.cols[colOverruns])
	v.dead = lastValid(s.cols[colDead])
	v.reaps = lastValid(s.cols[colReaps])
	v.sockets, v.nss = s.cols[colSockets], s.cols[colNS]
	return v
}

func (v verdict) write(w io.Writer) {
	fmt.Fprintf(w, "soak: %d samples over %s (every %s); quarters of %d samples\n",
		v.samples, fmtDur(v.span), fmtDur(v.every), v.quarter)
	for _, t := range v.trends {
		word := "flat"
		if !t.flat {
			word = "RISING"
			if t.last < t.first {
				word = "falling"
			}
		}
		fmt.Fprintf(w, "  %-12s median first quarter %s%s, last quarter %s%s (%+.1f %%); slope %+.3g%s/h (after the first quarter %+.3g%s/h): %s\n",
			t.name, num(t.first), t.unit, num(t.last), t.unit, pct(t.first, t.last), t.slope, t.unit, t.slopeLt, t.unit, word)
	}
	fmt.Fprintf(w, "  flat = last-quarter median within %.0f %% of the first-quarter median (at least ±%d for descriptors and goroutines)\n",
		v.tolerance*100, minCountTolerance)
	if !math.IsNaN(v.sweepMax) {
		fmt.Fprintf(w, "  longest sweep %.3f s (at %s) = %.0f %% of the %s interval", v.sweepMax, fmtDur(v.sweepAt),
			100*v.sweepMax/v.interval.Seconds(), v.interval)
		if !math.IsNaN(v.overruns) {
			fmt.Fprintf(w, "; overruns %s", num(v.overruns))
		}
		fmt.Fprintln(w)
	}
	if !math.IsNaN(v.dead) || !math.IsNaN(v.reaps) {
		fmt.Fprintf(w, "  agent's counters at the end: dead peers %s, reaped %s\n", num(v.dead), num(v.reaps))
	}
	if len(v.holes) > 0 {
		fmt.Fprintf(w, "  %s\n", holesText(v.holes))
	}
	if c := v.context(); c != "" {
		fmt.Fprintf(w, "  %s\n", c)
	}
}

// context says how much the agent had to walk: the range of sockets and namespaces its
// sweeps saw, "" when the CSV does not say.
func (v verdict) context() string {
	r := func(c []float64) string {
		c = valid(c)
		if len(c) == 0 {
			return ""
		}
		lo, hi := slices.Min(c), slices.Max(c)
		if lo == hi {
			return num(lo)
		}
		return num(lo) + "–" + num(hi)
	}
	so, ns := r(v.sockets), r(v.nss)
	switch {
	case so != "" && ns != "":
		return fmt.Sprintf("the agent's sweeps saw %s TCP sockets in %s network namespaces (all of the host's)", so, ns)
	case so != "":
		return fmt.Sprintf("the agent's sweeps saw %s TCP sockets", so)
	}
	return ""
}

// blackhole is one line of the script's black-hole CSV: a server namespace dropping all
// traffic from start to end (s since the start of the soak) and the dead peers it made.
type blackhole struct {
	start, end                   float64
	pair                         string
	created, found, reaped, left float64 // NaN when the CSV lacks the column
}

func parseBlackholes(r io.Reader) ([]blackhole, error) {
	cr, idx, err := openCSV(r, "black holes", "start_s", "end_s")
	if err != nil {
		return nil, err
	}
	col := func(rec []string, name string) (float64, error) {
		i, ok := idx[name]
		if !ok {
			return math.NaN(), nil
		}
		return field(rec, i)
	}
	var hs []blackhole
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return hs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read black holes CSV: %w", err)
		}
		h := blackhole{pair: "?"}
		if i, ok := idx["pair"]; ok {
			h.pair = get(rec, i)
		}
		for _, f := range []struct {
			name string
			dst  *float64
		}{{"start_s", &h.start}, {"end_s", &h.end}, {"created", &h.created}, {"found", &h.found}, {"reaped", &h.reaped}, {"left", &h.left}} {
			if *f.dst, err = col(rec, f.name); err != nil {
				return nil, fmt.Errorf("black holes CSV line %d, column %s: %w", line, f.name, err)
			}
		}
		if math.IsNaN(h.start) || math.IsNaN(h.end) || h.end < h.start {
			return nil, fmt.Errorf("black holes CSV line %d: no window from start_s to end_s", line)
		}
		hs = append(hs, h)
	}
}

// holesText adds up the black holes: how many, and the dead peers they made and the agent found.
func holesText(hs []blackhole) string {
	var c, f, r, l float64
	for _, h := range hs {
		c, f, r, l = c+h.created, f+h.found, r+h.reaped, l+h.left
	}
	times := "once"
	if len(hs) > 1 {
		times = fmt.Sprintf("%d times", len(hs))
	}
	return fmt.Sprintf("a server black-holed (%s, shaded): dead peers created %s, found %s, reaped %s, still open after %s",
		times, num(c), num(f), num(r), num(l))
}

func pct(a, b float64) float64 {
	if a == 0 {
		return 0
	}
	return 100 * (b - a) / a
}

// num formats a value with at most one decimal, "–" for NaN.
func num(x float64) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case x == math.Trunc(x):
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'f', 1, 64)
}

func fmtDur(sec float64) string {
	if sec >= 600 {
		return fmt.Sprintf("%.1f min", sec/60)
	}
	return fmt.Sprintf("%.0f s", sec)
}

func valid(v []float64) []float64 {
	return slices.DeleteFunc(slices.Clone(v), math.IsNaN)
}

func lastValid(v []float64) float64 {
	for i := len(v) - 1; i >= 0; i-- {
		if !math.IsNaN(v[i]) {
			return v[i]
		}
	}
	return math.NaN()
}

func median(v []float64) float64 {
	v = valid(v)
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// slope is the least-squares slope of y over t (per unit of t), NaN with fewer than two points.
func slope(t, y []float64) float64 {
	var n, st, sy, stt, sty float64
	for i := range t {
		if i >= len(y) || math.IsNaN(y[i]) {
			continue
		}
		n++
		st += t[i]
		sy += y[i]
		stt += t[i] * t[i]
		sty += t[i] * y[i]
	}
	d := n*stt - st*st
	if n < 2 || d == 0 {
		return math.NaN()
	}
	return (n*sty - st*sy) / d
}
