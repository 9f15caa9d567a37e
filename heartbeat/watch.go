package heartbeat

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// Answer wraps conn with Server and answers the peer's heartbeats until ctx is done or the
// connection ends, discarding any application data. Without opts.Enforcement it accepts any
// PING rate. Like every Server it also PINGs a peer it has not heard from for opts.Time, so a
// vanished peer ends it with an error matching ErrPeerUnresponsive. It closes conn before
// returning and
// returns nil for a clean end (ctx done or the peer closed), otherwise the error that ended
// the connection (for example one matching ErrGoAway for a ping flood). This is the
// "peer" side of a heartbeat detector.
func Answer(ctx context.Context, conn net.Conn, opts Options) error {
	if opts.Enforcement == nil {
		// A responder accepts any PING rate unless told otherwise.
		opts.Enforcement = &EnforcementPolicy{PermitWithoutCalls: true}
	}
	c, err := Server(conn, opts)
	if err != nil {
		conn.Close()
		return err
	}
	err = drain(ctx, c, nil)
	if errors.Is(err, io.EOF) || (ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		return nil
	}
	return err
}

// Monitor wraps conn with Client and watches the peer until ctx is done, count PONGs have
// arrived (count 0 = no limit) or the peer is declared dead. It closes the connection before
// returning. The error is nil after count PONGs, ctx.Err() when ctx ended first, io.EOF when
// the peer closed the connection, and otherwise why the connection died: errors.Is(err, ErrPeerUnresponsive) for a dead or hung peer,
// ErrGoAway for a GOAWAY. opts.OnPong, if set, is still called for every PONG.
func Monitor(ctx context.Context, conn net.Conn, opts Options, count int) (Stats, error) {
	enough := make(chan struct{})
	user := opts.OnPong
	n := 0
	opts.OnPong = func(c *Conn, rtt time.Duration) {
		if user != nil {
			user(c, rtt)
		}
		n++ // OnPong runs on the single reading goroutine
		if count > 0 && n == count {
			close(enough)
		}
	}
	c, err := Client(conn, opts)
	if err != nil {
		conn.Close()
		return Stats{}, err
	}
	err = drain(ctx, c, enough)
	return c.Stats(), err
}

// drain reads and discards from c until ctx is done, stop is closed, or the connection ends.
func drain(ctx context.Context, c *Conn, stop <-chan struct{}) error {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-stop:
	case err = <-done:
	}
	if cerr := c.Err(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	c.Close()
	return err
}
