package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// Layout of the picture, in px.
const (
	svgWidth    = 960
	svgLeft     = 90  // room for the tick labels and the rotated axis label
	svgRight    = 30  //
	svgTop      = 78  // title and note
	panelHeight = 150 //
	panelGap    = 46  // caption of the next panel
	svgBottom   = 84  // time tick labels, the time axis label and the legend
	fontSize    = 13
	lineColor   = "#1f5fa8"
	medianColor = "#e07b00"
	limitColor  = "#c62828"
	gridColor   = "#e3e3e3"
	holeColor   = "#fbe3e0"
	lineHeight  = 18 // between lines of the note and of the legend
	charWidth   = 7  // average width of a 13 px character, for wrapping the note
)

// panel is one plot of the picture.
type panel struct {
	label   string // y axis label, with unit
	title   string // above the plot, in bold
	caption string // after the title
	v       []float64
	trend   *trend  // quarter medians drawn when set
	limit   float64 // a dashed horizontal line (the sweep interval) when > 0
	limitTx string
}

func (s *soak) panels(v verdict) []panel {
	var ps []panel
	for i, sr := range s.series() {
		t := &v.trends[i]
		word := "flat"
		if !t.flat {
			word = "not flat"
		}
		ps = append(ps, panel{label: sr.label, v: sr.v, trend: t, title: sr.label,
			caption: fmt.Sprintf(" — median %s → %s%s from first to last quarter (%+.1f %%, %s); slope %+.3g%s/h",
				num(t.first), num(t.last), sr.unit, pct(t.first, t.last), word, t.slope, sr.unit)})
	}
	if sw := s.cols[colSweep]; sw != nil {
		c := ""
		if !math.IsNaN(v.sweepMax) {
			c += fmt.Sprintf(" — max %.2f s = %.0f %% of the %s interval", v.sweepMax, 100*v.sweepMax/v.interval.Seconds(), v.interval)
		}
		if !math.IsNaN(v.overruns) {
			c += fmt.Sprintf(", %s overruns", num(v.overruns))
		}
		ps = append(ps, panel{label: "sweep (s)", title: "longest sweep of each sample (s)", caption: c, v: sw,
			limit: v.interval.Seconds(), limitTx: "interval " + v.interval.String()})
	}
	return ps
}

// svg writes the picture: the panels stacked on one time axis, each with its own y axis
// starting at zero, the black holes (when given) shaded across all of them.
func (s *soak) svg(w io.Writer, o options, v verdict, holes []blackhole) error {
	ps := s.panels(v)
	note := o.note
	if note == "" {
		note = fmt.Sprintf("%d samples over %s", v.samples, fmtDur(v.span))
	}
	noteLines := wrap(note, (svgWidth-40)/charWidth)
	top0 := svgTop + (len(noteLines)-1)*lineHeight
	legend := []string{"sample", "median of the first and of the last quarter of the samples"}
	if len(holes) > 0 {
		legend = append(legend, holesText(holes))
	}
	if sc := v.context(); sc != "" {
		legend = append(legend, sc)
	}
	height := top0 + len(ps)*(panelHeight+panelGap) + svgBottom + (len(legend)-2)*lineHeight
	x0, x1 := float64(svgLeft), float64(svgWidth-svgRight)
	tmax := s.t[len(s.t)-1]
	for _, h := range holes {
		tmax = math.Max(tmax, h.end)
	}
	minutes := tmax >= 600
	tunit, tdiv := "s", 1.0
	if minutes {
		tunit, tdiv = "min", 60
	}
	tTicks, tStep := ticks(tmax/tdiv, 8)
	tEnd := math.Max(tmax/tdiv, tTicks[len(tTicks)-1])
	xAt := func(sec float64) float64 { return x0 + (sec/tdiv)/tEnd*(x1-x0) }

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="%d">`+"\n",
		svgWidth, height, svgWidth, height, fontSize)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="20" y="30" font-size="18" font-weight="bold">%s</text>`+"\n", esc(o.title))
	for i, l := range noteLines {
		fmt.Fprintf(&b, `<text x="20" y="%d" fill="#444">%s</text>`+"\n", 52+i*lineHeight, esc(l))
	}

	for i, p := range ps {
		top := float64(top0 + panelGap + i*(panelHeight+panelGap))
		bot := top + panelHeight
		ymax := 0.0
		for _, y := range p.v {
			if !math.IsNaN(y) {
				ymax = math.Max(ymax, y)
			}
		}
		ymax = math.Max(ymax, p.limit) * 1.08
		if ymax == 0 {
			ymax = 1
		}
		yTicks, yStep := ticks(ymax, 4)
		yEnd := yTicks[len(yTicks)-1]
		yAt := func(y float64) float64 { return bot - y/yEnd*panelHeight }

		fmt.Fprintf(&b, `<g class="panel">`+"\n")
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f"><tspan font-weight="bold">%s</tspan>%s</text>`+"\n", x0, top-12, esc(p.title), esc(p.caption))
		for _, yt := range yTicks {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x0, yAt(yt), x1, yAt(yt), gridColor)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, yAt(yt)+4, tick(yt, yStep))
		}
		for _, tt := range tTicks {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", xAt(tt*tdiv), top, xAt(tt*tdiv), bot, gridColor)
		}
		for _, h := range holes {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"><title>server %s black-holed %s–%s</title></rect>`+"\n",
				xAt(h.start), top, math.Max(1, xAt(h.end)-xAt(h.start)), panelHeight, holeColor, h.pair, fmtDur(h.start), fmtDur(h.end))
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="none" stroke="#888"/>`+"\n", x0, top, x1-x0, panelHeight)
		cy := (top + bot) / 2
		fmt.Fprintf(&b, `<text x="28" y="%.1f" text-anchor="middle" transform="rotate(-90 28 %.1f)">%s</text>`+"\n", cy, cy, esc(p.label))
		if p.limit > 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n",
				x0, yAt(p.limit), x1, yAt(p.limit), limitColor)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="%s">%s</text>`+"\n", x1-6, yAt(p.limit)-5, limitColor, esc(p.limitTx))
		}
		if t := p.trend; t != nil && v.samples >= 2 {
			q := v.quarter
			for _, seg := range []struct {
				a, z int
				m    float64
			}{{0, q - 1, t.first}, {v.samples - q, v.samples - 1, t.last}} {
				if math.IsNaN(seg.m) {
					continue
				}
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="5 3"><title>quarter median %s</title></line>`+"\n",
					xAt(s.t[seg.a]), yAt(seg.m), xAt(s.t[seg.z]), yAt(seg.m), medianColor, num(seg.m))
			}
		}
		var pts []string
		flush := func() {
			if len(pts) > 1 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", lineColor, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for j, y := range p.v {
			if math.IsNaN(y) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xAt(s.t[j]), yAt(y)))
			if len(p.v) <= 150 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", xAt(s.t[j]), yAt(y), lineColor)
			}
		}
		flush()
		fmt.Fprintf(&b, "</g>\n")
		if i == len(ps)-1 {
			for _, tt := range tTicks {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xAt(tt*tdiv), bot+18, tick(tt, tStep))
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">elapsed time (%s)</text>`+"\n", (x0+x1)/2, bot+40, tunit)
		}
	}
	ly := float64(top0+len(ps)*(panelHeight+panelGap)) + 72
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x0, ly-4, x0+24, ly-4, lineColor)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="#444">%s</text>`+"\n", x0+30, ly, legend[0])
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="5 3"/>`+"\n", x0+100, ly-4, x0+124, ly-4, medianColor)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="#444">%s</text>`+"\n", x0+130, ly, legend[1])
	for i, l := range legend[2:] {
		y := ly + float64((i+1)*lineHeight)
		if len(holes) > 0 && i == 0 {
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="24" height="12" fill="%s"/>`+"\n", x0, y-11, holeColor)
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="#444">%s</text>`+"\n", x0+30, y, esc(l))
	}
	fmt.Fprintf(&b, "</svg>\n")
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write SVG: %w", err)
	}
	return nil
}

func esc(s string) string { return html.EscapeString(s) }

// ticks returns round tick values from 0 to at least hi (about n intervals) and their step.
func ticks(hi float64, n int) ([]float64, float64) {
	if hi <= 0 || math.IsNaN(hi) {
		hi = 1
	}
	raw := hi / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag * 10
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for i := 0; ; i++ {
		v := float64(i) * step
		out = append(out, v)
		if v >= hi-step*1e-9 || i > 100 {
			break
		}
	}
	return out, step
}

// tick formats a tick value with as many decimals as its step needs.
func tick(v, step float64) string {
	dec := 0
	for s := step; s != math.Trunc(s) && dec < 4; s *= 10 {
		dec++
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// wrap breaks text into lines of at most n characters at spaces.
func wrap(text string, n int) []string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(text) {
		if cur != "" && len([]rune(cur))+1+len([]rune(w)) > n {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	if cur != "" || len(lines) == 0 {
		lines = append(lines, cur)
	}
	return lines
}
