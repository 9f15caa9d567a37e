package nattimeout

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// ServerConfig bounds what a Server accepts. Zero fields take the defaults below.
type ServerConfig struct {
	// Token must match the client's (both empty: no token).
	Token string
	// MaxPerClient caps concurrent connections from one IP address (default 128).
	MaxPerClient int
	// MaxTotal caps concurrent connections in total (default 1024).
	MaxTotal int
	// MaxIdle closes a connection idle longer than this (default 2h30m); clients must not
	// measure beyond it.
	MaxIdle time.Duration
	// HelloTimeout is how long a new connection may take to say hello (default 5s).
	HelloTimeout time.Duration
	// Logf, when set, receives one line per refused connection and per session.
	Logf func(format string, a ...any)
}

// Server defaults.
const (
	DefaultMaxPerClient = 128
	DefaultMaxTotal     = 1024
	DefaultMaxIdle      = 160 * time.Minute // room for Measure's default 2h (see Options.Max)
	DefaultHelloTimeout = 5 * time.Second
	// controlIdle closes a control connection that sent nothing for this long (clients send
	// a ping every second).
	controlIdle = 30 * time.Second
)

// Validate names the first field out of range.
func (c ServerConfig) Validate() error {
	if c.MaxPerClient < 0 || c.MaxPerClient > 4096 {
		return fmt.Errorf("per-client connection cap %d out of range (allowed 2..4096, 0 for %d)", c.MaxPerClient, DefaultMaxPerClient)
	}
	if c.MaxPerClient == 1 {
		return fmt.Errorf("per-client connection cap 1 leaves no test connection besides the control one (allowed 2..4096)")
	}
	if c.MaxTotal < 0 || c.MaxTotal > 1<<20 {
		return fmt.Errorf("total connection cap %d out of range (allowed 2..1048576, 0 for %d)", c.MaxTotal, DefaultMaxTotal)
	}
	if c.MaxIdle < 0 || (c.MaxIdle > 0 && c.MaxIdle < time.Second) || c.MaxIdle > 25*time.Hour {
		return fmt.Errorf("idle cap %s out of range (allowed 1s..25h, 0 for %s)", c.MaxIdle, DefaultMaxIdle)
	}
	if len(c.Token) > 256 {
		return fmt.Errorf("token of %d bytes is too long (allowed up to 256)", len(c.Token))
	}
	return nil
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.MaxPerClient == 0 {
		c.MaxPerClient = DefaultMaxPerClient
	}
	if c.MaxTotal == 0 {
		c.MaxTotal = DefaultMaxTotal
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = DefaultHelloTimeout
	}
	return c
}

// Server is the far end of a measurement. It answers pings, sends pings when a client's
// control connection asks for them, and reports how those ended. Before a valid hello it
// sends at most one error frame; after it, one frame per frame received (two for a control
// hello: welcome and limits; two for a trigger: the ping it asks for and the result).
type Server struct {
	cfg    ServerConfig
	digest [16]byte

	mu       sync.Mutex
	perIP    map[string]int
	total    int
	sessions map[uint32]*session
	conns    map[net.Conn]struct{}
	closing  bool
	wg       sync.WaitGroup
}

type session struct {
	id     uint32
	ip     string
	ctrl   net.Conn
	wmu    sync.Mutex // serialises writes on ctrl
	tests  map[uint32]*testConn
	nextID uint32
}

type testConn struct {
	id      uint32
	c       net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	pending uint32 // sequence of an outstanding server ping (0: none)
	timer   *time.Timer
}

// NewServer checks cfg and returns a server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Server{cfg: cfg, digest: TokenDigest(cfg.Token), perIP: map[string]int{},
		sessions: map[uint32]*session{}, conns: map[net.Conn]struct{}{}}, nil
}

func (s *Server) logf(format string, a ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, a...)
	}
}

// Serve accepts connections on ln until ctx is cancelled, then closes ln and every
// connection (telling control connections that the server shuts down) and returns nil after
// all handlers have ended. Any other accept error is returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { s.shutdown(ln) })
	defer stop()
	var tempDelay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || ctx.Err() != nil {
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			s.shutdown(ln)
			s.wg.Wait()
			return fmt.Errorf("nat-timeout server: accept: %w", err)
		}
		tempDelay = 0
		s.admit(c)
	}
}

func (s *Server) shutdown(ln net.Listener) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	var ctrls []*session
	for _, ss := range s.sessions {
		ctrls = append(ctrls, ss)
	}
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	_ = ln.Close()
	for _, ss := range ctrls {
		ss.write(Frame{Type: TypeError, A: uint32(ErrCodeShutdown)})
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

func clientIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	h, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return h
}

// admit applies the caps and starts the connection's handler.
func (s *Server) admit(c net.Conn) {
	ip := clientIP(c)
	s.mu.Lock()
	code := ErrorCode(0)
	switch {
	case s.closing:
		code = ErrCodeShutdown
	case s.total >= s.cfg.MaxTotal:
		code = ErrCodeTotalCap
	case s.perIP[ip] >= s.cfg.MaxPerClient:
		code = ErrCodeClientCap
	}
	if code == 0 {
		s.total++
		s.perIP[ip]++
		s.conns[c] = struct{}{}
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if code != 0 {
		s.logf("refused %s: %s", c.RemoteAddr(), code)
		refuse(c, code)
		return
	}
	go func() {
		defer s.wg.Done()
		defer s.release(c, ip)
		s.handle(c, ip)
	}()
}

func refuse(c net.Conn, code ErrorCode) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_ = WriteFrame(c, Frame{Type: TypeError, A: uint32(code)})
	_ = c.Close()
}

func (s *Server) release(c net.Conn, ip string) {
	_ = c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.total--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
}

func (s *Server) handle(c net.Conn, ip string) {
	if tc, ok := c.(*net.TCPConn); ok {
		// No keepalive from this side: it would refresh the middlebox being measured.
		_ = tc.SetKeepAlive(false)
	}
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	f, err := ReadFrame(c)
	if err != nil {
		if errors.Is(err, ErrBadFrame) {
			refuse(c, ErrCodeProtocol)
		}
		return
	}
	if f.Type != TypeHello {
		refuse(c, ErrCodeProtocol)
		return
	}
	if subtle.ConstantTimeCompare(f.Data[:], s.digest[:]) != 1 {
		s.logf("refused %s: %s", c.RemoteAddr(), ErrCodeToken)
		refuse(c, ErrCodeToken)
		return
	}
	switch f.A {
	case RoleControl:
		s.control(c, ip)
	case RoleTest:
		s.test(c, ip, f.B)
	default:
		refuse(c, ErrCodeProtocol)
	}
}

func randomID() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.BigEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

func (ss *session) write(f Frame) {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	_ = ss.ctrl.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = WriteFrame(ss.ctrl, f)
}

func (s *Server) control(c net.Conn, ip string) {
	ss := &session{ip: ip, ctrl: c, tests: map[uint32]*testConn{}}
	s.mu.Lock()
	for ss.id == 0 || s.sessions[ss.id] != nil {
		ss.id = randomID()
	}
	s.sessions[ss.id] = ss
	s.mu.Unlock()
	s.logf("session %08x from %s", ss.id, ip)
	defer func() {
		s.mu.Lock()
		delete(s.sessions, ss.id)
		tests := make([]*testConn, 0, len(ss.tests))
		for _, t := range ss.tests {
			tests = append(tests, t)
		}
		s.mu.Unlock()
		for _, t := range tests {
			_ = t.c.Close()
		}
	}()
	var lim Frame
	lim.Type, lim.A, lim.B = TypeLimits, uint32(s.cfg.MaxPerClient), uint32(s.cfg.MaxTotal)
	binary.BigEndian.PutUint32(lim.Data[0:4], uint32(s.cfg.MaxIdle/time.Second))
	ss.write(Frame{Type: TypeWelcome, A: ss.id})
	ss.write(lim)
	for {
		_ = c.SetReadDeadline(time.Now().Add(controlIdle))
		f, err := ReadFrame(c)
		if err != nil {
			if errors.Is(err, ErrBadFrame) {
				ss.write(Frame{Type: TypeError, A: uint32(ErrCodeProtocol)})
			}
			return
		}
		switch f.Type {
		case TypePing:
			ss.write(Frame{Type: TypePong, A: f.A})
		case TypeTrigger:
			s.mu.Lock()
			t := ss.tests[f.A]
			s.mu.Unlock()
			if t == nil {
				var r Frame
				r.Type, r.A, r.B, r.Data[0] = TypeResult, f.A, f.B, byte(FIN)
				ss.write(r)
				continue
			}
			grace := time.Duration(binary.BigEndian.Uint32(f.Data[0:4])) * time.Millisecond
			grace = min(max(grace, 100*time.Millisecond), 30*time.Second)
			t.trigger(ss, f.B, grace)
		default:
			ss.write(Frame{Type: TypeError, A: uint32(ErrCodeProtocol)})
			return
		}
	}
}

// trigger sends a ping on the test connection and reports, on the control connection, whether
// the client answered within grace.
func (t *testConn) trigger(ss *session, seq uint32, grace time.Duration) {
	if seq == 0 {
		return
	}
	t.mu.Lock()
	if t.pending != 0 {
		t.mu.Unlock()
		return
	}
	t.pending = seq
	t.timer = time.AfterFunc(grace, func() { t.finish(ss, seq, Silent) })
	t.mu.Unlock()
	t.wmu.Lock()
	_ = t.c.SetWriteDeadline(time.Now().Add(grace))
	err := WriteFrame(t.c, Frame{Type: TypePing, A: seq})
	t.wmu.Unlock()
	if err != nil {
		t.finish(ss, seq, classify(err))
	}
}

// finish reports the outcome of the outstanding ping seq once; a failed one ends the
// connection (abortively: the path has already forgotten it).
func (t *testConn) finish(ss *session, seq uint32, o Outcome) {
	t.mu.Lock()
	if t.pending != seq {
		t.mu.Unlock()
		return
	}
	t.pending = 0
	if t.timer != nil {
		t.timer.Stop()
	}
	t.mu.Unlock()
	var r Frame
	r.Type, r.A, r.B, r.Data[0] = TypeResult, t.id, seq, byte(o)
	ss.write(r)
	if o != OK {
		abort(t.c)
	}
}

// abort closes c without lingering (an RST instead of a FIN retransmitted into a void).
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// classify maps a read or write error on a test connection to an outcome.
func classify(err error) Outcome {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return FIN
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return RST
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Silent
	}
	return RST
}

func (s *Server) test(c net.Conn, ip string, sid uint32) {
	s.mu.Lock()
	ss := s.sessions[sid]
	if ss == nil || ss.ip != ip {
		s.mu.Unlock()
		refuse(c, ErrCodeSession)
		return
	}
	ss.nextID++
	t := &testConn{id: ss.nextID, c: c}
	ss.tests[t.id] = t
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(ss.tests, t.id)
		s.mu.Unlock()
	}()
	t.wmu.Lock()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := WriteFrame(c, Frame{Type: TypeWelcome, A: t.id})
	t.wmu.Unlock()
	if err != nil {
		return
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.MaxIdle))
		f, err := ReadFrame(c)
		if err != nil {
			t.mu.Lock()
			seq := t.pending
			t.mu.Unlock()
			if seq != 0 {
				t.finish(ss, seq, classify(err))
			}
			return
		}
		switch f.Type {
		case TypePing:
			t.wmu.Lock()
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			err = WriteFrame(c, Frame{Type: TypePong, A: f.A})
			t.wmu.Unlock()
			if err != nil {
				return
			}
		case TypePong:
			t.finish(ss, f.A, OK)
		default:
			refuse(c, ErrCodeProtocol)
			return
		}
	}
}
