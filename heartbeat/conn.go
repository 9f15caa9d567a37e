package heartbeat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Pending control frames (Conn.ctl bits).
const (
	ctlPing = 1 << iota
	ctlPong
)

// Conn is a net.Conn that carries application bytes inside DATA frames and keeps the peer
// under watch with PING/PONG frames. Create it with Wrap, Client or Server; both ends of a
// connection must be wrapped.
//
// A Conn has no timer of its own: its deadlines live in the process-wide scheduler and PINGs
// and PONGs are written by the scheduler's small writer pool. Incoming frames are handled by
// whichever goroutine reads the connection: the application's Read or, while the application
// is not reading, one background reader the scheduler starts, which stays blocked in the
// underlying Read until the application reads again or the connection ends (see the package
// documentation for the cost).
type Conn struct {
	nc    net.Conn
	s     *scheduler
	timeD int64 // Time, ns
	toutD int64 // Timeout, ns

	// Options kept by the connection.
	minTime            int64
	healthTimeout      time.Duration
	health             func(context.Context) error
	onDead             func(*Conn, error)
	onPong             func(*Conn, time.Duration)
	maxNoData          int32
	permitWithoutCalls bool
	enforce            bool
	enfPermit          bool

	// Shared state.
	dead        atomic.Bool
	hasPend     atomic.Bool // DATA buffered by the background reader
	healthBusy  atomic.Bool
	calls       atomic.Int32
	ctl         atomic.Uint32 // pending control frames
	readWaiters atomic.Int32
	strikes     atomic.Int32
	noData      atomic.Int32 // PINGs sent since the last DATA written
	pingsSent   atomic.Uint32
	pongsRecv   atomic.Uint32
	pingsRecv   atomic.Uint32
	pongsSent   atomic.Uint32
	healthFails atomic.Uint32
	lastRead    atomic.Int64 // nanotime of the last byte read
	lastWrite   atomic.Int64 // nanotime of the last frame written
	pingID      atomic.Uint64
	pongID      atomic.Uint64
	pongTime    atomic.Int64
	rtt         atomic.Int64
	rttMin      atomic.Int64
	rttSmooth   atomic.Int64
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	errp        atomic.Pointer[deadCause] // why the connection died; set once

	// Scheduler state, touched only by the scheduler (idx, when, removed under its mutex).
	when    int64
	pingAt  int64
	idx     int32
	unans   int32
	removed bool
	pingOut bool

	// Read side, guarded by readMu.
	readMu       sync.Mutex
	rpos, rend   int32
	dataLeft     int32
	pendOff      int32
	pendEnd      int32
	rbuf         [32]byte
	pend         *[]byte
	rerr         error
	lastPingRecv int64

	// Write side, guarded by writeMu.
	writeMu sync.Mutex
	wctl    [HeaderSize + pingPayload]byte
}

// deadCause boxes the error that ended a connection.
type deadCause struct{ err error }

// Wrap returns conn carrying heartbeats configured by opts. It validates opts, applies
// opts.KeepAlive and opts.UserTimeout to the underlying TCP socket if asked, and registers the
// connection with the process-wide scheduler. The peer must wrap its end too.
func Wrap(conn net.Conn, opts Options) (*Conn, error) {
	if conn == nil {
		return nil, errors.New("heartbeat: Wrap of a nil net.Conn")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	if o.KeepAlive != nil || o.UserTimeout {
		if err := applyKeepAlive(conn, o); err != nil {
			return nil, err
		}
	}
	c := &Conn{
		nc:                 conn,
		s:                  o.scheduler(),
		timeD:              int64(o.Time),
		toutD:              int64(o.Timeout),
		permitWithoutCalls: o.PermitWithoutCalls,
		maxNoData:          int32(o.MaxPingsWithoutData),
		health:             o.Health,
		healthTimeout:      o.HealthTimeout,
		onDead:             o.OnDead,
		onPong:             o.OnPong,
		idx:                -1,
	}
	if e := o.Enforcement; e != nil {
		c.enforce = true
		c.enfPermit = e.PermitWithoutCalls
		c.minTime = int64(e.MinTime)
	}
	now := c.s.nanotime()
	c.lastRead.Store(now)
	c.lastWrite.Store(now)
	c.s.add(c, now+min(c.timeD, c.toutD/2))
	return c, nil
}

// Client wraps the dialing side of a connection. It is Wrap with PermitWithoutCalls set, so
// an idle client keeps checking its server, as a gRPC client configured for keepalive does.
func Client(conn net.Conn, opts Options) (*Conn, error) {
	opts.PermitWithoutCalls = true
	return Wrap(conn, opts)
}

// Server wraps the accepting side of a connection. As grpc-go's server with
// keepalive.ServerParameters, it PINGs a client it has not heard from for Time, whether or not
// a call is active (PermitWithoutCalls is set), so a stopped idle client is declared dead
// within Time + Timeout. Without an EnforcementPolicy in opts it polices the client's PINGs
// with MinTime = Time/2 and PermitWithoutCalls, which lets a client using the same Time through
// and cuts a flood (grpc-go's default policy is MinTime 5 min without PermitWithoutStream; see
// docs/heartbeat-protocol.md for every difference from gRPC).
func Server(conn net.Conn, opts Options) (*Conn, error) {
	opts.PermitWithoutCalls = true
	if opts.Enforcement == nil {
		t := opts.Time
		if t == 0 {
			t = DefaultTime
		}
		opts.Enforcement = &EnforcementPolicy{MinTime: max(t/2, MinDuration), PermitWithoutCalls: true}
	}
	return Wrap(conn, opts)
}

func applyKeepAlive(conn net.Conn, o Options) error {
	tc, err := keepalive.UnwrapTCP(conn)
	if err != nil {
		return fmt.Errorf("heartbeat: KeepAlive and UserTimeout need a TCP connection underneath: %w", err)
	}
	var cfg keepalive.Config
	if o.KeepAlive != nil {
		cfg = *o.KeepAlive
	}
	if o.UserTimeout {
		res := time.Millisecond
		if lim, ok := keepalive.LimitsFor(keepalive.GOOS); ok && lim.UserTimeoutResolution > 0 {
			res = lim.UserTimeoutResolution
		}
		cfg.UserTimeout = (o.Timeout + res - 1) / res * res
	}
	if err := keepalive.Apply(tc, cfg); err != nil {
		return fmt.Errorf("heartbeat: apply %s: %w", cfg, err)
	}
	return nil
}

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying connection. PINGs and PONGs are
// subject to it too.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// BeginCall marks the start of a call (a request awaiting its answer). While at least one
// call is active the connection is pinged even without PermitWithoutCalls, and the peer's
// EnforcementPolicy allows it.
func (c *Conn) BeginCall() { c.calls.Add(1) }

// EndCall marks the end of a call started with BeginCall.
func (c *Conn) EndCall() {
	if c.calls.Add(-1) < 0 {
		c.calls.Store(0)
	}
}

// Err returns why the connection died (matching ErrPeerUnresponsive, ErrGoAway, ErrProtocol
// or net.ErrClosed), or nil while it is alive.
func (c *Conn) Err() error {
	if d := c.errp.Load(); d != nil {
		return d.err
	}
	return nil
}

// Close closes the connection and removes it from the scheduler. OnDead is not called.
func (c *Conn) Close() error {
	if !c.markDead(net.ErrClosed) {
		return nil
	}
	c.s.remove(c)
	return c.nc.Close()
}

// markDead records err as the cause of death; it reports false when already dead.
func (c *Conn) markDead(err error) bool {
	if !c.errp.CompareAndSwap(nil, &deadCause{err}) {
		return false
	}
	c.dead.Store(true)
	return true
}

// die ends the connection because of err and tells OnDead.
func (c *Conn) die(err error) {
	if !c.markDead(err) {
		return
	}
	c.s.remove(c)
	// tls.Conn.Close may block sending close_notify; never stall the caller (the scheduler).
	go c.nc.Close()
	c.notify(err)
}

func (c *Conn) notify(err error) {
	if f := c.onDead; f != nil {
		go f(c, err)
	}
}

// goAway sends GOAWAY code/reason to the peer, then closes the connection. The connection's
// error is cause, or a *GoAwayError when cause is nil.
func (c *Conn) goAway(code uint32, reason string, cause error) error {
	var err error = &GoAwayError{Code: code, Reason: reason, Sent: true}
	if cause != nil {
		err = cause
	}
	if !c.markDead(err) {
		return c.Err()
	}
	c.s.remove(c)
	go func() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.writeMu.Lock()
		b, _ := AppendFrame(nil, Frame{Type: FrameGoAway, Code: code, Reason: reason})
		_, _ = c.nc.Write(b)
		c.writeMu.Unlock()
		_ = c.nc.Close()
	}()
	c.notify(err)
	return err
}

// Read reads application bytes from DATA frames, handling PING, PONG and GOAWAY frames on
// the way. After the peer is declared dead it returns an error matching ErrPeerUnresponsive,
// after GOAWAY one matching ErrGoAway.
func (c *Conn) Read(p []byte) (int, error) {
	c.readWaiters.Add(1)
	c.readMu.Lock()
	c.readWaiters.Add(-1)
	n, err := c.readLocked(p)
	c.readMu.Unlock()
	return n, err
}

func (c *Conn) readLocked(p []byte) (int, error) {
	for {
		if c.pend != nil {
			n := copy(p, (*c.pend)[c.pendOff:c.pendEnd])
			c.pendOff += int32(n)
			if c.pendOff == c.pendEnd {
				c.s.bufs.Put(c.pend)
				c.pend = nil
				c.hasPend.Store(false)
			}
			return n, nil
		}
		if c.dead.Load() {
			return 0, c.Err()
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		if c.dataLeft > 0 {
			m := min(len(p), int(c.dataLeft))
			if c.rpos < c.rend {
				n := copy(p[:m], c.rbuf[c.rpos:c.rend])
				c.rpos += int32(n)
				c.dataLeft -= int32(n)
				return n, nil
			}
			n, err := c.nc.Read(p[:m])
			if n > 0 {
				c.markRead(n)
				c.dataLeft -= int32(n)
				return n, nil
			}
			if err != nil {
				return 0, c.readErr(err, true)
			}
			continue
		}
		if err := c.readFrame(); err != nil {
			return 0, c.readErr(err, c.rpos < c.rend)
		}
	}
}

// readFrame reads one frame header; control frames are handled entirely, for DATA only the
// header is consumed and dataLeft set.
func (c *Conn) readFrame() error {
	if err := c.fill(HeaderSize); err != nil {
		return err
	}
	t, n, err := checkHeader(c.rbuf[c.rpos : c.rpos+HeaderSize])
	if err != nil {
		return err
	}
	c.rpos += HeaderSize
	if t == FrameData {
		c.dataLeft = int32(n)
		return nil
	}
	if err := c.fill(n); err != nil {
		return err
	}
	p := c.rbuf[c.rpos : c.rpos+int32(n)]
	c.rpos += int32(n)
	return c.control(t, p)
}

// fill makes at least need bytes available in rbuf[rpos:rend].
func (c *Conn) fill(need int) error {
	if need > len(c.rbuf) {
		return &FrameError{Field: "length", Value: need, Allowed: fmt.Sprintf("at most %d for control frames", len(c.rbuf))}
	}
	empty := 0
	for int(c.rend-c.rpos) < need {
		if c.rpos == c.rend {
			c.rpos, c.rend = 0, 0
		} else if len(c.rbuf)-int(c.rpos) < need {
			c.rend = int32(copy(c.rbuf[:], c.rbuf[c.rpos:c.rend]))
			c.rpos = 0
		}
		n, err := c.nc.Read(c.rbuf[c.rend:])
		if n > 0 {
			c.markRead(n)
			c.rend += int32(n)
			continue
		}
		if err != nil {
			if err == io.EOF && c.rend > c.rpos {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if empty++; empty > 100 {
			return io.ErrNoProgress
		}
	}
	return nil
}

func (c *Conn) markRead(n int) {
	c.lastRead.Store(c.s.nanotime())
	c.bytesIn.Add(uint64(n))
}

// readErr turns an error from the underlying connection or the decoder into what Read
// returns, ending the connection when the error is final.
func (c *Conn) readErr(err error, midFrame bool) error {
	if c.dead.Load() {
		return c.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if errors.Is(err, ErrProtocol) {
		return c.goAway(CodeProtocolError, "protocol_error", err)
	}
	if err == io.EOF && midFrame {
		err = io.ErrUnexpectedEOF
	}
	if peerGone(err) {
		c.die(c.tcpDead(err))
		return c.Err()
	}
	// The peer closed or the connection broke: stop heartbeating it.
	c.rerr = err
	c.s.remove(c)
	return err
}

// tcpDead is the DeadError for a socket error that means the TCP stack gave up on the peer.
func (c *Conn) tcpDead(err error) *DeadError {
	return &DeadError{By: ByTCP, Err: err, Silence: time.Duration(c.s.nanotime() - c.lastRead.Load()), Timeout: time.Duration(c.toutD)}
}

// writeFailed ends the connection when a write error means the peer is gone.
func (c *Conn) writeFailed(err error) {
	if peerGone(err) {
		c.die(c.tcpDead(err))
	}
}

// control handles one control frame's payload.
func (c *Conn) control(t FrameType, p []byte) error {
	switch t {
	case FramePing:
		c.pingsRecv.Add(1)
		if c.enforce && c.strike() {
			return c.goAway(CodeTooManyPings, ReasonTooManyPings, nil)
		}
		id := binary.BigEndian.Uint64(p[0:8])
		ts := int64(binary.BigEndian.Uint64(p[8:16]))
		if c.health != nil {
			if c.healthBusy.CompareAndSwap(false, true) {
				go c.checkHealth(id, ts)
			} else {
				c.healthFails.Add(1)
			}
			return nil
		}
		c.pongID.Store(id)
		c.pongTime.Store(ts)
		c.queue(ctlPong)
	case FramePong:
		c.pongsRecv.Add(1)
		id := binary.BigEndian.Uint64(p[0:8])
		ts := int64(binary.BigEndian.Uint64(p[8:16]))
		if id != c.pingID.Load() {
			return nil
		}
		now := c.s.nanotime()
		c.s.advance(c, now+c.timeD)
		rtt := now - ts
		if rtt < 0 || rtt > int64(time.Hour) {
			return nil
		}
		c.rtt.Store(rtt)
		if m := c.rttMin.Load(); m == 0 || rtt < m {
			c.rttMin.Store(rtt)
		}
		if s := c.rttSmooth.Load(); s == 0 {
			c.rttSmooth.Store(rtt)
		} else {
			c.rttSmooth.Store(s + (rtt-s)/8)
		}
		if f := c.onPong; f != nil {
			f(c, time.Duration(rtt))
		}
	case FrameGoAway:
		code := binary.BigEndian.Uint32(p[0:4])
		err := &GoAwayError{Code: code, Reason: string(p[4:])}
		c.die(err)
		return err
	}
	return nil
}

// strike applies the EnforcementPolicy to a received PING and reports whether the peer has
// used up its strikes.
func (c *Conn) strike() bool {
	now := c.s.nanotime()
	last := c.lastPingRecv
	c.lastPingRecv = now
	if last == 0 {
		return false
	}
	window := c.minTime
	if c.calls.Load() == 0 && !c.enfPermit {
		window = int64(noCallsPingWindow)
	}
	if now-last >= window {
		return false
	}
	return c.strikes.Add(1) > MaxPingStrikes
}

func (c *Conn) checkHealth(id uint64, ts int64) {
	ctx, cancel := context.WithTimeout(context.Background(), c.healthTimeout)
	err := c.health(ctx)
	late := ctx.Err() != nil
	cancel()
	c.healthBusy.Store(false)
	if err != nil || late {
		c.healthFails.Add(1)
		return
	}
	c.pongID.Store(id)
	c.pongTime.Store(ts)
	c.queue(ctlPong)
}

// queue marks control frames pending and gets them written without blocking the caller.
func (c *Conn) queue(bits uint32) {
	c.ctl.Or(bits)
	c.s.kick(c)
}

// tryFlush writes pending control frames unless a Write holds the connection, in which case
// that Write sends them when it finishes.
func (c *Conn) tryFlush() {
	if c.writeMu.TryLock() {
		c.flushLocked()
		c.unlockWrite()
	}
}

// unlockWrite releases writeMu and flushes control frames queued while it was held.
func (c *Conn) unlockWrite() {
	for {
		c.writeMu.Unlock()
		if c.ctl.Load() == 0 || c.dead.Load() || !c.writeMu.TryLock() {
			return
		}
		c.flushLocked()
	}
}

func (c *Conn) flushLocked() {
	bits := c.ctl.Swap(0)
	if bits == 0 || c.dead.Load() {
		return
	}
	if bits&ctlPong != 0 {
		putPing(c.wctl[:], FramePong, c.pongID.Load(), c.pongTime.Load())
		c.pongsSent.Add(1)
		if _, err := c.nc.Write(c.wctl[:]); err == nil {
			c.lastWrite.Store(c.s.nanotime())
		} else {
			c.writeFailed(err)
		}
	}
	if bits&ctlPing != 0 {
		putPing(c.wctl[:], FramePing, c.pingID.Load(), c.s.nanotime())
		c.pingsSent.Add(1)
		if _, err := c.nc.Write(c.wctl[:]); err == nil {
			c.lastWrite.Store(c.s.nanotime())
		} else {
			c.writeFailed(err)
		}
	}
}

// Write sends p in DATA frames of at most MaxPayload bytes, then any pending control frame.
func (c *Conn) Write(p []byte) (int, error) {
	if c.dead.Load() {
		return 0, c.Err()
	}
	c.writeMu.Lock()
	bp := c.s.bufs.Get().(*[]byte)
	b := *bp
	written := 0
	var err error
	for len(p) > 0 {
		if c.dead.Load() {
			err = c.Err()
			break
		}
		k := min(len(p), MaxPayload)
		putHeader(b, FrameData, k)
		copy(b[HeaderSize:], p[:k])
		var m int
		m, err = c.nc.Write(b[:HeaderSize+k])
		if m > HeaderSize {
			written += m - HeaderSize
		}
		if err != nil {
			break
		}
		p = p[k:]
	}
	c.s.bufs.Put(bp)
	if written > 0 {
		c.bytesOut.Add(uint64(written))
		c.lastWrite.Store(c.s.nanotime())
		c.noData.Store(0)
		c.strikes.Store(0)
	}
	if err != nil {
		c.writeFailed(err)
	}
	c.flushLocked()
	c.unlockWrite()
	if err != nil && c.dead.Load() {
		err = c.Err()
	}
	return written, err
}

// visit is called by the scheduler at c's deadline; it returns the next deadline or -1 when
// c leaves the schedule.
func (c *Conn) visit(now int64) int64 {
	if c.dead.Load() {
		return -1
	}
	lr := c.lastRead.Load()
	if c.pingOut {
		switch {
		case lr > c.pingAt:
			c.pingOut = false
			c.unans = 0
		case now < c.pingAt+c.toutD:
			return c.pingAt + c.toutD
		case c.hasPend.Load():
			// The application has not consumed buffered DATA, so later frames cannot be
			// read; the peer was alive when it sent it. Check again later.
			return now + c.toutD
		default:
			c.die(&DeadError{By: ByHeartbeat, Silence: time.Duration(now - lr), Timeout: time.Duration(c.toutD), PingsUnanswered: int(c.unans)})
			return -1
		}
	}
	c.ensureReader()
	half := c.toutD / 2
	due := lr + c.timeD
	if now < due {
		return min(due, now+half)
	}
	if !c.mayPing() {
		return now + min(c.timeD, half)
	}
	c.pingID.Add(1)
	c.pingOut = true
	c.pingAt = now
	c.unans++
	c.noData.Add(1)
	c.queue(ctlPing)
	return now + c.toutD
}

func (c *Conn) mayPing() bool {
	if !c.permitWithoutCalls && c.calls.Load() == 0 {
		return false
	}
	if m := c.maxNoData; m > 0 && c.noData.Load() >= m {
		return false
	}
	return true
}

// ensureReader starts a background reader when nobody reads the connection, so PINGs get
// answered and PONGs seen while the application is busy elsewhere.
func (c *Conn) ensureReader() {
	if c.hasPend.Load() || !c.readMu.TryLock() {
		return
	}
	if c.pend != nil || c.rerr != nil || c.dead.Load() {
		c.readMu.Unlock()
		return
	}
	go c.pump()
}

// pump reads frames while the application does not; it hands over as soon as a Read waits
// and stops after buffering one DATA frame. It is entered with readMu held.
func (c *Conn) pump() {
	defer c.readMu.Unlock()
	for c.readWaiters.Load() == 0 && !c.dead.Load() {
		if c.dataLeft > 0 {
			bp := c.s.bufs.Get().(*[]byte)
			b := (*bp)[:c.dataLeft]
			k := copy(b, c.rbuf[c.rpos:c.rend])
			c.rpos += int32(k)
			for k < len(b) {
				n, err := c.nc.Read(b[k:])
				if n > 0 {
					c.markRead(n)
					k += n
					continue
				}
				if err != nil {
					if !c.dead.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
						c.readErr(err, true)
					}
					break
				}
			}
			c.dataLeft -= int32(k)
			if k == 0 {
				c.s.bufs.Put(bp)
				return
			}
			c.pend, c.pendOff, c.pendEnd = bp, 0, int32(k)
			c.hasPend.Store(true)
			return
		}
		if err := c.readFrame(); err != nil {
			if !c.dead.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
				c.readErr(err, c.rpos < c.rend)
			}
			return
		}
	}
}

// Stats is a snapshot of a connection's heartbeat measurements.
type Stats struct {
	// RTT is the round-trip time of the last PING; MinRTT the smallest seen; SmoothedRTT the
	// exponentially weighted average (gain 1/8, as TCP's SRTT). Zero before the first PONG.
	RTT, MinRTT, SmoothedRTT time.Duration
	// LastRead and LastWrite are the times of the last byte read and the last frame written.
	LastRead, LastWrite time.Time
	// PingsSent, PongsReceived, PingsReceived and PongsSent count control frames.
	PingsSent, PongsReceived, PingsReceived, PongsSent uint64
	// BytesRead counts all bytes read from the underlying connection (frames included);
	// BytesWritten counts application bytes written.
	BytesRead, BytesWritten uint64
	// HealthFailures counts PINGs left unanswered because Health failed, timed out or was
	// still running.
	HealthFailures uint64
	// Strikes is the number of bad PINGs the peer has against it (EnforcementPolicy).
	Strikes int
	// Calls is the number of active calls (BeginCall minus EndCall).
	Calls int
	// Err is why the connection died, nil while alive.
	Err error
}

// Stats returns a snapshot of the connection's measurements.
func (c *Conn) Stats() Stats {
	return Stats{
		RTT:            time.Duration(c.rtt.Load()),
		MinRTT:         time.Duration(c.rttMin.Load()),
		SmoothedRTT:    time.Duration(c.rttSmooth.Load()),
		LastRead:       c.s.timeAt(c.lastRead.Load()),
		LastWrite:      c.s.timeAt(c.lastWrite.Load()),
		PingsSent:      uint64(c.pingsSent.Load()),
		PongsReceived:  uint64(c.pongsRecv.Load()),
		PingsReceived:  uint64(c.pingsRecv.Load()),
		PongsSent:      uint64(c.pongsSent.Load()),
		BytesRead:      c.bytesIn.Load(),
		BytesWritten:   c.bytesOut.Load(),
		HealthFailures: uint64(c.healthFails.Load()),
		Strikes:        int(c.strikes.Load()),
		Calls:          int(c.calls.Load()),
		Err:            c.Err(),
	}
}
