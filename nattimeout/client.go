package nattimeout

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Direction is which way a check's message travels.
type Direction string

// Directions.
const (
	// Up: client → server after the idle time (the client writes).
	Up Direction = "client-to-server"
	// Down: server → client after the idle time (the server writes).
	Down Direction = "server-to-client"
)

// Options configure Measure. Zero fields take the defaults.
type Options struct {
	// Token is the server's shared token.
	Token string
	// Max is the longest idle time tested (default 2h; the server's idle cap must exceed
	// 1.25 × Max + Resolution + 1 min).
	Max time.Duration
	// Resolution is the result's error bound (default 1s).
	Resolution time.Duration
	// MaxConns caps this client's concurrent connections to the server, control connection
	// included (default 128: about 60 per direction, enough for the time goal up to 2 h); the server's per-client cap lowers it further.
	MaxConns int
	// SkipDown and SkipUp leave a direction out; SkipKeepalive the keepalive pass.
	SkipUp, SkipDown, SkipKeepalive bool
	// Dial opens a TCP connection to address (default: a net.Dialer with keepalive off).
	// The measurement needs connections that send nothing while idle.
	Dial func(ctx context.Context, address string) (net.Conn, error)
	// Progress, when set, is called about once a second and at each phase change.
	Progress func(Progress)
}

// Defaults of Options.
const (
	DefaultMax        = 2 * time.Hour
	DefaultResolution = time.Second
	DefaultMaxConns   = 128
	// keepaliveConns is how many connections the keepalive pass uses.
	keepaliveConns = 2
	// keepaliveIdle is the TCP keepalive idle time (and interval) of the keepalive pass.
	keepaliveIdle = time.Second
	// ctrlPing is how often the client speaks on the control connection (it must outlive
	// the timeouts being measured).
	ctrlPing = time.Second
)

// Validate names the first option out of range.
func (o Options) Validate() error {
	if o.Max != 0 && (o.Max < 2*time.Second || o.Max > 24*time.Hour) {
		return fmt.Errorf("--max %s out of range (allowed 2s..24h)", o.Max)
	}
	if o.Resolution != 0 && (o.Resolution < 100*time.Millisecond || o.Resolution > time.Hour) {
		return fmt.Errorf("--resolution %s out of range (allowed 100ms..1h)", o.Resolution)
	}
	m, r := o.Max, o.Resolution
	if m == 0 {
		m = DefaultMax
	}
	if r == 0 {
		r = DefaultResolution
	}
	if m < 2*r {
		return fmt.Errorf("--max %s must be at least twice --resolution %s", m, r)
	}
	if o.MaxConns != 0 && (o.MaxConns < 6 || o.MaxConns > 4096) {
		return fmt.Errorf("--max-conns %d out of range (allowed 6..4096)", o.MaxConns)
	}
	if o.SkipUp && o.SkipDown {
		return errors.New("nothing to measure: both directions skipped")
	}
	return nil
}

// Progress is a snapshot of a running measurement.
type Progress struct {
	Phase   string        `json:"phase"`
	Elapsed time.Duration `json:"elapsed"`
	// ETA is the estimated remaining time (0 when unknown).
	ETA time.Duration `json:"eta"`
	// ETAIsBound: no flow has expired yet, so ETA is the bound set by Max.
	ETAIsBound bool `json:"eta_is_bound,omitempty"`
	// Bounds per direction so far.
	Up   *Estimate `json:"up,omitempty"`
	Down *Estimate `json:"down,omitempty"`
}

// DirectionResult is the answer for one direction.
type DirectionResult struct {
	Direction Direction `json:"direction"`
	Estimate
	// Wall is how long this direction's search took.
	Wall time.Duration `json:"wall"`
	// History lists every check.
	History []Check `json:"history"`
}

// KeepaliveResult is the outcome of the keepalive pass.
type KeepaliveResult struct {
	// Tested: the pass ran (it needs a measured client→server timeout).
	Tested bool `json:"tested"`
	// Recognised: connections idle of data well past the timeout but sending TCP keepalive
	// probes every KeepaliveIdle survived.
	Recognised bool          `json:"recognised"`
	Idle       time.Duration `json:"keepalive_idle"`
	// DataIdle is how long the connections had sent no data when checked.
	DataIdle time.Duration `json:"data_idle"`
	// Outcome of the check (ok when recognised).
	Outcome Outcome `json:"outcome"`
	Detail  string  `json:"detail"`
}

// Result is a finished measurement.
type Result struct {
	Server string `json:"server"`
	// Up and Down are nil when skipped.
	Up   *DirectionResult `json:"up,omitempty"`
	Down *DirectionResult `json:"down,omitempty"`
	// Keepalive is the keepalive pass.
	Keepalive KeepaliveResult `json:"keepalive"`
	// ConnsPerDirection is how many test connections each direction's search was allowed
	// (after the server's per-client cap and MaxConns).
	ConnsPerDirection int `json:"conns_per_direction"`
	// ServerMaxIdle is the server's idle cap.
	ServerMaxIdle time.Duration `json:"server_max_idle"`
	Max           time.Duration `json:"max"`
	Resolution    time.Duration `json:"resolution"`
	// Wall is the whole measurement's duration.
	Wall time.Duration `json:"wall"`
	// Grace is how long a check waited for its answer.
	Grace time.Duration `json:"grace"`
}

// Timeout is the shortest measured expiry over both directions (0: none up to Max).
func (r Result) Timeout() time.Duration {
	var t time.Duration
	for _, d := range []*DirectionResult{r.Up, r.Down} {
		if d != nil && d.Expired && (t == 0 || d.Upper < t) {
			t = d.Upper
		}
	}
	return t
}

// Goal is the wall-time goal for a direction whose timeout is T: 1.25 T + 10 s.
func Goal(t time.Duration) time.Duration { return t*5/4 + 10*time.Second }

// client is one measurement's shared state.
type client struct {
	o     Options
	addr  string
	start time.Time
	ctrl  net.Conn
	cwmu  sync.Mutex
	sid   uint32
	grace time.Duration

	mu      sync.Mutex
	waiters map[[2]uint32]chan Outcome // (server conn id, seq) → result of a trigger
	seq     uint32
	ctrlErr error
}

func (c *client) now() time.Duration { return time.Since(c.start) }

func defaultDial(ctx context.Context, address string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1, Timeout: 10 * time.Second}
	return d.DialContext(ctx, "tcp", address)
}

// Measure measures the idle timeout of the path to a Server at address.
func Measure(ctx context.Context, address string, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.Max == 0 {
		o.Max = DefaultMax
	}
	if o.Resolution == 0 {
		o.Resolution = DefaultResolution
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.Dial == nil {
		o.Dial = defaultDial
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &client{o: o, addr: address, start: time.Now(), waiters: map[[2]uint32]chan Outcome{}}
	res := Result{Server: address, Max: o.Max, Resolution: o.Resolution}
	perClient, maxIdle, err := c.connect(ctx)
	if err != nil {
		return res, err
	}
	defer c.ctrl.Close()
	res.ServerMaxIdle, res.Grace = maxIdle, c.grace
	// The search closes connections idle past Max + Max/20 + Resolution; the keepalive pass
	// waits up to 1.25 × the timeout found (≤ Max) plus a check.
	if need := o.Max + o.Max/4 + o.Resolution + time.Minute; need > maxIdle {
		return res, fmt.Errorf("--max %s is too long for this server: it closes connections idle for %s (allowed up to %s)",
			o.Max, maxIdle, ((maxIdle - time.Minute - o.Resolution) * 4 / 5).Truncate(time.Second))
	}
	go c.pinger(ctx)

	budget := min(o.MaxConns, perClient) - 1
	if !o.SkipKeepalive {
		budget -= keepaliveConns
	}
	dirs := 0
	if !o.SkipUp {
		dirs++
	}
	if !o.SkipDown {
		dirs++
	}
	per := budget / dirs
	if per < 4 {
		return res, fmt.Errorf("only %d connections allowed (--max-conns %d, server cap %d per client): need at least %d",
			min(o.MaxConns, perClient), o.MaxConns, perClient, 4*dirs+1+keepaliveConns)
	}
	res.ConnsPerDirection = per

	var kas []*tconn
	if !o.SkipKeepalive && !o.SkipUp {
		for i := 0; i < keepaliveConns; i++ {
			t, err := c.open(ctx, true)
			if err != nil {
				return res, fmt.Errorf("opening a keepalive-pass connection: %w", err)
			}
			kas = append(kas, t)
		}
		defer func() {
			for _, t := range kas {
				abort(t.c)
			}
		}()
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	searchers := map[Direction]*Searcher{}
	errs := make([]error, 2)
	for i, d := range []Direction{Up, Down} {
		if (d == Up && o.SkipUp) || (d == Down && o.SkipDown) {
			continue
		}
		s, err := NewSearcher(SearchConfig{Max: o.Max, Resolution: o.Resolution, Conns: per})
		if err != nil {
			return res, err
		}
		searchers[d] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dr DirectionResult
			dr, errs[i] = c.search(ctx, d, s, &mu)
			mu.Lock()
			if d == Up {
				res.Up = &dr
			} else {
				res.Down = &dr
			}
			mu.Unlock()
		}()
	}
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if o.Progress == nil {
			return
		}
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			mu.Lock()
			p := Progress{Phase: "searching", Elapsed: c.now()}
			done := true
			for d, s := range searchers {
				e := s.Estimate()
				if d == Up {
					p.Up = &e
				} else {
					p.Down = &e
				}
				if !s.Done() {
					done = false
				}
				if e.Expired {
					p.ETA = max(p.ETA, Goal(e.Upper)-p.Elapsed)
				} else {
					p.ETA = max(p.ETA, o.Max*11/10-p.Elapsed)
					p.ETAIsBound = true
				}
			}
			mu.Unlock()
			if done {
				return
			}
			p.ETA = max(p.ETA, time.Second)
			o.Progress(p)
		}
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		cancel()
		<-progressDone
		return res, err
	}
	<-progressDone
	if len(kas) > 0 {
		res.Keepalive = c.keepalivePass(ctx, res.Up, kas)
	}
	res.Wall = c.now()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// connect opens the control connection: hello, welcome, limits.
func (c *client) connect(ctx context.Context) (perClient int, maxIdle time.Duration, err error) {
	t0 := time.Now()
	conn, err := c.o.Dial(ctx, c.addr)
	if err != nil {
		return 0, 0, fmt.Errorf("connecting to %s: %w", c.addr, err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := WriteFrame(conn, Frame{Type: TypeHello, A: RoleControl, Data: TokenDigest(c.o.Token)}); err != nil {
		conn.Close()
		return 0, 0, fmt.Errorf("hello to %s: %w", c.addr, err)
	}
	w, err := readReply(conn, TypeWelcome)
	if err != nil {
		conn.Close()
		return 0, 0, fmt.Errorf("server %s: %w", c.addr, err)
	}
	rtt := time.Since(t0)
	l, err := readReply(conn, TypeLimits)
	if err != nil {
		conn.Close()
		return 0, 0, fmt.Errorf("server %s: %w", c.addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c.ctrl, c.sid = conn, w.A
	// A check waits this long for its answer: generous against the round trip measured on
	// the control connection (a dial and a hello: about two round trips).
	c.grace = min(max(time.Second, 4*rtt), 10*time.Second)
	go c.dispatch()
	return int(l.A), time.Duration(binary.BigEndian.Uint32(l.Data[0:4])) * time.Second, nil
}

// readReply reads one frame and turns an error frame into an error.
func readReply(conn net.Conn, want Type) (Frame, error) {
	f, err := ReadFrame(conn)
	if err != nil {
		return f, err
	}
	if f.Type == TypeError {
		return f, fmt.Errorf("refused: %s", ErrorCode(f.A))
	}
	if f.Type != want {
		return f, fmt.Errorf("%w: got %s, want %s", ErrBadFrame, f.Type, want)
	}
	return f, nil
}

func (c *client) writeCtrl(f Frame) error {
	c.cwmu.Lock()
	defer c.cwmu.Unlock()
	_ = c.ctrl.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return WriteFrame(c.ctrl, f)
}

// pinger keeps the control connection busy so that the path never forgets it.
func (c *client) pinger(ctx context.Context) {
	tk := time.NewTicker(ctrlPing)
	defer tk.Stop()
	for n := uint32(1); ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		if err := c.writeCtrl(Frame{Type: TypePing, A: n}); err != nil {
			return
		}
	}
}

// dispatch reads the control connection: trigger results go to their waiters.
func (c *client) dispatch() {
	for {
		_ = c.ctrl.SetReadDeadline(time.Now().Add(controlIdle))
		f, err := ReadFrame(c.ctrl)
		if err == nil && f.Type == TypeError {
			err = fmt.Errorf("server: %s", ErrorCode(f.A))
		}
		if err != nil {
			c.mu.Lock()
			c.ctrlErr = fmt.Errorf("control connection to %s lost (is the path's timeout shorter than %s?): %w", c.addr, ctrlPing, err)
			for _, w := range c.waiters {
				close(w)
			}
			c.waiters = map[[2]uint32]chan Outcome{}
			c.mu.Unlock()
			return
		}
		if f.Type == TypeResult {
			c.mu.Lock()
			if w := c.waiters[[2]uint32{f.A, f.B}]; w != nil {
				w <- Outcome(f.Data[0])
				delete(c.waiters, [2]uint32{f.A, f.B})
			}
			c.mu.Unlock()
		}
	}
}

func (c *client) controlErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ctrlErr
}

// tconn is a client-side test connection.
type tconn struct {
	c        net.Conn
	serverID uint32
	frames   chan Frame
	dead     chan struct{} // closed when the reader ends
	readErr  error
	mu       sync.Mutex
	lastAct  time.Time
	checking bool
}

func (t *tconn) touch() {
	t.mu.Lock()
	t.lastAct = time.Now()
	t.mu.Unlock()
}

func (t *tconn) idle() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Since(t.lastAct)
}

// open dials a test connection; withKeepalive turns TCP keepalive on at keepaliveIdle.
func (c *client) open(ctx context.Context, withKeepalive bool) (*tconn, error) {
	conn, err := c.o.Dial(ctx, c.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		if withKeepalive {
			err = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: keepaliveIdle, Interval: keepaliveIdle, Count: 5})
		} else {
			err = tc.SetKeepAlive(false)
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("setting keepalive: %w", err)
		}
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := WriteFrame(conn, Frame{Type: TypeHello, A: RoleTest, B: c.sid, Data: TokenDigest(c.o.Token)}); err != nil {
		conn.Close()
		return nil, err
	}
	w, err := readReply(conn, TypeWelcome)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	t := &tconn{c: conn, serverID: w.A, frames: make(chan Frame, 4), dead: make(chan struct{}), lastAct: time.Now()}
	go func() {
		defer close(t.dead)
		for {
			f, err := ReadFrame(conn)
			if err != nil {
				t.readErr = err
				return
			}
			select {
			case t.frames <- f:
			default: // a peer that floods is not ours; drop
			}
		}
	}()
	return t, nil
}

type event struct {
	kind    ActionKind // ActOpen: opened (t nil: failed), ActCheck: checked, ActClose: died
	id      int
	t       *tconn
	at      time.Duration
	idle    time.Duration
	outcome Outcome
}

// search drives one direction's Searcher with real connections.
func (c *client) search(ctx context.Context, d Direction, s *Searcher, mu *sync.Mutex) (DirectionResult, error) {
	start := c.now()
	conns := map[int]*tconn{}
	events := make(chan event, 64)
	var wg sync.WaitGroup
	defer func() {
		// Whatever is still in flight may report; drain until every goroutine has ended.
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-events:
				case <-stop:
					return
				}
			}
		}()
		for _, t := range conns {
			abort(t.c)
		}
		wg.Wait()
		close(stop)
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	watch := func(id int, t *tconn) {
		// Reports a connection the path ends while it is not being checked.
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-t.dead
			t.mu.Lock()
			checking := t.checking
			t.mu.Unlock()
			if !checking && ctx.Err() == nil {
				events <- event{kind: ActClose, id: id, at: c.now() - start, idle: t.idle(), outcome: classify(t.readErr)}
			}
		}()
	}
	failedOpens := 0
	for {
		if err := ctx.Err(); err != nil {
			return DirectionResult{}, err
		}
		if err := c.controlErr(); err != nil {
			return DirectionResult{}, err
		}
		mu.Lock()
		acts, wake := s.Next(c.now() - start)
		done := s.Done()
		mu.Unlock()
		for _, a := range acts {
			switch a.Kind {
			case ActOpen:
				wg.Add(1)
				go func(id int) {
					defer wg.Done()
					t, err := c.open(ctx, false)
					if err != nil {
						events <- event{kind: ActOpen, id: id}
						return
					}
					events <- event{kind: ActOpen, id: id, t: t, at: c.now() - start}
				}(a.Conn)
			case ActClose:
				if t := conns[a.Conn]; t != nil {
					abort(t.c)
					delete(conns, a.Conn)
				}
			case ActCheck:
				t := conns[a.Conn]
				if t == nil {
					events <- event{kind: ActCheck, id: a.Conn, at: c.now() - start, outcome: RST}
					continue
				}
				t.mu.Lock()
				t.checking = true
				t.mu.Unlock()
				wg.Add(1)
				go func(id int) {
					defer wg.Done()
					idle, o := c.check(ctx, d, t)
					events <- event{kind: ActCheck, id: id, at: c.now() - start, idle: idle, outcome: o}
				}(a.Conn)
			}
		}
		if done {
			break
		}
		timer.Reset(max(wake-(c.now()-start), 0))
		select {
		case <-ctx.Done():
			continue
		case <-timer.C:
		case ev := <-events:
			mu.Lock()
			switch ev.kind {
			case ActOpen:
				if ev.t == nil {
					failedOpens++
					s.OpenFailed(ev.id)
				} else {
					conns[ev.id] = ev.t
					s.Opened(ev.id, ev.at)
					watch(ev.id, ev.t)
				}
			case ActCheck:
				s.Checked(ev.id, ev.at, ev.idle, ev.outcome)
				if t := conns[ev.id]; t != nil {
					t.mu.Lock()
					t.checking = false
					t.mu.Unlock()
					if ev.outcome != OK {
						abort(t.c)
						delete(conns, ev.id)
					}
				}
			case ActClose:
				s.Died(ev.id, ev.idle, ev.outcome)
				if t := conns[ev.id]; t != nil {
					abort(t.c)
					delete(conns, ev.id)
				}
			}
			mu.Unlock()
			if failedOpens > 8 && len(conns) == 0 {
				return DirectionResult{}, fmt.Errorf("cannot open test connections to %s (%d attempts failed)", c.addr, failedOpens)
			}
		}
	}
	mu.Lock()
	e, h := s.Estimate(), s.History()
	mu.Unlock()
	return DirectionResult{Direction: d, Estimate: e, Wall: c.now() - start, History: h}, nil
}

// check tests whether a message still passes on t after its idle time, in direction d.
func (c *client) check(ctx context.Context, d Direction, t *tconn) (time.Duration, Outcome) {
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.mu.Unlock()
	idle := t.idle()
	deadline := time.NewTimer(c.grace)
	defer deadline.Stop()
	if d == Up {
		_ = t.c.SetWriteDeadline(time.Now().Add(c.grace))
		if err := WriteFrame(t.c, Frame{Type: TypePing, A: seq}); err != nil {
			return idle, classify(err)
		}
		for {
			select {
			case f := <-t.frames:
				if f.Type == TypePong && f.A == seq {
					t.touch()
					return idle, OK
				}
			case <-t.dead:
				return idle, classify(t.readErr)
			case <-deadline.C:
				return idle, Silent
			case <-ctx.Done():
				return idle, Silent
			}
		}
	}
	w := make(chan Outcome, 1)
	key := [2]uint32{t.serverID, seq}
	c.mu.Lock()
	c.waiters[key] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, key)
		c.mu.Unlock()
	}()
	var g Frame
	g.Type, g.A, g.B = TypeTrigger, t.serverID, seq
	binary.BigEndian.PutUint32(g.Data[0:4], uint32(c.grace/time.Millisecond))
	if err := c.writeCtrl(g); err != nil {
		return idle, Silent
	}
	for {
		select {
		case f := <-t.frames:
			if f.Type == TypePing && f.A == seq {
				_ = t.c.SetWriteDeadline(time.Now().Add(c.grace))
				_ = WriteFrame(t.c, Frame{Type: TypePong, A: seq})
				t.touch()
				return idle, OK
			}
		case o, ok := <-w:
			if !ok {
				return idle, Silent
			}
			if o != OK {
				return idle, o
			}
		case <-t.dead:
			// The path ended the connection as the server wrote: wait for the server's view.
			select {
			case o, ok := <-w:
				if ok && o != OK {
					return idle, o
				}
			case <-time.After(c.grace):
			}
			return idle, classify(t.readErr)
		case <-deadline.C:
			// Not received: the server's report says how it ended.
			select {
			case o, ok := <-w:
				if ok && o != OK {
					return idle, o
				}
			case <-time.After(c.grace + time.Second):
			}
			return idle, Silent
		case <-ctx.Done():
			return idle, Silent
		}
	}
}

// keepalivePass checks the connections that sent TCP keepalive probes but no data once they
// have been idle of data well past the client→server timeout.
func (c *client) keepalivePass(ctx context.Context, up *DirectionResult, kas []*tconn) KeepaliveResult {
	k := KeepaliveResult{Idle: keepaliveIdle}
	if up == nil || !up.Expired {
		k.Detail = "not needed: no client→server timeout up to --max"
		return k
	}
	if up.Upper <= 2*keepaliveIdle {
		k.Detail = fmt.Sprintf("not tested: the timeout %s is too short for keepalive probes every %s", up.Upper, keepaliveIdle)
		return k
	}
	k.Tested = true
	need := max(up.Upper*5/4, up.Upper+2*time.Second)
	var best *tconn
	for _, t := range kas {
		select {
		case <-t.dead:
			continue
		default:
		}
		best = t
	}
	if best == nil {
		k.Outcome = FIN
		for _, t := range kas {
			k.Outcome = classify(t.readErr)
		}
		k.DataIdle = kas[0].idle()
		k.Detail = "the path ended connections that were sending keepalive probes"
		return k
	}
	if wait := need - best.idle(); wait > 0 {
		if c.o.Progress != nil {
			c.o.Progress(Progress{Phase: "keepalive pass", Elapsed: c.now(), ETA: wait + c.grace})
		}
		select {
		case <-ctx.Done():
			k.Tested = false
			return k
		case <-best.dead:
		case <-time.After(wait):
		}
	}
	k.DataIdle, k.Outcome = c.check(ctx, Up, best)
	k.Recognised = k.Outcome == OK
	if k.Recognised {
		k.Detail = fmt.Sprintf("a connection idle of data for %s survived with keepalive probes every %s", k.DataIdle.Round(time.Second), keepaliveIdle)
	} else {
		k.Detail = fmt.Sprintf("a connection idle of data for %s was lost (%s) although it sent keepalive probes every %s", k.DataIdle.Round(time.Second), k.Outcome, keepaliveIdle)
	}
	return k
}
