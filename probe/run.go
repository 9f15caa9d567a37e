package probe

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Options control [Run].
type Options struct {
	Config
	// Rate is the maximum number of packets injected per second (default
	// [DefaultRate]).
	Rate int
	// History, when non-nil, supplies and receives each flow's rate-limit
	// history across runs (see [Prober], which keeps it for you).
	History map[Flow]History
	// Progress, when non-nil, is called about every 200 ms with counters.
	Progress func(Progress)

	own map[ownKey]time.Time // packets injected by earlier runs (Prober)
	// loops, when set, counts the iterations of Run's loop (tests: no busy loop).
	loops *int
}

// Progress reports how far a run is.
type Progress struct {
	Done, Total int
	Sent        int // packets injected so far
}

// ownKey identifies an injected packet when it comes back on the capture.
type ownKey struct {
	src, dst netip.AddrPort
	seq, ack uint32
	n        int
}

type mentry struct {
	at  time.Time
	m   *machine
	gen uint64
}

type mheap []mentry

func (h mheap) Len() int           { return len(h) }
func (h mheap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h mheap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mheap) Push(x any)        { *h = append(*h, x.(mentry)) }
func (h *mheap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type slot struct {
	m        *machine
	outbound bool
	gen      *uint64
}

type flowKey struct{ src, dst netip.AddrPort }

// Run probes every flow concurrently over tr and returns the results in the
// order of flows. emit, when non-nil, receives each result as soon as it is
// known. Sockets are checked with chk right before every injection (nil:
// HostChecker(""), the current namespace's sockets as the kernel sees them).
// Duplicate and invalid flows are rejected.
func Run(ctx context.Context, flows []Flow, opt Options, tr Transport, chk Checker, emit func(Result)) ([]Result, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if opt.Rate < 0 || opt.Rate > MaxRate {
		return nil, fmt.Errorf("probe rate %d out of range 1..%d packets/s", opt.Rate, MaxRate)
	}
	if opt.Rate == 0 {
		opt.Rate = DefaultRate
	}
	if tr == nil {
		return nil, errors.New("probe: Run needs a transport")
	}
	if chk == nil {
		chk = HostChecker("")
	}
	cfg := opt.Config.WithDefaults()
	now := time.Now()
	rng := rand.Uint32
	machines := make([]*machine, len(flows))
	gens := make([]uint64, len(flows))
	index := make(map[*machine]int, len(flows))
	byKey := make(map[flowKey][]slot, 2*len(flows))
	seen := make(map[Flow]bool, len(flows))
	h := make(mheap, 0, len(flows))
	for i, f := range flows {
		n := f.Normalize()
		if !n.Valid() {
			return nil, fmt.Errorf("invalid flow %v: need two endpoints of one family with non-zero ports", f)
		}
		if seen[n] {
			return nil, fmt.Errorf("flow %v listed twice", n)
		}
		seen[n] = true
		m := newMachine(n, cfg, opt.History[n], rng, now)
		machines[i] = m
		index[m] = i
		out := flowKey{n.Local, n.Remote}
		in := flowKey{n.Remote, n.Local}
		byKey[out] = append(byKey[out], slot{m: m, outbound: true, gen: &gens[i]})
		byKey[in] = append(byKey[in], slot{m: m, outbound: false, gen: &gens[i]})
	}
	// Both ends of a connection probed together (loopback): each machine's
	// zero-length segments use up the rate-limit window of the other's socket.
	mirror := make(map[*machine]*machine)
	if len(flows) > 1 {
		byFlow := make(map[Flow]*machine, len(machines))
		for _, m := range machines {
			byFlow[m.Flow()] = m
		}
		for _, m := range machines {
			if mm := byFlow[Flow{Local: m.Flow().Remote, Remote: m.Flow().Local}]; mm != nil {
				mirror[m] = mm
			}
		}
	}
	admitted := 0 // machines[:admitted] have started; the rest wait their turn
	results := make([]Result, len(flows))
	done := 0
	sent := 0
	finish := func(m *machine) {
		i := index[m]
		results[i] = m.Result()
		if opt.History != nil {
			opt.History[m.Flow()] = m.History()
		}
		done++
		if emit != nil {
			emit(results[i])
		}
	}
	resched := func(m *machine) {
		i := index[m]
		gens[i]++
		if m.ph == phChecking || m.ph == phSending {
			// Queued for a check or a send, which reschedules it when done. A heap entry
			// at its end time would come due while it waits for tokens and be popped
			// again and again: a busy loop until the queue drains.
			return
		}
		heap.Push(&h, mentry{at: m.Wake(), m: m, gen: gens[i]})
	}

	// Token bucket for pacing.
	burst := max(1, opt.Rate/100)
	tokens := float64(burst)
	last := now
	var (
		checkM   []*machine
		checkF   []Flow
		timer    = time.NewTimer(time.Hour)
		progress = time.Now()
	)
	defer timer.Stop()
	pkts := tr.Packets()

	// Our own injected packets come back on the capture. The injecting
	// machine ignores them, but another machine may hold the mirrored flow
	// (both ends of a loopback connection), and a late copy may reach the
	// next run's machine: there they would look like the connection's own
	// segments (random sequence numbers) or like the peer's answer.
	own := opt.own
	if own == nil {
		own = map[ownKey]time.Time{}
	}
	// Packets this run injected, by the machine that injected each: their
	// capture carries the kernel's transmit timestamp, which the machine
	// needs to tell answers from segments that predate its probe.
	ownM := make(map[ownKey]*machine, 2*len(flows))
	lastPrune := now
	dispatch := func(w Wire) {
		if !w.ICMP {
			k := ownKey{w.Src, w.Dst, w.Seq, w.Ack, w.Len}
			if _, ok := own[k]; ok {
				if m := ownM[k]; m != nil && !m.Done() {
					m.Segment(w.At, w, w.Src == m.Flow().Local)
				}
				return
			}
		}
		key := flowKey{w.Src, w.Dst}
		for _, s := range byKey[key] {
			if s.m.Done() {
				continue
			}
			if w.ICMP {
				if s.outbound {
					s.m.ICMP(w.At, w)
				}
				continue
			}
			s.m.Segment(w.At, w, s.outbound)
			if s.m.Done() {
				finish(s.m)
			} else {
				resched(s.m)
			}
		}
	}

	type pendingSend struct {
		m *machine
		p Packet
	}
	// Packets that follow a socket check go first (sendChecked), then the
	// rest (zero-length probes need no check). Checks are batched (one
	// sock_diag round trip for many sockets): a batch is taken when the
	// checked queue is nearly empty and holds at most what the rate lets out
	// in 100 ms, so no socket is checked more than ~100 ms before its packet
	// leaves.
	var sendChecked, sendFree []pendingSend
	var checkWait []*machine
	checkLimit := max(burst, opt.Rate/10)
	for done < len(flows) {
		if opt.loops != nil {
			*opt.loops++
		}
		now = time.Now()
		tokens = min(float64(burst), tokens+now.Sub(last).Seconds()*float64(opt.Rate))
		last = now
		// Start new cycles only as fast as checks and sends keep up, so that
		// a long list at a low rate does not run out of time waiting.
		for admitted < len(machines) && len(checkWait) < checkLimit && len(sendChecked) < burst {
			m := machines[admitted]
			admitted++
			if m.Done() {
				continue // settled by a captured RST already
			}
			m.rebase(now)
			switch a := m.Next(now); {
			case m.Done():
				finish(m)
			case a.Kind == actCheck:
				checkWait = append(checkWait, m)
			case a.Kind == actSend:
				// The flow's own segments, captured before its turn, can make a
				// cycle ready to send at once.
				sendFree = append(sendFree, pendingSend{m, a.Packet})
			default:
				resched(m)
			}
		}
		for n := 0; h.Len() > 0 && !h[0].at.After(now) && n < 4*checkLimit; n++ {
			e := heap.Pop(&h).(mentry)
			i := index[e.m]
			if e.gen != gens[i] || e.m.Done() {
				continue
			}
			a := e.m.Next(now)
			switch {
			case e.m.Done():
				finish(e.m)
			case a.Kind == actCheck:
				checkWait = append(checkWait, e.m)
			case a.Kind == actSend:
				sendFree = append(sendFree, pendingSend{e.m, a.Packet})
			default:
				resched(e.m)
			}
		}
		if len(checkWait) > 0 && len(sendChecked) < burst {
			nb := min(len(checkWait), checkLimit)
			checkM, checkF = checkM[:0], checkF[:0]
			for _, m := range checkWait[:nb] {
				checkM = append(checkM, m)
				checkF = append(checkF, m.Flow())
			}
			checkWait = checkWait[:copy(checkWait, checkWait[nb:])]
			states, err := chk.Check(ctx, checkF)
			if err != nil {
				return results, fmt.Errorf("check sockets: %w", err)
			}
			if len(states) != len(checkF) {
				return results, fmt.Errorf("check sockets: %d states for %d flows", len(states), len(checkF))
			}
			now = time.Now()
			for j, m := range checkM {
				m.SockState(now, states[j])
				if m.Done() {
					finish(m)
					continue
				}
				a := m.Next(now)
				switch {
				case m.Done():
					finish(m)
				case a.Kind == actSend:
					sendChecked = append(sendChecked, pendingSend{m, a.Packet})
				case a.Kind == actCheck:
					checkWait = append(checkWait, m)
				default:
					resched(m)
				}
			}
			now = time.Now()
			tokens = min(float64(burst), tokens+now.Sub(last).Seconds()*float64(opt.Rate))
			last = now
		}
		for _, q := range []*[]pendingSend{&sendChecked, &sendFree} {
			k := 0
			for ; k < len(*q) && tokens >= 1; k++ {
				ps := (*q)[k]
				at := time.Now()
				nf := Flow{Local: ps.p.Src, Remote: ps.p.Dst}.Normalize()
				k := ownKey{nf.Local, nf.Remote, ps.p.Seq, ps.p.Ack, len(ps.p.Payload)}
				own[k] = at
				ownM[k] = ps.m
				err := tr.Inject(ps.p)
				ps.m.Sent(at, err)
				if mm := mirror[ps.m]; mm != nil && len(ps.p.Payload) == 0 {
					mm.sharedWindow(at, !ps.p.ToLocal)
				}
				sent++
				tokens--
				resched(ps.m)
			}
			*q = (*q)[:copy(*q, (*q)[k:])]
		}
		if time.Since(lastPrune) > time.Second {
			lastPrune = time.Now()
			for k, at := range own {
				if lastPrune.Sub(at) > 5*time.Second {
					delete(own, k)
				}
			}
		}
		if opt.Progress != nil && time.Since(progress) >= 200*time.Millisecond {
			progress = time.Now()
			opt.Progress(Progress{Done: done, Total: len(flows), Sent: sent})
		}
		if done == len(flows) {
			break
		}
		// Sleep until the next machine is due, a packet arrives, or tokens refill.
		wait := time.Hour
		if h.Len() > 0 {
			wait = time.Until(h[0].at)
		}
		if (len(checkWait) > 0 || admitted < len(machines)) && len(sendChecked) < burst {
			wait = 0
		}
		if len(sendChecked)+len(sendFree) > 0 {
			wait = min(wait, time.Duration((1-tokens)/float64(opt.Rate)*float64(time.Second)))
		}
		if wait <= 0 {
			// Still due work: drain captured packets without blocking, then loop.
			drain(pkts, dispatch, 4096)
			if err := ctx.Err(); err != nil {
				return results, err
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return results, ctx.Err()
		case w, ok := <-pkts:
			if !ok {
				return results, errors.New("probe: capture closed")
			}
			dispatch(w)
			drain(pkts, dispatch, 4096)
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
	if opt.Progress != nil {
		opt.Progress(Progress{Done: done, Total: len(flows), Sent: sent})
	}
	return results, nil
}

func drain(pkts <-chan Wire, dispatch func(Wire), limit int) {
	for range limit {
		select {
		case w, ok := <-pkts:
			if !ok {
				return
			}
			dispatch(w)
		default:
			return
		}
	}
}
