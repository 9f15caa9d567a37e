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
// After the peer is declared dead, Read and Write return an error matching
// ErrPeerUnresponsive (or ErrGoAway after a GOAWAY), OnDead is called and Stats reports RTT,
// last activity and counters.
//
// It scales to 100 000 connections per process: all deadlines live in one heap served by one
// goroutine, an idle connection has no goroutine and no timer of its own (the application's
// Read handles incoming frames), and the steady state does not allocate. The wire format and
// the design are described in docs/heartbeat-protocol.md.
package heartbeat
