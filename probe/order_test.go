package probe

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// probeReady drives a machine through learning to its first probe, sent at
// now and seen leaving (kernel timestamp) at now+10µs; returns that time.
func probeReady(t *testing.T, m *machine, now time.Time) (time.Time, Packet) {
	t.Helper()
	now = learn(t, m, now)
	a := step(t, m, now, actSend)
	sendSeen(m, now, a.Packet)
	return now.Add(10 * time.Microsecond), a.Packet
}

// A segment captured before the probe left but read after it was sent (it
// sat in the capture queue) must not decide: under load this was half of
// all "alive" verdicts, with negative RTTs.
func TestMachinePreProbeSegmentNeverDecides(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{Count: 1, Interval: time.Second}, History{}, seqRand(), t0)
	tx, _ := probeReady(t, m, t0)
	for _, at := range []time.Time{tx.Add(-30 * time.Millisecond), tx} { // before, and at the same instant
		m.Segment(tx.Add(time.Millisecond), Wire{At: at, Src: tRemote, Dst: tLocal, Seq: rcvNxt, Ack: sndNxt, Flags: FlagACK, Len: 100}, false)
		if m.Done() {
			t.Fatalf("segment captured at probe%+v decided: %+v", at.Sub(tx), m.Result())
		}
	}
	// A pre-probe RST does not decide either.
	m.Segment(tx.Add(time.Millisecond), Wire{At: tx.Add(-time.Millisecond), Src: tRemote, Dst: tLocal, Seq: rcvNxt, Flags: FlagRST}, false)
	if m.Done() {
		t.Fatalf("pre-probe RST decided: %+v", m.Result())
	}
	// The answer, captured 40 µs after the probe left, decides with a positive RTT.
	at := tx.Add(40 * time.Microsecond)
	m.Segment(at.Add(time.Millisecond), Wire{At: at, Src: tRemote, Dst: tLocal, Seq: rcvNxt, Ack: sndNxt, Flags: FlagACK}, false)
	r := m.Result()
	if r.Verdict != Alive || r.RTT != 40*time.Microsecond || r.PreProbe != 3 || r.DecidedBy == nil || r.DecidedBy.SentAt != tx || r.DecidedBy.CapturedAt != at {
		t.Fatalf("result %+v decided by %+v", r, r.DecidedBy)
	}
	if !strings.HasSuffix(r.Evidence, "captured 40µs after probe 1 left") {
		t.Errorf("evidence %q", r.Evidence)
	}
}

// Retries send identical probes: an answer is measured from the latest
// probe seen leaving before it, and a copy of an earlier probe stamped
// before the current one was handed to the kernel is not taken as its
// transmit time.
func TestMachineAnswerMeasuredFromLatestProbe(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{Count: 3, Interval: time.Second, Timeout: time.Second}, History{}, seqRand(), t0)
	tx1, p := probeReady(t, m, t0)
	now := tx1.Add(time.Second)
	var a action
	for i := 0; i < 100; i++ {
		if a = m.Next(now); a.Kind == actCheck {
			m.SockState(now, busy) // busy: zero-length retry
			continue
		}
		if a.Kind == actSend {
			break
		}
		now = now.Add(100 * time.Millisecond)
	}
	if a.Kind != actSend || a.Packet.Seq != p.Seq || a.Packet.Ack != p.Ack {
		t.Fatalf("retry %+v (%v)", a.Packet, a.Kind)
	}
	m.Sent(now, nil)
	// A stale copy stamped before the retry was handed over: ignored.
	m.Segment(now, Wire{At: now.Add(-time.Millisecond), Src: tLocal, Dst: tRemote, Seq: p.Seq, Ack: p.Ack, Flags: FlagACK}, true)
	// An answer to probe 1, captured before probe 2 left: counts, from probe 1.
	late := now.Add(-500 * time.Microsecond)
	m.Segment(now, Wire{At: late, Src: tRemote, Dst: tLocal, Seq: rcvNxt, Ack: sndNxt, Flags: FlagACK}, false)
	r := m.Result()
	if r.Verdict != Alive || r.DecidedBy == nil || r.DecidedBy.Probe != 1 || r.RTT != late.Sub(tx1) || r.RTT <= 0 {
		t.Fatalf("result %+v decided by %+v", r, r.DecidedBy)
	}
}

// Silence after probes that were never seen leaving proves nothing.
func TestMachineProbeNeverSeenLeaving(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{Count: 1, Interval: time.Second}, History{}, seqRand(), t0)
	now := learn(t, m, t0)
	step(t, m, now, actSend)
	m.Sent(now, nil) // no capture of it
	// ICMP and answers cannot be placed after the probe either.
	m.ICMP(now.Add(time.Millisecond), Wire{At: now.Add(time.Millisecond), ICMP: true, Src: tLocal, Dst: tRemote, From: netip.MustParseAddr("10.200.1.254"), Reason: "ICMP host unreachable"})
	m.Segment(now.Add(time.Millisecond), Wire{At: now.Add(time.Millisecond), Src: tRemote, Dst: tLocal, Seq: rcvNxt, Ack: sndNxt, Flags: FlagACK}, false)
	m.Next(now.Add(2 * time.Second))
	r := m.Result()
	if r.Verdict != Unknown || !strings.HasPrefix(r.Evidence, "the probe was never seen leaving") || r.ICMP != "" {
		t.Fatalf("result %+v", r)
	}
}

// An RST that arrived before anything was sent leaves the socket closed
// by the local kernel: the next check says gone, and names the RST.
func TestMachinePreStimulusRSTThenGone(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
	step(t, m, t0, actCheck)
	m.SockState(t0, idle)
	a := step(t, m, t0, actSend)
	m.Sent(t0, nil)
	m.Segment(t0, Wire{At: t0.Add(-time.Millisecond), Src: tRemote, Dst: tLocal, Seq: 77, Flags: FlagRST}, false)
	if m.Done() {
		t.Fatalf("pre-stimulus RST decided: %+v", m.Result())
	}
	_ = a
	now := t0.Add(time.Second)
	for i := 0; i < 100 && !m.Done(); i++ {
		if m.Next(now).Kind == actCheck {
			m.SockState(now, SockState{})
		}
		now = now.Add(100 * time.Millisecond)
	}
	if r := m.Result(); r.Verdict != Gone || !strings.Contains(r.Evidence, "RST seq=77 from 10.200.1.2, captured before anything was sent") {
		t.Fatalf("result %+v", r)
	}
}

// A local link without carrier: unreachable at the check, nothing sent.
func TestMachineLinkDown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
	step(t, m, t0, actCheck)
	m.SockState(t0, SockState{Found: true, Established: true, LinkDown: "eth0 has no carrier (down)"})
	if r := m.Result(); r.Verdict != Unreachable || r.Evidence != "local link down: eth0 has no carrier (down)" || r.Probes != 0 || !r.Verdict.Dead() || r.LinkDown != "eth0 has no carrier (down)" {
		t.Fatalf("result %+v", r)
	}
}

// Both ends local: the mirror machine's learning segment just used up the
// peer socket's rate-limit window, so the probe goes out in the 1-byte form
// (answered at once) after a fresh check, not as a zero-length probe the
// peer would silently skip.
func TestMachineSharedWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
	m.sharedWindow(t0, false) // the mirror injected into our peer's socket
	now := learn(t, m, t0)
	step(t, m, now, actCheck)
	m.SockState(now, idle)
	a := step(t, m, now, actSend)
	if len(a.Packet.Payload) != 1 {
		t.Fatalf("probe %+v: want the 1-byte form while the peer's window is used", a.Packet)
	}
	// Our local socket's window used by the mirror's zero-length probe: the
	// next learning segment waits for the spacing.
	m2 := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
	m2.sharedWindow(t0, true)
	step(t, m2, t0, actCheck)
	m2.SockState(t0, idle)
	if a := m2.Next(t0); a.Kind != actNone || m2.Wake().Sub(t0) != DefaultSpacing {
		t.Fatalf("learning right after the mirror's probe: %v, wake +%v", a.Kind, m2.Wake().Sub(t0))
	}
}
