package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/keepalive-dev/keepalive/heartbeat"
)

func newHeartbeatCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "heartbeat",
		Short: "Check a path end to end with application heartbeats (PING/PONG)",
		Long: `Application heartbeats prove that the peer application answers, not only its TCP stack.

Kernel keepalive is answered by the peer's kernel, so a deadlocked server still looks alive,
and some middleboxes do not count keepalive probes as activity. 'keepalive heartbeat' runs the
heartbeat protocol of the Go package github.com/keepalive-dev/keepalive/heartbeat (see
docs/heartbeat-protocol.md): the client sends a PING after --time without reading anything and
declares the peer dead when no frame arrives within --timeout after it.

Run 'serve' on one end and 'connect' on the other, e.g. across a NAT or load balancer.`,
		Example: `  keepalive heartbeat serve --listen 0.0.0.0:7000
  keepalive heartbeat connect server.example:7000 --time 5s --timeout 10s
  keepalive heartbeat connect 127.0.0.1:7000 --time 200ms --count 5 --json`,
	}
	cmd.AddCommand(newHeartbeatServeCmd(g), newHeartbeatConnectCmd(g))
	return cmd
}

// hbPrinter serialises output lines of concurrent connections.
type hbPrinter struct {
	mu sync.Mutex
	g  *globalOptions
}

func (p *hbPrinter) emit(v map[string]any, format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.g.JSON {
		v["time"] = time.Now().UTC().Format(time.RFC3339Nano)
		_ = json.NewEncoder(p.g.Stdout).Encode(v)
		return
	}
	fmt.Fprintf(p.g.Stdout, format+"\n", a...)
}

// hbCheckDur validates a duration flag.
func hbCheckDur(flag string, d time.Duration, zeroOK bool) error {
	if zeroOK && d == 0 {
		return nil
	}
	if d < heartbeat.MinDuration || d > heartbeat.MaxDuration {
		allowed := "10ms..24h"
		if zeroOK {
			allowed = "0 (off) or 10ms..24h"
		}
		return usagef("--%s %s is out of range (allowed %s)", flag, d, allowed)
	}
	return nil
}

func hbMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func newHeartbeatServeCmd(g *globalOptions) *cobra.Command {
	var (
		listen    string
		tm, tout  time.Duration
		minTime   time.Duration
		hangAfter int
	)
	cmd := &cobra.Command{
		Use:   "serve --listen ADDR",
		Short: "Accept connections and answer heartbeats",
		Long: `Accept TCP connections and answer their heartbeats until interrupted.

Every connection is wrapped as a heartbeat server: PINGs are answered with PONGs, application
data is discarded, and a client pinging more often than --min-time is cut with GOAWAY
"too_many_pings" after 2 strikes. The first line printed is the listening address (useful with
port 0). --hang-after N simulates a hung application: after answering N PINGs on a connection
the server stops answering while its TCP stack stays up, which kernel keepalive cannot notice.`,
		Example: `  keepalive heartbeat serve --listen 127.0.0.1:7000
  keepalive heartbeat serve --listen :0 --min-time 1s --json
  keepalive heartbeat serve --listen 127.0.0.1:7000 --hang-after 3   # pretend to deadlock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if listen == "" {
				return usagef("--listen is required (e.g. --listen 127.0.0.1:7000)")
			}
			for _, c := range []struct {
				name   string
				d      time.Duration
				zeroOK bool
			}{{"time", tm, false}, {"timeout", tout, false}, {"min-time", minTime, true}} {
				if err := hbCheckDur(c.name, c.d, c.zeroOK); err != nil {
					return err
				}
			}
			if hangAfter < 0 {
				return usagef("--hang-after %d is out of range (allowed 0 (never) or more)", hangAfter)
			}
			ctx := cmd.Context()
			var lc net.ListenConfig
			ln, err := lc.Listen(ctx, "tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			p := &hbPrinter{g: g}
			p.emit(map[string]any{"event": "listening", "addr": ln.Addr().String()}, "listening on %s", ln.Addr())
			go func() { <-ctx.Done(); ln.Close() }()
			var wg sync.WaitGroup
			defer wg.Wait()
			for {
				raw, err := ln.Accept()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("accept: %w", err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					hbServeConn(ctx, p, raw, tm, tout, minTime, hangAfter)
				}()
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address to listen on, e.g. 127.0.0.1:7000 or :0")
	tm = 30 * time.Second
	f.Var(newDurationValue(&tm), "time", "PING a silent client after this long without reading (10ms..24h)")
	tout = 20 * time.Second
	f.Var(newDurationValue(&tout), "timeout", "declare a client dead when nothing arrives this long after a PING (10ms..24h)")
	f.Var(newDurationValue(&minTime), "min-time", "shortest allowed interval between a client's PINGs, 0 = any (enforcement, 2 strikes then GOAWAY)")
	f.IntVar(&hangAfter, "hang-after", 0, "simulate a hung application: stop answering after N PINGs per connection (0 = never)")
	return cmd
}

func hbServeConn(ctx context.Context, p *hbPrinter, raw net.Conn, tm, tout, minTime time.Duration, hangAfter int) {
	peer := raw.RemoteAddr().String()
	p.emit(map[string]any{"event": "accepted", "peer": peer}, "accepted %s", peer)
	opts := heartbeat.Options{
		Time: tm, Timeout: tout, PermitWithoutCalls: true,
		Enforcement: &heartbeat.EnforcementPolicy{MinTime: minTime, PermitWithoutCalls: true},
	}
	if hangAfter > 0 {
		var answered atomic.Int64
		opts.Health = func(context.Context) error {
			if answered.Add(1) > int64(hangAfter) {
				<-ctx.Done() // a deadlocked application ignores its own deadline
				return ctx.Err()
			}
			return nil
		}
	}
	err := heartbeat.Answer(ctx, raw, opts)
	reason := "closed by peer"
	if err != nil {
		reason = err.Error()
	}
	p.emit(map[string]any{"event": "closed", "peer": peer, "reason": reason}, "closed %s: %s", peer, reason)
}

func newHeartbeatConnectCmd(g *globalOptions) *cobra.Command {
	var (
		tm, tout, dialTimeout time.Duration
		count                 int
		userTimeout           bool
	)
	cmd := &cobra.Command{
		Use:   "connect ADDR",
		Short: "Connect to a heartbeat server and print the RTT of every PING",
		Long: `Connect to 'keepalive heartbeat serve' and watch the peer with heartbeats.

A PING is sent after --time without reading anything; the RTT of every PONG is printed. When
no frame arrives within --timeout after a PING, the peer is declared dead (host gone, path
broken, or application hung) and the command prints the reason once and exits with status 3;
a GOAWAY from the server (e.g. "too_many_pings" when --time is below the server's --min-time)
also exits 3.
--count N stops after N PONGs (exit 0). --user-timeout also sets TCP_USER_TIMEOUT = --timeout on
the socket, as gRPC does. An address where no heartbeat server answers (an HTTP server, say)
is reported as such, with exit status 1.`,
		Example: `  keepalive heartbeat connect 127.0.0.1:7000
  keepalive heartbeat connect 127.0.0.1:7000 --time 200ms --timeout 1s --count 10
  keepalive heartbeat connect lb.example:443 --time 5s --timeout 10s --json | jq .rtt_ms`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr := args[0]
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return usagef("address %q is not HOST:PORT: %v", addr, err)
			}
			if err := hbCheckDur("time", tm, false); err != nil {
				return err
			}
			if err := hbCheckDur("timeout", tout, false); err != nil {
				return err
			}
			if dialTimeout <= 0 || dialTimeout > heartbeat.MaxDuration {
				return usagef("--dial-timeout %s is out of range (allowed 1ns..24h)", dialTimeout)
			}
			if count < 0 || count > 1_000_000_000 {
				return usagef("--count %d is out of range (allowed 0 (unlimited)..1000000000)", count)
			}
			ctx := cmd.Context()
			d := net.Dialer{Timeout: dialTimeout}
			raw, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("connect to %s: %w", addr, err)
			}
			peer := raw.RemoteAddr().String()
			p := &hbPrinter{g: g}
			p.emit(map[string]any{"event": "connected", "peer": peer, "time_ms": hbMs(tm), "timeout_ms": hbMs(tout)},
				"connected to %s (time %s, timeout %s)", peer, tm, tout)
			seq := 0
			opts := heartbeat.Options{
				Time: tm, Timeout: tout, UserTimeout: userTimeout,
				OnPong: func(c *heartbeat.Conn, rtt time.Duration) {
					seq++
					st := c.Stats()
					p.emit(map[string]any{"event": "pong", "seq": seq, "peer": peer, "rtt_ms": hbMs(rtt),
						"min_rtt_ms": hbMs(st.MinRTT), "smoothed_rtt_ms": hbMs(st.SmoothedRTT)},
						"pong %d from %s: rtt %.3f ms (min %.3f, smoothed %.3f)", seq, peer, hbMs(rtt), hbMs(st.MinRTT), hbMs(st.SmoothedRTT))
				},
			}
			st, err := heartbeat.Monitor(ctx, raw, opts, count)
			summary := map[string]any{"event": "done", "peer": peer, "pongs": st.PongsReceived, "pings": st.PingsSent,
				"min_rtt_ms": hbMs(st.MinRTT), "smoothed_rtt_ms": hbMs(st.SmoothedRTT)}
			switch {
			case err == nil || (ctx.Err() != nil && errors.Is(err, ctx.Err())):
				p.emit(summary, "%d pings, %d pongs, rtt min %.3f ms smoothed %.3f ms", st.PingsSent, st.PongsReceived, hbMs(st.MinRTT), hbMs(st.SmoothedRTT))
				return nil
			case errors.Is(err, heartbeat.ErrProtocol),
				st.PongsReceived == 0 && st.PingsReceived == 0 && (errors.Is(err, heartbeat.ErrPeerUnresponsive) || errors.Is(err, io.EOF)):
				// Nothing that speaks the protocol ever answered: a wrong address or port (an
				// HTTP server, a database), not a dead peer.
				why := fmt.Sprintf("no heartbeat frame arrived within %s after the first PING", tout)
				switch {
				case errors.Is(err, heartbeat.ErrProtocol):
					why = "it sent something that is not a heartbeat frame (" + err.Error() + ")"
				case errors.Is(err, io.EOF):
					why = "it closed the connection without a heartbeat frame"
				}
				p.emit(map[string]any{"event": "not_heartbeat", "peer": peer, "reason": why},
					"%s is not a heartbeat server: %s; is 'keepalive heartbeat serve' listening there?", peer, why)
				return &exitError{code: exitError1}
			case errors.Is(err, heartbeat.ErrPeerUnresponsive), errors.Is(err, heartbeat.ErrGoAway):
				kind := "dead"
				if errors.Is(err, heartbeat.ErrGoAway) {
					kind = "goaway"
				}
				// The reason is printed once, here; the exit status says the rest.
				p.emit(map[string]any{"event": kind, "peer": peer, "reason": err.Error(), "pongs": st.PongsReceived},
					"%s: %s after %d pongs: %v", kind, peer, st.PongsReceived, err)
				return &exitError{code: exitFound}
			case errors.Is(err, io.EOF):
				return fmt.Errorf("peer %s closed the connection after %d pongs", peer, st.PongsReceived)
			default:
				return fmt.Errorf("peer %s: %w", peer, err)
			}
		},
	}
	f := cmd.Flags()
	tm = time.Second
	f.Var(newDurationValue(&tm), "time", "send a PING after this long without reading anything (10ms..24h)")
	tout = 2 * time.Second
	f.Var(newDurationValue(&tout), "timeout", "declare the peer dead when nothing arrives this long after a PING (10ms..24h)")
	f.IntVar(&count, "count", 0, "stop after N PONGs (0 = until interrupted or the peer dies)")
	dialTimeout = 5 * time.Second
	f.Var(newDurationValue(&dialTimeout), "dial-timeout", "give up connecting after this long")
	f.BoolVar(&userTimeout, "user-timeout", false, "also set TCP_USER_TIMEOUT = --timeout on the socket")
	return cmd
}
