// Package report renders what the keepalive command prints: audit's rows, verdict cache,
// sorting, table and JSON. It is the command's, not a library API.
package report

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/cgroupns"
)

// auditKA is a socket's keepalive as audit knows it.
type auditKA struct {
	known    bool // false: cannot tell whether keepalive is on
	enabled  bool
	cfg      keepalive.Config
	inferred bool
	// bounded: on, settings unreadable; bounds holds what the kernel timer proves and cfg
	// is empty (never the sysctl defaults: the socket may have its own values).
	bounded bool
	bounds  auditBounds
}

// auditBounds is host.KeepaliveBounds in whole seconds (all its values are), compact because
// audit may keep 200 000 rows.
type auditBounds struct {
	refresh, intvl, idle uint32 // seconds; 0: unknown
	probes               uint16
}

func auditBoundsOf(b host.KeepaliveBounds) auditBounds {
	sec := func(d time.Duration) uint32 { return uint32(min(d/time.Second, 1<<31)) }
	return auditBounds{refresh: sec(b.RefreshMin), intvl: sec(b.IntervalMin), idle: sec(b.IdleMax), probes: uint16(min(b.ProbesOut, 1<<15))}
}

// KeepaliveBounds returns the bounds as durations.
func (a auditBounds) KeepaliveBounds() host.KeepaliveBounds {
	return host.KeepaliveBounds{RefreshMin: time.Duration(a.refresh) * time.Second, IntervalMin: time.Duration(a.intvl) * time.Second,
		IdleMax: time.Duration(a.idle) * time.Second, ProbesOut: int(a.probes)}
}

// auditVerdictKey is what a verdict depends on: sockets that agree on it share one
// host.Assessment (audit may judge 200 000 sockets; a few hundred kinds are typical).
type auditVerdictKey struct {
	ka       auditKA
	inflight bool
	assess   bool
	defaults keepalive.Config
	retries2 int
	rtoMin   time.Duration
	rtoMax   time.Duration
}

// auditJudge holds the run's parameters and a cache of verdicts.
type auditJudge struct {
	opts  host.AssessOptions
	cache map[auditVerdictKey]*host.Assessment
	// sysctls caches each namespace's sysctls.
	sysctls map[string]host.Sysctl
	// containers caches the container of each owning process (nil: none).
	containers map[int]*host.Container
	// sysctlErrs names the namespaces whose sysctls could not be read (Linux defaults assumed).
	sysctlErrs map[string]error
	// cgroups reads /proc/PID/cgroup in the host's cgroup namespace (opened for the first
	// owner; Audit closes it).
	cgroups *cgroupns.Reader
}

// cgroupsOf returns the content of /proc/PID/cgroup as the host's cgroup namespace shows it.
func (j *auditJudge) cgroupsOf(pid int) ([]byte, error) {
	if j.cgroups == nil {
		r, err := cgroupns.NewReader()
		if err != nil {
			return nil, err
		}
		j.cgroups = r
	}
	return j.cgroups.Read(pid)
}

// containerOf is the container of the socket's first owner, else of its namespace.
func (j *auditJudge) containerOf(s *host.Socket) *host.Container {
	for _, o := range s.Owners {
		c, ok := j.containers[o.PID]
		if !ok {
			if b, err := j.cgroupsOf(o.PID); err == nil {
				c = host.ParseCgroup(string(b))
			}
			if j.containers == nil {
				j.containers = map[int]*host.Container{}
			}
			j.containers[o.PID] = c
		}
		if c != nil {
			return c
		}
	}
	if s.Namespace != nil {
		return s.Namespace.Container
	}
	return nil
}

// sysctlNote says which namespaces were judged with assumed Linux defaults, "" when none.
func (j *auditJudge) sysctlNote() string {
	if len(j.sysctlErrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(j.sysctlErrs))
	for ns := range j.sysctlErrs {
		if ns == "" {
			ns = "current"
		}
		names = append(names, ns)
	}
	slices.Sort(names)
	var first error
	for _, e := range j.sysctlErrs {
		first = e
		break
	}
	return fmt.Sprintf("sysctls of network namespace %s unreadable (%v): assumed the Linux defaults 7200/75/9", strings.Join(names, ", "), first)
}

func (j *auditJudge) sysctl(netns string) host.Sysctl {
	if s, ok := j.sysctls[netns]; ok {
		return s
	}
	s, err := host.ReadSysctl(netns)
	if err != nil {
		s = host.Sysctl{NetNS: netns, Keepalive: keepalive.LinuxDefaults(), Retries2: 15}
		if j.sysctlErrs == nil {
			j.sysctlErrs = map[string]error{}
		}
		j.sysctlErrs[netns] = err
	}
	j.sysctls[netns] = s
	return s
}

// auditSettings is the socket's keepalive as audit shows it (the same facts as
// host.Assess's Source, Known, Enabled, Config and Bounds, in a compact form).
func auditSettings(s *host.Socket) auditKA {
	if s.Settings != nil {
		return auditKA{known: true, enabled: s.Settings.Enabled, cfg: s.Settings.Config}
	}
	on, known := s.KeepaliveArmed()
	if !known {
		return auditKA{inferred: true}
	}
	if !on {
		return auditKA{known: true, inferred: true}
	}
	b, _ := s.KeepaliveBounds()
	return auditKA{known: true, enabled: true, inferred: true, bounded: true, bounds: auditBoundsOf(b)}
}

// judge returns the socket's assessment, shared with every socket of the same kind.
func (j *auditJudge) judge(s *host.Socket, ka auditKA, sys host.Sysctl) *host.Assessment {
	inflight := s.SendQ > 0 || (s.Info != nil && (s.Info.Unacked > 0 || s.Info.NotSent > 0))
	assess := s.State == host.StateEstablished || s.State == host.StateCloseWait
	if ka.bounded {
		// Only the refresh bound enters the verdict: keep the cache small.
		ka.bounds = auditBounds{refresh: ka.bounds.refresh}
	}
	rtoMax := sys.RTOMax
	if s.RTOMax > 0 {
		rtoMax = s.RTOMax
	}
	key := auditVerdictKey{ka: ka, inflight: inflight, assess: assess, defaults: sys.Keepalive, retries2: sys.Retries2, rtoMin: sys.RTOMin, rtoMax: rtoMax}
	if v, ok := j.cache[key]; ok {
		return v
	}
	o := j.opts
	o.Defaults, o.Retries2, o.RTOMin, o.RTOMax = sys.Keepalive, sys.Retries2, sys.RTOMin, sys.RTOMax
	v := host.Assess(*s, o)
	j.cache[key] = &v
	return &v
}

// auditRow is what audit keeps of one socket when rows must be sorted or tabulated: a compact,
// flat copy (≈ 200 bytes; 200 000 rows stay around 40 MiB).
type auditRow struct {
	sock    auditSock
	ka      auditKA
	verdict *host.Assessment
}

// auditSock holds the fields of host.Socket that audit prints.
type auditSock struct {
	Local, Remote netip.AddrPort
	NetNS         string
	ns            *host.NetNS
	container     *host.Container
	Owners        []host.Owner
	Cookie        uint64
	TimerExpires  time.Duration
	idle          time.Duration
	Inode         uint32
	SendQ, RecvQ  uint32
	unacked       uint32
	notSent       uint32
	rttUS         uint32
	TimerRetrans  int32
	Family        uint8
	probes        uint8
	State         host.State
	Timer         host.Timer
	hasInfo       bool
}

func auditSockOf(s *host.Socket, owners []host.Owner) auditSock {
	a := auditSock{Local: s.Local, Remote: s.Remote, NetNS: s.NetNS, ns: s.Namespace, Owners: owners, Cookie: s.Cookie,
		TimerExpires: s.TimerExpires, Inode: s.Inode, SendQ: s.SendQ, RecvQ: s.RecvQ,
		TimerRetrans: int32(s.TimerRetrans), Family: uint8(s.Family), State: s.State, Timer: s.Timer}
	if s.Info != nil {
		a.hasInfo = true
		a.idle = s.Info.Idle()
		a.unacked, a.notSent = s.Info.Unacked, s.Info.NotSent
		a.rttUS = uint32(s.Info.RTT.Microseconds())
		a.probes = s.Info.Probes
	}
	return a
}

// Idle is the time since the last segment was received (0 without tcp_info).
func (a *auditSock) Idle() time.Duration { return a.idle }

// auditOwnerArena stores the owners of kept rows in fixed chunks, so row slices never move.
type auditOwnerArena struct{ chunk []host.Owner }

func (a *auditOwnerArena) keep(o []host.Owner) []host.Owner {
	if len(o) == 0 {
		return nil
	}
	if cap(a.chunk)-len(a.chunk) < len(o) {
		a.chunk = make([]host.Owner, 0, max(4096, len(o)))
	}
	start := len(a.chunk)
	a.chunk = append(a.chunk, o...)
	return a.chunk[start:len(a.chunk):len(a.chunk)]
}

type auditProc struct {
	PID         int    `json:"pid"`
	Comm        string `json:"comm"`
	Connections int    `json:"connections"`
	AtRisk      int    `json:"at_risk"`
}

type auditSummary struct {
	total, atRisk, inferred, skipped int
	byKind                           map[string]int
	byProc                           map[int]*auditProc
	noOwner                          int
	settingsErr                      error
}

func (s *auditSummary) add(r *auditRow, settingsErr error) {
	s.total++
	if r.ka.inferred {
		s.inferred++
	}
	if settingsErr != nil {
		if errors.Is(settingsErr, host.ErrDeepSkipped) {
			s.skipped++
		} else if s.settingsErr == nil {
			s.settingsErr = settingsErr
		}
	}
	if r.verdict.AtRisk {
		s.atRisk++
		s.byKind[string(r.verdict.Risk)]++
	}
	if len(r.sock.Owners) == 0 {
		s.noOwner++
	}
	seen := -1
	for _, o := range r.sock.Owners {
		if o.PID == seen {
			continue
		}
		seen = o.PID
		p := s.byProc[o.PID]
		if p == nil {
			p = &auditProc{PID: o.PID, Comm: o.Comm}
			s.byProc[o.PID] = p
		}
		p.Connections++
		if r.verdict.AtRisk {
			p.AtRisk++
		}
	}
}

func (s *auditSummary) procs() []auditProc {
	out := make([]auditProc, 0, len(s.byProc))
	for _, p := range s.byProc {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b auditProc) int {
		return cmp.Or(cmp.Compare(b.AtRisk, a.AtRisk), cmp.Compare(b.Connections, a.Connections), cmp.Compare(a.PID, b.PID))
	})
	return out
}

func (s *auditSummary) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %d at risk", plural(s.total, "connection"), s.atRisk)
	if s.atRisk > 0 {
		var kinds []string
		for _, k := range []string{"no-keepalive", "middlebox", "in-flight", "slow"} {
			if n := s.byKind[k]; n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
		}
		b.WriteString(" (" + strings.Join(kinds, ", ") + ")")
	}
	procs := s.procs()
	if len(procs) > 0 {
		b.WriteString("; by process:")
		for i, p := range procs {
			if i == 5 {
				fmt.Fprintf(&b, " … %d more", len(procs)-5)
				break
			}
			fmt.Fprintf(&b, " %s[%d] %d/%d", p.Comm, p.PID, p.AtRisk, p.Connections)
		}
		b.WriteString(" (at risk/total)")
	}
	if s.noOwner > 0 {
		fmt.Fprintf(&b, "; %d without a visible owner", s.noOwner)
		if os.Geteuid() != 0 {
			b.WriteString(" (run as root to see other users' processes)")
		}
	}
	return b.String()
}

// AuditOptions configure Audit.
type AuditOptions struct {
	// List selects the sockets (Owners and Deep as the caller wants them).
	List host.ListOptions
	// Assess holds the middlebox and the detection target; Defaults and Retries2 are read
	// per namespace.
	Assess host.AssessOptions
	// Sort is the row order: none (kernel order, streamed with JSON), risk, idle, detect,
	// process, local, peer, state.
	Sort string
	// JSON writes {"connections":[...],"summary":{...}} instead of a table.
	JSON bool
	// DeepAutoLimit is the socket-descriptor limit that --deep=auto uses, for the note on
	// inferred rows.
	DeepAutoLimit int
	// HZSource says where Assess.HZ came from ("/proc/config.gz", "--hz", …), for the summary.
	HZSource string
	// DataOnly names a middlebox preset that counts only data as activity: TCP keepalive
	// cannot keep its flows, and the summary says to use application heartbeats.
	DataOnly string
}

// SortKeys are the allowed AuditOptions.Sort values.
func SortKeys() []string {
	return []string{"none", "risk", "idle", "detect", "process", "local", "peer", "state"}
}

// Audit lists, judges (host.Assess, memoized per kind of socket) and writes the connections
// selected by o.List; it returns the number of connections at risk.
func Audit(ctx context.Context, out io.Writer, o AuditOptions) (atRisk int, err error) {
	j := &auditJudge{opts: o.Assess, cache: map[auditVerdictKey]*host.Assessment{}, sysctls: map[string]host.Sysctl{}}
	defer func() {
		if j.cgroups != nil {
			j.cgroups.Close()
		}
	}()
	sum := &auditSummary{byKind: map[string]int{}, byProc: map[int]*auditProc{}}
	w := bufio.NewWriterSize(out, 256<<10)
	defer w.Flush()
	streaming := o.JSON && o.Sort == "none"
	var (
		chunks [][]auditRow // fixed-size chunks: no copying as rows grow
		rows   []*auditRow
		arena  auditOwnerArena
		buf    []byte
	)
	if streaming {
		w.WriteString(`{"connections":[`)
	}
	first := true
	err = host.Walk(ctx, o.List, func(s *host.Socket) error {
		sys := j.sysctl(s.NetNS)
		r := auditRow{sock: auditSockOf(s, s.Owners), ka: auditSettings(s)}
		r.sock.container = j.containerOf(s)
		r.verdict = j.judge(s, r.ka, sys)
		sum.add(&r, s.SettingsErr)
		if streaming {
			if !first {
				w.WriteByte(',')
			}
			first = false
			buf = auditAppendJSON(buf[:0], &r)
			_, err := w.Write(buf)
			return err
		}
		r.sock.Owners = arena.keep(s.Owners)
		if len(chunks) == 0 || len(chunks[len(chunks)-1]) == cap(chunks[len(chunks)-1]) {
			chunks = append(chunks, make([]auditRow, 0, 4096))
		}
		c := &chunks[len(chunks)-1]
		*c = append(*c, r)
		rows = append(rows, &(*c)[len(*c)-1])
		return nil
	})
	if err != nil {
		if streaming {
			w.WriteString("]}\n")
		}
		return sum.atRisk, fmt.Errorf("audit: %w", err)
	}
	if !streaming {
		auditSort(rows, o.Sort)
		if o.JSON {
			w.WriteString(`{"connections":[`)
			for i, r := range rows {
				if i > 0 {
					w.WriteByte(',')
				}
				buf = auditAppendJSON(buf[:0], r)
				w.Write(buf)
			}
		} else if len(rows) > 0 {
			auditTable(w, rows)
		}
	}
	if o.JSON {
		w.WriteString(`],"summary":`)
		if err := auditWriteSummaryJSON(w, sum, j, o); err != nil {
			return sum.atRisk, err
		}
		w.WriteString("}\n")
	} else {
		if sum.inferred > 0 {
			fmt.Fprintf(w, "~ settings not readable for %s: shown as what the kernel timer proves (on/off, bounds), verdicts \"on bounds\"", plural(sum.inferred, "connection"))
			switch {
			case sum.skipped > 0:
				fmt.Fprintf(w, " (more than %d socket descriptors on the host; use --deep=always for exact values)", o.DeepAutoLimit)
			case sum.settingsErr != nil:
				fmt.Fprintf(w, " (exact read failed: %v)", sum.settingsErr)
			}
			w.WriteString("\n")
		}
		w.WriteString(sum.line() + "\n")
		if n := j.sysctlNote(); n != "" {
			w.WriteString("Note: " + n + ".\n")
		}
		if o.DataOnly != "" {
			fmt.Fprintf(w, "Note: %s counts only data as activity: %s.\n", o.DataOnly, keepalive.HeartbeatAdvice)
		}
		if o.HZSource != "" {
			fmt.Fprintf(w, "Timers: HZ %d (%s)\n", j.opts.HZ, o.HZSource)
		}
	}
	return sum.atRisk, w.Flush()
}

func auditSort(rows []*auditRow, key string) {
	procOf := func(r *auditRow) (int, string) {
		if len(r.sock.Owners) == 0 {
			return 0, ""
		}
		return r.sock.Owners[0].PID, r.sock.Owners[0].Comm
	}
	detectOf := func(r *auditRow) time.Duration {
		if !r.verdict.Detected {
			return 1<<63 - 1
		}
		return r.verdict.Detection
	}
	cmpAddr := func(a, b *auditRow, remote bool) int {
		x, y := a.sock.Local, b.sock.Local
		if remote {
			x, y = a.sock.Remote, b.sock.Remote
		}
		return x.Compare(y)
	}
	var f func(a, b *auditRow) int
	switch key {
	case "none":
		return
	case "risk":
		f = func(a, b *auditRow) int {
			ra, rb := 0, 0
			if a.verdict.AtRisk {
				ra = 1
			}
			if b.verdict.AtRisk {
				rb = 1
			}
			return cmp.Or(rb-ra, cmp.Compare(detectOf(b), detectOf(a)), cmp.Compare(b.sock.Idle(), a.sock.Idle()))
		}
	case "idle":
		f = func(a, b *auditRow) int { return cmp.Compare(b.sock.Idle(), a.sock.Idle()) }
	case "detect":
		f = func(a, b *auditRow) int { return cmp.Compare(detectOf(b), detectOf(a)) }
	case "process":
		f = func(a, b *auditRow) int {
			pa, ca := procOf(a)
			pb, cb := procOf(b)
			return cmp.Or(strings.Compare(ca, cb), cmp.Compare(pa, pb))
		}
	case "local":
		f = func(a, b *auditRow) int { return cmpAddr(a, b, false) }
	case "peer":
		f = func(a, b *auditRow) int { return cmpAddr(a, b, true) }
	case "state":
		f = func(a, b *auditRow) int { return cmp.Compare(a.sock.State, b.sock.State) }
	}
	slices.SortStableFunc(rows, func(a, b *auditRow) int {
		return cmp.Or(f(a, b), cmpAddr(a, b, false))
	})
}

func auditKAText(ka auditKA) string {
	if !ka.known {
		return "?"
	}
	p := ""
	if ka.inferred {
		p = "~"
	}
	if ka.bounded {
		b := ka.bounds.KeepaliveBounds()
		if b.ProbesOut == 0 {
			return "~on idle|intvl≥" + auditDur(b.RefreshMin)
		}
		idle := "idle?"
		if b.IdleMax > 0 {
			idle = "idle≤" + auditDur(b.IdleMax)
		}
		return "~" + idle + " intvl≥" + auditDur(b.IntervalMin) + " cnt≥" + strconv.Itoa(b.ProbesOut)
	}
	if !ka.enabled {
		if ka.cfg.UserTimeout > 0 {
			return p + "off ut" + auditDur(ka.cfg.UserTimeout)
		}
		return p + "off"
	}
	cnt := "-"
	if ka.cfg.Count > 0 {
		cnt = strconv.Itoa(ka.cfg.Count)
	}
	s := p + auditDur(ka.cfg.Idle) + "/" + auditDur(ka.cfg.Interval) + "/" + cnt
	if ka.cfg.UserTimeout > 0 {
		s += " ut" + auditDur(ka.cfg.UserTimeout)
	}
	return s
}

// auditDur renders a duration compactly: "7200s", "1.5s", "250ms".
func auditDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d >= time.Second && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

func auditProcText(owners []host.Owner) string {
	if len(owners) == 0 {
		return "-"
	}
	var parts []string
	last := -1
	for _, o := range owners {
		if o.PID == last {
			continue
		}
		last = o.PID
		parts = append(parts, strconv.Itoa(o.PID)+"/"+o.Comm)
	}
	return strings.Join(parts, ",")
}

func auditTimerText(s *auditSock) string {
	if s.Timer == host.TimerNone {
		return "-"
	}
	return s.Timer.String() + "," + auditDur(s.TimerExpires) + "," + strconv.Itoa(int(s.TimerRetrans))
}

// auditTable writes an aligned table in two passes (widths, then rows) without keeping the
// formatted cells: text/tabwriter would hold every cell of 200 000 rows in memory (about ten
// strings per row), on top of the rows audit already keeps for sorting — past the 64 MiB goal
// that the JSON measurement above already misses with far less garbage. Smaller tables (enable,
// enforce, reap, plan --list-envs) use text/tabwriter.
func auditTable(w io.Writer, rows []*auditRow) {
	multiNS := slices.ContainsFunc(rows, func(r *auditRow) bool { return r.sock.NetNS != "" })
	withCont := slices.ContainsFunc(rows, func(r *auditRow) bool { return r.sock.container != nil })
	head := []string{"LOCAL", "PEER", "STATE", "PROCESS", "KEEPALIVE", "IDLE", "UNACKED", "TIMER", "DETECT", "RISK"}
	if withCont {
		head = slices.Insert(head, 4, "CONTAINER")
	}
	if multiNS {
		head = append([]string{"NETNS"}, head...)
	}
	widths := make([]int, len(head))
	cells := make([]string, len(head))
	measure := func(cs []string) {
		for i, c := range cs {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	measure(head)
	for _, r := range rows {
		measure(auditCells(cells, r, multiNS, withCont))
	}
	var line []byte
	emit := func(cs []string) {
		line = line[:0]
		for i, c := range cs {
			line = append(line, c...)
			if i < len(cs)-1 {
				for n := utf8.RuneCountInString(c); n < widths[i]+2; n++ {
					line = append(line, ' ')
				}
			}
		}
		line = append(line, '\n')
		w.Write(line)
	}
	emit(head)
	for _, r := range rows {
		emit(auditCells(cells, r, multiNS, withCont))
	}
}

// auditCells formats one row into cells (reused between rows).
func auditCells(cells []string, r *auditRow, multiNS, withCont bool) []string {
	s := &r.sock
	cells = cells[:0]
	if multiNS {
		ns := s.NetNS
		if l := s.ns.Label(); l != "" {
			ns = l
		}
		if ns == "" {
			ns = "-"
		}
		cells = append(cells, ns)
	}
	detect := "never"
	if r.verdict.Detected {
		detect = auditDur(r.verdict.Detection)
	} else if r.verdict.DetectionMin > 0 {
		detect = "≥" + auditDur(r.verdict.DetectionMin)
	} else if r.verdict.Risk == host.RiskNotAssessed || r.verdict.Risk == host.RiskUnknown {
		detect = "-"
	}
	risk := r.verdict.Verdict
	if r.verdict.AtRisk {
		risk = "! " + risk
	}
	idle := "-"
	if s.hasInfo {
		idle = auditDur(s.idle)
	}
	cells = append(cells, s.Local.String(), s.Remote.String(), s.State.String(), auditProcText(s.Owners))
	if withCont {
		c := "-"
		if s.container != nil {
			c = s.container.Label()
		}
		cells = append(cells, c)
	}
	return append(cells, auditKAText(r.ka), idle, strconv.FormatUint(uint64(s.SendQ), 10), auditTimerText(s), detect, risk)
}

// auditAppendJSON appends one connection as a JSON object, without reflection. encoding/json,
// streamed one row at a time through a reused Encoder, was measured at 198 000 sockets
// (sudo bench/audit.sh, 2026-12-02, docs/benchmarks.md): 73.7 MiB peak RSS (goal ≤ 64 MiB)
// and 1.32× ss -tnoi (goal ≤ 0.8×), against 47.7 MiB and 0.45× for this encoder on the same
// machine — the per-row garbage grows the heap past the memory goal. The summary object is
// small and uses encoding/json.
func auditAppendJSON(b []byte, r *auditRow) []byte {
	s := &r.sock
	b = append(b, '{')
	if s.NetNS != "" {
		b = append(b, `"netns":`...)
		label := s.NetNS
		if l := s.ns.Label(); l != "" {
			label = l
		}
		b = auditAppendString(b, label)
		if label != s.NetNS {
			b = append(b, `,"netns_path":`...)
			b = auditAppendString(b, s.NetNS)
		}
		if s.ns != nil && s.ns.Inode != 0 {
			b = append(b, `,"netns_inode":`...)
			b = strconv.AppendUint(b, s.ns.Inode, 10)
		}
		b = append(b, ',')
	}
	if c := s.container; c != nil {
		b = append(b, `"container":{"runtime":`...)
		b = auditAppendString(b, c.Runtime)
		b = append(b, `,"id":`...)
		b = auditAppendString(b, c.ID)
		if c.Pod != "" {
			b = append(b, `,"pod":`...)
			b = auditAppendString(b, c.Pod)
		}
		b = append(b, `},`...)
	}
	if s.Family == 10 {
		b = append(b, `"family":"ipv6","local":"`...)
	} else {
		b = append(b, `"family":"ipv4","local":"`...)
	}
	b = s.Local.AppendTo(b)
	b = append(b, `","peer":"`...)
	b = s.Remote.AppendTo(b)
	b = append(b, `","state":"`...)
	b = append(b, s.State.String()...)
	b = append(b, `","inode":`...)
	b = strconv.AppendUint(b, uint64(s.Inode), 10)
	b = append(b, `,"cookie":`...)
	b = strconv.AppendUint(b, s.Cookie, 10)
	b = append(b, `,"owners":[`...)
	for i, o := range s.Owners {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"pid":`...)
		b = strconv.AppendInt(b, int64(o.PID), 10)
		b = append(b, `,"comm":`...)
		b = auditAppendString(b, o.Comm)
		b = append(b, `,"fd":`...)
		b = strconv.AppendInt(b, int64(o.FD), 10)
		b = append(b, '}')
	}
	b = append(b, `],"keepalive":{"source":"`...)
	if r.ka.inferred {
		b = append(b, `inferred"`...)
	} else {
		b = append(b, `socket"`...)
	}
	b = append(b, `,"enabled":`...)
	switch {
	case !r.ka.known:
		b = append(b, "null"...)
	case r.ka.enabled:
		b = append(b, "true"...)
	default:
		b = append(b, "false"...)
	}
	if r.ka.bounded {
		// Only what the kernel timer proves: no idle/interval/count values.
		kb := r.ka.bounds.KeepaliveBounds()
		b = append(b, `,"bounds":{"refresh_min_ms":`...)
		b = strconv.AppendInt(b, kb.RefreshMin.Milliseconds(), 10)
		if kb.IntervalMin > 0 {
			b = append(b, `,"interval_min_ms":`...)
			b = strconv.AppendInt(b, kb.IntervalMin.Milliseconds(), 10)
		}
		if kb.IdleMax > 0 {
			b = append(b, `,"idle_max_ms":`...)
			b = strconv.AppendInt(b, kb.IdleMax.Milliseconds(), 10)
		}
		b = append(b, `,"count_min":`...)
		b = strconv.AppendInt(b, int64(max(kb.ProbesOut, 1)), 10)
		b = append(b, '}')
	} else if r.ka.known {
		b = append(b, `,"idle_ms":`...)
		b = strconv.AppendInt(b, r.ka.cfg.Idle.Milliseconds(), 10)
		b = append(b, `,"interval_ms":`...)
		b = strconv.AppendInt(b, r.ka.cfg.Interval.Milliseconds(), 10)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(r.ka.cfg.Count), 10)
		b = append(b, `,"user_timeout_ms":`...)
		b = strconv.AppendInt(b, r.ka.cfg.UserTimeout.Milliseconds(), 10)
	}
	b = append(b, `},"idle_ms":`...)
	if s.hasInfo {
		b = strconv.AppendInt(b, s.idle.Milliseconds(), 10)
		b = append(b, `,"unacked_segments":`...)
		b = strconv.AppendUint(b, uint64(s.unacked), 10)
		b = append(b, `,"notsent_bytes":`...)
		b = strconv.AppendUint(b, uint64(s.notSent), 10)
		b = append(b, `,"rtt_us":`...)
		b = strconv.AppendUint(b, uint64(s.rttUS), 10)
		b = append(b, `,"probes":`...)
		b = strconv.AppendUint(b, uint64(s.probes), 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"send_q":`...)
	b = strconv.AppendUint(b, uint64(s.SendQ), 10)
	b = append(b, `,"recv_q":`...)
	b = strconv.AppendUint(b, uint64(s.RecvQ), 10)
	b = append(b, `,"timer":{"name":"`...)
	b = append(b, s.Timer.String()...)
	b = append(b, `","expires_ms":`...)
	b = strconv.AppendInt(b, s.TimerExpires.Milliseconds(), 10)
	b = append(b, `,"retrans":`...)
	b = strconv.AppendInt(b, int64(s.TimerRetrans), 10)
	b = append(b, `},"detect_ms":`...)
	if r.verdict.Detected {
		b = strconv.AppendInt(b, r.verdict.Detection.Milliseconds(), 10)
		b = append(b, `,"detect_error":"`...)
		b = append(b, r.verdict.Error...)
		b = append(b, '"')
	} else {
		b = append(b, "null"...)
		if r.verdict.DetectionMin > 0 {
			b = append(b, `,"detect_min_ms":`...)
			b = strconv.AppendInt(b, r.verdict.DetectionMin.Milliseconds(), 10)
		}
	}
	b = append(b, `,"at_risk":`...)
	b = strconv.AppendBool(b, r.verdict.AtRisk)
	b = append(b, `,"risk":"`...)
	b = append(b, r.verdict.Risk...)
	b = append(b, `","verdict":`...)
	b = auditAppendString(b, r.verdict.Verdict)
	b = append(b, '}')
	return b
}

// auditAppendString appends s as a JSON string.
func auditAppendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

func auditWriteSummaryJSON(w io.Writer, sum *auditSummary, j *auditJudge, o AuditOptions) error {
	type summary struct {
		Connections      int            `json:"connections"`
		AtRisk           int            `json:"at_risk"`
		ByRisk           map[string]int `json:"by_risk"`
		Inferred         int            `json:"inferred"`
		WithoutOwner     int            `json:"without_owner"`
		MiddleboxTimeout int64          `json:"middlebox_timeout_ms,omitempty"`
		DetectWithin     int64          `json:"detect_within_ms,omitempty"`
		ByProcess        []auditProc    `json:"by_process"`
		Text             string         `json:"text"`
		SysctlsAssumed   string         `json:"sysctls_assumed,omitempty"`
		HZ               int            `json:"hz,omitempty"`
		HZSource         string         `json:"hz_source,omitempty"`
		Heartbeat        string         `json:"heartbeat_advice,omitempty"`
	}
	out := summary{Connections: sum.total, AtRisk: sum.atRisk, ByRisk: sum.byKind, Inferred: sum.inferred,
		WithoutOwner: sum.noOwner, MiddleboxTimeout: j.opts.Middlebox.Milliseconds(), DetectWithin: j.opts.DetectWithin.Milliseconds(),
		ByProcess: sum.procs(), Text: sum.line(), SysctlsAssumed: j.sysctlNote(), HZ: j.opts.HZ, HZSource: o.HZSource}
	if o.DataOnly != "" {
		out.Heartbeat = o.DataOnly + " counts only data as activity: " + keepalive.HeartbeatAdvice
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
