// Package probe sends real RFC 1122 keepalive probes to established TCP
// connections from user space, without touching the processes that own them,
// and classifies the answers.
//
// The technique (verified on Linux 6.x):
//
//  1. Learn the local socket's SND.NXT and RCV.NXT. While the socket has
//     nothing in flight and nothing unsent, a zero-length ACK that claims to
//     come from the peer, with a random SEQ/ACK, is injected into the local
//     stack; the kernel answers at once with a duplicate ACK
//     <SEQ=SND.NXT, ACK=RCV.NXT>, which a packet capture sees leaving. A busy
//     socket is never injected into: its own segments reveal both numbers.
//  2. Send the peer the keepalive probe <SEQ=SND.NXT-1, ACK=RCV.NXT, ACK>.
//     A live peer answers with an ACK within one round trip; a peer that
//     forgot the connection answers RST with SEQ=RCV.NXT, which the local
//     kernel accepts and tears the socket down by itself (its owner sees
//     ECONNRESET).
//
// The per-connection logic is a pure state machine (internal to the package)
// with the clock injected; [Run] drives many machines over any [Transport] with
// a paced send loop. On Linux, [New] opens the real transport: one AF_PACKET
// capture with a kernel BPF filter and one raw injection socket per address
// family. Library users call [New] and [Prober.Probe] (or [Run] with their own
// [Transport]), [Simulate], and a [Checker] ([HostChecker], [ConnChecker]);
// encoding and decoding the segments is internal.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive/internal/probewire"
)

// Defaults used when a [Config] field is zero.
const (
	DefaultCount    = 3
	DefaultInterval = time.Second
	// DefaultSpacing is the minimum time between two zero-length segments
	// that one socket must answer. Linux answers out-of-window segments at
	// most once per net.ipv4.tcp_invalid_ratelimit (500 ms) per socket.
	DefaultSpacing = 600 * time.Millisecond
	// DefaultRate is the default number of packets per second injected.
	DefaultRate = 100000
)

// Limits enforced by [Config.Validate]. MinInterval and MinTimeout are what
// the state machine can drive (stress tests probe that fast on purpose); a
// useful probe needs more: see [CommandMinTimeout] and [MinSpacing].
const (
	MaxCount    = 1000
	MinInterval = 10 * time.Millisecond
	MinTimeout  = 10 * time.Millisecond
	MaxInterval = time.Hour
	MaxRate     = 10_000_000
)

// Rate limit of zero-length answers. Linux answers an out-of-window
// zero-length segment (the learning segment, the zero-length probe) at most
// once per net.ipv4.tcp_invalid_ratelimit per socket (tcp_oow_rate_limited;
// default 500 ms, per network namespace). Segments carrying data are not
// rate-limited. The peer's value cannot be read: the default is assumed for
// it, or the local value when that is larger.
const (
	DefaultRateLimit = 500 * time.Millisecond
	// SpacingMargin is added to the rate limit so that timer and scheduling
	// jitter never make a retry arrive just inside the window.
	SpacingMargin = 100 * time.Millisecond
	// CommandMinTimeout is the shortest wait for an answer 'keepalive probe'
	// accepts: one round trip plus the scheduling delay of a loaded host.
	CommandMinTimeout = 100 * time.Millisecond
)

// MinSpacing returns the spacing of zero-length segments to one socket (and
// so the shortest useful probe interval) for a local
// net.ipv4.tcp_invalid_ratelimit of localLimit (0 when unknown):
// max(localLimit, [DefaultRateLimit]) + [SpacingMargin].
func MinSpacing(localLimit time.Duration) time.Duration {
	return max(localLimit, DefaultRateLimit) + SpacingMargin
}

// Flow identifies one TCP connection from the point of view of the local
// socket. IPv4-mapped IPv6 addresses are treated as IPv4 (that is what the
// connection uses on the wire).
type Flow struct {
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
}

// Normalize returns f with IPv4-mapped IPv6 addresses unmapped and zones dropped.
func (f Flow) Normalize() Flow {
	return Flow{
		Local:  netip.AddrPortFrom(f.Local.Addr().Unmap().WithZone(""), f.Local.Port()),
		Remote: netip.AddrPortFrom(f.Remote.Addr().Unmap().WithZone(""), f.Remote.Port()),
	}
}

// Valid reports whether both ends are set, of the same family, with non-zero ports.
func (f Flow) Valid() bool {
	n := f.Normalize()
	return n.Local.IsValid() && n.Remote.IsValid() && n.Local.Port() != 0 && n.Remote.Port() != 0 &&
		n.Local.Addr().Is4() == n.Remote.Addr().Is4()
}

// String formats the flow as "local -> remote".
func (f Flow) String() string { return f.Local.String() + " -> " + f.Remote.String() }

// Verdict is the outcome of probing one connection.
type Verdict uint8

// Verdicts. Unreachable counts as [Dead] for every decision (as the kernel
// treats ICMP errors as soft errors), but names the evidence.
const (
	// Pending means no verdict yet.
	Pending Verdict = iota
	// Alive means the peer answered a probe.
	Alive
	// Reset means the peer answered with RST: it forgot the connection.
	Reset
	// Unreachable means no answer to any probe, and an ICMP destination
	// unreachable came back for the flow.
	Unreachable
	// Dead means no answer to any of the probes.
	Dead
	// Gone means the local socket disappeared or left ESTABLISHED meanwhile.
	Gone
	// Unknown means the connection could not be probed (sequence numbers
	// never learned, for example a busy connection whose segments were never
	// seen).
	Unknown
)

var verdictNames = [...]string{"pending", "alive", "reset", "unreachable", "dead", "gone", "unknown"}

// String returns the verdict's lower-case name.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// MarshalText implements encoding.TextMarshaler.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (v *Verdict) UnmarshalText(b []byte) error {
	for i, n := range verdictNames {
		if n == string(b) {
			*v = Verdict(i)
			return nil
		}
	}
	return fmt.Errorf("unknown verdict %q (want one of alive, reset, unreachable, dead, gone, unknown)", b)
}

// Dead reports whether the verdict means the peer is not there: dead or unreachable.
func (v Verdict) Dead() bool { return v == Dead || v == Unreachable }

// Failed reports whether the verdict means the peer is gone: dead, unreachable or reset.
func (v Verdict) Failed() bool { return v.Dead() || v == Reset }

// Config controls one probe cycle.
type Config struct {
	// Count is the number of probes sent before declaring the peer dead (default 3).
	Count int
	// Interval is the time between probes (default 1 s).
	Interval time.Duration
	// Timeout is how long to wait for an answer to each probe (default Interval).
	Timeout time.Duration
	// Spacing is the minimum time between two zero-length segments one socket
	// must answer (default 600 ms, above Linux's tcp_invalid_ratelimit).
	// When a retry would come sooner and the local socket has no
	// unacknowledged or unsent data, the 1-byte probe is used instead.
	Spacing time.Duration
}

// WithDefaults fills zero fields with the defaults.
func (c Config) WithDefaults() Config {
	if c.Count == 0 {
		c.Count = DefaultCount
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = c.Interval
	}
	if c.Spacing == 0 {
		c.Spacing = DefaultSpacing
	}
	return c
}

// Validate checks c (after defaults) and names the bad value and the allowed range.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.Count < 1 || c.Count > MaxCount {
		return fmt.Errorf("probe count %d out of range 1..%d", c.Count, MaxCount)
	}
	if c.Interval < MinInterval || c.Interval > MaxInterval {
		return fmt.Errorf("probe interval %v out of range %v..%v", c.Interval, MinInterval, MaxInterval)
	}
	if c.Timeout < MinTimeout || c.Timeout > MaxInterval {
		return fmt.Errorf("probe timeout %v out of range %v..%v", c.Timeout, MinTimeout, MaxInterval)
	}
	if c.Spacing < 0 || c.Spacing > MaxInterval {
		return fmt.Errorf("probe spacing %v out of range 0..%v", c.Spacing, MaxInterval)
	}
	return nil
}

// SockState is a fresh view of the local socket, read right before injecting.
type SockState struct {
	// Found is false when no socket with the flow's exact identity exists.
	Found bool
	// Established is true when the socket is in TCP_ESTABLISHED.
	Established bool
	// State names the TCP state (for evidence when not established).
	State string
	// Unacked is tcp_info's tcpi_unacked (segments in flight).
	Unacked uint32
	// NotSent is tcp_info's tcpi_notsent_bytes (queued, never sent).
	NotSent uint32
	// LinkDown, when set, says that the local interface toward the peer has
	// no carrier or is down (e.g. "veth0: no carrier"): nothing can leave.
	LinkDown string
}

// Busy reports whether the socket has data in flight or unsent. Busy sockets
// are never injected into and never get the 1-byte probe.
func (s SockState) Busy() bool { return s.Unacked != 0 || s.NotSent != 0 }

// Checker reads the current state of local sockets. Implementations look
// each flow up by exact identity (for example via sock_diag); the result has
// one entry per flow, in order.
type Checker interface {
	Check(ctx context.Context, flows []Flow) ([]SockState, error)
}

// CheckFunc adapts a function to [Checker].
type CheckFunc func(ctx context.Context, flows []Flow) ([]SockState, error)

// Check calls f.
func (f CheckFunc) Check(ctx context.Context, flows []Flow) ([]SockState, error) {
	return f(ctx, flows)
}

// Packet is one TCP segment to inject: a pure ACK, optionally with payload.
type Packet = probewire.Packet

// Wire is one captured packet relevant to probing: a TCP segment, or an ICMP
// destination unreachable quoting a TCP segment.
type Wire = probewire.Wire

// TCP flag bits in [Wire.Flags].
const (
	FlagFIN = probewire.FlagFIN
	FlagSYN = probewire.FlagSYN
	FlagRST = probewire.FlagRST
	FlagPSH = probewire.FlagPSH
	FlagACK = probewire.FlagACK
)

// Transport injects packets and delivers captured ones.
type Transport interface {
	// Inject sends p.
	Inject(p Packet) error
	// Packets delivers captured packets until the transport is closed.
	Packets() <-chan Wire
}

// Result is the verdict for one flow, with its evidence.
type Result struct {
	Flow    Flow    `json:"flow"`
	Verdict Verdict `json:"verdict"`
	// RTT is the time from the answered probe to its answer (alive only).
	RTT time.Duration `json:"rtt_ns,omitempty"`
	// Probes is the number of probes sent; OneByte how many were the 1-byte form.
	Probes  int `json:"probes"`
	OneByte int `json:"one_byte,omitempty"`
	// Busy is true when the socket had data in flight or unsent at some
	// check; it was then only probed with the zero-length form and learned
	// passively.
	Busy bool `json:"busy,omitempty"`
	// Learned says how SND.NXT/RCV.NXT were learned: "injection" or "passive".
	Learned string `json:"learned,omitempty"`
	SndNxt  uint32 `json:"snd_nxt,omitempty"`
	RcvNxt  uint32 `json:"rcv_nxt,omitempty"`
	// Evidence is a short human-readable account, e.g. "RST seq=RCV.NXT from 10.200.1.2".
	Evidence string `json:"evidence"`
	// DecidedBy is the captured segment that decided an alive or reset
	// verdict, with its kernel timestamps.
	DecidedBy *Decision `json:"decided_by,omitempty"`
	// PreProbe counts segments from the peer that were captured before any
	// probe of this cycle left, and so were not allowed to decide.
	PreProbe int `json:"pre_probe_segments,omitempty"`
	// LinkDown is set (e.g. "eth0 has no carrier (down)") when the verdict is
	// unreachable because the local interface toward the peer cannot send:
	// nothing is known about the peer itself.
	LinkDown string `json:"link_down,omitempty"`
	// ICMP names an ICMP destination unreachable seen for the flow, if any.
	ICMP string `json:"icmp,omitempty"`
	// Elapsed is the time from the start of the cycle to the verdict.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Decision is the segment that decided a verdict. Both times are kernel
// capture timestamps (CLOCK_REALTIME, taken as each packet passed the capture
// tap): a segment decides only when it was captured strictly after a probe of
// the same cycle was seen leaving (or, for an RST, after the learning segment
// entered the local stack), so AfterProbe is always positive.
type Decision struct {
	Seq   uint32 `json:"seq"`
	Ack   uint32 `json:"ack"`
	Flags string `json:"flags"`
	Len   int    `json:"len"`
	// CapturedAt is when the deciding segment was captured.
	CapturedAt time.Time `json:"captured_at"`
	// Probe is the number (1-based) of the probe it followed; 0 for the
	// learning segment.
	Probe int `json:"probe"`
	// SentAt is when that probe (or learning segment) was captured leaving.
	SentAt time.Time `json:"sent_at"`
	// AfterProbe is CapturedAt − SentAt, the RTT of an alive verdict.
	AfterProbe time.Duration `json:"after_probe_ns"`
}

func (d Decision) describe() string {
	what := fmt.Sprintf("probe %d", d.Probe)
	if d.Probe == 0 {
		what = "the learning segment"
	}
	return fmt.Sprintf("captured %v after %s left", d.AfterProbe, what)
}

// flagString renders TCP flags like "RST|ACK".
func flagString(f uint8) string {
	var parts []string
	for _, x := range []struct {
		bit  uint8
		name string
	}{{FlagSYN, "SYN"}, {FlagFIN, "FIN"}, {FlagRST, "RST"}, {FlagPSH, "PSH"}, {FlagACK, "ACK"}} {
		if f&x.bit != 0 {
			parts = append(parts, x.name)
		}
	}
	return strings.Join(parts, "|")
}

// ErrNotLinux is returned by [New] on systems other than Linux. It matches
// errors.ErrUnsupported.
var ErrNotLinux = fmt.Errorf("probing works on Linux only (it needs raw sockets and AF_PACKET): %w", errors.ErrUnsupported)

// ErrPermission is wrapped by [New] when raw sockets cannot be opened. It matches
// fs.ErrPermission.
var ErrPermission = fmt.Errorf("probing needs CAP_NET_RAW: %w", fs.ErrPermission)
