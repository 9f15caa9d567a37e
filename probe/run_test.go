package probe

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// simNet is an in-memory Transport: a local stack that answers learning
// segments with <SND.NXT, RCV.NXT> and peers that behave per flow.
type simNet struct {
	mu   sync.Mutex
	ch   chan Wire
	peer map[Flow]string // "alive", "reset", "dead", "icmp"
	busy map[Flow]bool
	sent []Packet
}

func newSimNet() *simNet {
	return &simNet{ch: make(chan Wire, 1<<16), peer: map[Flow]string{}, busy: map[Flow]bool{}}
}

func (s *simNet) Packets() <-chan Wire { return s.ch }

func (s *simNet) Inject(p Packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, p)
	now := time.Now()
	us := time.Microsecond
	if p.ToLocal {
		// The capture sees the injected segment itself (on lo), then the
		// local stack's duplicate ACK.
		s.ch <- Wire{At: now, Src: p.Src, Dst: p.Dst, Seq: p.Seq, Ack: p.Ack, Flags: FlagACK, Len: len(p.Payload)}
		f := Flow{Local: p.Dst, Remote: p.Src}
		snd, rcv := simNums(f)
		s.ch <- Wire{At: now.Add(us), Src: f.Local, Dst: f.Remote, Seq: snd, Ack: rcv, Flags: FlagACK, Window: 100}
		if s.peer[f] == "reset" { // the duplicate ACK reaches a peer that forgot
			s.ch <- Wire{At: now.Add(2 * us), Src: f.Remote, Dst: f.Local, Seq: rcv, Flags: FlagRST}
		}
		return nil
	}
	f := Flow{Local: p.Src, Remote: p.Dst}
	snd, rcv := simNums(f)
	s.ch <- Wire{At: now, Src: p.Src, Dst: p.Dst, Seq: p.Seq, Ack: p.Ack, Flags: FlagACK, Len: len(p.Payload)} // seen leaving
	switch s.peer[f] {
	case "alive":
		s.ch <- Wire{At: now.Add(time.Millisecond), Src: p.Dst, Dst: p.Src, Seq: rcv, Ack: snd, Flags: FlagACK}
	case "reset":
		s.ch <- Wire{At: now.Add(us), Src: p.Dst, Dst: p.Src, Seq: p.Ack, Flags: FlagRST}
	case "icmp":
		s.ch <- Wire{At: now.Add(us), ICMP: true, Src: p.Src, Dst: p.Dst, From: netip.MustParseAddr("10.200.9.254"), Reason: "ICMP host unreachable"}
	}
	return nil
}

func (s *simNet) Check(ctx context.Context, flows []Flow) ([]SockState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SockState, len(flows))
	for i, f := range flows {
		switch s.peer[f] {
		case "":
		case "gone":
			out[i] = SockState{Found: true, State: "FIN-WAIT-1"}
		default:
			out[i] = SockState{Found: true, Established: true}
			if s.busy[f] {
				out[i].Unacked = 3
			}
		}
	}
	return out, nil
}

// simNums is the connection's state seen from f's local end: the side on
// port 80 has the numbers of the other side swapped.
func simNums(f Flow) (snd, rcv uint32) {
	if f.Local.Port() == 80 {
		return rcvNxt, sndNxt
	}
	return sndNxt, rcvNxt
}

func simFlow(i int) Flow {
	return Flow{
		Local:  netip.AddrPortFrom(netip.MustParseAddr("10.200.9.1"), uint16(10000+i)),
		Remote: netip.MustParseAddrPort("10.200.9.2:80"),
	}
}

func TestRunSimulated(t *testing.T) {
	sim := newSimNet()
	kinds := []string{"alive", "reset", "dead", "icmp", "gone", "missing"}
	var flows []Flow
	for i := range 60 {
		f := simFlow(i)
		k := kinds[i%len(kinds)]
		if k != "missing" {
			sim.peer[f] = k
		}
		flows = append(flows, f)
	}
	want := map[string]Verdict{"alive": Alive, "reset": Reset, "dead": Dead, "icmp": Unreachable, "gone": Gone, "missing": Gone}
	var mu sync.Mutex
	streamed := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{Count: 2, Interval: 50 * time.Millisecond}
	res, err := Run(ctx, flows, Options{Config: cfg}, sim, sim, func(Result) { mu.Lock(); streamed++; mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	if streamed != len(flows) {
		t.Errorf("streamed %d results, want %d", streamed, len(flows))
	}
	for i, r := range res {
		k := kinds[i%len(kinds)]
		if r.Flow != flows[i] || r.Verdict != want[k] {
			t.Errorf("%s: %v %+v", k, r.Flow, r)
		}
		if k == "dead" && (r.Probes != 2 || r.OneByte != 1) {
			// 50 ms interval < 600 ms spacing: the idle socket's retry is the 1-byte form.
			t.Errorf("dead: %d probes, %d one-byte", r.Probes, r.OneByte)
		}
	}
	// Nothing injected into gone sockets; never a payload without a check.
	for _, p := range sim.sent {
		f := Flow{Local: p.Src, Remote: p.Dst}
		if p.ToLocal {
			f = Flow{Local: p.Dst, Remote: p.Src}
		}
		if k := sim.peer[f]; k == "gone" || k == "" {
			t.Errorf("injected into a %q socket: %+v", k, p)
		}
	}
}

func TestRunBusyNeverInjected(t *testing.T) {
	sim := newSimNet()
	f := simFlow(1)
	sim.peer[f], sim.busy[f] = "alive", true
	go func() { // the connection's own data segment, seen on the capture
		time.Sleep(20 * time.Millisecond)
		sim.ch <- Wire{At: time.Now(), Src: f.Local, Dst: f.Remote, Seq: sndNxt - 10, Ack: rcvNxt, Flags: FlagACK, Len: 10}
	}()
	res, err := Run(context.Background(), []Flow{f}, Options{Config: Config{Count: 1, Interval: 100 * time.Millisecond}}, sim, sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Verdict != Alive || !r.Busy || r.Learned != "passive" {
		t.Fatalf("%+v", r)
	}
	for _, p := range sim.sent {
		if p.ToLocal || len(p.Payload) > 0 {
			t.Errorf("busy socket got %+v", p)
		}
	}
}

func TestRunRate(t *testing.T) {
	sim := newSimNet()
	var flows []Flow
	for i := range 100 {
		f := simFlow(i)
		sim.peer[f] = "alive"
		flows = append(flows, f)
	}
	start := time.Now()
	// 200 packets (learning + probe each) at 500/s: at least ~0.4 s.
	_, err := Run(context.Background(), flows, Options{Rate: 500}, sim, sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 350*time.Millisecond || el > 3*time.Second {
		t.Errorf("200 packets at 500/s took %v", el)
	}
}

func TestRunErrors(t *testing.T) {
	sim := newSimNet()
	for _, c := range []struct {
		flows []Flow
		opt   Options
		want  string
	}{
		{[]Flow{simFlow(1), simFlow(1)}, Options{}, "listed twice"},
		{[]Flow{{}}, Options{}, "invalid flow"},
		{[]Flow{simFlow(1)}, Options{Rate: -1}, "rate -1 out of range"},
		{[]Flow{simFlow(1)}, Options{Config: Config{Count: 5000}}, "count 5000 out of range"},
	} {
		_, err := Run(context.Background(), c.flows, c.opt, sim, sim, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.flows, err, c.want)
		}
	}
	// Cancellation ends a run promptly.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	f := simFlow(2)
	sim.peer[f] = "dead"
	start := time.Now()
	_, err := Run(ctx, []Flow{f}, Options{Config: Config{Count: 10}}, sim, sim, nil)
	if err == nil || time.Since(start) > time.Second {
		t.Errorf("cancelled run: %v after %v", err, time.Since(start))
	}
}

// TestRunMirroredFlows probes both ends of one connection (both local, as on
// loopback): each machine's injected packets look like the other's own
// segments and must not teach it anything.
func TestRunMirroredFlows(t *testing.T) {
	sim := newSimNet()
	a := simFlow(1)
	b := Flow{Local: a.Remote, Remote: a.Local}
	sim.peer[a], sim.peer[b] = "alive", "alive"
	res, err := Run(context.Background(), []Flow{a, b}, Options{}, sim, sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		snd, rcv := simNums(r.Flow)
		if r.Verdict != Alive || r.SndNxt != snd || r.RcvNxt != rcv {
			t.Errorf("%+v", r)
		}
	}
	for _, p := range sim.sent {
		snd, rcv := simNums(Flow{Local: p.Src, Remote: p.Dst})
		if !p.ToLocal && (p.Seq != snd-1 || p.Ack != rcv) {
			t.Errorf("probe with learned-from-noise numbers: %+v", p)
		}
	}
}

// TestRunLongListLowRate: 600 connections at 300 packets/s need 4 s of
// sending, more than one cycle's deadline: cycles start as the rate allows.
func TestRunLongListLowRate(t *testing.T) {
	sim := newSimNet()
	var flows []Flow
	for i := range 600 {
		f := simFlow(i)
		sim.peer[f] = "alive"
		flows = append(flows, f)
	}
	start := time.Now()
	res, err := Run(context.Background(), flows, Options{Rate: 300, Config: Config{Count: 1, Interval: 10 * time.Millisecond}}, sim, sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Verdict != Alive {
			t.Fatalf("%+v", r)
		}
	}
	if el := time.Since(start); el < 3500*time.Millisecond {
		t.Errorf("1200 packets at 300/s took only %v", el)
	}
}

// TestRunNoBusyLoop: silent peers probed at a low rate, so that sends wait for tokens past
// the end of their cycles. Run must sleep while it waits, not spin: its loop turns a few
// times per packet, event and timer, not hundreds of thousands of times.
func TestRunNoBusyLoop(t *testing.T) {
	sim := newSimNet()
	var flows []Flow
	for i := range 20 {
		f := simFlow(i)
		sim.peer[f] = "dead"
		flows = append(flows, f)
	}
	// The connections' own segments keep arriving (another prober, the application's
	// traffic), also while a cycle waits in the send queue.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, f := range flows {
				snd, rcv := simNums(f)
				select {
				case sim.ch <- Wire{At: time.Now(), Src: f.Remote, Dst: f.Local, Seq: rcv, Ack: snd, Flags: FlagACK}:
				case <-stop:
					return
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	loops := 0
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a regression spins or hangs
	defer cancel()
	res, err := Run(ctx, flows, Options{Rate: 10, loops: &loops,
		Config: Config{Count: 2, Interval: 20 * time.Millisecond, Timeout: 20 * time.Millisecond}}, sim, sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(flows) {
		t.Fatalf("%d results for %d flows", len(res), len(flows))
	}
	sim.mu.Lock()
	sent := len(sim.sent)
	sim.mu.Unlock()
	if limit := 50 * (sent + len(flows)); loops > limit {
		t.Errorf("%d loop turns for %d packets and %d flows in %v (limit %d): a busy loop", loops, sent, len(flows), time.Since(start).Round(time.Millisecond), limit)
	}
	t.Logf("%d loop turns, %d packets, %v", loops, sent, time.Since(start).Round(time.Millisecond))
}
