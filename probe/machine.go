package probe

import (
	"fmt"
	"time"
)

// actionKind says what a machine wants done next.
type actionKind uint8

// action kinds.
const (
	// actNone: nothing to do until [machine.Wake] or an event.
	actNone actionKind = iota
	// actCheck: read the socket's state and report it with [machine.SockState].
	actCheck
	// actSend: inject action.Packet now and report with [machine.Sent].
	actSend
)

// action is what a machine asks its driver to do.
type action struct {
	Kind   actionKind
	Packet Packet
}

type phase uint8

const (
	phCheck     phase = iota // wants a fresh socket check
	phChecking               // check handed out
	phSend                   // packet ready
	phSending                // packet handed out
	phLearnWait              // learning segment sent, waiting for the local stack's answer
	phProbeWait              // probe sent, waiting for the peer
	phIdle                   // waiting until wake
	phDone
)

type sendKind uint8

const (
	sendLearn sendKind = iota + 1
	sendProbe
)

// History carries what must outlive one probe cycle of a flow: when the
// socket and its peer were last sent a zero-length segment (rate limit).
type History struct {
	LastLearn time.Time // last learning segment injected into the local socket
	LastZero  time.Time // last zero-length probe sent to the peer
}

// machine is the probe cycle of one connection: learn sequence state →
// probe → wait → retry at interval up to count → verdict. It does no I/O and
// reads no clock: every method takes the current time, so the same code
// drives the real transport ([Run]) and simulations. It is not safe for
// concurrent use.
//
// A driver calls Next(now) when Wake() has passed or after an event, and
// does what it returns: for actCheck it reads the socket and reports with
// SockState; for actSend it injects action.Packet and reports with Sent.
// Captured segments of the flow go to Segment, ICMP errors to ICMP. Done
// reports the verdict; Result holds it with its evidence.
type machine struct {
	flow  Flow
	cfg   Config
	rand  func() uint32
	start time.Time
	end   time.Time // hard deadline

	ph   phase
	wake time.Time

	// sequence state
	known          bool
	sndNxt, rcvNxt uint32
	win            uint16
	learnedBy      string
	learnAt        time.Time
	learnSeq       uint32
	learnAck       uint32
	learnSent      bool
	learnFails     int
	busySince      time.Time
	final          bool
	hist           History
	probeAt        time.Time
	probeSeq       uint32
	probeAck       uint32
	probeLen       int
	probeSent      bool
	pending        Packet
	pendingKind    sendKind
	pendingOneByte bool
	lastCheckBusy  bool
	lastSendErr    error
	res            Result

	// Kernel timestamps of this cycle's own packets, from their capture:
	// probeTx[k] is when probe k+1 left (zero until seen), learnTx when the
	// learning segment entered the local stack. Only a segment captured
	// later than one of them may decide a verdict.
	probeTx []time.Time
	learnTx time.Time
	preRST  string // an RST captured before any stimulus of ours
}

// newMachine starts a probe cycle for flow at now. rand supplies the random
// SEQ/ACK of learning segments; hist is the flow's rate-limit history from
// earlier cycles (zero for none). cfg must be valid ([Config.Validate]).
func newMachine(flow Flow, cfg Config, hist History, rand func() uint32, now time.Time) *machine {
	cfg = cfg.WithDefaults()
	flow = flow.Normalize()
	step := max(cfg.Interval, cfg.Spacing)
	span := time.Duration(2*cfg.Count)*step + cfg.Timeout + time.Second
	m := &machine{
		flow:  flow,
		cfg:   cfg,
		rand:  rand,
		start: now,
		end:   now.Add(span),
		hist:  hist,
		ph:    phCheck,
	}
	m.res.Flow = flow
	return m
}

// rebase moves the start of a cycle that has not begun (still waiting for
// its first check) to now, with its deadline: a driver admitting cycles in
// batches does not eat into their time.
func (m *machine) rebase(now time.Time) {
	if m.ph != phCheck || m.learnSent || m.probeSent {
		return
	}
	m.end = now.Add(m.end.Sub(m.start))
	m.start = now
}

// Flow returns the machine's flow (normalized).
func (m *machine) Flow() Flow { return m.flow }

// Done reports whether the verdict is known.
func (m *machine) Done() bool { return m.ph == phDone }

// Result returns the result; its Verdict is [Pending] until Done.
func (m *machine) Result() Result { return m.res }

// History returns the rate-limit history to carry into the next cycle.
func (m *machine) History() History { return m.hist }

// Wake returns when [machine.Next] must be called again absent events.
func (m *machine) Wake() time.Time {
	switch m.ph {
	case phCheck, phSend:
		return m.start // due now
	case phLearnWait:
		return minTime(m.learnAt.Add(m.learnTimeout()), m.end)
	case phProbeWait:
		return minTime(m.probeAt.Add(m.cfg.Timeout), m.end)
	case phIdle:
		return minTime(m.wake, m.end)
	case phChecking, phSending:
		return m.end
	}
	return time.Time{}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (m *machine) learnTimeout() time.Duration {
	return min(m.cfg.Timeout, max(m.cfg.Spacing, 50*time.Millisecond))
}

// Next advances timers to now and returns what to do.
func (m *machine) Next(now time.Time) action {
	m.tick(now)
	switch m.ph {
	case phCheck:
		m.ph = phChecking
		return action{Kind: actCheck}
	case phSend:
		m.ph = phSending
		return action{Kind: actSend, Packet: m.pending}
	}
	return action{}
}

func (m *machine) tick(now time.Time) {
	if m.ph == phDone {
		return
	}
	if !now.Before(m.end) && m.ph != phChecking && m.ph != phSending {
		m.finishTimeout(now)
		return
	}
	switch m.ph {
	case phLearnWait:
		if !now.Before(m.learnAt.Add(m.learnTimeout())) {
			m.learnFails++
			if m.learnFails >= m.cfg.Count {
				m.final = true // one last check: gone, or unknown
				m.ph = phCheck
				return
			}
			m.ph = phIdle
			m.wake = m.hist.LastLearn.Add(m.cfg.Spacing)
			m.tick(now)
		}
	case phProbeWait:
		if !now.Before(m.probeAt.Add(m.cfg.Timeout)) {
			if m.res.Probes >= m.cfg.Count {
				m.finishSilent(now)
				return
			}
			m.ph = phIdle
			m.wake = m.probeAt.Add(m.cfg.Interval)
			m.tick(now)
		}
	case phIdle:
		if !now.Before(m.wake) {
			m.ph = phCheck
		}
	}
}

// SockState reports the result of an [actCheck].
func (m *machine) SockState(now time.Time, st SockState) {
	if m.ph != phChecking {
		return
	}
	switch {
	case !st.Found:
		m.finish(now, Gone, "local socket no longer exists"+m.preRSTNote())
		return
	case !st.Established:
		s := st.State
		if s == "" {
			s = "not ESTABLISHED"
		}
		m.finish(now, Gone, "local socket is "+s+m.preRSTNote())
		return
	case st.LinkDown != "":
		m.res.LinkDown = st.LinkDown
		m.finish(now, Unreachable, "local link down: "+st.LinkDown)
		return
	}
	busy := st.Busy()
	m.lastCheckBusy = busy
	if busy {
		m.res.Busy = true
	}
	if m.final {
		m.finish(now, Unknown, fmt.Sprintf("the local stack did not answer %d learning segments", m.learnFails))
		return
	}
	if !m.known {
		if busy {
			// Never inject into a busy socket: wait for its own segments.
			if m.busySince.IsZero() {
				m.busySince = now
			}
			if now.Sub(m.busySince) >= max(time.Duration(m.cfg.Count)*m.cfg.Interval, m.cfg.Spacing) {
				m.finish(now, Unknown, "connection busy and none of its segments seen; not probed")
				return
			}
			m.idleUntil(now, now.Add(min(m.cfg.Interval, m.cfg.Spacing)))
			return
		}
		if !m.hist.LastLearn.IsZero() && now.Sub(m.hist.LastLearn) < m.cfg.Spacing {
			m.idleUntil(now, m.hist.LastLearn.Add(m.cfg.Spacing))
			return
		}
		m.pending = Packet{
			Src: m.flow.Remote, Dst: m.flow.Local,
			Seq: m.rand(), Ack: m.rand(), Window: 65535, ToLocal: true,
		}
		m.pendingKind = sendLearn
		m.ph = phSend
		return
	}
	oneByte := false
	if !m.zeroAllowed(now) {
		if busy {
			m.idleUntil(now, m.hist.LastZero.Add(m.cfg.Spacing))
			return
		}
		oneByte = true
	}
	m.setProbe(oneByte)
}

// zeroAllowed reports whether a zero-length probe now would be answered:
// the peer answers at most one per tcp_invalid_ratelimit.
func (m *machine) zeroAllowed(now time.Time) bool {
	return m.hist.LastZero.IsZero() || now.Sub(m.hist.LastZero) >= m.cfg.Spacing
}

// setProbe readies the probe. oneByte must only be set right after a check
// that found the socket with nothing in flight or unsent.
func (m *machine) setProbe(oneByte bool) {
	p := Packet{Src: m.flow.Local, Dst: m.flow.Remote, Seq: m.sndNxt - 1, Ack: m.rcvNxt, Window: m.win}
	if oneByte {
		// Byte SND.NXT-1 is acknowledged (the socket has nothing in flight,
		// so SND.UNA = SND.NXT ≥ the learned value): the peer treats it as a
		// duplicate, answers with a D-SACK and delivers nothing.
		p.Payload = []byte{0}
	}
	m.pending = p
	m.pendingKind = sendProbe
	m.pendingOneByte = oneByte
	m.ph = phSend
}

func (m *machine) idleUntil(now, t time.Time) {
	m.ph = phIdle
	m.wake = t
	m.tick(now)
}

// Sent reports that the packet of an [actSend] was injected at now (err is
// the injection error, if any; a failed probe still counts as sent).
func (m *machine) Sent(now time.Time, err error) {
	if m.ph != phSending {
		return
	}
	m.lastSendErr = err
	switch m.pendingKind {
	case sendLearn:
		m.learnAt = now
		m.learnSeq, m.learnAck = m.pending.Seq, m.pending.Ack
		m.learnSent = true
		m.hist.LastLearn = now
		m.ph = phLearnWait
	case sendProbe:
		m.probeTx = append(m.probeTx, time.Time{})
		m.probeAt = now
		m.probeSeq, m.probeAck, m.probeLen = m.pending.Seq, m.pending.Ack, len(m.pending.Payload)
		m.probeSent = true
		m.res.Probes++
		if m.pendingOneByte {
			m.res.OneByte++
		} else {
			m.hist.LastZero = now
		}
		m.ph = phProbeWait
	}
}

// sharedWindow records that another machine of the same run sent a
// zero-length segment that one of this flow's sockets must answer: both ends
// of the connection are local (loopback) and probed together. Each socket
// answers at most one such segment per tcp_invalid_ratelimit, whoever sent
// it, so the mirror machine's learning segment uses up the window of this
// machine's peer (local false), and its zero-length probe the window of this
// machine's local socket (local true).
func (m *machine) sharedWindow(at time.Time, local bool) {
	t := &m.hist.LastZero
	if local {
		t = &m.hist.LastLearn
	}
	if at.After(*t) {
		*t = at
	}
}

func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// Segment feeds a captured TCP segment of this flow; outbound is true for
// the local socket's direction (local → remote).
func (m *machine) Segment(now time.Time, w Wire, outbound bool) {
	if m.ph == phDone || w.ICMP {
		return
	}
	if outbound {
		if m.probeSent && w.Seq == m.probeSeq && w.Ack == m.probeAck && w.Len == m.probeLen && w.Flags&(FlagRST|FlagSYN|FlagFIN) == 0 {
			// Our own probe, seen leaving: its kernel timestamp is the
			// transmit time answers are measured from. A copy stamped
			// before the current probe was handed to the kernel is an
			// earlier, identical probe.
			if n := len(m.probeTx); n > 0 && m.probeTx[n-1].IsZero() && !w.At.Before(m.probeAt) {
				m.probeTx[n-1] = w.At
			}
			return
		}
		if w.Flags&FlagACK == 0 || w.Flags&FlagRST != 0 {
			return // nothing to learn; a local RST shows up as gone at the next check
		}
		snd := w.Seq + uint32(w.Len)
		if w.Flags&(FlagSYN) != 0 {
			snd++
		}
		if w.Flags&FlagFIN != 0 {
			snd++
		}
		if !m.known || seqAfter(snd, m.sndNxt) {
			m.sndNxt = snd
		}
		if !m.known || seqAfter(w.Ack, m.rcvNxt) {
			m.rcvNxt = w.Ack
		}
		m.win = w.Window
		if !m.known {
			m.known = true
			m.learnedBy = "passive"
			if m.ph == phLearnWait {
				m.learnedBy = "injection"
			}
		}
		if m.ph == phLearnWait {
			// The local stack just answered, so the socket is there. A
			// zero-length probe is safe whatever the socket's state (its SEQ
			// is old data: the peer cannot accept anything from it), so it
			// goes out at once; the 1-byte form needs a fresh check first.
			if m.zeroAllowed(now) {
				m.setProbe(false)
			} else {
				m.ph = phCheck
			}
		}
		return
	}
	if m.learnSent && w.Seq == m.learnSeq && w.Ack == m.learnAck && w.Len == 0 && w.Flags&FlagRST == 0 {
		// Our own learning segment, seen entering the local stack.
		if m.learnTx.IsZero() || !w.At.Before(m.learnAt) {
			m.learnTx = w.At
		}
		return
	}
	from := m.flow.Remote.Addr()
	if w.Flags&FlagRST != 0 {
		what := fmt.Sprintf("RST seq=%d", w.Seq)
		if m.known && w.Seq == m.rcvNxt {
			what = "RST seq=RCV.NXT"
		} else if m.known {
			what = fmt.Sprintf("RST seq=%d (RCV.NXT %d)", w.Seq, m.rcvNxt)
		}
		what += " from " + from.String()
		// The RST decides only when it was captured after something of
		// ours reached the peer's side: the learning segment (the local
		// stack's duplicate ACK follows it) or a probe.
		k, tx := m.stimulusBefore(w.At)
		if tx.IsZero() {
			m.res.PreProbe++
			m.preRST = what + ", captured before anything was sent"
			return
		}
		d := m.decision(w, k, tx)
		ev := what + ", " + d.describe()
		if k == 0 {
			ev += " (answer to the local stack's duplicate ACK)"
		}
		m.res.DecidedBy = &d
		m.finish(now, Reset, ev)
		return
	}
	if !m.probeSent {
		return
	}
	k, tx := m.probeBefore(w.At)
	if tx.IsZero() {
		// Captured before any probe of this cycle left: it says nothing
		// about the peer now, whatever the order it was read in.
		m.res.PreProbe++
		return
	}
	d := m.decision(w, k, tx)
	ev := fmt.Sprintf("ACK seq=%d ack=%d from %s", w.Seq, w.Ack, from)
	if m.known && w.Ack == m.sndNxt && w.Seq == m.rcvNxt {
		ev = "ACK seq=RCV.NXT ack=SND.NXT from " + from.String()
	}
	if w.Len > 0 {
		ev = fmt.Sprintf("data (%d bytes) from %s", w.Len, from)
	}
	ev += ", " + d.describe()
	if m.ph != phProbeWait {
		ev += " (late)"
	}
	m.res.RTT = d.AfterProbe
	m.res.DecidedBy = &d
	m.finish(now, Alive, ev)
}

// probeBefore returns the number (1-based) and kernel transmit time of the
// latest probe seen leaving strictly before at; zero when none.
func (m *machine) probeBefore(at time.Time) (int, time.Time) {
	for i := len(m.probeTx) - 1; i >= 0; i-- {
		if tx := m.probeTx[i]; !tx.IsZero() && at.After(tx) {
			return i + 1, tx
		}
	}
	return 0, time.Time{}
}

// stimulusBefore is probeBefore that also accepts the learning segment
// (returned as number 0).
func (m *machine) stimulusBefore(at time.Time) (int, time.Time) {
	if k, tx := m.probeBefore(at); k > 0 {
		return k, tx
	}
	if !m.learnTx.IsZero() && at.After(m.learnTx) {
		return 0, m.learnTx
	}
	return 0, time.Time{}
}

func (m *machine) decision(w Wire, k int, tx time.Time) Decision {
	return Decision{
		Seq: w.Seq, Ack: w.Ack, Flags: flagString(w.Flags), Len: w.Len,
		CapturedAt: w.At, Probe: k, SentAt: tx, AfterProbe: w.At.Sub(tx),
	}
}

// ICMP feeds an ICMP destination unreachable quoting this flow's outgoing
// segment. It is recorded and otherwise treated like silence.
func (m *machine) ICMP(now time.Time, w Wire) {
	if m.ph == phDone {
		return
	}
	if k, _ := m.probeBefore(w.At); k == 0 {
		return // quotes something sent before our probe
	}
	m.res.ICMP = w.Reason + " from " + w.From.String()
}

func (m *machine) preRSTNote() string {
	if m.preRST == "" {
		return ""
	}
	return " (" + m.preRST + ")"
}

func (m *machine) finishSilent(now time.Time) {
	ev := fmt.Sprintf("no answer to %d probes", m.res.Probes)
	if m.res.Probes == 1 {
		ev = "no answer to 1 probe"
	}
	if m.lastSendErr != nil {
		ev += "; last send failed: " + m.lastSendErr.Error()
	}
	if k, _ := m.probeBefore(now); k == 0 {
		// No probe was seen leaving: silence proves nothing.
		what := fmt.Sprintf("none of the %d probes was seen leaving on the capture", m.res.Probes)
		if m.res.Probes == 1 {
			what = "the probe was never seen leaving on the capture"
		}
		m.finish(now, Unknown, what+"; "+ev)
		return
	}
	if m.res.ICMP != "" {
		m.finish(now, Unreachable, m.res.ICMP+"; "+ev)
		return
	}
	m.finish(now, Dead, ev)
}

func (m *machine) finishTimeout(now time.Time) {
	if m.res.Probes > 0 {
		m.finishSilent(now)
		return
	}
	switch {
	case m.lastCheckBusy && !m.known:
		m.finish(now, Unknown, "connection busy and none of its segments seen; not probed")
	case !m.known:
		m.finish(now, Unknown, "sequence numbers not learned")
	default:
		m.finish(now, Unknown, "no probe could be sent in time")
	}
}

func (m *machine) finish(now time.Time, v Verdict, evidence string) {
	m.ph = phDone
	m.res.Verdict = v
	m.res.Evidence = evidence
	m.res.Elapsed = now.Sub(m.start)
	if m.known {
		m.res.Learned = m.learnedBy
		m.res.SndNxt, m.res.RcvNxt = m.sndNxt, m.rcvNxt
	}
	if v != Alive {
		m.res.RTT = 0
	}
}
