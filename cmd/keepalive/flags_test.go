package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"350": 350 * time.Second, "1.5": 1500 * time.Millisecond, "5m": 5 * time.Minute, " 2s ": 2 * time.Second, "0": 0} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "-1", "-5s", "1e10", "NaN", "5 m"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) accepted", in)
		}
	}
}

// FuzzParseDuration: any input gives a duration ≥ 0 or an error, never a panic.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"350", "1.5", "5m", "1h30m", "-1", "NaN", "Inf", "9999999999999999", "1e9", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("parseDuration(%q) = %s < 0", s, d)
		}
	})
}

func TestParseDurationOutOfRange(t *testing.T) {
	for _, s := range []string{"99999999h", "9999999999999s5m"} {
		_, err := parseDuration(s)
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("parseDuration(%q) = %v, want an out-of-range error", s, err)
		}
	}
	for _, s := range []string{"5 minutes", "1x", "h"} {
		_, err := parseDuration(s)
		if err == nil || !strings.Contains(err.Error(), "not a duration") {
			t.Errorf("parseDuration(%q) = %v, want 'not a duration'", s, err)
		}
	}
}
