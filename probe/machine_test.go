package probe

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

var (
	tLocal  = netip.MustParseAddrPort("10.200.1.1:40000")
	tRemote = netip.MustParseAddrPort("10.200.1.2:80")
	tFlow   = Flow{Local: tLocal, Remote: tRemote}
	idle    = SockState{Found: true, Established: true}
	busy    = SockState{Found: true, Established: true, Unacked: 2}
)

const sndNxt, rcvNxt = 1000, 5000

func seqRand() func() uint32 {
	n := uint32(7)
	return func() uint32 { n += 0x10001; return n }
}

// step asserts the next action.
func step(t *testing.T, m *machine, now time.Time, want actionKind) action {
	t.Helper()
	a := m.Next(now)
	if a.Kind != want {
		t.Fatalf("at %v: action %v, want %v (verdict %v %s)", now, a.Kind, want, m.Result().Verdict, m.Result().Evidence)
	}
	return a
}

// sendSeen reports the packet of an actSend as injected at now and feeds
// its own capture (kernel timestamp 10 µs later), as the transport does.
func sendSeen(m *machine, now time.Time, p Packet) {
	m.Sent(now, nil)
	at := now.Add(10 * time.Microsecond)
	w := Wire{At: at, Src: p.Src, Dst: p.Dst, Seq: p.Seq, Ack: p.Ack, Flags: FlagACK, Len: len(p.Payload)}
	m.Segment(at, w, !p.ToLocal)
}

// learn drives check → learning injection → the local stack's duplicate ACK.
func learn(t *testing.T, m *machine, now time.Time) time.Time {
	t.Helper()
	step(t, m, now, actCheck)
	m.SockState(now, idle)
	a := step(t, m, now, actSend)
	if !a.Packet.ToLocal || a.Packet.Src != tRemote || a.Packet.Dst != tLocal || len(a.Packet.Payload) != 0 {
		t.Fatalf("learning packet %+v", a.Packet)
	}
	// Our own injection seen on the capture is not an answer.
	sendSeen(m, now, a.Packet)
	if m.Done() {
		t.Fatal("own learning segment taken as an answer")
	}
	now = now.Add(50 * time.Microsecond)
	m.Segment(now, Wire{Src: tLocal, Dst: tRemote, Seq: sndNxt, Ack: rcvNxt, Flags: FlagACK, Window: 500}, true)
	return now
}

func TestMachineAlive(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
	now := learn(t, m, t0)
	// The zero-length probe follows the learning at once (no check needed:
	// it cannot put anything into the stream).
	a := step(t, m, now, actSend)
	p := a.Packet
	if p.ToLocal || p.Src != tLocal || p.Dst != tRemote || p.Seq != sndNxt-1 || p.Ack != rcvNxt || len(p.Payload) != 0 || p.Window != 500 {
		t.Fatalf("probe %+v", p)
	}
	// Our own probe seen leaving is not an answer; it gives the transmit time.
	sendSeen(m, now, p)
	if m.Done() {
		t.Fatal("own probe taken as an answer")
	}
	m.Segment(now.Add(3*time.Millisecond), Wire{At: now.Add(3 * time.Millisecond), Src: tRemote, Dst: tLocal, Seq: rcvNxt, Ack: sndNxt, Flags: FlagACK}, false)
	r := m.Result()
	if !m.Done() || r.Verdict != Alive || r.RTT != 3*time.Millisecond-10*time.Microsecond || r.Probes != 1 || r.Learned != "injection" {
		t.Fatalf("result %+v", r)
	}
	if r.Evidence != "ACK seq=RCV.NXT ack=SND.NXT from 10.200.1.2, captured 2.99ms after probe 1 left" {
		t.Errorf("evidence %q", r.Evidence)
	}
	if d := r.DecidedBy; d == nil || d.Probe != 1 || d.AfterProbe != r.RTT || d.Flags != "ACK" || !d.CapturedAt.After(d.SentAt) {
		t.Errorf("decided by %+v", d)
	}
}

func TestMachineDeadSpacingAndOneByte(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cfg := Config{Count: 3, Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond}
	m := newMachine(tFlow, cfg, History{}, seqRand(), t0)
	now := learn(t, m, t0)
	var sent []Packet
	var sentAt []time.Time
	for now.Before(t0.Add(10*time.Second)) && !m.Done() {
		a := m.Next(now)
		switch a.Kind {
		case actCheck:
			// Busy at the second probe: it must wait for spacing instead of using 1 byte.
			if len(sent) == 1 {
				m.SockState(now, busy)
			} else {
				m.SockState(now, idle)
			}
			continue
		case actSend:
			sent = append(sent, a.Packet)
			sentAt = append(sentAt, now)
			sendSeen(m, now, a.Packet)
			continue
		}
		now = now.Add(time.Millisecond)
	}
	r := m.Result()
	if r.Verdict != Dead || r.Probes != 3 || len(sent) != 3 {
		t.Fatalf("result %+v after %d packets", r, len(sent))
	}
	// Probe 2 came when the socket was busy: zero-length, at least 0.6 s after probe 1.
	if len(sent[1].Payload) != 0 || sentAt[1].Sub(sentAt[0]) < DefaultSpacing {
		t.Errorf("probe 2 %+v at +%v", sent[1], sentAt[1].Sub(sentAt[0]))
	}
	// Probe 3: idle socket, 200 ms after probe 2 → 1-byte form.
	if len(sent[2].Payload) != 1 || sentAt[2].Sub(sentAt[1]) != 200*time.Millisecond {
		t.Errorf("probe 3 %+v at +%v", sent[2], sentAt[2].Sub(sentAt[1]))
	}
	if r.OneByte != 1 || r.Evidence != "no answer to 3 probes" {
		t.Errorf("result %+v", r)
	}
}

func TestMachineBusyLearnsPassively(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
	step(t, m, t0, actCheck)
	m.SockState(t0, busy)
	if a := m.Next(t0); a.Kind != actNone {
		t.Fatalf("busy socket: action %v, want none (never inject)", a.Kind)
	}
	// The connection's own data segment reveals both numbers.
	now := t0.Add(10 * time.Millisecond)
	m.Segment(now, Wire{Src: tLocal, Dst: tRemote, Seq: sndNxt - 100, Ack: rcvNxt, Flags: FlagACK | FlagPSH, Len: 100}, true)
	now = m.Wake()
	step(t, m, now, actCheck)
	m.SockState(now, busy)
	a := step(t, m, now, actSend)
	if a.Packet.Seq != sndNxt-1 || a.Packet.Ack != rcvNxt || len(a.Packet.Payload) != 0 {
		t.Fatalf("probe %+v", a.Packet)
	}
	sendSeen(m, now, a.Packet)
	m.Segment(now.Add(time.Millisecond), Wire{At: now.Add(time.Millisecond), Src: tRemote, Dst: tLocal, Seq: rcvNxt, Ack: sndNxt, Flags: FlagACK}, false)
	if r := m.Result(); r.Verdict != Alive || r.Learned != "passive" || !r.Busy {
		t.Fatalf("result %+v", r)
	}
}

func TestMachineBusyNeverSeen(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{Count: 2, Interval: 100 * time.Millisecond}, History{}, seqRand(), t0)
	now := t0
	for i := 0; i < 100000 && !m.Done(); i++ {
		a := m.Next(now)
		switch a.Kind {
		case actCheck:
			m.SockState(now, busy)
		case actSend:
			t.Fatalf("sent %+v into a busy socket", a.Packet)
		default:
			now = m.Wake()
		}
	}
	if r := m.Result(); r.Verdict != Unknown || r.Probes != 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestMachineResetAtLearning(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
	now := learn(t, m, t0)
	m.Segment(now, Wire{At: now, Src: tRemote, Dst: tLocal, Seq: rcvNxt, Flags: FlagRST}, false)
	r := m.Result()
	if r.Verdict != Reset || r.Evidence != "RST seq=RCV.NXT from 10.200.1.2, captured 40µs after the learning segment left (answer to the local stack's duplicate ACK)" {
		t.Fatalf("result %+v", r)
	}
}

func TestMachineResetAfterProbe(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
	now := learn(t, m, t0)
	a := step(t, m, now, actSend)
	sendSeen(m, now, a.Packet)
	at := now.Add(time.Millisecond)
	m.Segment(at, Wire{At: at, Src: tRemote, Dst: tLocal, Seq: rcvNxt + 7, Flags: FlagRST}, false)
	if r := m.Result(); r.Verdict != Reset || r.Evidence != "RST seq=5007 (RCV.NXT 5000) from 10.200.1.2, captured 990µs after probe 1 left" {
		t.Fatalf("result %+v", r)
	}
}

func TestMachineGone(t *testing.T) {
	for _, st := range []SockState{{}, {Found: true, State: "CLOSE-WAIT"}} {
		t0 := time.Unix(1000, 0)
		m := newMachine(tFlow, Config{}, History{}, seqRand(), t0)
		step(t, m, t0, actCheck)
		m.SockState(t0, st)
		if r := m.Result(); r.Verdict != Gone {
			t.Fatalf("%+v: result %+v", st, r)
		}
	}
}

func TestMachineUnreachable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{Count: 1, Interval: 100 * time.Millisecond}, History{}, seqRand(), t0)
	now := learn(t, m, t0)
	a := step(t, m, now, actSend)
	sendSeen(m, now, a.Packet)
	m.ICMP(now, Wire{At: now.Add(time.Millisecond), ICMP: true, Src: tLocal, Dst: tRemote, From: netip.MustParseAddr("10.200.1.254"), Reason: "ICMP host unreachable"})
	m.Next(now.Add(100 * time.Millisecond))
	r := m.Result()
	if r.Verdict != Unreachable || !r.Verdict.Dead() || r.Evidence != "ICMP host unreachable from 10.200.1.254; no answer to 1 probe" {
		t.Fatalf("result %+v", r)
	}
}

func TestMachineLearnUnanswered(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := newMachine(tFlow, Config{Count: 2}, History{}, seqRand(), t0)
	now := t0
	learns := 0
	var last time.Time
	for i := 0; i < 1000 && !m.Done(); i++ {
		a := m.Next(now)
		switch a.Kind {
		case actCheck:
			m.SockState(now, idle)
		case actSend:
			if !a.Packet.ToLocal {
				t.Fatal("probe without learned numbers")
			}
			if learns > 0 && now.Sub(last) < DefaultSpacing {
				t.Fatalf("learning segments %v apart", now.Sub(last))
			}
			learns++
			last = now
			m.Sent(now, nil)
		default:
			now = m.Wake()
		}
	}
	if r := m.Result(); r.Verdict != Unknown || learns != 2 {
		t.Fatalf("result %+v after %d learning segments", r, learns)
	}
}

// TestMachineSafetyInvariants drives machines with random events and
// checks the two safety rules: nothing is injected unless the check just
// before said idle (learning) and no byte is sent unless it said idle.
func TestMachineSafetyInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := 0; run < 300; run++ {
		t0 := time.Unix(1000, 0)
		cfg := Config{Count: 1 + rng.IntN(4), Interval: time.Duration(1+rng.IntN(800)) * time.Millisecond}
		m := newMachine(tFlow, cfg, History{}, rng.Uint32, t0)
		now := t0
		lastCheck := SockState{}
		checked := false
		for i := 0; i < 5000 && !m.Done(); i++ {
			a := m.Next(now)
			switch a.Kind {
			case actCheck:
				lastCheck = idle
				if rng.IntN(3) == 0 {
					lastCheck = busy
				}
				checked = true
				m.SockState(now, lastCheck)
				continue
			case actSend:
				if !checked && (a.Packet.ToLocal || len(a.Packet.Payload) > 0) {
					t.Fatalf("run %d: %+v without a check right before", run, a.Packet)
				}
				if (a.Packet.ToLocal || len(a.Packet.Payload) > 0) && lastCheck.Busy() {
					t.Fatalf("run %d: %+v after a busy check", run, a.Packet)
				}
				checked = false
				m.Sent(now, nil)
				continue
			}
			// Random captured traffic.
			switch rng.IntN(6) {
			case 0:
				m.Segment(now, Wire{Src: tLocal, Dst: tRemote, Seq: sndNxt + uint32(rng.IntN(1000)), Ack: rcvNxt, Flags: FlagACK, Len: rng.IntN(3)}, true)
			case 1:
				if rng.IntN(20) == 0 {
					m.Segment(now, Wire{Src: tRemote, Dst: tLocal, Seq: rcvNxt, Ack: sndNxt, Flags: FlagACK}, false)
				}
			}
			now = now.Add(time.Duration(1+rng.IntN(50)) * time.Millisecond)
		}
		if !m.Done() {
			t.Fatalf("run %d: no verdict by %v", run, now.Sub(t0))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Count: -1}, {Count: MaxCount + 1}, {Interval: time.Microsecond}, {Timeout: 2 * time.Hour}, {Spacing: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestVerdictText(t *testing.T) {
	for v := Alive; v <= Unknown; v++ {
		b, _ := v.MarshalText()
		var w Verdict
		if err := w.UnmarshalText(b); err != nil || w != v {
			t.Errorf("%v: round trip %v %v", v, w, err)
		}
	}
	if Reset.Dead() || !Reset.Failed() || !Unreachable.Dead() || Alive.Failed() {
		t.Error("Dead/Failed")
	}
}

func TestFlowNormalize(t *testing.T) {
	f := Flow{Local: netip.MustParseAddrPort("[::ffff:10.0.0.1]:5"), Remote: netip.MustParseAddrPort("[::ffff:10.0.0.2]:6")}
	n := f.Normalize()
	if !n.Local.Addr().Is4() || !n.Remote.Addr().Is4() || !n.Valid() {
		t.Fatalf("%v", n)
	}
	if (Flow{Local: netip.MustParseAddrPort("10.0.0.1:5"), Remote: netip.MustParseAddrPort("[::1]:6")}).Valid() {
		t.Error("mixed families valid")
	}
}
