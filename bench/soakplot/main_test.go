package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synthetic is an hour sampled every 30 s: RSS flat around 60 MiB after a short warm-up,
// descriptors flat at 18, goroutines growing by one every 5 minutes (a leak), sweeps around
// 2 s with one of 9.5 s, and one sample the agent did not answer.
func synthetic() string {
	var b strings.Builder
	b.WriteString("elapsed_s,rss_kib,fds,goroutines,sweeps,overruns,sweep_max_s,dead_peers,reaps,sockets,namespaces\n")
	b.WriteString("# a comment line is ignored\n")
	for i := 1; i <= 120; i++ {
		t := 30 * i
		rss := 60*1024 + 512*math.Sin(float64(i))
		if t < 120 {
			rss = 40 * 1024
		}
		sweep := fmt.Sprintf("%.3f", 2+0.2*math.Cos(float64(i)))
		if i == 70 {
			sweep = "9.500"
		}
		if i == 50 {
			fmt.Fprintf(&b, "%d,,,,,,,,,,\n", t)
			continue
		}
		fmt.Fprintf(&b, "%d,%.0f,18,%d,%d,0,%s,%d,%d,%d,9\n", t, rss, 12+t/300, 2*i, sweep, 10*(i/10), 10*(i/10), 4000+100*(i%2))
	}
	return b.String()
}

func render(t *testing.T, csv string, args ...string) (svg, verdict string) {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(args, strings.NewReader(csv), &out, &errb); err != nil {
		t.Fatalf("run %q: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// checkSVG decodes the picture with encoding/xml (well-formed, one <svg> root) and returns
// its texts.
func checkSVG(t *testing.T, svg string) []string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	var texts []string
	depth, roots, inText := 0, 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, svg)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if e.Name.Local != "svg" {
					t.Errorf("root element %q, want svg", e.Name.Local)
				}
			}
			depth++
			if e.Name.Local == "text" {
				inText = depth
				texts = append(texts, "")
			}
		case xml.EndElement:
			if depth == inText {
				inText = 0
			}
			depth--
		case xml.CharData:
			if inText > 0 {
				texts[len(texts)-1] += string(e)
			}
		}
	}
	if roots != 1 || depth != 0 {
		t.Errorf("%d root elements, depth %d at the end", roots, depth)
	}
	return texts
}

func contains(t *testing.T, what string, texts []string, want ...string) {
	t.Helper()
	all := strings.Join(texts, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, all)
		}
	}
}

func TestSynthetic(t *testing.T) {
	holes := filepath.Join(t.TempDir(), "holes.csv")
	if err := os.WriteFile(holes, []byte("start_s,end_s,pair,created,idle_over_at_start,found,reaped,left\n300,420,1,400,120,400,399,0\n600,720,2,300,90,300,300,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a long note that must be wrapped ", 10)
	svg, v := render(t, synthetic(), "-interval", "15s", "-title", "soak <test> & co", "-note", "2-core VM: "+long, "-blackholes", holes)
	texts := checkSVG(t, svg)
	contains(t, "SVG", texts, "soak <test> & co", "2-core VM", "RSS (MiB)", "open descriptors", "goroutines",
		"sweep (s)", "interval 15s", "elapsed time (min)", "60", "a server black-holed (2 times, shaded)")
	for _, l := range texts {
		if n := len([]rune(l)); n > (svgWidth-40)/charWidth {
			t.Errorf("text of %d characters is wider than the picture: %q", n, l)
		}
	}
	if n := strings.Count(svg, "server 2 black-holed 10.0 min–12.0 min"); n != 4 {
		t.Errorf("black hole 2 shaded in %d panels, want 4", n)
	}
	if n := strings.Count(svg, "<polyline"); n != 2*4 { // the unanswered sample splits each line in two
		t.Errorf("%d polylines, want 8 (four panels, each line split by the unanswered sample)", n)
	}
	contains(t, "verdict", []string{v},
		"120 samples over 60.0 min (every 30 s); quarters of 30 samples",
		"flat = last-quarter median within 10 % of the first-quarter median (at least ±2 for descriptors and goroutines)",
		"longest sweep 9.500 s (at 35.0 min) = 63 % of the 15s interval; overruns 0",
		"agent's counters at the end: dead peers 120, reaped 120",
		"a server black-holed (2 times, shaded): dead peers created 700, found 700, reaped 699, still open after 0",
		"the agent's sweeps saw 4000–4100 TCP sockets in 9 network namespaces (all of the host's)")
	lines := map[string]string{}
	for _, l := range strings.Split(v, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	for name, want := range map[string]string{"RSS": ": flat", "descriptors": ": flat", "goroutines": ": RISING"} {
		if !strings.HasSuffix(lines[name], want) {
			t.Errorf("%s: %q, want it to end in %q", name, lines[name], want)
		}
	}
	if !strings.Contains(lines["goroutines"], "slope +12/h") {
		t.Errorf("goroutines slope: %q, want +12/h", lines["goroutines"])
	}
	if !strings.Contains(lines["descriptors"], "median first quarter 18, last quarter 18 (+0.0 %); slope +0/h") {
		t.Errorf("descriptors: %q", lines["descriptors"])
	}
}

// TestSmoke draws the 150 s smoke run of docs/benchmarks.md (sweep_max_s there is the
// running maximum of the mean sweep per sample, as the script then measured it).
func TestSmoke(t *testing.T) {
	svgPath := filepath.Join(t.TempDir(), "smoke.svg")
	var out, errb bytes.Buffer
	if err := run([]string{"-o", svgPath, "testdata/smoke.csv"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("with -o, stdout got %d bytes", out.Len())
	}
	b, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	texts := checkSVG(t, string(b))
	contains(t, "SVG", texts, "RSS (MiB)", "elapsed time (s)", "160", "interval 15s", "5 samples over 153 s")
	v := errb.String()
	contains(t, "verdict", []string{v},
		"5 samples over 153 s (every 31 s); quarters of 2 samples",
		"RSS          median first quarter 46.1 MiB, last quarter 70.3 MiB (+52.3 %)",
		"descriptors  median first quarter 16, last quarter 18 (+12.5 %)",
		"longest sweep 7.244 s (at 122 s) = 48 % of the 15s interval; overruns 0",
		"agent's counters at the end: dead peers 371, reaped 371")
	if !strings.Contains(v, "MiB/h): RISING") || strings.Count(v, ": flat") != 2 {
		t.Errorf("want RSS rising, descriptors and goroutines flat:\n%s", v)
	}
}

func TestErrors(t *testing.T) {
	for name, csv := range map[string]string{
		"empty":       "",
		"no samples":  "elapsed_s,rss_kib,fds,goroutines\n",
		"no rss":      "elapsed_s,fds,goroutines\n1,2,3\n",
		"bad number":  "elapsed_s,rss_kib,fds,goroutines\n1,x,3,4\n",
		"bad elapsed": "elapsed_s,rss_kib,fds,goroutines\n,1,3,4\n",
	} {
		var out, errb bytes.Buffer
		if err := run(nil, strings.NewReader(csv), &out, &errb); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestTicks(t *testing.T) {
	for _, c := range []struct {
		hi   float64
		n    int
		step float64
		last float64
	}{{59.5, 8, 10, 60}, {2.4, 8, 0.5, 2.5}, {73.3 * 1.08, 4, 20, 80}, {16.2, 4, 5, 20}, {0, 4, 0.25, 1}} {
		ts, step := ticks(c.hi, c.n)
		if step != c.step || ts[len(ts)-1] != c.last || ts[0] != 0 {
			t.Errorf("ticks(%g, %d) = %v step %g, want step %g up to %g", c.hi, c.n, ts, step, c.step, c.last)
		}
	}
	if got := tick(2.5, 0.5); got != "2.5" {
		t.Errorf("tick(2.5, 0.5) = %q", got)
	}
}

// TestRun150 draws a 150 s smoke run of the current script (the command in TestSmoke, with
// SAMPLE=15, the sockets and namespaces columns and the black holes file).
func TestRun150(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-blackholes", "testdata/run150-blackholes.csv", "testdata/run150.csv"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatal(err)
	}
	texts := checkSVG(t, out.String())
	contains(t, "SVG", texts, "a server black-holed (once, shaded): dead peers created 200, found 200, reaped 200, still open after 0",
		"the agent's sweeps saw 1000–1332 TCP sockets in 6 network namespaces")
	contains(t, "verdict", []string{errb.String()}, "10 samples over 151 s (every 15 s)",
		"longest sweep 4.479 s (at 91 s) = 30 % of the 15s interval; overruns 0",
		"agent's counters at the end: dead peers 200, reaped 200")
	// Three samples saw no sweep end (empty sweep_max_s): the sweep line breaks there and keeps
	// one run of several points (46–91 s); the lone points are drawn as dots only.
	if n := strings.Count(out.String(), "<polyline"); n != 3+1 {
		t.Errorf("%d polylines, want 4 (one per series, one for the sweeps)", n)
	}
}
