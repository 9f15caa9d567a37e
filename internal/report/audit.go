// Package report renders what the keepalive command prints: audit's rows, verdict cache,
// sorting, table and JSON. It is the command's, not a library API.
package report

import (
	"bufio"
	"bytes"
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
}

// containerOf is the container of the socket's first owner, else of its namespace.
func (j *auditJudge) containerOf(s *host.Socket) *host.Container {
	for _, o := range s.Owners {
		c, ok := j.containers[o.PID]
		if !ok {
			c, _ = host.ContainerOf(o.PID)
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
	key := auditVerdictKey{ka: ka, inflight: inflight, assess: assess, defaults: sys.Keepalive, retries2: sys.Retries2}
	if v, ok := j.cache[key]; ok {
		return v
	}
	o := j.opts
	o.Defaults, o.Retries2 = sys.Keepalive, sys.Retries2
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
}

// SortKeys are the allowed AuditOptions.Sort values.
func SortKeys() []string {
	return []string{"none", "risk", "idle", "detect", "process", "local", "peer", "state"}
}

// Audit lists, judges (host.Assess, memoized per kind of socket) and writes the connections
// selected by o.List; it returns the number of connections at risk.
func Audit(ctx context.Context, out io.Writer, o AuditOptions) (atRisk int, err error) {
	j := &auditJudge{opts: o.Assess, cache: map[auditVerdictKey]*host.Assessment{}, sysctls: map[string]host.Sysctl{}}
	sum := &auditSummary{byKind: map[string]int{}, byProc: map[int]*auditProc{}}
	w := bufio.NewWriterSize(out, 256<<10)
	defer w.Flush()
	streaming := o.JSON && o.Sort == "none"
	var (
		chunks [][]auditRow // fixed-size chunks: no copying as rows grow
		rows   []*auditRow
		arena  auditOwnerArena
		enc    = newAuditEncoder()
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
			return enc.write(w, &r)
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
				if err := enc.write(w, r); err != nil {
					return sum.atRisk, err
				}
			}
		} else if len(rows) > 0 {
			auditTable(w, rows)
		}
	}
	if o.JSON {
		w.WriteString(`],"summary":`)
		if err := auditWriteSummaryJSON(w, sum, j); err != nil {
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
// formatted cells: text/tabwriter would hold every cell of 200 000 rows in memory.
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

// auditJSON is one connection in audit --json (durations in milliseconds).
type auditJSON struct {
	NetNS      string              `json:"netns,omitempty"`
	NetNSPath  string              `json:"netns_path,omitempty"`
	NetNSInode uint64              `json:"netns_inode,omitempty"`
	Container  *auditContainerJSON `json:"container,omitempty"`
	Family     string              `json:"family"`
	Local      netip.AddrPort      `json:"local"`
	Peer       netip.AddrPort      `json:"peer"`
	State      string              `json:"state"`
	Inode      uint32              `json:"inode"`
	Cookie     uint64              `json:"cookie"`
	Owners     []auditOwnerJSON    `json:"owners"`
	Keepalive  auditKAJSON         `json:"keepalive"`
	// IdleMS is null without tcp_info; the four fields after it come with tcp_info only.
	IdleMS      *int64         `json:"idle_ms"`
	Unacked     *uint32        `json:"unacked_segments,omitempty"`
	NotSent     *uint32        `json:"notsent_bytes,omitempty"`
	RTTUS       *uint32        `json:"rtt_us,omitempty"`
	Probes      *uint8         `json:"probes,omitempty"`
	SendQ       uint32         `json:"send_q"`
	RecvQ       uint32         `json:"recv_q"`
	Timer       auditTimerJSON `json:"timer"`
	DetectMS    *int64         `json:"detect_ms"`
	DetectError *string        `json:"detect_error,omitempty"`
	DetectMinMS *int64         `json:"detect_min_ms,omitempty"`
	AtRisk      bool           `json:"at_risk"`
	Risk        host.RiskKind  `json:"risk"`
	Verdict     string         `json:"verdict"`
}

type auditContainerJSON struct {
	Runtime string `json:"runtime"`
	ID      string `json:"id"`
	Pod     string `json:"pod,omitempty"`
}

type auditOwnerJSON struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	FD   int    `json:"fd"`
}

// auditKAJSON is the keepalive settings: values when read from the socket, bounds when only
// the kernel timer is known, neither when keepalive is unknown (Enabled null).
type auditKAJSON struct {
	Source        string           `json:"source"`
	Enabled       *bool            `json:"enabled"`
	Bounds        *auditBoundsJSON `json:"bounds,omitempty"`
	IdleMS        *int64           `json:"idle_ms,omitempty"`
	IntervalMS    *int64           `json:"interval_ms,omitempty"`
	Count         *int             `json:"count,omitempty"`
	UserTimeoutMS *int64           `json:"user_timeout_ms,omitempty"`
}

type auditBoundsJSON struct {
	RefreshMinMS  int64 `json:"refresh_min_ms"`
	IntervalMinMS int64 `json:"interval_min_ms,omitempty"`
	IdleMaxMS     int64 `json:"idle_max_ms,omitempty"`
	CountMin      int   `json:"count_min"`
}

type auditTimerJSON struct {
	Name      string `json:"name"`
	ExpiresMS int64  `json:"expires_ms"`
	Retrans   int32  `json:"retrans"`
}

// auditRowJSON converts a row for encoding/json; owners reuses its slice between rows.
func auditRowJSON(r *auditRow, owners []auditOwnerJSON) auditJSON {
	s := &r.sock
	ptr := func(v int64) *int64 { return &v }
	j := auditJSON{Family: "ipv4", Local: s.Local, Peer: s.Remote, State: s.State.String(), Inode: s.Inode, Cookie: s.Cookie,
		Owners: owners[:0], SendQ: s.SendQ, RecvQ: s.RecvQ,
		Timer:  auditTimerJSON{Name: s.Timer.String(), ExpiresMS: s.TimerExpires.Milliseconds(), Retrans: s.TimerRetrans},
		AtRisk: r.verdict.AtRisk, Risk: r.verdict.Risk, Verdict: r.verdict.Verdict}
	if s.NetNS != "" {
		j.NetNS = s.NetNS
		if l := s.ns.Label(); l != "" && l != s.NetNS {
			j.NetNS, j.NetNSPath = l, s.NetNS
		}
		if s.ns != nil {
			j.NetNSInode = s.ns.Inode
		}
	}
	if c := s.container; c != nil {
		j.Container = &auditContainerJSON{Runtime: c.Runtime, ID: c.ID, Pod: c.Pod}
	}
	if s.Family == 10 {
		j.Family = "ipv6"
	}
	for _, o := range s.Owners {
		j.Owners = append(j.Owners, auditOwnerJSON{PID: o.PID, Comm: o.Comm, FD: o.FD})
	}
	ka := &j.Keepalive
	ka.Source = "socket"
	if r.ka.inferred {
		ka.Source = "inferred"
	}
	if r.ka.known {
		on := r.ka.enabled
		ka.Enabled = &on
	}
	if r.ka.bounded {
		// Only what the kernel timer proves: no idle/interval/count values.
		kb := r.ka.bounds.KeepaliveBounds()
		ka.Bounds = &auditBoundsJSON{RefreshMinMS: kb.RefreshMin.Milliseconds(), IntervalMinMS: kb.IntervalMin.Milliseconds(),
			IdleMaxMS: kb.IdleMax.Milliseconds(), CountMin: max(kb.ProbesOut, 1)}
	} else if r.ka.known {
		cnt := r.ka.cfg.Count
		ka.IdleMS, ka.IntervalMS, ka.Count = ptr(r.ka.cfg.Idle.Milliseconds()), ptr(r.ka.cfg.Interval.Milliseconds()), &cnt
		ka.UserTimeoutMS = ptr(r.ka.cfg.UserTimeout.Milliseconds())
	}
	if s.hasInfo {
		unacked, notSent, rtt, probes := s.unacked, s.notSent, s.rttUS, s.probes
		j.IdleMS, j.Unacked, j.NotSent, j.RTTUS, j.Probes = ptr(s.idle.Milliseconds()), &unacked, &notSent, &rtt, &probes
	}
	if r.verdict.Detected {
		e := r.verdict.Error
		j.DetectMS, j.DetectError = ptr(r.verdict.Detection.Milliseconds()), &e
	} else if r.verdict.DetectionMin > 0 {
		j.DetectMinMS = ptr(r.verdict.DetectionMin.Milliseconds())
	}
	return j
}

// auditEncoder writes rows one at a time with encoding/json: a row is encoded and written as
// soon as it is judged, so memory does not grow with the number of connections.
type auditEncoder struct {
	buf    bytes.Buffer
	enc    *json.Encoder
	owners []auditOwnerJSON
}

func newAuditEncoder() *auditEncoder {
	e := &auditEncoder{owners: make([]auditOwnerJSON, 0, 4)}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}

// write encodes r to w without the encoder's trailing newline.
func (e *auditEncoder) write(w io.Writer, r *auditRow) error {
	e.buf.Reset()
	j := auditRowJSON(r, e.owners)
	e.owners = j.Owners
	if err := e.enc.Encode(&j); err != nil {
		return err
	}
	_, err := w.Write(bytes.TrimSuffix(e.buf.Bytes(), []byte{'\n'}))
	return err
}

func auditWriteSummaryJSON(w io.Writer, sum *auditSummary, j *auditJudge) error {
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
	}
	out := summary{Connections: sum.total, AtRisk: sum.atRisk, ByRisk: sum.byKind, Inferred: sum.inferred,
		WithoutOwner: sum.noOwner, MiddleboxTimeout: j.opts.Middlebox.Milliseconds(), DetectWithin: j.opts.DetectWithin.Milliseconds(),
		ByProcess: sum.procs(), Text: sum.line(), SysctlsAssumed: j.sysctlNote()}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
