// Package heartbeat adds application-level heartbeats to any net.Conn (TCP, TLS, Unix).
//
// Kernel keepalive proves that the peer's TCP stack is alive, not the peer application: a
// deadlocked server still ACKs keepalive probes, and some middleboxes do not count probes as
// activity. Here both ends wrap their connection (Wrap, Client, Server); Read and Write carry
// the application's bytes transparently inside DATA frames, and small PING/PONG frames travel
// between them. The options follow gRPC's keepalive (gRFC A8): Time (PING after this long
// without reading anything), Timeout (dead when nothing arrives this long after a PING),
// PermitWithoutCalls, MaxPingsWithoutData and an EnforcementPolicy that cuts ping floods with
// GOAWAY "too_many_pings". An optional Health check gates every PONG, so a hung application
// stops answering and its peer notices within Time + Timeout.
//
// After the peer is declared dead — by the heartbeat, or by the TCP stack when TCP_USER_TIMEOUT
// (Options.UserTimeout) or kernel keepalive (Options.KeepAlive) gave up first — Read and Write
// return a *DeadError matching ErrPeerUnresponsive (or ErrGoAway after a GOAWAY), OnDead is
// called once and Stats reports RTT, last activity and counters. ErrPeerUnresponsive lists how
// to tell every error of a Conn apart with errors.Is.
//
// Cost: all deadlines of the process live in one heap served by one goroutine and one timer,
// and PINGs/PONGs are written by a small fixed pool of writers, so no connection has a timer of
// its own and the steady state does not allocate. Incoming frames must be read by someone,
// and Go offers no way to wait for a socket to become readable without a goroutine blocked in
// Read. So:
//
//   - a Conn whose application is blocked in Read (the usual server or client loop) costs no
//     goroutine beyond that Read: the Read handles PINGs and PONGs on the way;
//   - a Conn nobody reads gets one background reader goroutine, started at its first heartbeat
//     deadline, which stays blocked in the underlying Read until the application reads again
//     (it hands over within one frame) or the connection ends.
//
// Measured with bench/heartbeat on 18 000 idle connection ends (docs/benchmarks.md): with the
// application reading, 18 004 goroutines (its 18 000 readers, main, the scheduler and 2
// writers on 2 CPUs); with nobody reading, also 18 004 (one background reader per end instead).
// The heartbeat state is about 400 bytes per connection end. The wire format and the design
// are described in docs/heartbeat-protocol.md.
package heartbeat
