package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/cgroupns"
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
	sweepN      uint64
	cache       table
	nss         []nsInfo
	nsIdx       map[string]uint32
	nsFree      []uint32
	procs       []procInfo // slot 0: none
	procIdx     map[int32]uint32
	moreOwners  map[uint64][]ownerRef
	settings    map[uint64]keepalive.Settings // by cookie: the settings a retrofit gave
	memo        map[assessKey]uint32
	assessments []Assessment
	fixIDs      map[string]uint32
	probers     map[string]*nsProber
	attached    map[attachKey]attachVal
	warned      map[string]bool
	sysIdx      int
	todo        []uint32 // scratch list of slots, reused between sweeps
	ownersNext  time.Time

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
		cache: newTable(), nsIdx: map[string]uint32{}, procs: make([]procInfo, 1), procIdx: map[int32]uint32{},
		moreOwners: map[uint64][]ownerRef{}, settings: map[uint64]keepalive.Settings{},
		memo: map[assessKey]uint32{}, fixIDs: map[string]uint32{},
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
	return func(err error) { a.count1(stage, err, 1) }
}

// count1 counts n things a stage skipped because of err: in
// keepalive_vanished_total when they went away during the sweep (normal churn:
// a namespace deleted, a process exited, a socket closed), else in
// keepalive_errors_total, which alerts watch.
func (a *Agent) count1(stage string, err error, n int) {
	if vanished(err) {
		a.m.vanished.WithLabelValues(stage).Add(float64(n))
		a.log.Debug("gone", "stage", stage, "err", err)
		return
	}
	a.m.errors.WithLabelValues(stage).Add(float64(n))
	a.log.Debug("skipped", "stage", stage, "err", err)
}

// vanished reports whether err says that what the agent looked at went away.
func vanished(err error) bool {
	return errors.Is(err, host.ErrGone) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) ||
		errors.Is(err, host.ErrStaleNetNS)
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
	if len(a.assessments) > maxAssessments {
		// Every socket walked below is assessed again; the others are dropped.
		clear(a.memo)
		a.assessments = a.assessments[:0]
	}

	// Sockets arrive grouped by namespace: what depends only on the namespace is
	// looked up once per group. tcp_info (the kernel's most expensive part of the
	// dump) is asked for only when a probe rule needs the idle time.
	var curNS *host.NetNS
	var curSlot uint32
	var prev uint32 // slot + 1 of the previous socket
	first := true
	err = host.Walk(ctx, host.ListOptions{Namespaces: nss, Warn: a.warn("list"), NoInfo: !pol.needsIdle(),
		Selector: host.Selector{States: host.ConnectedStates()}}, func(s *host.Socket) error {
		res.Sockets++
		if first || s.Namespace != curNS {
			first, curNS = false, s.Namespace
			curSlot = a.nsSlot(s, n)
		}
		loc, rem := packAddr(s.Local), packAddr(s.Remote)
		i, ok := a.cache.find(s.Cookie, prev)
		if ok && (a.cache.at(i).local != loc || a.cache.at(i).remote != rem) {
			a.dropEntry(i)
			ok = false
		}
		if !ok {
			i = a.cache.add(entry{cookie: s.Cookie, firstSeen: now.UnixNano(), local: loc, remote: rem,
				inode: s.Inode, family: uint8(s.Family), rule: -1})
			res.New++
		}
		if prev != 0 {
			a.cache.at(prev - 1).next = i + 1
		}
		prev = i + 1
		e := a.cache.at(i)
		e.ns, e.state, e.lastSweep = curSlot, s.State, uint32(n)
		e.idleMS = uint32(min(s.Idle().Milliseconds(), 1<<32-1))
		if e.flags&flagSettings != 0 && s.Settings == nil {
			// The settings the agent itself gave the socket.
			sc := *s
			st := a.settings[s.Cookie]
			sc.Settings = &st
			s = &sc
		}
		e.assess = a.assess(s, a.nss[curSlot].sys)
		return nil
	})
	if err != nil {
		a.m.errors.WithLabelValues("list").Inc()
		return res, fmt.Errorf("list sockets: %w", err)
	}
	for i := range a.cache.n {
		if ls := a.cache.at(i).lastSweep; ls != 0 && ls != uint32(n) {
			a.dropEntry(i)
		}
	}
	a.cache.compact()
	a.dropStaleNamespaces(n)

	// Owners: looked for until found (in at most maxOwnerTries passes), only when
	// something needs them.
	if (pol.NeedsOwners() || a.opt.Labels.Process || a.opt.Labels.Pod) && !now.Before(a.ownersNext) {
		todo := a.todo[:0]
		for i := range a.cache.n {
			if e := a.cache.at(i); e.lastSweep != 0 && e.proc == 0 && e.ownerTry < maxOwnerTries {
				todo = append(todo, i)
			}
		}
		if len(todo) > 0 {
			a.resolveOwners(ctx, todo)
		}
		a.todo = todo[:0]
	}
	if n%sysctlRefresh == 0 {
		a.compactProcs()
		a.forgetFailedCgroups()
	}

	// Match the policy (once per socket and policy generation) and count.
	snap := a.count(pol, gen, &res)
	if a.opt.Enforce != nil {
		if atts, err := a.opt.Enforce.List(); err == nil {
			snap.bpfOK = true
			snap.bpf = bpfTotalsOf(atts)
			a.detachGone(atts)
		} else {
			a.warn("enforce")(err)
		}
	}
	snap.namespaces, snap.sockets = res.Namespaces, res.Sockets
	snap.tcpext = a.tcpExt(nss)

	// Actions.
	a.enforceRules(ctx, pol, &res)
	a.probeRules(ctx, pol, &res)
	a.closeStaleProbers(nsByKey)

	// Counters of sockets reaped or closed meanwhile show in the next sweep.
	a.m.last.Store(snap)
	return res, ctx.Err()
}

// maxAssessments bounds the distinct assessments remembered between sweeps.
const maxAssessments = 4096

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

func (a *Agent) assess(s *host.Socket, sr sysctlRef) uint32 {
	on, known := s.KeepaliveArmed()
	k := assessKey{state: s.State, armed: on, known: known, sys: sr.idx, rtoMax: s.RTOMax,
		inflight: s.SendQ > 0 || (s.Info != nil && (s.Info.Unacked > 0 || s.Info.NotSent > 0))}
	if s.Settings != nil {
		k.hasSettings, k.settings = true, *s.Settings
	}
	if b, ok := s.KeepaliveBounds(); ok {
		k.refresh, k.idleMx = b.RefreshMin, b.IdleMax
	}
	if i, ok := a.memo[k]; ok {
		return i
	}
	i := uint32(len(a.assessments))
	a.assessments = append(a.assessments, a.opt.Assess(s, sr.sys))
	a.memo[k] = i
	return i
}

// resolveOwners finds the owners of the sockets in todo with one pass over
// /proc/*/fd, and schedules the next pass: a pass costs in proportion to every
// descriptor on the host, not to the new sockets, so expensive passes are spaced
// to use about one percent of the wall time (at 198 000 sockets one pass takes
// ≈ 0.5 s: one per minute or so; on a small host every sweep has one).
func (a *Agent) resolveOwners(ctx context.Context, todo []uint32) {
	start, cpu0 := time.Now(), processCPU()
	want := make(map[uint32]uint32, len(todo))
	inodes := make([]uint32, 0, len(todo))
	for _, i := range todo {
		e := a.cache.at(i)
		e.ownerTry++ // reset below when found
		if e.inode != 0 {
			want[e.inode] = i
			inodes = append(inodes, e.inode)
		}
	}
	pass := ownerPass{slots: map[int]uint32{}}
	cgr, err := cgroupns.NewReader()
	if err != nil {
		a.warn("owners")(err)
	} else {
		defer cgr.Close()
		pass.cgroups = cgr
		if !cgr.HostAbsolute() && !a.warned["cgroupns"] {
			a.warned["cgroupns"] = true
			a.log.Warn("cgroup paths are relative to the agent's cgroup namespace: rules by cgroup and eBPF attachments to other cgroups will not work", "why", cgr.Note())
		}
	}
	err = host.OwnersOf(ctx, inodes, func(ino uint32, owners []host.Owner) {
		e := a.cache.at(want[ino])
		var more []ownerRef
		for j, o := range owners {
			p := a.procSlot(o.PID, o.Comm, &pass)
			if j == 0 {
				e.proc, e.fd = p, int32(o.FD)
			} else {
				more = append(more, ownerRef{p, int32(o.FD)})
			}
		}
		e.ownerTry = 0
		e.ruleGen = 0 // match the policy again, with the owners
		if len(more) > 0 {
			e.flags |= flagMoreOwners
			a.moreOwners[e.cookie] = more
		}
	})
	if err != nil {
		a.warn("owners")(err)
	}
	// Spaced by the CPU the pass cost (its /proc workers included), not its wall
	// time: on a loaded machine a cheap pass may take long without costing much.
	if d := processCPU() - cpu0; d >= ownerPassCheap {
		a.ownersNext = time.Now().Add(ownerPassSpacing * d)
	} else if d == 0 && time.Since(start) >= ownerPassCheap {
		a.ownersNext = time.Now().Add(ownerPassSpacing * time.Since(start)) // no CPU clock
	}
}

// maxOwnerTries is how many owner passes look for a socket's owners: a process
// may be busy or passing the descriptor on during one pass; a socket no process
// holds (orphaned while it closes, a kernel socket) is not looked for for ever.
const maxOwnerTries = 3

// Owner passes that cost ownerPassCheap of CPU or more are spaced by
// ownerPassSpacing times that; cheaper ones run in every sweep that has new sockets.
const (
	ownerPassSpacing = 100
	ownerPassCheap   = 50 * time.Millisecond
)

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// procCgroup returns a process's cgroup v2 path, as the host's cgroup namespace
// names it, and its container.
func (a *Agent) procCgroup(r *cgroupns.Reader, pid int) (string, *host.Container) {
	if r == nil {
		return "", nil
	}
	b, err := r.Read(pid)
	if err != nil {
		return "", nil
	}
	cg, _ := cgroupns.Cgroup2Path(b)
	if strings.HasPrefix(cg, "/..") {
		cg = "" // outside the namespace the reader sees: no usable path
	}
	return cg, host.ParseCgroup(string(b))
}

// groupKey groups the sockets that count alike: the per-socket loop only
// increments a counter, and labels are rendered once per group.
type groupKey struct {
	ns     uint32 // namespace slot (with the namespace label)
	proc   uint32 // first owner's process slot (with the process or pod label)
	cookie uint64 // the socket itself when it has several owners and the pod label is on
	assess uint32
	rule   int16
	state  host.State
}

func (a *Agent) count(pol *Policy, gen uint64, res *SweepResult) *snapshot {
	l := a.opt.Labels
	groups := map[groupKey]int{}
	var c Conn
	for i := range a.cache.n {
		e := a.cache.at(i)
		if e.lastSweep == 0 {
			continue
		}
		if e.ruleGen != uint32(gen) {
			a.connOf(e, &c)
			e.rule, e.ruleGen = pol.ruleIndex(&c), uint32(gen)
		}
		k := groupKey{assess: e.assess, rule: e.rule, state: e.state}
		if l.Namespace {
			k.ns = e.ns
		}
		if l.Process || l.Pod {
			k.proc = e.proc
			if l.Pod && e.flags&flagMoreOwners != 0 {
				k.cookie = e.cookie
			}
		}
		groups[k]++
	}

	type labelled struct {
		k   connKey
		cnt int
		g   groupKey
	}
	rows := make([]labelled, 0, len(groups))
	cn, cp, cd := map[string]int{}, map[string]int{}, map[string]int{}
	for g, cnt := range groups {
		var k connKey
		if l.Namespace {
			k.ns = cmpOr(a.nss[g.ns].label, "host")
		}
		if l.Process && g.proc != 0 {
			k.proc = a.procs[g.proc].comm
		}
		if l.Pod {
			k.pod = a.podOf(g)
		}
		cn[k.ns] += cnt
		cp[k.proc] += cnt
		cd[k.pod] += cnt
		rows = append(rows, labelled{k, cnt, g})
	}
	keepNS, keepProc, keepPod := topN(cn, l.TopN), topN(cp, l.TopN), topN(cd, l.TopN)

	s := &snapshot{conns: map[connKey]int{}, noKA: map[connKey]int{}, atRisk: map[connKey]int{}, rules: map[[2]string]int{}, detectBkt: map[float64]uint64{}}
	buckets := DetectBuckets()
	for _, row := range rows {
		k, cnt := row.k, row.cnt
		if l.Namespace && !keepNS[k.ns] {
			k.ns = "other"
		}
		if l.Process && !keepProc[k.proc] {
			k.proc = "other"
		}
		if l.Pod && !keepPod[k.pod] {
			k.pod = "other"
		}
		as := &a.assessments[row.g.assess]
		ck := k
		ck.state, ck.risk = row.g.state.String(), as.Risk
		s.conns[ck] += cnt
		if as.AtRisk {
			res.AtRisk += cnt
			s.atRisk[ck] += cnt
		}
		if as.Risk == string(host.RiskNoKeepalive) {
			s.noKA[k] += cnt
		}
		if d := as.Detect; d > 0 {
			s.detectCount += uint64(cnt)
			s.detectSum += d.Seconds() * float64(cnt)
			for _, b := range buckets {
				if d.Seconds() <= b {
					s.detectBkt[b] += uint64(cnt)
				}
			}
		}
		if r := pol.rule(row.g.rule); r != nil {
			s.rules[[2]string{r.Name, string(r.Action)}] += cnt
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

// podOf is the pod label of a group: the first owner's pod (or, for a socket
// with several owners, the first pod among them).
func (a *Agent) podOf(g groupKey) string {
	if g.cookie != 0 {
		if i, ok := a.cache.idx[g.cookie]; ok {
			pod := ""
			a.owners(a.cache.at(i), func(p *procInfo, _ int32) {
				if pod == "" && p.ctr != nil {
					pod = p.ctr.Pod
				}
			})
			return pod
		}
	}
	if g.proc != 0 {
		if c := a.procs[g.proc].ctr; c != nil {
			return c.Pod
		}
	}
	return ""
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
