package lab

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepalive-dev/keepalive"
)

func sortEvents(es []keepalive.Event) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].At < es[j].At })
}

// TimelineRow pairs the n-th measured event of a kind with the n-th predicted one.
type TimelineRow struct {
	Kind      string           `json:"kind"`
	N         int              `json:"n"`
	Measured  *keepalive.Event `json:"measured,omitempty"`
	Predicted *keepalive.Event `json:"predicted,omitempty"`
}

// CompareTimelines lines up the measured and the predicted timeline of r, ordered by time.
func CompareTimelines(r Result) []TimelineRow {
	type key struct {
		kind string
		n    int
	}
	rows := map[key]*TimelineRow{}
	var order []key
	add := func(es []keepalive.Event, measured bool) {
		seen := map[string]int{}
		for i := range es {
			e := es[i]
			seen[e.Kind]++
			k := key{e.Kind, seen[e.Kind]}
			row, ok := rows[k]
			if !ok {
				row = &TimelineRow{Kind: e.Kind, N: seen[e.Kind]}
				rows[k] = row
				order = append(order, k)
			}
			if measured {
				row.Measured = &e
			} else {
				row.Predicted = &e
			}
		}
	}
	add(r.Measured, true)
	add(r.Predicted.Events, false)
	out := make([]TimelineRow, 0, len(order))
	for _, k := range order {
		out = append(out, *rows[k])
	}
	at := func(r TimelineRow) time.Duration {
		if r.Predicted != nil {
			return r.Predicted.At
		}
		return r.Measured.At
	}
	last := func(r TimelineRow) bool { return r.Kind == keepalive.EventError }
	sort.SliceStable(out, func(i, j int) bool {
		if at(out[i]) != at(out[j]) {
			return at(out[i]) < at(out[j])
		}
		return !last(out[i]) && last(out[j])
	})
	return out
}

// WriteText renders r as a table, the measured timeline beside the predicted one, and the
// verdict.
func WriteText(w io.Writer, r Result) error {
	var b strings.Builder
	p := r.Predicted
	fmt.Fprintf(&b, "scenario  %s — %s\n", labelOf(r), r.Scenario.Describe())
	fmt.Fprintf(&b, "mode      %s — %s\n", r.Mode, modeConfig(r))
	net := "IPv4"
	if r.IPv6 {
		net = "IPv6"
	}
	topo := "client ↔ server"
	if r.Scenario == Path || r.Scenario == NAT {
		topo = "client ↔ router ↔ server"
		if r.Scenario == NAT {
			topo += fmt.Sprintf(" (masquerade, conntrack timeout %s, loose 0)", r.NATTimeout)
		}
	}
	fmt.Fprintf(&b, "network   %s, %s; run %s; bound %s\n", net, topo, r.RunID, r.Max)
	if r.HZ > 0 {
		fmt.Fprintf(&b, "model     HZ %d (%s)", r.HZ, r.HZSource)
		if r.Segments > 0 {
			fmt.Fprintf(&b, "; %d segment(s) in flight", r.Segments)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "\tmeasured\tpredicted\tdifference")
	fmt.Fprintf(tw, "detected\t%s\t%s\t\n", yesNo(r.Detected), yesNo(r.ExpectedDetected))
	fmt.Fprintf(tw, "error\t%s\t%s\t\n", orDash(r.Error), orDash(p.Error))
	meas, pred, diff := "-", "-", ""
	if r.Detected {
		meas = fmtS(r.SinceLastActivity)
	}
	if p.Detected {
		pred = fmtWindow(p)
		if p.Detection > r.Max {
			pred += " (beyond bound)"
		}
	}
	if r.Detected && p.Detected {
		diff = fmtDiff(r.Diff)
	}
	fmt.Fprintf(tw, "from last activity\t%s\t%s\t%s\n", meas, pred, diff)
	if r.Detected {
		fmt.Fprintf(tw, "from fault\t%s\t\t\n", fmtS(r.SinceFault))
	}
	fmt.Fprintf(tw, "probes on the wire\t%d\t%d\t\n", r.Probes, p.Probes)
	if r.Retransmits > 0 {
		fmt.Fprintf(tw, "retransmissions\t%d\t\t\n", r.Retransmits)
	}
	if r.IgnoredICMP > 0 {
		fmt.Fprintf(tw, "ICMP errors ignored\t%d\t\t(out of window: they quote a probe)\n", r.IgnoredICMP)
	}
	if r.RTO > 0 {
		fmt.Fprintf(tw, "kernel rtt / rto\t%s / %s\t\t\n", r.RTT, r.RTO)
	}
	if r.DetectedBy != "" && r.DetectedBy != "application" {
		fmt.Fprintf(tw, "detected by\t%s\t\t\n", r.DetectedBy)
	}
	tw.Flush()

	b.WriteString("\ntimeline (seconds from last activity)\n")
	fmt.Fprintf(&b, "  %-14s %9s %9s %8s  %s\n", "event", "measured", "predicted", "diff", "")
	for _, row := range CompareTimelines(r) {
		name := row.Kind
		if row.Kind == keepalive.EventProbe || row.Kind == keepalive.EventRetransmit {
			name = fmt.Sprintf("%s %d", row.Kind, row.N)
		}
		m, pr, d, detail := "-", "-", "", ""
		if row.Measured != nil {
			m = fmt.Sprintf("%.3f", row.Measured.At.Seconds())
			detail = row.Measured.Detail
		}
		if row.Predicted != nil {
			pr = fmt.Sprintf("%.3f", row.Predicted.At.Seconds())
			if detail == "" {
				detail = row.Predicted.Detail
			}
		}
		if row.Measured != nil && row.Predicted != nil && row.Kind != keepalive.EventFault && row.Kind != keepalive.EventLastActivity {
			d = fmt.Sprintf("%+.3f", (row.Measured.At - row.Predicted.At).Seconds())
		}
		fmt.Fprintf(&b, "  %-14s %9s %9s %8s  %s\n", name, m, pr, d, detail)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "\nverdict: %s\n", r.Verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

func labelOf(r Result) string {
	if r.Variant != "" {
		return string(r.Scenario) + " (" + r.Variant + " on expiry)"
	}
	return string(r.Scenario)
}

func modeConfig(r Result) string {
	c := r.Config
	switch r.Mode {
	case "none":
		return "SO_KEEPALIVE off"
	case "kernel":
		c.UserTimeout = 0
		return c.String()
	}
	return c.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// WriteMatrix renders matrix results as one table; rows where measurement and model
// disagree are marked "DISAGREE" with the reason.
func WriteMatrix(w io.Writer, rs []MatrixResult) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmode\tmeasured\tpredicted\tmeas−pred\terror (meas/pred)\tprobes (meas/pred)\tverdict")
	agree := 0
	for _, m := range rs {
		r := m.Result
		if m.Err != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\tLAB ERROR: %s\n", m.Cell.Label(), m.Cell.Mode, m.Err)
			continue
		}
		meas, pred, diff := "-", "-", ""
		if r.Detected {
			meas = fmtS(r.SinceLastActivity)
		} else {
			meas = "none in " + r.Max.String()
		}
		if r.Predicted.Detected {
			pred = fmtWindow(r.Predicted)
		} else {
			pred = "never"
		}
		if r.Detected && r.Predicted.Detected {
			diff = fmtDiff(r.Diff)
		}
		v := "agree"
		if r.Agree {
			agree++
		} else {
			v = "DISAGREE: " + r.Disagreement
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s/%s\t%d/%d\t%s\n", m.Cell.Label(), m.Cell.Mode, meas, pred, diff,
			orDash(r.Error), orDash(r.Predicted.Error), r.Probes, r.Predicted.Probes, v)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\n%d of %d runs agree with the model (kernel: inside its window, %s … +%s allowed; own-timing detectors: band %s … +%s)\n",
		agree, len(rs), fmtDiff(WindowLow), fmtS(WindowHigh), fmtDiff(BandLow), fmtS(BandHigh))
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtWindow renders the predicted detection window, e.g. "5.072–5.104s".
func fmtWindow(p keepalive.Timeline) string {
	if p.HZ > 0 && p.Latest > p.Earliest {
		return fmt.Sprintf("%.3f–%.3fs", p.Earliest.Seconds(), p.Latest.Seconds())
	}
	return fmtS(p.Detection)
}

// WriteSVG draws the measured timeline above the predicted one.
func WriteSVG(w io.Writer, r Result) error {
	const width, left, right = 900.0, 110.0, 30.0
	end := r.Max
	for _, e := range append(append([]keepalive.Event{}, r.Measured...), r.Predicted.Events...) {
		if e.At > end {
			end = e.At
		}
	}
	if r.Predicted.Detected && r.Predicted.Detection > r.Max*2 {
		end = r.Max
	}
	if end <= 0 {
		end = time.Second
	}
	x := func(d time.Duration) float64 {
		if d > end {
			d = end
		}
		if d < 0 {
			d = 0
		}
		return left + (width-left-right)*float64(d)/float64(end)
	}
	color := map[string]string{
		keepalive.EventLastActivity: "#555", keepalive.EventFault: "#d62728", keepalive.EventProbe: "#1f77b4",
		keepalive.EventAck: "#2ca02c", keepalive.EventRST: "#9467bd", keepalive.EventRetransmit: "#ff7f0e",
		keepalive.EventMiddlebox: "#8c564b", keepalive.EventKill: "#000", keepalive.EventError: "#d62728",
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="230" font-family="sans-serif" font-size="12">`+"\n", width)
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14">%s</text>`+"\n",
		html.EscapeString(fmt.Sprintf("keepalive lab: %s, mode %s (%s)", labelOf(r), r.Mode, modeConfig(r))))
	lane := func(y float64, name string, es []keepalive.Event) {
		fmt.Fprintf(&b, `<text x="10" y="%.0f">%s</text>`+"\n", y+4, name)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`+"\n", left, y, width-right, y)
		for _, e := range es {
			c := color[e.Kind]
			if c == "" {
				c = "#333"
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.0f" r="5" fill="%s"><title>%s</title></circle>`+"\n",
				x(e.At), y, c, html.EscapeString(fmt.Sprintf("%.3fs %s: %s", e.At.Seconds(), e.Kind, e.Detail)))
			if e.Kind == keepalive.EventError || e.Kind == keepalive.EventFault {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="%s">%s</text>`+"\n",
					x(e.At), y-10, c, html.EscapeString(e.Kind))
			}
		}
	}
	lane(70, "measured", r.Measured)
	lane(130, "predicted", r.Predicted.Events)
	for i := 0; i <= 10; i++ {
		d := end * time.Duration(i) / 10
		fmt.Fprintf(&b, `<text x="%.1f" y="165" text-anchor="middle" fill="#666">%.1fs</text>`+"\n", x(d), d.Seconds())
	}
	fmt.Fprintf(&b, `<text x="10" y="200">%s</text>`+"\n", html.EscapeString(r.Verdict))
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
