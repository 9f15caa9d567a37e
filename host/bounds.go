package host

import "time"

// KeepaliveBounds is what the kernel's keepalive timer proves about a socket's keepalive
// settings when they cannot be read from the socket itself (no pidfd access): bounds, never
// the namespace's sysctl defaults, which a socket may have overridden.
//
// Facts used (net/ipv4/tcp_timer.c, tcp_keepalive_timer; inet_diag reports the pending
// timer's expiry as idiag_expires and icsk_probes_out as idiag_retrans):
//   - the keepalive timer is only ever armed for at most max(idle, interval): a full idle
//     (SO_KEEPALIVE 0→1, or a firing that found data in flight), the rest of idle (a firing
//     before idle was reached, or TCP_KEEPIDLE set while enabled), one interval (after a
//     probe was sent), or 500 ms (a probe that could not be sent). So max(idle, interval) ≥
//     the time to expiry.
//   - a probe re-arms the timer for exactly one interval, and any ACK received resets
//     probes_out to 0. With p ≥ 1 probes out: interval ≥ the time to expiry, and since the
//     last receive at least idle + (p−1)·interval + (interval − expiry) has passed (timers
//     fire late, never early), so idle ≤ idle-so-far + expiry − p·interval.
//   - without TCP_USER_TIMEOUT the connection is dropped at the firing that finds
//     probes_out ≥ count, so count ≥ p while it lives (with a user timeout count is ignored
//     and nothing is known about it).
//   - just after an answered probe, idle-so-far + expiry ≈ the interval; after a firing
//     before idle, ≈ idle: the two cannot be told apart from one reading, so neither is
//     claimed.
//
// Settings are whole seconds (TCP_KEEPIDLE and TCP_KEEPINTVL take seconds), so lower bounds
// are rounded up and upper bounds down to whole seconds.
type KeepaliveBounds struct {
	// RefreshMin is a lower bound of max(idle, interval): the period at which keepalive
	// refreshes an idle flow through a middlebox is at least this.
	RefreshMin time.Duration `json:"refresh_min"`
	// IntervalMin is a lower bound of the interval (0: unknown; set when probes are out).
	IntervalMin time.Duration `json:"interval_min,omitempty"`
	// IdleMax is an upper bound of idle (0: unknown; set when probes are out).
	IdleMax time.Duration `json:"idle_max,omitempty"`
	// ProbesOut is the number of probes sent and not answered so far; the count is at least
	// this unless a user timeout is set.
	ProbesOut int `json:"probes_out,omitempty"`
}

// KeepaliveBounds returns what the pending keepalive timer proves about the socket's
// settings; ok is false when no keepalive timer is pending (keepalive off, data in flight,
// or a state where the timer means something else).
func (s *Socket) KeepaliveBounds() (b KeepaliveBounds, ok bool) {
	if on, known := s.KeepaliveArmed(); !known || !on || s.Timer != TimerKeepalive {
		return KeepaliveBounds{}, false
	}
	exp := max(s.TimerExpires, 0)
	b.RefreshMin = max(ceilSecond(exp), time.Second)
	b.ProbesOut = max(s.TimerRetrans, 0)
	if b.ProbesOut == 0 {
		return b, true
	}
	b.IntervalMin = b.RefreshMin
	if s.Info != nil {
		// idle ≤ idle so far + expiry − p·interval ≤ … − p·IntervalMin. The tolerance
		// covers the millisecond rounding of both readings.
		upper := s.Info.Idle() + exp - time.Duration(b.ProbesOut)*b.IntervalMin + 20*time.Millisecond
		b.IdleMax = max(upper.Truncate(time.Second), time.Second)
	}
	return b, true
}

// ceilSecond rounds d up to a whole second (a millisecond of slack absorbs rounding).
func ceilSecond(d time.Duration) time.Duration {
	d -= time.Millisecond
	if d <= 0 {
		return 0
	}
	return (d + time.Second - 1).Truncate(time.Second)
}
