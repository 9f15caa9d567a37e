package viz

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keepalive-dev/keepalive"
)

// legibleCases are the timelines 'keepalive plan --svg' draws: the Linux defaults, and the
// recommendation for every preset in every scenario.
func legibleCases(t *testing.T) map[string]Track {
	t.Helper()
	cases := map[string]Track{}
	for _, sc := range keepalive.Scenarios() {
		tl := keepalive.Predict(keepalive.Model{Config: keepalive.LinuxDefaults(), Enabled: true, Scenario: sc, MiddleboxTimeout: 2 * 3600e9})
		cases["linux-defaults/"+string(sc)] = Track{Label: "predicted", Events: tl.Events}
	}
	for _, env := range keepalive.Environments() {
		rec, err := keepalive.Recommend(keepalive.Requirement{MiddleboxTimeout: env.IdleTimeout, OS: "linux"})
		if err != nil {
			t.Fatalf("%s: %v", env.Name, err)
		}
		for _, sc := range keepalive.Scenarios() {
			tl := keepalive.Predict(keepalive.Model{Config: rec.Config, Enabled: true, Scenario: sc, MiddleboxTimeout: env.IdleTimeout, MiddleboxRST: env.OnExpiry == "rst"})
			cases[env.Name+"/"+string(sc)] = Track{Label: "predicted", Events: tl.Events, Marks: []Mark{{At: env.IdleTimeout, Label: "middlebox expiry"}}}
		}
	}
	return cases
}

type svgText struct {
	x, y   float64
	anchor string
	text   string
}

// TestSVGLegible checks that no two texts of the picture overlap (by their estimated boxes)
// and that every text lies inside it, for every preset and the Linux defaults.
func TestSVGLegible(t *testing.T) {
	for name, tr := range legibleCases(t) {
		var b bytes.Buffer
		if err := SVG(&b, "keepalive plan: "+name, []Track{tr}); err != nil {
			t.Fatal(err)
		}
		var texts []svgText
		width := 0.0
		d := xml.NewDecoder(&b)
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: not well-formed: %v", name, err)
			}
			se, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			attr := map[string]string{}
			for _, a := range se.Attr {
				attr[a.Name.Local] = a.Value
			}
			switch se.Name.Local {
			case "svg":
				width, _ = strconv.ParseFloat(attr["width"], 64)
			case "text":
				var s string
				if err := d.DecodeElement(&s, &se); err != nil {
					t.Fatal(err)
				}
				x, _ := strconv.ParseFloat(attr["x"], 64)
				y, _ := strconv.ParseFloat(attr["y"], 64)
				if attr["font-size"] == "" {
					texts = append(texts, svgText{x, y, attr["text-anchor"], s})
				}
			}
		}
		box := func(s svgText) (lo, hi float64) {
			w := float64(utf8.RuneCountInString(s.text)) * 6.6
			switch s.anchor {
			case "end":
				return s.x - w, s.x
			case "middle":
				return s.x - w/2, s.x + w/2
			}
			return s.x, s.x + w
		}
		for i, a := range texts {
			alo, ahi := box(a)
			if alo < 0 || ahi > width {
				t.Errorf("%s: %q sticks out of the picture (%.0f..%.0f of %.0f)", name, a.text, alo, ahi, width)
			}
			for _, c := range texts[i+1:] {
				clo, chi := box(c)
				if a.y > c.y-12 && a.y < c.y+12 && alo < chi && clo < ahi {
					t.Errorf("%s: %q and %q overlap", name, a.text, c.text)
				}
			}
		}
	}
}

// TestTextShowsEveryProbe checks that the text bar has one ▲ per probe for every case.
func TestTextShowsEveryProbe(t *testing.T) {
	for name, tr := range legibleCases(t) {
		var b bytes.Buffer
		Text(&b, []Track{tr}, 60)
		lines := strings.Split(b.String(), "\n")
		bar := lines[len(lines)-3]
		probes := 0
		for _, e := range tr.Events {
			if e.Kind == keepalive.EventProbe {
				probes++
			}
		}
		if got := strings.Count(bar, "▲"); got != probes {
			t.Errorf("%s: %d ▲ on the bar for %d probes:\n%s", name, got, probes, b.String())
		}
	}
}
