package nattimeout

import (
	"fmt"
	"math/rand"
	"testing"
	"time"
)

// simPath is a middlebox on a simulated path with a fake clock: a flow survives an idle
// time below timeout(); behaviour says how it forgets one. Everything is deterministic.
type simPath struct {
	timeout   func() time.Duration
	behaviour Outcome
	rtt       time.Duration
	grace     time.Duration // how long a silent check waits
}

type simEvent struct {
	at   time.Duration
	kind int // 0 opened, 1 checked, 2 died
	id   int
	idle time.Duration
	o    Outcome
}

// simulate runs a search against p on a fake clock and returns its estimate and the wall
// time it took.
func simulate(t *testing.T, cfg SearchConfig, p simPath) (Estimate, time.Duration) {
	t.Helper()
	s, err := NewSearcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	type pconn struct {
		reset  time.Duration
		open   bool
		closed bool
		busy   bool
	}
	conns := map[int]*pconn{}
	var events []simEvent
	now := time.Duration(0)
	for step := 0; step < 100000; step++ {
		acts, wake := s.Next(now)
		for _, a := range acts {
			switch a.Kind {
			case ActOpen:
				conns[a.Conn] = &pconn{}
				events = append(events, simEvent{at: now + p.rtt, kind: 0, id: a.Conn})
			case ActClose:
				if c := conns[a.Conn]; c != nil {
					c.closed = true
				}
			case ActCheck:
				c := conns[a.Conn]
				idle := now - c.reset
				c.busy = true
				if idle < p.timeout() {
					events = append(events, simEvent{at: now + p.rtt, kind: 1, id: a.Conn, idle: idle, o: OK})
				} else if p.behaviour == Silent {
					events = append(events, simEvent{at: now + p.grace, kind: 1, id: a.Conn, idle: idle, o: Silent})
				} else {
					events = append(events, simEvent{at: now + p.rtt, kind: 1, id: a.Conn, idle: idle, o: p.behaviour})
				}
			}
		}
		if s.Done() {
			return s.Estimate(), now
		}
		next := wake
		if p.behaviour == FIN { // the middlebox closes idle flows itself
			tt := p.timeout()
			for id, c := range conns {
				if c.open && !c.closed && !c.busy && c.reset+tt < next {
					events = append(events, simEvent{at: c.reset + tt, kind: 2, id: id, idle: tt, o: FIN})
					c.closed = true
				}
			}
		}
		for _, e := range events {
			if e.at < next {
				next = e.at
			}
		}
		if next < now {
			next = now
		}
		now = next
		var rest []simEvent
		for _, e := range events {
			if e.at > now {
				rest = append(rest, e)
				continue
			}
			c := conns[e.id]
			switch e.kind {
			case 0:
				c.open, c.reset = true, now
				s.Opened(e.id, now)
			case 1:
				c.busy = false
				if e.o == OK {
					c.reset = now
				} else {
					c.closed = true
				}
				s.Checked(e.id, now, e.idle, e.o)
			case 2:
				s.Died(e.id, e.idle, e.o)
			}
		}
		events = rest
	}
	t.Fatal("simulation did not end")
	return Estimate{}, 0
}

func fixed(d time.Duration) func() time.Duration { return func() time.Duration { return d } }

func TestSearchFindsTimeout(t *testing.T) {
	cfg := SearchConfig{Max: 2 * time.Hour, Resolution: time.Second, Conns: 31}
	for _, beh := range []Outcome{Silent, RST, FIN} {
		for _, T := range []time.Duration{1500 * time.Millisecond, 4 * time.Second, 9 * time.Second, 30 * time.Second,
			2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 110 * time.Minute} {
			e, wall := simulate(t, cfg, simPath{timeout: fixed(T), behaviour: beh, rtt: 2 * time.Millisecond, grace: time.Second})
			if !e.Expired || !e.Complete || e.Lower >= T || e.Upper < T || e.Upper-e.Lower > cfg.Resolution {
				t.Errorf("%s T=%s: got (%s, %s] complete=%v", beh, T, e.Lower, e.Upper, e.Complete)
			}
			if e.Behaviour != beh {
				t.Errorf("%s T=%s: behaviour %s", beh, T, e.Behaviour)
			}
			goal := T*5/4 + 10*time.Second
			// The algorithm's goal, in virtual time (31 connections meet it up to about an
			// hour; longer timeouts are logged).
			if wall > goal && T <= 10*time.Minute {
				t.Errorf("%s T=%s: wall %s above the goal %s", beh, T, wall, goal)
			}
			t.Logf("%-6s T=%-8s wall=%-10s wall/T=%.2f goal %s %s checks=%d opened=%d", beh, T, wall.Round(time.Millisecond),
				float64(wall)/float64(T), goal, map[bool]string{true: "met", false: "MISSED"}[wall <= goal], e.Checks, e.Opened)
		}
	}
}

func TestSearchShorterThanFirstRung(t *testing.T) {
	cfg := SearchConfig{Max: time.Minute, Resolution: time.Second, Conns: 16}
	e, wall := simulate(t, cfg, simPath{timeout: fixed(300 * time.Millisecond), behaviour: Silent, rtt: time.Millisecond, grace: time.Second})
	if !e.Expired || e.Lower != 0 || e.Upper != time.Second || !e.Complete {
		t.Fatalf("got %+v", e)
	}
	if wall > 5*time.Second {
		t.Errorf("wall %s", wall)
	}
}

func TestSearchNoTimeoutUpToMax(t *testing.T) {
	cfg := SearchConfig{Max: time.Minute, Resolution: time.Second, Conns: 16}
	e, wall := simulate(t, cfg, simPath{timeout: fixed(time.Hour), behaviour: Silent, rtt: time.Millisecond, grace: time.Second})
	if e.Expired || e.Lower < cfg.Max || !e.Complete {
		t.Fatalf("got %+v", e)
	}
	if wall > cfg.Max*8/5 {
		t.Errorf("wall %s for max %s", wall, cfg.Max)
	}
}

func TestSearchFlapping(t *testing.T) {
	cfg := SearchConfig{Max: 2 * time.Minute, Resolution: time.Second, Conns: 16}
	// A flaky path: the flow lives 20 s, but every third check finds it gone much earlier.
	r := rand.New(rand.NewSource(1))
	n := 0
	flap := func() time.Duration {
		n++
		if n%3 == 0 {
			return time.Duration(r.Int63n(int64(5 * time.Second)))
		}
		return 20 * time.Second
	}
	e, wall := simulate(t, cfg, simPath{timeout: flap, behaviour: Silent, rtt: time.Millisecond, grace: time.Second})
	if !e.Expired || e.Upper > 20*time.Second {
		t.Fatalf("got %+v", e)
	}
	if !e.Flapping {
		t.Errorf("flapping path not reported: %+v", e)
	}
	if wall > 2*cfg.Max+time.Minute {
		t.Errorf("wall %s", wall)
	}
	t.Logf("flapping: %+v wall %s", e, wall)
}

func TestSearchAsymmetric(t *testing.T) {
	cfg := SearchConfig{Max: 10 * time.Minute, Resolution: time.Second, Conns: 15}
	up, _ := simulate(t, cfg, simPath{timeout: fixed(9 * time.Second), behaviour: Silent, rtt: time.Millisecond, grace: time.Second})
	down, _ := simulate(t, cfg, simPath{timeout: fixed(4 * time.Second), behaviour: RST, rtt: time.Millisecond, grace: time.Second})
	if up.Upper < 9*time.Second || up.Lower >= 9*time.Second || down.Upper < 4*time.Second || down.Lower >= 4*time.Second {
		t.Fatalf("up %+v down %+v", up, down)
	}
	if up.Behaviour != Silent || down.Behaviour != RST {
		t.Fatalf("behaviours %s %s", up.Behaviour, down.Behaviour)
	}
}

func TestSearchConfigValidate(t *testing.T) {
	for _, c := range []SearchConfig{
		{Max: time.Hour, Resolution: 0, Conns: 8},
		{Max: time.Second, Resolution: time.Second, Conns: 8},
		{Max: 48 * time.Hour, Resolution: time.Second, Conns: 8},
		{Max: time.Hour, Resolution: time.Second, Conns: 3},
	} {
		if _, err := NewSearcher(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestSearchWallTable logs wall/T on the simulated path (silent drop, 1 s grace) for
// several connection budgets; docs/benchmarks.md quotes it (go test -run WallTable -v).
func TestSearchWallTable(t *testing.T) {
	for _, n := range []int{5, 15, 30, 60} {
		line := ""
		for _, T := range []time.Duration{4 * time.Second, 9 * time.Second, 30 * time.Second, 2 * time.Minute,
			10 * time.Minute, 30 * time.Minute, time.Hour, 110 * time.Minute} {
			cfg := SearchConfig{Max: 2 * time.Hour, Resolution: time.Second, Conns: n}
			e, wall := simulate(t, cfg, simPath{timeout: fixed(T), behaviour: Silent, rtt: 2 * time.Millisecond, grace: time.Second})
			if !e.Expired || e.Lower >= T || e.Upper < T {
				t.Errorf("conns %d T=%s: (%s, %s]", n, T, e.Lower, e.Upper)
			}
			mark := ""
			if wall > Goal(T) {
				mark = "*"
			}
			line += fmt.Sprintf(" | %.2f%s ±%.1fs", float64(wall)/float64(T), mark, (e.Upper - e.Lower).Seconds())
		}
		t.Logf("conns %2d%s", n, line)
	}
}
