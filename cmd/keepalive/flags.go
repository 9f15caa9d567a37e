package main

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/spf13/pflag"
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

// durationSyntax matches what time.ParseDuration accepts, so a value that still fails to parse
// is out of range rather than malformed.
var durationSyntax = regexp.MustCompile(`^[-+]?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)

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
		if durationSyntax.MatchString(s) {
			return 0, fmt.Errorf("duration %q out of range (allowed: 0..%dh)", s, int64(math.MaxInt64)/int64(time.Hour))
		}
		return 0, fmt.Errorf("%q is not a duration (use e.g. 30s, 5m, 1h30m or a number of seconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	return d, nil
}

// configFlags are --idle, --interval, --count and --user-timeout: the per-socket settings
// shared by plan and enable.
type configFlags struct {
	cfg keepalive.Config
	fs  *pflag.FlagSet
}

func (c *configFlags) register(fs *pflag.FlagSet) {
	c.fs = fs
	fs.Var(newDurationValue(&c.cfg.Idle), "idle", "idle time before the first probe (TCP_KEEPIDLE), whole seconds 1s..32767s")
	fs.Var(newDurationValue(&c.cfg.Interval), "interval", "time between unanswered probes (TCP_KEEPINTVL), whole seconds 1s..32767s")
	fs.IntVar(&c.cfg.Count, "count", 0, "unanswered probes before the peer is declared dead (TCP_KEEPCNT), 1..127")
	fs.Var(newDurationValue(&c.cfg.UserTimeout), "user-timeout", "TCP_USER_TIMEOUT: bound on unacknowledged data, and on keepalive (Linux), e.g. 90s")
}

// given reports whether any of the four flags was set.
func (c *configFlags) given() bool {
	for _, n := range []string{"idle", "interval", "count", "user-timeout"} {
		if c.fs.Changed(n) {
			return true
		}
	}
	return false
}

// config returns the flags' Config, rejecting a flag given as 0 (a socket cannot be set back
// to "default") and a count outside 1..127. The OS limits are Config.Validate's job.
func (c *configFlags) config() (keepalive.Config, error) {
	for _, z := range []struct {
		name string
		zero bool
	}{{"idle", c.cfg.Idle == 0}, {"interval", c.cfg.Interval == 0}, {"count", c.cfg.Count == 0}, {"user-timeout", c.cfg.UserTimeout == 0}} {
		if c.fs.Changed(z.name) && z.zero {
			return keepalive.Config{}, usagef("invalid --%s 0: per-socket values cannot be 0 (leave the flag out to keep the current value)", z.name)
		}
	}
	if c.cfg.Count < 0 || c.cfg.Count > 127 {
		return keepalive.Config{}, usagef("invalid --count %d (allowed: 1..127)", c.cfg.Count)
	}
	return c.cfg, nil
}
