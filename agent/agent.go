package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultInterval is the time between the starts of two sweeps.
const DefaultInterval = 15 * time.Second

// Owner is the owner name of the eBPF attachments the agent makes.
const Owner = "agent"

// Enforcer attaches eBPF policies to cgroups; *enforce.Host implements it.
type Enforcer interface {
	Attach(req enforce.AttachRequest) (enforce.Attachment, error)
	Detach(cgroupPath string, match *enforce.Match, owner string, force bool) error
	List() ([]enforce.Attachment, error)
}

// Options configure New.
type Options struct {
	// Policy is the initial policy (nil: report only).
	Policy *Policy
	// Interval is the sweep interval when the policy sets none (default DefaultInterval).
	Interval time.Duration
	// DryRun counts and logs what the agent would do and changes nothing: no
	// attachment, no retrofit, no probe, no reap.
	DryRun bool
	// Assess assesses a connection (default BasicAssess(0)).
	Assess AssessFunc
	// Labels are the opt-in labels of the connection metrics.
	Labels Labels
	// Registry receives the metrics (default NewRegistry()).
	Registry *prometheus.Registry
	// Enforce attaches the eBPF policies of enforce rules; nil means retrofit only
	// (BPF unavailable).
	Enforce Enforcer
	// Prober opens a prober for a namespace (default: package probe on Linux).
	Prober ProberFunc
	// DetachOnExit makes Close detach the attachments the agent made. By default
	// they stay pinned and keep protecting new connections while the agent is
	// restarted or upgraded.
	DetachOnExit bool
	// Log receives what the agent does (default: discard).
	Log *slog.Logger
}

// Agent runs sweeps. Create it with New, run it with Run, end it with Close.
type Agent struct {
	opt     Options
	policy  atomic.Pointer[Policy]
	gen     atomic.Uint64 // policy generation
	m       *metrics
	reg     *prometheus.Registry
	log     *slog.Logger
	running sync.Mutex // held during a sweep: sweeps never overlap

	// Sweep state, only touched with running held.
	sweepN   uint64
	cache    map[uint64]*entry
	memo     map[assessKey]Assessment
	sysctls  map[string]sysctlEntry
	probers  map[string]*nsProber
	attached map[attachKey]attachVal
	warned   map[string]bool
	sysIdx   int

	ready     atomic.Bool
	lastStart atomic.Int64
	lastEnd   atomic.Int64
}

// New returns an agent; it sweeps nothing until Run or Sweep.
func New(opt Options) (*Agent, error) {
	if opt.Interval == 0 {
		opt.Interval = DefaultInterval
	}
	if opt.Interval < MinInterval || opt.Interval > MaxInterval {
		return nil, fmt.Errorf("interval %s out of range (allowed: %s to %s)", opt.Interval, MinInterval, MaxInterval)
	}
	if opt.Labels.TopN == 0 {
		opt.Labels.TopN = 20
	}
	if opt.Labels.TopN < 1 || opt.Labels.TopN > 1000 {
		return nil, fmt.Errorf("label top-N %d out of range (allowed: 1 to 1000)", opt.Labels.TopN)
	}
	if opt.Assess == nil {
		opt.Assess = HostAssess(host.AssessOptions{})
	}
	if opt.Registry == nil {
		opt.Registry = NewRegistry()
	}
	if opt.Prober == nil {
		opt.Prober = defaultProber
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Policy == nil {
		opt.Policy = &Policy{Budgets: DefaultBudgets()}
	}
	a := &Agent{
		opt: opt, reg: opt.Registry, log: opt.Log,
		cache: map[uint64]*entry{}, memo: map[assessKey]Assessment{}, sysctls: map[string]sysctlEntry{},
		probers: map[string]*nsProber{}, attached: map[attachKey]attachVal{}, warned: map[string]bool{},
	}
	a.m = newMetrics(opt.Registry, opt.Labels)
	a.SetPolicy(opt.Policy)
	return a, nil
}

// SetPolicy replaces the policy from the next sweep on.
func (a *Agent) SetPolicy(p *Policy) {
	a.policy.Store(p)
	a.gen.Add(1)
	a.m.policyRules.Set(float64(len(p.Rules)))
}

// Policy returns the policy in force.
func (a *Agent) Policy() *Policy { return a.policy.Load() }

// Reload parses a new policy; on success it replaces the one in force, on
// failure the old policy stays and the error says why. Both are counted.
func (a *Agent) Reload(b []byte) error {
	p, err := ParsePolicy(b)
	if err != nil {
		a.m.reloads.WithLabelValues("rejected").Inc()
		return err
	}
	a.SetPolicy(p)
	a.m.reloads.WithLabelValues("applied").Inc()
	return nil
}

// Interval returns the sweep interval in force.
func (a *Agent) Interval() time.Duration {
	if p := a.policy.Load(); p.Interval > 0 {
		return p.Interval
	}
	return a.opt.Interval
}

// Handler serves /metrics, /healthz (the sweep loop is alive) and /readyz (a
// first sweep has completed).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.healthy(time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "no sweep completed yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// healthy fails when no sweep has started or ended for three intervals (a
// sweep that hangs, or a loop that died).
func (a *Agent) healthy(now time.Time) error {
	limit := 3*a.Interval() + time.Minute
	last := max(a.lastStart.Load(), a.lastEnd.Load())
	if last == 0 {
		return nil // starting
	}
	if d := now.Sub(time.Unix(0, last)); d > limit {
		return fmt.Errorf("no sweep progress for %s (limit %s)", d.Round(time.Second), limit)
	}
	return nil
}

// Run sweeps every interval until ctx is done. A sweep that takes longer than
// the interval delays the next one (counted as an overrun); sweeps never
// overlap. Run returns nil when ctx is cancelled.
func (a *Agent) Run(ctx context.Context) error {
	for {
		start := time.Now()
		if _, err := a.Sweep(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("sweep failed", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		iv := a.Interval()
		wait := iv - time.Since(start)
		if wait <= 0 {
			a.m.overruns.Inc()
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Close releases the probers. With DetachOnExit it also detaches the
// attachments the agent made; otherwise they stay pinned.
func (a *Agent) Close() error {
	a.running.Lock()
	defer a.running.Unlock()
	var errs []error
	for k, p := range a.probers {
		errs = append(errs, p.close())
		delete(a.probers, k)
	}
	if a.opt.DetachOnExit && a.opt.Enforce != nil && !a.opt.DryRun {
		errs = append(errs, a.detachAll())
	}
	return errors.Join(errs...)
}

func (a *Agent) detachAll() error {
	atts, err := a.opt.Enforce.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, at := range atts {
		if at.Owner == Owner {
			if err := a.opt.Enforce.Detach(at.Cgroup, nil, Owner, false); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: %w", at.Cgroup, err))
			} else {
				a.m.enforcements.WithLabelValues("detached").Inc()
			}
		}
	}
	clear(a.attached)
	return errors.Join(errs...)
}

// entry is what the agent remembers of one socket between sweeps, keyed by cookie.
type entry struct {
	sock       host.Socket // identity and owners (no tcp_info)
	conn       Conn
	owned      bool // owners resolved
	ownerTried bool
	settings   *keepalive.Settings // set by a retrofit
	lastSweep  uint64
	firstSeen  time.Time
	idle       time.Duration
	ruleGen    uint64
	rule       *Rule
	assess     Assessment
	fixed      string // the enforce settings already retrofitted
	probedAt   time.Time
}

type assessKey struct {
	state           host.State
	armed, known    bool
	inflight        bool
	hasSettings     bool
	settings        keepalive.Settings
	refresh, idleMx time.Duration
	rtoMax          time.Duration // the socket's own TCP_RTO_MAX_MS
	sys             int           // sysctlRef.idx
}

type sysctlEntry struct {
	sys  host.Sysctl
	read uint64
	idx  int
}

// SweepResult summarises one sweep.
type SweepResult struct {
	// Namespaces and Sockets are what the sweep walked; New the sockets not seen before;
	// AtRisk those whose assessment is at risk.
	Namespaces int `json:"namespaces"`
	Sockets    int `json:"sockets"`
	New        int `json:"new"`
	AtRisk     int `json:"at_risk"`
	// Retrofits and Attachments are the enforce actions taken.
	Retrofits   int `json:"retrofits"`
	Attachments int `json:"attachments"`
	// Probed, Dead and Reaped are the probe actions' counts.
	Probed int `json:"probed"`
	Dead   int `json:"dead"`
	Reaped int `json:"reaped"`
	// Duration is the sweep's wall time (JSON: duration_ms).
	Duration time.Duration `json:"-"`
}

// MarshalJSON writes the sweep with its duration in milliseconds, like the other commands.
func (r SweepResult) MarshalJSON() ([]byte, error) {
	type plain SweepResult
	return json.Marshal(struct {
		plain
		DurationMS float64 `json:"duration_ms"`
	}{plain(r), float64(r.Duration.Microseconds()) / 1000})
}

// Sweep runs one sweep now (waiting for a running one to end).
func (a *Agent) Sweep(ctx context.Context) (SweepResult, error) {
	a.running.Lock()
	defer a.running.Unlock()
	start := time.Now()
	a.lastStart.Store(start.UnixNano())
	res, err := a.sweep(ctx)
	res.Duration = time.Since(start)
	a.lastEnd.Store(time.Now().UnixNano())
	if err == nil {
		a.m.sweeps.Inc()
		a.m.sweepDur.Observe(res.Duration.Seconds())
		a.m.lastSweep.Set(float64(time.Now().UnixNano()) / 1e9)
		a.ready.Store(true)
	}
	a.log.Debug("sweep", "namespaces", res.Namespaces, "sockets", res.Sockets, "new", res.New, "at_risk", res.AtRisk,
		"retrofits", res.Retrofits, "probed", res.Probed, "dead", res.Dead, "reaped", res.Reaped, "duration", res.Duration)
	return res, err
}

func (a *Agent) warn(stage string) func(error) {
	return func(err error) {
		a.m.errors.WithLabelValues(stage).Inc()
		a.log.Debug("skipped", "stage", stage, "err", err)
	}
}

func (a *Agent) sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	pol := a.policy.Load()
	gen := a.gen.Load()
	a.sweepN++
	n := a.sweepN
	now := time.Now()

	nss, err := host.Namespaces(a.warn("list"))
	if err != nil {
		a.m.errors.WithLabelValues("list").Inc()
		return res, fmt.Errorf("list namespaces: %w", err)
	}
	res.Namespaces = len(nss)
	nsByKey := make(map[string]*host.NetNS, len(nss))
	for i := range nss {
		nsByKey[nsKey(&nss[i])] = &nss[i]
	}

	var fresh []*entry
	// Sockets arrive grouped by namespace: what depends only on the namespace is
	// looked up once per group.
	var curNS *host.NetNS
	var curSys sysctlRef
	var curName, curLabel string
	first := true
	err = host.Walk(ctx, host.ListOptions{Namespaces: nss, Warn: a.warn("list"),
		Selector: host.Selector{States: host.ConnectedStates()}}, func(s *host.Socket) error {
		res.Sockets++
		e := a.cache[s.Cookie]
		if e == nil || e.sock.Local != s.Local || e.sock.Remote != s.Remote {
			c := s.Clone()
			c.Info = nil
			e = &entry{sock: c, firstSeen: now}
			if first || s.Namespace != curNS {
				first, curNS = false, s.Namespace
				curName, curLabel = s.NetNS, ""
				if s.Namespace != nil {
					curName, curLabel = s.Namespace.Name, s.Namespace.Label()
				}
				curSys = a.sysctl(s, n)
			}
			e.conn = Conn{NetNS: curName, NetNSLabel: curLabel, Local: s.Local, Remote: s.Remote}
			a.cache[s.Cookie] = e
			fresh = append(fresh, e)
		}
		e.sock.State = s.State
		e.idle = s.Idle()
		e.lastSweep = n
		if e.settings != nil && s.Settings == nil {
			// The settings the agent itself gave the socket.
			sc := *s
			sc.Settings = e.settings
			s = &sc
		}
		if first || s.Namespace != curNS {
			first, curNS = false, s.Namespace
			curName, curLabel = s.NetNS, ""
			if s.Namespace != nil {
				curName, curLabel = s.Namespace.Name, s.Namespace.Label()
			}
			curSys = a.sysctl(s, n)
		}
		e.assess = a.assess(s, curSys)
		return nil
	})
	if err != nil {
		a.m.errors.WithLabelValues("list").Inc()
		return res, fmt.Errorf("list sockets: %w", err)
	}
	res.New = len(fresh)
	for c, e := range a.cache {
		if e.lastSweep != n {
			delete(a.cache, c)
		}
	}
	if len(a.memo) > 4096 {
		clear(a.memo)
	}
	for k, s := range a.sysctls {
		if n-s.read > 40 {
			delete(a.sysctls, k)
		}
	}

	// Owners: resolved once per socket, only when something needs them.
	if pol.NeedsOwners() || a.opt.Labels.Process || a.opt.Labels.Pod {
		var todo []*entry
		for _, e := range a.cache {
			if !e.ownerTried {
				e.ownerTried = true
				todo = append(todo, e)
			}
		}
		if len(todo) > 0 {
			a.resolveOwners(ctx, nss, todo)
		}
	}

	// Match the policy (once per socket and policy generation) and count.
	snap := a.count(pol, gen, &res)
	if a.opt.Enforce != nil {
		if atts, err := a.opt.Enforce.List(); err == nil {
			snap.bpfOK = true
			snap.bpf = bpfTotalsOf(atts)
		} else {
			a.warn("enforce")(err)
		}
	}
	snap.namespaces, snap.sockets = res.Namespaces, res.Sockets
	snap.tcpext = a.tcpExt(nss)

	// Actions.
	a.enforceRules(ctx, pol, gen, &res)
	a.probeRules(ctx, pol, nsByKey, &res)
	a.closeStaleProbers(nsByKey)

	// Counters of sockets reaped or closed meanwhile show in the next sweep.
	a.m.last.Store(snap)
	return res, ctx.Err()
}

func nsKey(ns *host.NetNS) string {
	if ns == nil || ns.Current {
		return ""
	}
	if ns.Inode != 0 {
		return strconv.FormatUint(ns.Inode, 10)
	}
	return ns.Path
}

// sysctlRef is a namespace's sysctls and their index in the agent's table (the
// assessment memo is keyed by the index, not by the strings inside).
type sysctlRef struct {
	sys host.Sysctl
	idx int
}

func (a *Agent) sysctl(s *host.Socket, n uint64) sysctlRef {
	k := nsKey(s.Namespace)
	if e, ok := a.sysctls[k]; ok {
		return sysctlRef{e.sys, e.idx}
	}
	sys, err := host.ReadSysctl(s.NetNS)
	if err != nil {
		a.warn("sysctl")(err)
		sys = host.Sysctl{}
	}
	a.sysIdx++
	a.sysctls[k] = sysctlEntry{sys: sys, read: n, idx: a.sysIdx}
	return sysctlRef{sys, a.sysIdx}
}

func (a *Agent) assess(s *host.Socket, sr sysctlRef) Assessment {
	on, known := s.KeepaliveArmed()
	k := assessKey{state: s.State, armed: on, known: known, sys: sr.idx, rtoMax: s.RTOMax,
		inflight: s.SendQ > 0 || (s.Info != nil && (s.Info.Unacked > 0 || s.Info.NotSent > 0))}
	if s.Settings != nil {
		k.hasSettings, k.settings = true, *s.Settings
	}
	if b, ok := s.KeepaliveBounds(); ok {
		k.refresh, k.idleMx = b.RefreshMin, b.IdleMax
	}
	if v, ok := a.memo[k]; ok {
		return v
	}
	v := a.opt.Assess(s, sr.sys)
	a.memo[k] = v
	return v
}

func (a *Agent) resolveOwners(ctx context.Context, nss []host.NetNS, fresh []*entry) {
	want := make(map[uint64]*entry, len(fresh))
	for _, e := range fresh {
		want[e.sock.Cookie] = e
	}
	type pidInfo struct {
		cgroup string
		ctr    *host.Container
	}
	pids := map[int]pidInfo{}
	err := host.Walk(ctx, host.ListOptions{Namespaces: nss, Owners: true, NoInfo: true, Warn: a.warn("owners"),
		Selector: host.Selector{States: host.ConnectedStates()}}, func(s *host.Socket) error {
		e := want[s.Cookie]
		if e == nil {
			return nil
		}
		e.owned = true
		e.sock.Owners = append([]host.Owner(nil), s.Owners...)
		for _, o := range s.Owners {
			pi, ok := pids[o.PID]
			if !ok {
				pi.cgroup, pi.ctr = procCgroup(o.PID)
				pids[o.PID] = pi
			}
			e.conn.Comms = appendNew(e.conn.Comms, o.Comm)
			if pi.cgroup != "" {
				e.conn.Cgroups = appendNew(e.conn.Cgroups, pi.cgroup)
			}
			if pi.ctr != nil {
				e.conn.Containers = append(e.conn.Containers, pi.ctr)
			}
		}
		return nil
	})
	if err != nil {
		a.warn("owners")(err)
	}
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// procCgroup returns a process's cgroup v2 path and its container.
func procCgroup(pid int) (string, *host.Container) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", nil
	}
	var cg string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			cg = p
		}
	}
	return cg, host.ParseCgroup(string(b))
}

func (a *Agent) count(pol *Policy, gen uint64, res *SweepResult) *snapshot {
	l := a.opt.Labels
	s := &snapshot{conns: map[connKey]int{}, noKA: map[connKey]int{}, atRisk: map[connKey]int{}, rules: map[[2]string]int{}, detectBkt: map[float64]uint64{}}
	var keepNS, keepProc, keepPod map[string]bool
	label := func(e *entry) connKey {
		k := connKey{}
		if l.Namespace {
			k.ns = cmpOr(e.conn.NetNSLabel, "host")
		}
		if l.Process {
			if len(e.conn.Comms) > 0 {
				k.proc = e.conn.Comms[0]
			}
		}
		if l.Pod {
			for _, c := range e.conn.Containers {
				if c.Pod != "" {
					k.pod = c.Pod
					break
				}
			}
		}
		return k
	}
	if l.Namespace || l.Process || l.Pod {
		cn, cp, cd := map[string]int{}, map[string]int{}, map[string]int{}
		for _, e := range a.cache {
			k := label(e)
			cn[k.ns]++
			cp[k.proc]++
			cd[k.pod]++
		}
		keepNS, keepProc, keepPod = topN(cn, l.TopN), topN(cp, l.TopN), topN(cd, l.TopN)
	}
	buckets := DetectBuckets()
	for _, e := range a.cache {
		if e.ruleGen != gen {
			e.rule, e.ruleGen = pol.RuleFor(&e.conn), gen
		}
		k := label(e)
		if l.Namespace && !keepNS[k.ns] {
			k.ns = "other"
		}
		if l.Process && !keepProc[k.proc] {
			k.proc = "other"
		}
		if l.Pod && !keepPod[k.pod] {
			k.pod = "other"
		}
		ck := k
		ck.state, ck.risk = e.sock.State.String(), e.assess.Risk
		s.conns[ck]++
		if e.assess.AtRisk {
			res.AtRisk++
			s.atRisk[ck]++
		}
		if e.assess.Risk == string(host.RiskNoKeepalive) {
			s.noKA[k]++
		}
		if d := e.assess.Detect; d > 0 {
			s.detectCount++
			s.detectSum += d.Seconds()
			for _, b := range buckets {
				if d.Seconds() <= b {
					s.detectBkt[b]++
				}
			}
		}
		if e.rule != nil {
			s.rules[[2]string{e.rule.Name, string(e.rule.Action)}]++
		}
	}
	for _, b := range buckets {
		s.detectBkt[b] += 0
	}
	for i := range pol.Rules {
		s.rules[[2]string{pol.Rules[i].Name, string(pol.Rules[i].Action)}] += 0
	}
	return s
}

func bpfTotalsOf(atts []enforce.Attachment) bpfTotals {
	t := bpfTotals{attachments: len(atts), failures: map[string]uint64{}}
	for _, at := range atts {
		t.seen += at.Counters.Seen
		t.set += at.Counters.Set
		t.rewritten += at.Counters.Rewritten
		for _, f := range at.Counters.Failures {
			t.failures[f.Option] += f.Count
		}
	}
	return t
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
