package progress

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestPlainLinesAreCalm(t *testing.T) {
	var b strings.Builder
	now := time.Unix(0, 0)
	l := NewFixed(&b, false, 10*time.Second, func() time.Time { return now })
	for i := 0; i < 100; i++ { // 100 updates over 50 s
		l.Show("step " + strings.Repeat("x", i%3))
		now = now.Add(500 * time.Millisecond)
	}
	l.Clear()
	out := b.String()
	if strings.Contains(out, "\r") {
		t.Fatalf("carriage return in redirected output: %q", out)
	}
	if n := strings.Count(out, "\n"); n < 4 || n > 6 {
		t.Fatalf("%d lines for 50 s of updates every 0.5 s, want one per 10 s:\n%s", n, out)
	}
}

func TestTerminalRedraws(t *testing.T) {
	var b strings.Builder
	l := NewFixed(&b, true, 0, time.Now)
	l.Show("longer status")
	l.Show("short")
	l.Clear()
	if want := "\rlonger status\rshort        \r             \r"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

func TestNewOnFileIsNotTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "progress")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if New(f, 0).Terminal() {
		t.Fatal("a regular file taken for a terminal")
	}
}
