// Package viz draws keepalive timelines as text and SVG for the command line tools.
package viz

import (
	"fmt"
	"html"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Track is one labelled row of events (e.g. "predicted" and "measured").
type Track struct {
	Label  string
	Events []keepalive.Event
	// Marks are moments drawn across the track as dashed lines, e.g. the middlebox expiry.
	Marks []Mark
}

// Mark is a labelled moment on a track that is not an event of the timeline.
type Mark struct {
	At    time.Duration
	Label string
}

// Symbol is the one-character mark for an event kind.
func Symbol(kind string) string {
	switch kind {
	case keepalive.EventLastActivity:
		return "●"
	case keepalive.EventFault:
		return "✕"
	case keepalive.EventProbe:
		return "▲"
	case keepalive.EventAck:
		return "✓"
	case keepalive.EventRST, keepalive.EventMiddlebox:
		return "↯"
	case keepalive.EventRetransmit:
		return "↻"
	case keepalive.EventKill:
		return "■"
	case keepalive.EventError:
		return "!"
	}
	return "·"
}

func span(tracks []Track) time.Duration {
	var max time.Duration
	for _, t := range tracks {
		for _, e := range t.Events {
			if e.At > max {
				max = e.At
			}
		}
		for _, m := range t.Marks {
			if m.At > max {
				max = m.At
			}
		}
	}
	if max <= 0 {
		max = time.Second
	}
	return max
}

// FormatAt renders an event time compactly: "0s", "2.03s", "2h0m0s".
func FormatAt(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// axis maps event times to positions on [0, 1]: linear, except that a long quiet stretch
// (a gap between consecutive events longer than 40 % of the span, typically the idle time
// before the first probe) is drawn at a fixed 15 % of the width and marked as broken, so the
// events after it stay apart.
type axis struct {
	max    time.Duration
	knots  []knot // piecewise-linear: time → position
	breaks []gapBreak
}

type knot struct {
	at  time.Duration
	pos float64
}

// gapBreak is a compressed stretch, drawn between positions from and to.
type gapBreak struct{ from, to float64 }

func newAxis(tracks []Track) axis {
	max := span(tracks)
	var ts []time.Duration
	ts = append(ts, 0, max)
	for _, t := range tracks {
		for _, e := range t.Events {
			ts = append(ts, e.At)
		}
		for _, m := range t.Marks {
			ts = append(ts, m.At)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	const long, drawn = 0.40, 0.15
	var gaps []int // index i: gap ts[i] → ts[i+1] is compressed
	var rest time.Duration
	for i := 0; i+1 < len(ts); i++ {
		if g := ts[i+1] - ts[i]; float64(g) > long*float64(max) {
			gaps = append(gaps, i)
		} else {
			rest += g
		}
	}
	a := axis{max: max}
	if len(gaps) == 0 || rest <= 0 {
		a.knots = []knot{{0, 0}, {max, 1}}
		return a
	}
	free := 1 - drawn*float64(len(gaps))
	pos := 0.0
	a.knots = []knot{{ts[0], 0}}
	gi := 0
	for i := 0; i+1 < len(ts); i++ {
		g := ts[i+1] - ts[i]
		if g == 0 {
			continue
		}
		if gi < len(gaps) && gaps[gi] == i {
			a.breaks = append(a.breaks, gapBreak{pos, pos + drawn})
			pos += drawn
			gi++
		} else {
			pos += free * float64(g) / float64(rest)
		}
		a.knots = append(a.knots, knot{ts[i+1], pos})
	}
	return a
}

// pos is the position of d on [0, 1].
func (a axis) pos(d time.Duration) float64 {
	if d <= a.knots[0].at {
		return a.knots[0].pos
	}
	for i := 1; i < len(a.knots); i++ {
		k0, k1 := a.knots[i-1], a.knots[i]
		if d <= k1.at {
			if k1.at == k0.at {
				return k1.pos
			}
			return k0.pos + (k1.pos-k0.pos)*float64(d-k0.at)/float64(k1.at-k0.at)
		}
	}
	return 1
}

// Text writes each track as a list of events followed by an axis of about width columns on
// which every event has its own mark: events closer than a column are pushed apart (the line
// grows if needed), and a long quiet stretch is drawn shortened, marked "≈".
func Text(w io.Writer, tracks []Track, width int) {
	if width < 20 {
		width = 20
	}
	ax := newAxis(tracks)
	for _, t := range tracks {
		if t.Label != "" {
			fmt.Fprintf(w, "%s\n", t.Label)
		}
		for _, e := range t.Events {
			fmt.Fprintf(w, "  %10s  %s  %s\n", FormatAt(e.At), Symbol(e.Kind), e.Detail)
		}
		order := append([]keepalive.Event(nil), t.Events...)
		sort.SliceStable(order, func(i, j int) bool { return order[i].At < order[j].At })
		cols := make([]int, len(order))
		last := -1
		for i, e := range order {
			c := int(ax.pos(e.At)*float64(width) + 0.5)
			if i > 0 && e.At == order[i-1].At {
				c = cols[i-1] // same instant: the later, more important mark overwrites
			} else if c <= last {
				c = last + 1
			}
			cols[i], last = c, c
		}
		n := max(width, last) + 1
		line := []rune(strings.Repeat("─", n))
		for _, b := range ax.breaks {
			if c := int((b.from+b.to)/2*float64(width) + 0.5); c < n {
				line[c] = '≈'
			}
		}
		for i, e := range order {
			line[cols[i]] = []rune(Symbol(e.Kind))[0]
		}
		fmt.Fprintf(w, "  %s\n", string(line))
		start, end := "0", FormatAt(ax.max)
		pad := n - len(start) - len(end)
		if pad < 1 {
			pad = 1
		}
		fmt.Fprintf(w, "  %s%s%s\n", start, strings.Repeat(" ", pad), end)
	}
}

// SVG writes the tracks as a standalone SVG picture: one horizontal axis per track with a
// mark per event and its label placed in the first free lane above the axis (so no two
// labels overlap), labels kept inside the picture, a long quiet stretch drawn shortened and
// marked as broken, and a middlebox expiry drawn as a dashed vertical line across the track.
func SVG(w io.Writer, title string, tracks []Track) error {
	const (
		width   = 960
		left    = 150
		right   = 30
		header  = 50
		laneH   = 14
		charW   = 6.6 // average width of a 12 px sans-serif character
		labelGp = 6
	)
	ax := newAxis(tracks)
	x := func(d time.Duration) float64 {
		return left + ax.pos(d)*float64(width-left-right)
	}
	color := func(kind string) string {
		switch kind {
		case keepalive.EventProbe:
			return "#1f77b4"
		case keepalive.EventAck:
			return "#2ca02c"
		case keepalive.EventKill, keepalive.EventError, keepalive.EventRST:
			return "#d62728"
		case keepalive.EventFault, keepalive.EventMiddlebox:
			return "#ff7f0e"
		}
		return "#555555"
	}
	type placed struct {
		e      keepalive.Event
		cx     float64 // mark
		lx     float64 // label anchor
		anchor string
		lane   int
	}
	rows := make([][]placed, len(tracks))
	rowH := make([]float64, len(tracks))
	for i, t := range tracks {
		order := append([]keepalive.Event(nil), t.Events...)
		sort.SliceStable(order, func(a, b int) bool { return order[a].At < order[b].At })
		var laneEnd []float64
		for _, e := range order {
			p := placed{e: e, cx: x(e.At), anchor: "middle"}
			text := e.Kind + " " + FormatAt(e.At)
			wd := float64(len([]rune(text))) * charW
			lo, hi := p.cx-wd/2, p.cx+wd/2
			switch {
			case hi > width-4:
				p.anchor, lo, hi = "end", p.cx-wd, p.cx
			case lo < left-20:
				p.anchor, lo, hi = "start", p.cx, p.cx+wd
			}
			p.lx = p.cx
			lane := 0
			for lane < len(laneEnd) && laneEnd[lane]+labelGp > lo {
				lane++
			}
			if lane == len(laneEnd) {
				laneEnd = append(laneEnd, 0)
			}
			laneEnd[lane] = hi
			p.lane = lane
			rows[i] = append(rows[i], p)
		}
		rowH[i] = 90 + float64(len(laneEnd))*laneH
	}
	h := float64(header) + 20
	for _, r := range rowH {
		h += r
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" font-family="sans-serif" font-size="12">`+"\n", width, h, width, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="20" y="30" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	top := float64(header)
	for i, t := range tracks {
		y := top + rowH[i] - 60
		fmt.Fprintf(&b, `<text x="20" y="%.0f" font-weight="bold">%s</text>`+"\n", y+4, html.EscapeString(t.Label))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#333" stroke-width="2"/>`+"\n", left, y, width-right, y)
		for _, br := range ax.breaks {
			mx := left + (br.from+br.to)/2*float64(width-left-right)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="8" height="12" fill="white"/><line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#333"/><line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#333"/><title>time axis shortened here</title>`+"\n",
				mx-4, y-6, mx-6, y+6, mx-2, y-6, mx+2, y+6, mx+6, y-6)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.0f">0</text><text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", left, y+28, width-right, y+28, FormatAt(ax.max))
		for _, m := range t.Marks {
			if slices.ContainsFunc(t.Events, func(e keepalive.Event) bool { return e.Kind == keepalive.EventMiddlebox && e.At == m.At }) {
				continue // drawn with its event
			}
			mx := x(m.At)
			anchor := "middle"
			if wd := float64(len([]rune(m.Label))+len(FormatAt(m.At))+1) * charW; mx+wd/2 > width-4 {
				anchor = "end"
			} else if mx-wd/2 < left-20 {
				anchor = "start"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="6 4"><title>%s %s</title></line>`+"\n",
				mx, top+8, mx, y+34, FormatAt(m.At), html.EscapeString(m.Label))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" fill="#ff7f0e" text-anchor="%s" font-style="italic">%s %s</text>`+"\n", mx, y+46, anchor, html.EscapeString(m.Label), FormatAt(m.At))
		}
		for _, p := range rows[i] {
			c := color(p.e.Kind)
			if p.e.Kind == keepalive.EventMiddlebox {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="2" stroke-dasharray="6 4"><title>%s %s</title></line>`+"\n",
					p.cx, top+8, p.cx, y+34, c, FormatAt(p.e.At), html.EscapeString(p.e.Detail))
				fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" fill="%s" text-anchor="%s" font-style="italic">middlebox expiry</text>`+"\n", p.lx, y+46, c, p.anchor)
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.0f" r="5" fill="%s"><title>%s %s</title></circle>`+"\n", p.cx, y, c, FormatAt(p.e.At), html.EscapeString(p.e.Detail))
			ly := y - 12 - float64(p.lane)*laneH
			if p.lane > 0 {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-opacity="0.35"/>`+"\n", p.cx, y-6, p.cx, ly+2, c)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" fill="%s" text-anchor="%s">%s %s</text>`+"\n", p.lx, ly, c, p.anchor, html.EscapeString(p.e.Kind), FormatAt(p.e.At))
		}
		top += rowH[i]
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
