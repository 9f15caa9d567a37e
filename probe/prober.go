package probe

import (
	"context"
	"errors"
	"sync"
	"time"
)

// NewOptions configure [New].
type NewOptions struct {
	// Netns, when set, names the network namespace (a name under
	// /var/run/netns, or a path) in which the capture and the injection
	// sockets are opened. The probed connections must live there.
	Netns string
	// Checker reads the local sockets right before every injection; nil means
	// HostChecker(Netns): the kernel's own view through sock_diag.
	Checker Checker
}

// filterTransport is a Transport whose capture can be narrowed to flows.
type filterTransport interface {
	Transport
	setFlows(flows []Flow) error
	Close() error
}

// Prober probes connections on this host: one capture and one injection
// socket per address family, reused by every call to [Prober.Probe]. It
// remembers each flow's rate-limit history between calls. Calls to Probe are
// serialized.
type Prober struct {
	mu   sync.Mutex
	tr   filterTransport
	chk  Checker
	hist map[Flow]History
	own  map[ownKey]time.Time
}

// New opens the capture and injection sockets. It needs CAP_NET_RAW (the
// error then wraps [ErrPermission]) and works on Linux only ([ErrNotLinux]).
func New(opts NewOptions) (*Prober, error) {
	if opts.Checker == nil {
		opts.Checker = HostChecker(opts.Netns)
	}
	tr, err := newTransport(opts.Netns)
	if err != nil {
		return nil, err
	}
	chk, err := withLinkCheck(opts.Checker, opts.Netns)
	if err != nil {
		tr.Close()
		return nil, err
	}
	return &Prober{tr: tr, chk: chk, hist: map[Flow]History{}, own: map[ownKey]time.Time{}}, nil
}

// Probe runs one probe cycle on every flow (see [Run]) and returns the
// results in the order of flows; emit, when non-nil, receives each result as
// soon as it is known.
func (p *Prober) Probe(ctx context.Context, flows []Flow, opt Options, emit func(Result)) ([]Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tr == nil {
		return nil, errors.New("probe: Prober is closed")
	}
	norm := make([]Flow, len(flows))
	for i, f := range flows {
		norm[i] = f.Normalize()
	}
	if err := p.tr.setFlows(norm); err != nil {
		return nil, err
	}
	defer p.tr.setFlows(nil) // stop capturing between runs
	if opt.History == nil {
		opt.History = p.hist
	}
	opt.own = p.own
	res, err := Run(ctx, flows, opt, p.tr, p.chk, emit)
	pruneHistory(p.hist, time.Now())
	return res, err
}

// historyKeep is how long a flow's history is kept after its last probe: it
// spaces probes of the same connection by the kernel's rate limit of invalid
// ACKs (tcp_invalid_ratelimit, 500 ms by default), so a minute is plenty; a
// long-lived Prober (the agent's, one per namespace) would otherwise keep every
// flow it ever probed.
const historyKeep = time.Minute

// pruneHistory drops the histories last touched before now - historyKeep.
func pruneHistory(h map[Flow]History, now time.Time) {
	for f, x := range h {
		if now.Sub(x.LastLearn) > historyKeep && now.Sub(x.LastZero) > historyKeep {
			delete(h, f)
		}
	}
}

// Close releases the sockets.
func (p *Prober) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tr == nil {
		return nil
	}
	err := p.tr.Close()
	p.tr = nil
	if c, ok := p.chk.(interface{ close() }); ok {
		c.close()
	}
	return err
}
