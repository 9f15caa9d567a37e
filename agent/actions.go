package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/probe"
)

type attachKey struct {
	cgroup string
	match  enforce.Match
}

type attachVal struct {
	rule string
	cfg  keepalive.Config
	mode enforce.Mode
	at   time.Time
}

func ruleMode(r *Rule) enforce.Mode {
	if r.ModeEnforce {
		return enforce.ModeEnforce
	}
	return enforce.ModeDefault
}

// enforceMatches translates a rule's ports and peers into eBPF matches (the
// ports match either end, as in the policy). The other match fields select the
// cgroups the rule is attached to.
func enforceMatches(r *Rule) []enforce.Match {
	peers := r.Match.Peers
	if len(peers) == 0 {
		peers = []netip.Prefix{{}}
	}
	var out []enforce.Match
	for _, pf := range peers {
		if len(r.Match.Ports) == 0 {
			out = append(out, enforce.Match{Peer: pf})
			continue
		}
		for _, p := range r.Match.Ports {
			out = append(out, enforce.Match{RemotePort: p, Peer: pf}, enforce.Match{LocalPort: p, Peer: pf})
		}
	}
	return out
}

// enforceRules attaches the enforce rules to the cgroups of the connections
// they match and retrofits the existing connections, within the budget.
func (a *Agent) enforceRules(ctx context.Context, pol *Policy, res *SweepResult) {
	byName := map[string]*Rule{}
	for i := range pol.Rules {
		if pol.Rules[i].Action == ActionEnforce {
			byName[pol.Rules[i].Name] = &pol.Rules[i]
		}
	}
	// Attachments whose rule is gone or changed since they were made.
	for k, v := range a.attached {
		if r := byName[v.rule]; r != nil && r.Keepalive == v.cfg && ruleMode(r) == v.mode {
			continue
		}
		if a.opt.Enforce != nil && !a.opt.DryRun {
			m := k.match
			if err := a.opt.Enforce.Detach(k.cgroup, &m, Owner, false); err != nil {
				a.warn("enforce")(fmt.Errorf("detach %s (%s): %w", k.cgroup, m, err))
			} else {
				a.m.enforcements.WithLabelValues("detached").Inc()
				a.log.Info("detached", "cgroup", k.cgroup, "match", m.String(), "rule", v.rule)
			}
		}
		delete(a.attached, k)
	}
	if len(byName) == 0 {
		return
	}
	n := uint32(a.sweepN)
	fixIDs := make([]uint32, len(pol.Rules))
	matches := make([][]enforce.Match, len(pol.Rules))
	for i := range pol.Rules {
		if pol.Rules[i].Action == ActionEnforce {
			fixIDs[i] = a.fixKeyID(&pol.Rules[i])
			matches[i] = enforceMatches(&pol.Rules[i])
		}
	}
	todo := a.todo[:0]
	defer func() { a.todo = todo[:0] }()
	var cgs []string
	for i := range a.cache.n {
		e := a.cache.at(i)
		r := pol.rule(e.rule)
		if e.lastSweep == 0 || r == nil || r.Action != ActionEnforce || e.state != host.StateEstablished {
			continue
		}
		key := fixIDs[e.rule]
		if e.fixed == key || n < e.retryAt {
			continue
		}
		cgs = cgs[:0]
		a.owners(e, func(p *procInfo, _ int32) {
			if p.cgroup != "" {
				cgs = appendNew(cgs, p.cgroup)
			}
		})
		covered := false
		for _, cg := range cgs {
			if cg == "/" && !slices.Contains(r.Match.Cgroups, "/") {
				continue // never the whole host by accident
			}
			for _, m := range matches[e.rule] {
				at, ok := a.attached[attachKey{cg, m}]
				if !ok {
					at, ok = a.attach(cg, m, r, res)
				}
				if ok && !at.at.IsZero() && e.firstSeen > at.at.UnixNano() && a.assessments[e.assess].Keepalive {
					covered = true // established under the program
				}
			}
		}
		if covered {
			e.fixed = key
			continue
		}
		if e.proc != 0 { // owners known
			todo = append(todo, i)
		}
	}
	// At-risk connections first, then those never tried before.
	slices.SortStableFunc(todo, func(x, y uint32) int {
		ex, ey := a.cache.at(x), a.cache.at(y)
		rx, ry := a.assessments[ex.assess].AtRisk, a.assessments[ey.assess].AtRisk
		switch {
		case rx != ry && rx:
			return -1
		case rx != ry:
			return 1
		}
		return int(ex.fails) - int(ey.fails)
	})
	if n := pol.Budgets.RetrofitsPerSweep; len(todo) > n {
		a.m.actionsSkipped.WithLabelValues("retrofit").Add(float64(len(todo) - n))
		todo = todo[:n]
	}
	groups := map[int16][]uint32{}
	for _, i := range todo {
		r := a.cache.at(i).rule
		groups[r] = append(groups[r], i)
	}
	for ri, slots := range groups {
		r, key := &pol.Rules[ri], fixIDs[ri]
		if a.opt.DryRun {
			a.m.retrofits.WithLabelValues("dry-run").Add(float64(len(slots)))
			a.log.Info("would retrofit", "rule", r.Name, "connections", len(slots))
			for _, i := range slots {
				a.cache.at(i).fixed = key
			}
			continue
		}
		socks := make([]host.Socket, len(slots))
		for j, i := range slots {
			socks[j] = a.socketOf(a.cache.at(i))
		}
		for j, rr := range host.Retrofit(ctx, socks, r.Keepalive, host.RetrofitOptions{}) {
			e := a.cache.at(slots[j])
			switch {
			case rr.Err == nil:
				if rr.Changed {
					a.m.retrofits.WithLabelValues("applied").Inc()
					res.Retrofits++
				} else {
					a.m.retrofits.WithLabelValues("unchanged").Inc()
				}
				e.fixed, e.fails, e.retryAt = key, 0, 0
				a.settings[e.cookie] = rr.After
				e.flags |= flagSettings
			case errors.Is(rr.Err, host.ErrGone):
				// The sweep's dump listed the socket a moment ago: its owners moved
				// it (closed the descriptor after a dup, exited after a fork). Look
				// for them again and retry, with the same backoff as a failure.
				a.log.Debug("owner moved", "conn", socks[j].String(), "err", rr.Err)
				a.forgetOwners(e)
				e.retryAt = n + retryAfter(e.fails)
				e.fails = min(e.fails+1, 255)
			default:
				// Tried again after 1, 2, 4 … sweeps (at most retryMaxSweeps): a
				// process that was busy or a descriptor moved between sweeps may
				// succeed later; a lasting refusal costs one attempt per backoff.
				a.m.retrofits.WithLabelValues("failed").Inc()
				a.warn("retrofit")(fmt.Errorf("%s: %w", socks[j].String(), rr.Err))
				e.retryAt = n + retryAfter(e.fails)
				e.fails = min(e.fails+1, 255)
			}
		}
	}
}

// retryMaxSweeps caps the backoff between retries of a failed retrofit.
const retryMaxSweeps = 40

// retryAfter is the number of sweeps to wait after a retrofit failed for the
// fails+1-th time in a row: 1, 2, 4 … up to retryMaxSweeps.
func retryAfter(fails uint8) uint32 { return min(uint32(1)<<min(fails, 16), retryMaxSweeps) }

// fixKeyID interns the key of a rule's retrofit (name, settings, mode): a
// connection retrofitted under it is not retrofitted again until the rule changes.
func (a *Agent) fixKeyID(r *Rule) uint32 {
	k := fmt.Sprintf("%s/%+v/%v", r.Name, r.Keepalive, r.ModeEnforce)
	id, ok := a.fixIDs[k]
	if !ok {
		id = uint32(len(a.fixIDs) + 1)
		a.fixIDs[k] = id
	}
	return id
}

// detachGone detaches the agent's attachments whose cgroup was removed (a pod
// or container that ended): their pins, policy entries and the agent's record
// of them would otherwise pile up on a node where pods come and go.
func (a *Agent) detachGone(atts []enforce.Attachment) {
	for _, at := range atts {
		if at.Owner != Owner || !at.Gone || a.opt.DryRun {
			continue
		}
		if err := a.opt.Enforce.Detach(at.Cgroup, nil, Owner, false); err != nil {
			a.warn("enforce")(fmt.Errorf("detach %s (cgroup gone): %w", at.Cgroup, err))
			continue
		}
		a.m.enforcements.WithLabelValues("detached").Inc()
		a.log.Info("detached", "cgroup", at.Cgroup, "why", "cgroup gone")
		for k := range a.attached {
			if k.cgroup == at.Cgroup {
				delete(a.attached, k)
			}
		}
		delete(a.warned, at.Cgroup)
	}
}

// forgetFailedCgroups drops the failed attachments and warnings of cgroups no
// process the agent knows of lives in any more (they would be tried again if
// one did).
func (a *Agent) forgetFailedCgroups() {
	live := map[string]bool{}
	for i := range a.procs {
		live[a.procs[i].cgroup] = true
	}
	for k, v := range a.attached {
		if v.at.IsZero() && !live[k.cgroup] {
			delete(a.attached, k)
		}
	}
	for cg := range a.warned {
		if strings.HasPrefix(cg, "/") && !live[cg] {
			delete(a.warned, cg)
		}
	}
}

func (a *Agent) attach(cg string, m enforce.Match, r *Rule, res *SweepResult) (attachVal, bool) {
	v := attachVal{rule: r.Name, cfg: r.Keepalive, mode: ruleMode(r), at: time.Now()}
	if a.opt.Enforce == nil {
		return v, false
	}
	if a.opt.DryRun {
		a.m.enforcements.WithLabelValues("dry-run").Inc()
		a.log.Info("would attach", "cgroup", cg, "match", m.String(), "rule", r.Name)
		a.attached[attachKey{cg, m}] = v
		return v, false
	}
	_, err := a.opt.Enforce.Attach(enforce.AttachRequest{Cgroup: cg, Owner: Owner,
		Rule: enforce.Rule{Match: m, Config: r.Keepalive, Mode: v.mode}})
	if err != nil {
		a.m.enforcements.WithLabelValues("failed").Inc()
		if !a.warned[cg] {
			a.warned[cg] = true
			a.log.Warn("attach failed; retrofitting only", "cgroup", cg, "rule", r.Name, "err", err)
		}
		a.attached[attachKey{cg, m}] = attachVal{rule: r.Name, cfg: r.Keepalive, mode: v.mode} // zero time: not covering
		return v, false
	}
	a.m.enforcements.WithLabelValues("applied").Inc()
	res.Attachments++
	a.log.Info("attached", "cgroup", cg, "match", m.String(), "rule", r.Name)
	a.attached[attachKey{cg, m}] = v
	return v, true
}

// Prober probes connections of one namespace; *probe.Prober implements it.
type Prober interface {
	Probe(ctx context.Context, flows []probe.Flow, opt probe.Options, emit func(probe.Result)) ([]probe.Result, error)
	Close() error
}

// ProberFunc opens a Prober in a namespace ("" the agent's own, else a name
// or path) that reads the local sockets through chk.
type ProberFunc func(netns string, chk probe.Checker) (Prober, error)

func defaultProber(netns string, chk probe.Checker) (Prober, error) {
	p, err := probe.New(probe.NewOptions{Netns: netns, Checker: chk})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return p, nil
}

type nsProber struct {
	p     Prober
	socks map[probe.Flow]host.Socket
	err   error
}

func (p *nsProber) close() error {
	if p.p == nil || p.err != nil {
		return nil
	}
	return p.p.Close()
}

// Check implements probe.Checker with one host.Lookup per socket.
func (p *nsProber) Check(ctx context.Context, flows []probe.Flow) ([]probe.SockState, error) {
	out := make([]probe.SockState, len(flows))
	for i, f := range flows {
		s, ok := p.socks[f]
		if !ok {
			continue
		}
		cur, err := host.Lookup(ctx, s)
		if err != nil {
			if errors.Is(err, host.ErrGone) {
				continue
			}
			return nil, err
		}
		if cur.Cookie != s.Cookie {
			continue
		}
		st := probe.SockState{Found: true, Established: cur.State == host.StateEstablished, State: cur.State.String()}
		if cur.Info != nil {
			st.Unacked, st.NotSent = cur.Info.Unacked, cur.Info.NotSent
		} else {
			st.Unacked = 1 // without tcp_info, assume busy: never inject blindly
		}
		out[i] = st
	}
	return out, nil
}

// probeRules probes the idle connections of probe rules, within the budget,
// and reaps the dead ones when the rule says so.
func (a *Agent) probeRules(ctx context.Context, pol *Policy, res *SweepResult) {
	now := time.Now()
	byNS := map[uint32][]uint32{}
	total := 0
	for i := range a.cache.n {
		e := a.cache.at(i)
		r := pol.rule(e.rule)
		if e.lastSweep == 0 || r == nil || r.Action != ActionProbe || e.state != host.StateEstablished {
			continue
		}
		if e.idle() < r.IdleOver || now.Sub(time.Unix(0, e.probedAt)) < r.IdleOver {
			continue
		}
		byNS[e.ns] = append(byNS[e.ns], i)
		total++
	}
	if total == 0 {
		return
	}
	// A probe cycle sends up to probe.DefaultCount packets per connection.
	budget := max(1, pol.Budgets.ProbesPerSecond*int(a.Interval()/time.Second)/probe.DefaultCount)
	if total > budget {
		a.m.actionsSkipped.WithLabelValues("probe").Add(float64(total - budget))
	}
	if a.opt.DryRun {
		a.log.Info("would probe", "connections", min(total, budget))
		return
	}
	// The budget sizes a sweep's probe cycles to the interval, but a dead peer's
	// cycle lasts its probe count × interval whatever the sweep interval; the
	// deadline only makes sure that sweeps keep coming whatever happens on the wire.
	pctx, cancel := context.WithTimeout(ctx, probeDeadline(a.Interval()))
	defer cancel()
	for nsi, slots := range byNS {
		if budget <= 0 {
			break
		}
		if len(slots) > budget {
			slots = slots[:budget]
		}
		budget -= len(slots)
		ni := &a.nss[nsi]
		p := a.probers[ni.key]
		if p == nil {
			p = &nsProber{socks: map[probe.Flow]host.Socket{}}
			path := ""
			if ns := ni.ns; ns != nil && !ns.Current {
				path = ns.Path
				if ns.Name != "" {
					path = ns.Name
				}
			}
			p.p, p.err = a.opt.Prober(path, p)
			a.probers[ni.key] = p
			switch {
			case p.err != nil && vanished(p.err):
				a.log.Debug("gone", "stage", "probe", "netns", path, "err", p.err)
			case p.err != nil:
				a.log.Warn("cannot probe", "netns", path, "err", p.err)
			}
		}
		if p.err != nil {
			a.count1("probe", p.err, len(slots))
			continue
		}
		clear(p.socks)
		flows := make([]probe.Flow, len(slots))
		socks := make([]host.Socket, len(slots))
		for j, i := range slots {
			e := a.cache.at(i)
			socks[j] = a.socketOf(e)
			flows[j] = probe.Flow{Local: socks[j].Local, Remote: socks[j].Remote}.Normalize()
			p.socks[flows[j]] = socks[j]
			e.probedAt = now.UnixNano()
		}
		results, err := p.p.Probe(pctx, flows, probe.Options{Rate: pol.Budgets.ProbesPerSecond}, nil)
		if err != nil {
			if ctx.Err() == nil && pctx.Err() != nil {
				err = fmt.Errorf("probe cycles of %d connections not done within %s: %w", len(flows), probeDeadline(a.Interval()), err)
			}
			a.warn("probe")(err)
			continue
		}
		for j, r := range results {
			sock := &socks[j]
			res.Probed++
			a.m.probes.Inc()
			a.m.verdicts.WithLabelValues(r.Verdict.String()).Inc()
			if !r.Verdict.Dead() {
				continue
			}
			res.Dead++
			a.m.deadPeers.Inc()
			a.log.Info("dead peer", "conn", sock.String(), "verdict", r.Verdict.String(), "evidence", r.Evidence)
			if rule := pol.rule(a.cache.at(slots[j]).rule); rule == nil || !rule.Reap {
				continue
			}
			switch err := host.Destroy(ctx, *sock); {
			case err == nil:
				a.m.reaps.WithLabelValues("applied").Inc()
				res.Reaped++
			case errors.Is(err, host.ErrGone):
				a.m.reaps.WithLabelValues("gone").Inc()
			default:
				a.m.reaps.WithLabelValues("failed").Inc()
				a.warn("reap")(err)
			}
		}
	}
}

// probeDeadline bounds the probe cycles of one sweep: the interval, and at least
// a minute (a cycle of the default probe settings needs a few seconds).
func probeDeadline(interval time.Duration) time.Duration { return max(interval, time.Minute) }

func (a *Agent) closeStaleProbers(nss map[string]*host.NetNS) {
	for k, p := range a.probers {
		if _, ok := nss[k]; !ok {
			_ = p.close()
			delete(a.probers, k)
		}
	}
}

// tcpExt reads the TcpExt counters of each namespace (see readNetstat), at
// most Labels.TopN namespaces, the agent's own first.
func (a *Agent) tcpExt(nss []host.NetNS) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	want := TcpExtCounters()
	for i := range nss {
		if len(out) >= a.opt.Labels.TopN {
			break
		}
		ns := &nss[i]
		label := "host"
		if !ns.Current {
			label = ns.Label()
		}
		b, err := readNetstat(ns)
		if err != nil {
			a.warn("tcpext")(err)
			continue
		}
		vals := ParseNetstat(b)["TcpExt"]
		m := make(map[string]uint64, len(want))
		for _, w := range want {
			if v, ok := vals[w]; ok {
				m[w] = v
			}
		}
		out[label] = m
	}
	return out
}

// ParseNetstat parses /proc/net/netstat (and /proc/net/snmp): pairs of lines
// "Prefix: Name1 Name2 …" and "Prefix: v1 v2 …". Malformed pairs are skipped.
func ParseNetstat(b []byte) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var prevKey string
	var prevNames []string
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			prevKey = ""
			continue
		}
		fields := strings.Fields(rest)
		if prevKey != key {
			prevKey, prevNames = key, fields
			continue
		}
		if len(fields) == len(prevNames) {
			m := out[key]
			if m == nil {
				m = make(map[string]uint64, len(fields))
				out[key] = m
			}
			for i, f := range fields {
				if v, err := strconv.ParseUint(f, 10, 64); err == nil {
					m[prevNames[i]] = v
				}
			}
		}
		prevKey = ""
	}
	return out
}
