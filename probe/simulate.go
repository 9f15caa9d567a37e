package probe

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Peer is how the simulated peer of [Simulate] behaves.
type Peer string

// Simulated peers.
const (
	PeerAlive  Peer = "alive"  // answers every probe with an ACK
	PeerSilent Peer = "silent" // crashed, path down, or a middlebox dropping: never answers
	PeerReset  Peer = "reset"  // rebooted: answers with RST (seq = RCV.NXT)
)

// Simulation is the course of one probe cycle driven by [Simulate].
type Simulation struct {
	Peer   Peer              `json:"peer"`
	Config Config            `json:"config"`
	Events []keepalive.Event `json:"events"`
	Result Result            `json:"result"`
}

// Simulate drives one machine — the same state machine the real prober runs — against an
// in-memory local stack and a peer that behaves as given, on a virtual clock starting at 0.
// It shows what 'keepalive probe' does and when it reaches its verdict, without sending a
// packet. rtt is the round-trip time to the peer (default 1 ms).
func Simulate(peer Peer, cfg Config, rtt time.Duration) (Simulation, error) {
	switch peer {
	case PeerAlive, PeerSilent, PeerReset:
	default:
		return Simulation{}, fmt.Errorf("unknown simulated peer %q (allowed: alive, silent, reset)", peer)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Simulation{}, err
	}
	if rtt <= 0 {
		rtt = time.Millisecond
	}
	const localDelay = 20 * time.Microsecond
	flow := Flow{Local: netip.MustParseAddrPort("10.200.1.1:40000"), Remote: netip.MustParseAddrPort("10.200.1.2:443")}
	const sndNxt, rcvNxt = 1000, 5000
	base := time.Unix(0, 0)
	seed := uint32(2463534242)
	rnd := func() uint32 { seed ^= seed << 13; seed ^= seed >> 17; seed ^= seed << 5; return seed }
	m := newMachine(flow, cfg, History{}, rnd, base)
	sim := Simulation{Peer: peer, Config: cfg}
	ev := func(at time.Time, kind, detail string) {
		sim.Events = append(sim.Events, keepalive.Event{At: at.Sub(base), Kind: kind, Detail: detail})
	}
	type delivery struct {
		w        Wire
		outbound bool
		note     string
	}
	var queue []delivery
	now := base
	for steps := 0; steps < 100000 && !m.Done(); steps++ {
		switch act := m.Next(now); act.Kind {
		case actCheck:
			m.SockState(now, SockState{Found: true, Established: true, State: "ESTABLISHED"})
			continue
		case actSend:
			p := act.Packet
			m.Sent(now, nil)
			// The capture sees every injected packet, stamped by the kernel
			// as it passes: the time answers are measured from.
			own := Wire{At: now.Add(time.Microsecond), Src: p.Src, Dst: p.Dst, Seq: p.Seq, Ack: p.Ack, Flags: FlagACK, Len: len(p.Payload)}
			queue = append(queue, delivery{own, !p.ToLocal, "own"})
			if p.ToLocal {
				ev(now, "learn", "zero-length ACK injected into the local stack (the socket is idle: nothing in flight, nothing unsent)")
				queue = append(queue, delivery{Wire{At: now.Add(localDelay), Src: flow.Local, Dst: flow.Remote, Seq: sndNxt, Ack: rcvNxt, Flags: FlagACK, Window: 512}, true, ""})
				if peer == PeerReset {
					// The local stack's duplicate ACK reaches a peer that forgot the connection.
					queue = append(queue, delivery{Wire{At: now.Add(localDelay + rtt), Src: flow.Remote, Dst: flow.Local, Seq: rcvNxt, Flags: FlagRST}, false,
						"the peer answers the local stack's duplicate ACK with RST: it has no such connection"})
				}
				continue
			}
			form := "zero-length"
			if len(p.Payload) > 0 {
				form = "1-byte"
			}
			ev(now, keepalive.EventProbe, fmt.Sprintf("probe (%s, SEQ = SND.NXT−1, ACK = RCV.NXT)", form))
			switch peer {
			case PeerAlive:
				queue = append(queue, delivery{Wire{At: now.Add(rtt), Src: flow.Remote, Dst: flow.Local, Seq: rcvNxt, Ack: sndNxt, Flags: FlagACK, Window: 512}, false, ""})
			case PeerReset:
				queue = append(queue, delivery{Wire{At: now.Add(rtt), Src: flow.Remote, Dst: flow.Local, Seq: p.Ack, Flags: FlagRST}, false,
					"the peer answers the probe with RST: it has no such connection"})
			}
			continue
		}
		// Nothing to do now: advance the clock to the next delivery or timer.
		next := m.Wake()
		sort.SliceStable(queue, func(i, j int) bool { return queue[i].w.At.Before(queue[j].w.At) })
		if len(queue) > 0 && (next.IsZero() || queue[0].w.At.Before(next)) {
			next = queue[0].w.At
		}
		if next.After(now) {
			now = next
		}
		for len(queue) > 0 && !queue[0].w.At.After(now) {
			d := queue[0]
			queue = queue[1:]
			switch {
			case d.note == "own":
			case d.outbound:
				ev(now, "learned", fmt.Sprintf("the local stack answers with a duplicate ACK: SND.NXT=%d RCV.NXT=%d", d.w.Seq, d.w.Ack))
			case d.w.Flags&FlagRST != 0:
				ev(now, keepalive.EventRST, d.note)
			default:
				ev(now, keepalive.EventAck, "the peer ACKs the probe")
			}
			m.Segment(now, d.w, d.outbound)
		}
	}
	sim.Result = m.Result()
	ev(base.Add(sim.Result.Elapsed), "verdict", fmt.Sprintf("%s: %s", sim.Result.Verdict, sim.Result.Evidence))
	return sim, nil
}
