package host

import (
	"testing"
	"time"
)

func TestKeepaliveBounds(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	info := func(idle time.Duration) *TCPInfo { return &TCPInfo{LastDataRecv: idle, LastAckRecv: idle} }
	for _, c := range []struct {
		name string
		sock Socket
		ok   bool
		want KeepaliveBounds
	}{
		{"off", Socket{State: StateEstablished, Timer: TimerNone}, false, KeepaliveBounds{}},
		{"in flight", Socket{State: StateEstablished, Timer: TimerRetransmit, TimerExpires: 200 * ms}, false, KeepaliveBounds{}},
		{"listening", Socket{State: StateListen, Timer: TimerKeepalive, TimerExpires: 5 * s}, false, KeepaliveBounds{}},
		// 60/10/5 socket just after an answered probe: idle 0.3 s, expires 9.7 s. The old
		// estimate said idle ≈ 10 s; all that is proven is max(idle, interval) ≥ 10 s.
		{"after answered probe", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 9700 * ms, Info: info(300 * ms)}, true,
			KeepaliveBounds{RefreshMin: 10 * s}},
		// Exact multiple: 14.000 s to expiry proves ≥ 14 s, not 15.
		{"exact", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 14 * s}, true, KeepaliveBounds{RefreshMin: 14 * s}},
		{"overdue", Socket{State: StateCloseWait, Timer: TimerKeepalive, TimerExpires: -5 * ms}, true, KeepaliveBounds{RefreshMin: s}},
		// idle 1, intvl 2, 2 probes out, 0.5 s after the second: idle so far 1+2+0.5 = 3.5 s,
		// expires 1.5 s → interval ≥ 2 s, idle ≤ 3.5+1.5−2·2 = 1 s, count ≥ 2.
		{"probes out", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 1500 * ms, TimerRetrans: 2, Info: info(3500 * ms)}, true,
			KeepaliveBounds{RefreshMin: 2 * s, IntervalMin: 2 * s, IdleMax: s, ProbesOut: 2}},
		// Same, timers 30 ms late: the idle bound only gets looser.
		{"probes out, late", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 1500 * ms, TimerRetrans: 2, Info: info(3560 * ms)}, true,
			KeepaliveBounds{RefreshMin: 2 * s, IntervalMin: 2 * s, IdleMax: s, ProbesOut: 2}},
		{"probes out, no tcp_info", Socket{State: StateEstablished, Timer: TimerKeepalive, TimerExpires: 300 * ms, TimerRetrans: 1}, true,
			KeepaliveBounds{RefreshMin: s, IntervalMin: s, ProbesOut: 1}},
	} {
		got, ok := c.sock.KeepaliveBounds()
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
