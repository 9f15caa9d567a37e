package nattimeout

import (
	"fmt"
	"math"
	"time"
)

// Outcome is what one check saw.
type Outcome uint8

// Outcomes of a check.
const (
	// OK: the message passed; the flow was still known.
	OK Outcome = iota
	// Silent: the message vanished (the middlebox dropped it without a word).
	Silent
	// RST: the connection was reset (the middlebox, or the peer on its behalf, sent an RST).
	RST
	// FIN: the connection was closed in order (the middlebox ended it itself, e.g. a proxy or
	// load balancer that closes connections idle of data).
	FIN
)

// String returns ok, silent, rst or fin.
func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Silent:
		return "silent"
	case RST:
		return "rst"
	case FIN:
		return "fin"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// MarshalText encodes the outcome as its name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// SearchConfig bounds one direction's search.
type SearchConfig struct {
	// Max is the longest idle time tested; a flow that survives it is reported as
	// "no timeout up to Max".
	Max time.Duration
	// Resolution is the width of the final bracket (error of the result).
	Resolution time.Duration
	// Conns is how many test connections the search may hold open at once (at least 4).
	Conns int
}

// Validate names the first field out of range.
func (c SearchConfig) Validate() error {
	if c.Resolution < 100*time.Millisecond || c.Resolution > time.Hour {
		return fmt.Errorf("resolution %s out of range (allowed 100ms..1h)", c.Resolution)
	}
	if c.Max < 2*c.Resolution || c.Max > 24*time.Hour {
		return fmt.Errorf("max %s out of range (allowed 2×resolution (%s)..24h)", c.Max, 2*c.Resolution)
	}
	if c.Conns < 4 || c.Conns > 4096 {
		return fmt.Errorf("connections %d out of range (allowed 4..4096)", c.Conns)
	}
	return nil
}

// ActionKind says what the driver of a Searcher must do.
type ActionKind uint8

// Actions.
const (
	// ActOpen: open test connection Conn and call Opened (or OpenFailed).
	ActOpen ActionKind = iota + 1
	// ActCheck: check connection Conn now and call Checked with its idle time at the check.
	ActCheck
	// ActClose: close connection Conn; it is of no further use.
	ActClose
)

// Action is one step the driver must take.
type Action struct {
	Kind ActionKind
	Conn int
}

type connState uint8

const (
	stOpening connState = iota
	stIdle
	stChecking
	stGone
)

// Check is one observation: after Idle the connection passed (OK) or was lost.
type Check struct {
	Idle    time.Duration `json:"idle"`
	Outcome Outcome       `json:"outcome"`
	// Unasked: the path ended the connection by itself (not at a check).
	Unasked bool `json:"unasked,omitempty"`
}

type sconn struct {
	id       int
	state    connState
	resetAt  time.Duration // last activity on the connection
	original bool          // opened at the start for the ladder
}

// Estimate is a search's answer for one direction.
type Estimate struct {
	// Expired: a check failed, so the timeout lies in (Lower, Upper].
	Expired bool `json:"expired"`
	// Lower is the longest idle time a check survived.
	Lower time.Duration `json:"lower"`
	// Upper is the shortest idle time after which a check failed (0 when none failed).
	Upper time.Duration `json:"upper,omitempty"`
	// Behaviour is how the middlebox forgot the flow (Silent, RST or FIN) when Expired.
	Behaviour Outcome `json:"behaviour"`
	// Flapping: checks contradicted each other (a shorter idle failed after a longer one
	// passed); the bracket is then the conservative one.
	Flapping bool `json:"flapping,omitempty"`
	// Checks is how many checks ran; Opened how many connections were opened.
	Checks int `json:"checks"`
	Opened int `json:"opened"`
	// Complete: the bracket reached the resolution (or Max was survived); false when the
	// search ran out of time or connections.
	Complete bool `json:"complete"`
}

// Timeout is the conservative value to plan for: Upper when expired, else 0.
func (e Estimate) Timeout() time.Duration {
	if e.Expired {
		return e.Upper
	}
	return 0
}

// Searcher is the adaptive search for one direction's idle timeout, as a deterministic state
// machine: it never reads a clock or touches a socket. A driver calls Next with the time
// since the start, performs the actions, reports what happened (Opened, Checked, Died) and
// calls Next again at the latest at the wake time it returned, or as soon as a report
// arrives.
//
// The plan: half the connections open at the start, the rest one per Resolution after them.
// While nothing has failed, the youngest connection idle for at least the next rung (the
// longest idle that passed times a ratio of 1.08 to 1.5, finer with more connections) is
// checked; a connection that passes restarts its idle time and serves again, so the ladder
// climbs to Max with a bounded number of connections and leaves connections of many idle
// ages behind it. After a failure, every connection whose age lies inside the bracket is
// checked at once; then the search waits for the connection closest below the bracket to
// reach its middle. Once the bracket is narrower than Resolution, one more check above it
// must fail too (a single early loss on a flaky path is not taken for the timeout).
// Connections far older than the bracket are closed and replaced.
type Searcher struct {
	cfg      SearchConfig
	rungs    []time.Duration
	combAt   []time.Duration // when the staggered connections are opened
	nextComb int
	conns    []*sconn
	lower    time.Duration
	upper    time.Duration // 0: no failure yet
	passes   []time.Duration
	fails    map[Outcome]int
	flaps    int
	checks   int
	opened   int
	deadline time.Duration
	done     bool
	complete bool
	lastOpen time.Duration
	// confirmed: a second failure (or a contradiction) backs the upper bound, so that a
	// single early loss on a flaky path is not taken for the timeout.
	confirmed bool
	history   []Check
	ratio     float64
}

// NewSearcher plans a search.
func NewSearcher(cfg SearchConfig) (*Searcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Searcher{cfg: cfg, fails: map[Outcome]int{}, lastOpen: -time.Hour}
	// Half the connections open at the start and climb the ladder; the other half open one
	// per resolution step after them, so that short timeouts find connections of every idle
	// age inside their bracket.
	n := cfg.Conns / 2
	for i := 0; i < n; i++ {
		s.rungs = append(s.rungs, 0)
	}
	for i := 1; i <= cfg.Conns-n; i++ {
		s.combAt = append(s.combAt, time.Duration(i)*cfg.Resolution)
	}
	// Each rung is a ratio above the last check that passed: finer with more connections
	// (tuned on the simulated paths of the tests: 1.1 for 30 connections).
	s.ratio = math.Min(1.5, math.Max(1.08, 1+3/float64(cfg.Conns)))
	s.deadline = 2*cfg.Max + time.Minute
	return s, nil
}

// Done reports whether the search is over.
func (s *Searcher) Done() bool { return s.done }

func (s *Searcher) alive() int {
	n := 0
	for _, c := range s.conns {
		if c.state != stGone {
			n++
		}
	}
	return n
}

func (s *Searcher) inFlight() int {
	n := 0
	for _, c := range s.conns {
		if c.state == stChecking {
			n++
		}
	}
	return n
}

func (s *Searcher) open(now time.Duration, original bool) Action {
	c := &sconn{id: len(s.conns), state: stOpening, resetAt: now, original: original}
	s.conns = append(s.conns, c)
	s.opened++
	s.lastOpen = now
	return Action{Kind: ActOpen, Conn: c.id}
}

func (s *Searcher) finish(complete bool) ([]Action, time.Duration) {
	s.done, s.complete = true, complete
	var acts []Action
	for _, c := range s.conns {
		if c.state == stIdle || c.state == stOpening {
			acts = append(acts, Action{Kind: ActClose, Conn: c.id})
			c.state = stGone
		}
	}
	return acts, 0
}

// Next returns the actions due at now (time since the start) and the time at which Next must
// be called again if nothing is reported before. After the search is over it returns the
// remaining closes and wake 0.
func (s *Searcher) Next(now time.Duration) (acts []Action, wake time.Duration) {
	if s.done {
		return nil, 0
	}
	res := s.cfg.Resolution
	switch {
	case s.upper > 0 && s.upper-s.lower <= res && s.confirmed:
		return s.finish(true)
	case s.upper == 0 && s.lower >= s.cfg.Max:
		return s.finish(true)
	case now >= s.deadline || s.flaps > 3 || s.checks > 20*s.cfg.Conns+200:
		return s.finish(false)
	}
	wake = s.deadline
	soon := func(t time.Duration) {
		if t > now && t < wake {
			wake = t
		}
	}
	if len(s.conns) == 0 {
		for range s.rungs {
			acts = append(acts, s.open(now, true))
		}
	}
	// Staggered openings.
	for s.nextComb < len(s.combAt) && s.combAt[s.nextComb] <= now && s.alive() < s.cfg.Conns {
		acts = append(acts, s.open(now, false))
		s.nextComb++
	}
	if s.nextComb < len(s.combAt) {
		soon(s.combAt[s.nextComb])
	}
	// Connections well past a failed check, or past Max, are of no use: close them (the
	// server's idle cap must never be what ends one).
	tooOld := s.cfg.Max + s.cfg.Max/20 + res
	if s.upper > 0 {
		tooOld = min(tooOld, 2*s.upper+res)
	}
	for _, c := range s.conns {
		if c.state == stIdle && now-c.resetAt >= tooOld {
			c.state = stGone
			acts = append(acts, Action{Kind: ActClose, Conn: c.id})
		}
	}
	// Replacements for closed connections, one per half resolution (staggered too).
	if s.nextComb >= len(s.combAt) && s.alive() < s.cfg.Conns {
		if now-s.lastOpen >= res/2 {
			acts = append(acts, s.open(now, false))
		} else {
			soon(s.lastOpen + res/2)
		}
	}
	if s.upper == 0 {
		acts = append(acts, s.ladder(now, soon)...)
	} else if s.inFlight() == 0 && s.upper-s.lower <= res {
		acts = append(acts, s.confirm(now, soon)...)
	} else if s.inFlight() == 0 {
		acts = append(acts, s.refine(now, soon)...)
	}
	return acts, wake
}

func (s *Searcher) check(c *sconn) Action {
	c.state = stChecking
	s.checks++
	return Action{Kind: ActCheck, Conn: c.id}
}

// ladder checks, when one is old enough, the youngest connection at least one rung (a
// ratio above the lower bound) idle: connections that passed earlier rungs restart and serve
// again, so the ladder keeps climbing with a bounded number of connections.
func (s *Searcher) ladder(now time.Duration, soon func(time.Duration)) []Action {
	if s.inFlight() > 0 {
		return nil
	}
	a := time.Duration(float64(s.lower) * s.ratio)
	if a < s.lower+s.cfg.Resolution {
		a = s.lower + s.cfg.Resolution
	}
	if a > s.cfg.Max {
		a = s.cfg.Max
	}
	var best *sconn
	for _, c := range s.conns {
		if c.state != stIdle {
			continue
		}
		age := now - c.resetAt
		if age < a {
			soon(c.resetAt + a)
			continue
		}
		if best == nil || c.resetAt > best.resetAt {
			best = c
		}
	}
	if best == nil {
		return nil
	}
	return []Action{s.check(best)}
}

// refine checks every connection whose idle age lies inside the bracket, or waits for the
// one closest below it to reach the middle.
func (s *Searcher) refine(now time.Duration, soon func(time.Duration)) []Action {
	var acts []Action
	var below *sconn
	for _, c := range s.conns {
		if c.state != stIdle {
			continue
		}
		age := now - c.resetAt
		switch {
		case age > s.lower && age < s.upper:
			acts = append(acts, s.check(c))
		case age <= s.lower && (below == nil || c.resetAt < below.resetAt):
			below = c
		}
	}
	if len(acts) == 0 && below != nil {
		soon(below.resetAt + s.lower + (s.upper-s.lower)/2)
	}
	return acts
}

// confirm checks the youngest connection idle at least Upper (plus a quarter of the
// resolution, beyond timer noise) once more: it must fail too.
func (s *Searcher) confirm(now time.Duration, soon func(time.Duration)) []Action {
	var best *sconn
	for _, c := range s.conns {
		if c.state != stIdle {
			continue
		}
		if a := s.upper + s.cfg.Resolution/4; now-c.resetAt < a {
			soon(c.resetAt + a)
			continue
		}
		if best == nil || c.resetAt > best.resetAt {
			best = c
		}
	}
	if best == nil {
		return nil
	}
	return []Action{s.check(best)}
}

// Opened reports that connection id is open at time at (its idle time starts then).
func (s *Searcher) Opened(id int, at time.Duration) {
	if c := s.get(id); c != nil && c.state == stOpening {
		c.state, c.resetAt = stIdle, at
	}
}

// OpenFailed reports that connection id could not be opened.
func (s *Searcher) OpenFailed(id int) {
	if c := s.get(id); c != nil {
		c.state = stGone
	}
}

func (s *Searcher) get(id int) *sconn {
	if id < 0 || id >= len(s.conns) {
		return nil
	}
	return s.conns[id]
}

// Checked reports the outcome of a check of connection id that was made after idle time
// idle; a passing check restarts the connection's idle time at time at.
func (s *Searcher) Checked(id int, at, idle time.Duration, o Outcome) {
	c := s.get(id)
	if c == nil || c.state == stGone {
		return
	}
	s.history = append(s.history, Check{Idle: idle, Outcome: o})
	if o == OK {
		c.state, c.resetAt = stIdle, at
		s.pass(idle)
		return
	}
	c.state = stGone
	s.fail(idle, o)
}

// Died reports that connection id was ended by the path (FIN or RST arriving unasked) after
// idle time idle.
func (s *Searcher) Died(id int, idle time.Duration, o Outcome) {
	c := s.get(id)
	if c == nil || c.state == stGone {
		return
	}
	c.state = stGone
	s.history = append(s.history, Check{Idle: idle, Outcome: o, Unasked: true})
	s.fail(idle, o)
}

// History returns every observation in the order reported.
func (s *Searcher) History() []Check { return append([]Check(nil), s.history...) }

func (s *Searcher) pass(idle time.Duration) {
	s.passes = append(s.passes, idle)
	if s.upper > 0 && idle >= s.upper {
		// Survived longer than a failed check: keep the shorter, failed one. Within a
		// quarter of the resolution it is the noise of timers, not a flapping path.
		if idle >= s.upper+s.cfg.Resolution/4 {
			s.flaps++
			s.confirmed = true
		}
		return
	}
	if idle > s.lower {
		s.lower = idle
	}
}

func (s *Searcher) fail(idle time.Duration, o Outcome) {
	s.fails[o]++
	if s.upper > 0 {
		s.confirmed = true
	}
	if idle <= s.lower {
		s.flaps++
		// Trust the failure (the flow can expire that early) and take the lower bound
		// back to the longest pass below it.
		l := time.Duration(0)
		for _, p := range s.passes {
			if p < idle && p > l {
				l = p
			}
		}
		s.lower = l
	}
	if s.upper == 0 || idle < s.upper {
		s.upper = idle
	}
}

// Estimate returns the search's current answer.
func (s *Searcher) Estimate() Estimate {
	e := Estimate{Expired: s.upper > 0, Lower: s.lower, Upper: s.upper, Flapping: s.flaps > 0,
		Checks: s.checks, Opened: s.opened, Complete: s.complete}
	best := 0
	for _, o := range []Outcome{Silent, RST, FIN} {
		if s.fails[o] > best {
			best, e.Behaviour = s.fails[o], o
		}
	}
	return e
}
