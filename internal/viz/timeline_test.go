package viz

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
)

func sampleTracks() []Track {
	tl := keepalive.Predict(keepalive.Model{Config: keepalive.Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3}, HZ: 250})
	return []Track{{Label: "predicted <model>", Events: tl.Events}, {Label: "measured", Events: tl.Events[:3]}}
}

func TestText(t *testing.T) {
	var b bytes.Buffer
	Text(&b, sampleTracks(), 40)
	out := b.String()
	for _, want := range []string{"predicted <model>", "▲", "!", "keepalive probe 3", "5.07s"} {
		if !strings.Contains(out, want) {
			t.Errorf("text timeline lacks %q:\n%s", want, out)
		}
	}
	Text(io.Discard, []Track{{Label: "empty"}}, 5) // no events, tiny width: no panic
}

func TestSVGIsWellFormed(t *testing.T) {
	var b bytes.Buffer
	if err := SVG(&b, `title & "quotes"`, sampleTracks()); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
	}
}
