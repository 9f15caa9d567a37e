package keepalive

import (
	"fmt"
	"runtime"
	"time"
)

// GOOS is the operating system this binary runs on, the default target of Validate.
const GOOS = runtime.GOOS

// Limits are the per-socket limits an operating system enforces.
type Limits struct {
	OS string
	// MinIdle..MaxIdle, MinInterval..MaxInterval: allowed idle and interval.
	MinIdle, MaxIdle         time.Duration
	MinInterval, MaxInterval time.Duration
	// Resolution is the unit Validate accepts: whole seconds everywhere (Windows' older
	// SIO_KEEPALIVE_VALS takes milliseconds, but TCP_KEEPIDLE/TCP_KEEPINTVL take seconds, so
	// whole seconds keep both paths equal).
	Resolution time.Duration
	// MinCount..MaxCount: allowed probe count; MaxCount 0 means the count cannot be set.
	MinCount, MaxCount int
	// FixedCount is the probe count the OS uses when it cannot be set (Windows before 1703: 10).
	FixedCount int
	// UserTimeout is the name of the user-timeout option, "" when the OS has none.
	UserTimeout string
	// UserTimeoutResolution is its unit (1 ms on Linux, 1 s on macOS and Windows).
	UserTimeoutResolution time.Duration
	// MaxUserTimeout is the largest accepted user timeout.
	MaxUserTimeout time.Duration
	// Defaults are the system defaults for a socket that never set its own values.
	Defaults Config
}

// LimitsFor returns the limits of goos ("linux", "darwin", "windows", "freebsd"). Other systems
// get ok == false.
func LimitsFor(goos string) (Limits, bool) {
	switch goos {
	case "linux", "android":
		return Limits{OS: goos, MinIdle: time.Second, MaxIdle: 32767 * time.Second,
			MinInterval: time.Second, MaxInterval: 32767 * time.Second, Resolution: time.Second,
			MinCount: 1, MaxCount: 127, UserTimeout: "TCP_USER_TIMEOUT",
			UserTimeoutResolution: time.Millisecond, MaxUserTimeout: 2147483647 * time.Millisecond,
			Defaults: Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}}, true
	case "darwin", "ios":
		// xnu tcp_usrreq.c: TCP_KEEPALIVE/KEEPINTVL/KEEPCNT reject negative values and values
		// above TCP_KEEPALIVE_MAX-ish limits; we keep Linux's portable 32767 s ceiling.
		return Limits{OS: goos, MinIdle: time.Second, MaxIdle: 32767 * time.Second,
			MinInterval: time.Second, MaxInterval: 32767 * time.Second, Resolution: time.Second,
			MinCount: 1, MaxCount: 127, UserTimeout: "TCP_RXT_CONNDROPTIME",
			UserTimeoutResolution: time.Second, MaxUserTimeout: 2147483647 * time.Second,
			Defaults: Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 8}}, true
	case "freebsd":
		return Limits{OS: goos, MinIdle: time.Second, MaxIdle: 32767 * time.Second,
			MinInterval: time.Second, MaxInterval: 32767 * time.Second, Resolution: time.Second,
			MinCount: 1, MaxCount: 127,
			Defaults: Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 8}}, true
	case "windows":
		return Limits{OS: goos, MinIdle: time.Second, MaxIdle: 32767 * time.Second,
			MinInterval: time.Second, MaxInterval: 32767 * time.Second, Resolution: time.Second,
			MinCount: 1, MaxCount: 255, FixedCount: 10, UserTimeout: "TCP_MAXRT",
			UserTimeoutResolution: time.Second, MaxUserTimeout: 65535 * time.Second,
			Defaults: Config{Idle: 7200 * time.Second, Interval: time.Second, Count: 10}}, true
	}
	return Limits{OS: goos}, false
}

// Warning is advice about a valid but risky configuration.
type Warning struct {
	Field   string
	Message string
}

func (w Warning) String() string { return w.Field + ": " + w.Message }

// Validate checks c against the limits of goos and returns warnings for valid but risky
// values (a count below 2 — RFC 1122 says one lost probe must not mean death). Sub-second or
// fractional values are an error, never rounded. The error is a *FieldError naming the field,
// the value and the allowed range.
func (c Config) Validate(goos string) ([]Warning, error) {
	lim, ok := LimitsFor(goos)
	if !ok {
		for _, f := range []struct {
			name string
			set  bool
		}{{"idle", c.Idle != 0}, {"interval", c.Interval != 0}, {"count", c.Count != 0}, {"user-timeout", c.UserTimeout != 0}} {
			if f.set {
				return nil, &FieldError{Field: f.name, OS: goos, Err: ErrUnsupported,
					Fix: "per-socket keepalive tuning is not available on " + goos + "; set the system-wide defaults instead"}
			}
		}
		return nil, nil
	}
	rng := func(lo, hi, res time.Duration) string {
		if res == time.Millisecond {
			return fmt.Sprintf("%dms..%dms in whole milliseconds", lo/time.Millisecond, hi/time.Millisecond)
		}
		return fmt.Sprintf("%ds..%ds in whole seconds", lo/time.Second, hi/time.Second)
	}
	checkDur := func(field string, v, lo, hi, res time.Duration) error {
		if v == 0 {
			return nil
		}
		if v < lo || v > hi || v%res != 0 {
			why := ErrOutOfRange
			if v > 0 && v%res != 0 && v >= lo && v <= hi {
				why = fmt.Errorf("not a multiple of %s: %w", res, ErrOutOfRange)
			}
			return &FieldError{Field: field, Value: v.String(), OS: goos, Range: rng(lo, hi, res), Err: why}
		}
		return nil
	}
	if err := checkDur("idle", c.Idle, lim.MinIdle, lim.MaxIdle, lim.Resolution); err != nil {
		return nil, err
	}
	if err := checkDur("interval", c.Interval, lim.MinInterval, lim.MaxInterval, lim.Resolution); err != nil {
		return nil, err
	}
	if c.Count != 0 && (c.Count < lim.MinCount || c.Count > lim.MaxCount) {
		return nil, &FieldError{Field: "count", Value: fmt.Sprint(c.Count), OS: goos,
			Range: fmt.Sprintf("%d..%d probes", lim.MinCount, lim.MaxCount), Err: ErrOutOfRange}
	}
	if c.UserTimeout != 0 {
		if lim.UserTimeout == "" {
			return nil, &FieldError{Field: "user-timeout", Value: c.UserTimeout.String(), OS: goos, Err: ErrUnsupported,
				Fix: goos + " has no TCP_USER_TIMEOUT equivalent; rely on keepalive count × interval"}
		}
		if err := checkDur("user-timeout", c.UserTimeout, lim.UserTimeoutResolution, lim.MaxUserTimeout, lim.UserTimeoutResolution); err != nil {
			return nil, err
		}
	}
	var ws []Warning
	if goos == "windows" && (c.Idle > 0 || c.Interval > 0) {
		ws = append(ws, Warning{"count", "Windows before 10 1709 has no TCP_KEEPIDLE/TCP_KEEPINTVL: idle and interval then go through SIO_KEEPALIVE_VALS, which always sends 10 probes (and needs both values)"})
	}
	if c.Count == 1 {
		ws = append(ws, Warning{"count", "1 probe: RFC 1122 says one lost probe must not mean death; use at least 2"})
	}
	if c.UserTimeout > 0 && goos == "linux" && c.Count > 0 && c.Idle > 0 && c.Interval > 0 &&
		c.UserTimeout != c.Idle+time.Duration(c.Count)*c.Interval {
		ws = append(ws, Warning{"count", fmt.Sprintf("ignored by Linux while a user timeout is set: a silent peer is declared dead at the first probe firing with idle ≥ %s, not after %d probes", c.UserTimeout, c.Count)})
	}
	return ws, nil
}

// CheckMiddlebox returns warnings when keepalive would not keep a flow mapped through a
// middlebox that forgets an idle flow after timeout: when the first probe (after idle) or a
// refresh comes too late. Zero fields of c mean Linux's defaults (LinuxDefaults), as on a
// socket that never set them.
//
// A live flow whose probes are answered is refreshed every max(idle, interval): after an
// answered probe the keepalive timer fires one interval later and only then re-arms for the
// rest of idle, so an interval longer than the timeout lets the mapping expire even when idle
// is shorter. Kernel timers fire up to one timer-wheel granule late (TimerSlack), which
// counts against the margin.
func (c Config) CheckMiddlebox(timeout time.Duration) []Warning {
	if timeout <= 0 {
		return nil
	}
	c = c.WithDefaults(LinuxDefaults())
	var ws []Warning
	if c.Idle+TimerSlack(c.Idle) >= timeout {
		ws = append(ws, Warning{"idle", fmt.Sprintf("first probe after %s (up to %s late) but the middlebox forgets an idle flow after %s: the mapping is gone before keepalive refreshes it", c.Idle, TimerSlack(c.Idle), timeout)})
	}
	if period := max(c.Idle, c.Interval); c.Interval > c.Idle && period+TimerSlack(period) >= timeout {
		ws = append(ws, Warning{"interval", fmt.Sprintf("a live flow is refreshed every max(idle, interval) = %s (up to %s late) but the middlebox forgets an idle flow after %s: after the first answered probe the next comes one interval later and the mapping expires", period, TimerSlack(period), timeout)})
	}
	return ws
}

// WithDefaults fills zero fields from d (typically Limits.Defaults or the sysctl values).
func (c Config) WithDefaults(d Config) Config {
	if c.Idle == 0 {
		c.Idle = d.Idle
	}
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.Count == 0 {
		c.Count = d.Count
	}
	if c.UserTimeout == 0 {
		c.UserTimeout = d.UserTimeout
	}
	return c
}
