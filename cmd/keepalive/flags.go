package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// durationValue is a pflag.Value for durations that also accepts a bare number of seconds
// ("350" = 350s), as sysctl and most documentation state keepalive times.
type durationValue struct {
	d   *time.Duration
	set bool
}

func newDurationValue(p *time.Duration) *durationValue { return &durationValue{d: p} }

func (v *durationValue) String() string {
	if v.d == nil || *v.d == 0 {
		return ""
	}
	return v.d.String()
}

func (v *durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	v.set = true
	return nil
}

func (v *durationValue) Type() string { return "duration" }

// parseDuration accepts Go durations ("1m30s", "500ms") and bare seconds ("90", "1.5").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration (use e.g. 30s, 5m, 1h or a number of seconds)")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || f < 0 || f > 1e9 {
			return 0, fmt.Errorf("duration %q out of range (0..1e9 seconds)", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use e.g. 30s, 5m, 1h30m or a number of seconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	return d, nil
}
