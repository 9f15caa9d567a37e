// Package viz draws keepalive timelines as text and SVG for the command line tools.
package viz

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Track is one labelled row of events (e.g. "predicted" and "measured").
type Track struct {
	Label  string
	Events []keepalive.Event
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

// Text writes each track as a list of events followed by a proportional axis of width
// columns.
func Text(w io.Writer, tracks []Track, width int) {
	if width < 20 {
		width = 20
	}
	max := span(tracks)
	for _, t := range tracks {
		if t.Label != "" {
			fmt.Fprintf(w, "%s\n", t.Label)
		}
		for _, e := range t.Events {
			fmt.Fprintf(w, "  %10s  %s  %s\n", FormatAt(e.At), Symbol(e.Kind), e.Detail)
		}
		line := []rune(strings.Repeat("─", width+1))
		order := append([]keepalive.Event(nil), t.Events...)
		// Later, more important marks (kill, error) overwrite earlier ones in the same column.
		sort.SliceStable(order, func(i, j int) bool { return order[i].At < order[j].At })
		for _, e := range order {
			col := int(float64(e.At) / float64(max) * float64(width))
			line[col] = []rune(Symbol(e.Kind))[0]
		}
		fmt.Fprintf(w, "  %s\n", string(line))
		start, end := "0", FormatAt(max)
		pad := width + 1 - len(start) - len(end)
		if pad < 1 {
			pad = 1
		}
		fmt.Fprintf(w, "  %s%s%s\n", start, strings.Repeat(" ", pad), end)
	}
}

// SVG writes the tracks as a standalone SVG picture: one horizontal axis per track with a
// mark and label per event.
func SVG(w io.Writer, title string, tracks []Track) error {
	const (
		width  = 960
		left   = 150
		right  = 40
		rowH   = 150
		header = 50
	)
	max := span(tracks)
	x := func(d time.Duration) float64 {
		return left + float64(d)/float64(max)*float64(width-left-right)
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
	h := header + rowH*len(tracks) + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, h, width, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="20" y="30" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for i, t := range tracks {
		y := float64(header + rowH*i + 60)
		fmt.Fprintf(&b, `<text x="20" y="%.0f" font-weight="bold">%s</text>`+"\n", y+4, html.EscapeString(t.Label))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#333" stroke-width="2"/>`+"\n", left, y, width-right, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f">0</text><text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", left, y+40, width-right, y+40, FormatAt(max))
		for j, e := range t.Events {
			ex := x(e.At)
			c := color(e.Kind)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.0f" r="5" fill="%s"><title>%s %s</title></circle>`+"\n", ex, y, c, FormatAt(e.At), html.EscapeString(e.Detail))
			ly := y - 12 - float64(j%4)*12
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" fill="%s" text-anchor="middle">%s %s</text>`+"\n", ex, ly, c, html.EscapeString(e.Kind), FormatAt(e.At))
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
