// Package host finds the TCP connections of a Linux host, maps them to the processes that own
// them, reads and changes their keepalive settings from outside, and destroys them.
//
// Enumeration uses NETLINK_SOCK_DIAG (inet_diag) with the state filter applied by the kernel
// and tcp_info attached to every socket; owners come from one pass over /proc/*/fd. The exact
// per-socket settings of another process are read (and, for Retrofit, changed) on a duplicate
// of its descriptor obtained with pidfd_getfd (Linux 5.6, ptrace rights over the owner);
// without that right the keepalive timer shown by sock_diag is used instead and the socket is
// marked Inferred. Destroy uses SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY, CAP_NET_ADMIN).
//
// The types, Selector matching and parsing work everywhere; List, Walk, Lookup, ReadSettings,
// Retrofit, Destroy and NetNSNames work on Linux only and return an error matching
// ErrUnsupported elsewhere.
package host

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/cgroupns"
)

// State is a TCP state as the Linux kernel numbers it (include/net/tcp_states.h).
type State uint8

// TCP states.
const (
	StateEstablished State = 1
	StateSynSent     State = 2
	StateSynRecv     State = 3
	StateFinWait1    State = 4
	StateFinWait2    State = 5
	StateTimeWait    State = 6
	StateClose       State = 7
	StateCloseWait   State = 8
	StateLastAck     State = 9
	StateListen      State = 10
	StateClosing     State = 11
	StateNewSynRecv  State = 12
)

var stateNames = [...]string{
	StateEstablished: "ESTAB",
	StateSynSent:     "SYN-SENT",
	StateSynRecv:     "SYN-RECV",
	StateFinWait1:    "FIN-WAIT-1",
	StateFinWait2:    "FIN-WAIT-2",
	StateTimeWait:    "TIME-WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE-WAIT",
	StateLastAck:     "LAST-ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
	StateNewSynRecv:  "NEW-SYN-RECV",
}

// String returns the name ss uses ("ESTAB", "CLOSE-WAIT", ...).
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE-%d", uint8(s))
}

// ConnectedStates returns the states of a connection that has (or had) a peer and may still
// be waiting for it: everything but LISTEN, TIME-WAIT, CLOSE and the request sockets. An empty
// Selector.States means these.
func ConnectedStates() []State {
	return []State{StateEstablished, StateSynSent, StateFinWait1, StateFinWait2,
		StateCloseWait, StateLastAck, StateClosing}
}

// ParseState accepts a state name in ss or kernel spelling, case-insensitive:
// "established"/"estab", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait",
// "close", "close-wait", "last-ack", "listen"/"listening", "closing".
func ParseState(name string) (State, error) {
	n := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(name), "_", "-"))
	switch n {
	case "established", "estab":
		return StateEstablished, nil
	case "listening":
		return StateListen, nil
	case "synsent":
		return StateSynSent, nil
	case "timewait":
		return StateTimeWait, nil
	case "closewait":
		return StateCloseWait, nil
	}
	for i, s := range stateNames {
		if s != "" && strings.ToLower(s) == n {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown TCP state %q (allowed: established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, close, close-wait, last-ack, listen, closing)", name)
}

// Timer is the kernel timer pending on a socket (inet_diag idiag_timer).
type Timer uint8

// Timers as sock_diag reports them.
const (
	// TimerNone: no timer pending (an idle connection without keepalive).
	TimerNone Timer = 0
	// TimerRetransmit: retransmission or loss probe; data is in flight, which hides whether
	// keepalive is on.
	TimerRetransmit Timer = 1
	// TimerKeepalive: the keepalive timer (also used by FIN-WAIT-2).
	TimerKeepalive Timer = 2
	// TimerTimeWait: TIME-WAIT expiry.
	TimerTimeWait Timer = 3
	// TimerZeroWindow: zero-window probe.
	TimerZeroWindow Timer = 4
)

// String returns the name ss uses: "off", "on" (retransmit), "keepalive", "timewait", "persist".
func (t Timer) String() string {
	switch t {
	case TimerNone:
		return "off"
	case TimerRetransmit:
		return "on"
	case TimerKeepalive:
		return "keepalive"
	case TimerTimeWait:
		return "timewait"
	case TimerZeroWindow:
		return "persist"
	}
	return fmt.Sprintf("timer-%d", uint8(t))
}

// TCPInfo is the part of the kernel's struct tcp_info that matters for liveness. Durations
// are rounded by the kernel to microseconds (RTT) or milliseconds (Last*).
type TCPInfo struct {
	// Retransmits is the number of consecutive unanswered retransmissions (icsk_retransmits).
	Retransmits uint8 `json:"retransmits"`
	// Probes is the number of unanswered keepalive or zero-window probes so far.
	Probes uint8 `json:"probes"`
	// Backoff is the exponential backoff of the retransmission timer.
	Backoff uint8 `json:"backoff"`
	// RTO is the current retransmission timeout.
	RTO time.Duration `json:"rto"`
	// RTT and RTTVar are the smoothed round-trip time and its variance.
	RTT    time.Duration `json:"rtt"`
	RTTVar time.Duration `json:"rttvar"`
	// Unacked is the number of segments sent but not acknowledged.
	Unacked uint32 `json:"unacked"`
	// NotSent is the number of bytes queued but not yet sent.
	NotSent uint32 `json:"notsent_bytes"`
	// LastDataSent, LastDataRecv and LastAckRecv are the times since the last data segment
	// sent, data received and ACK received.
	LastDataSent time.Duration `json:"last_data_sent"`
	LastDataRecv time.Duration `json:"last_data_recv"`
	LastAckRecv  time.Duration `json:"last_ack_recv"`
	// TotalRetrans counts all retransmissions over the connection's life.
	TotalRetrans uint32 `json:"total_retrans"`
	// BytesAcked and BytesReceived count payload in each direction.
	BytesAcked    uint64 `json:"bytes_acked"`
	BytesReceived uint64 `json:"bytes_received"`
}

// Idle is how long nothing has been received: the keepalive timer's notion of idle,
// min(LastDataRecv, LastAckRecv).
func (i *TCPInfo) Idle() time.Duration {
	return min(i.LastDataRecv, i.LastAckRecv)
}

// Owner is a process holding a descriptor of a socket.
type Owner struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	FD   int    `json:"fd"`
}

// Socket is one TCP socket as the kernel reports it.
type Socket struct {
	// Family is unix.AF_INET or unix.AF_INET6 (a dual-stack socket talking IPv4 stays AF_INET6).
	Family int `json:"family"`
	// Local and Remote are the endpoints; IPv4-mapped IPv6 addresses are unmapped.
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	State  State          `json:"state"`
	// Inode is the socket's inode (0 for TIME-WAIT and request sockets), the key to its owners.
	Inode uint32 `json:"inode"`
	// Cookie is the kernel's unique socket cookie; with the addresses it identifies the socket
	// exactly for Lookup and Destroy.
	Cookie uint64 `json:"cookie"`
	// Interface is the bound interface index (0 when unbound).
	Interface uint32 `json:"interface,omitempty"`
	// NetNS names the network namespace the socket lives in: its /var/run/netns name, else a
	// path that enters it (an nsfs mount or /proc/PID/task/TID/ns/net); "" for the current
	// one. Namespace has the details and a label for people.
	NetNS string `json:"netns,omitempty"`
	// Namespace is the socket's network namespace, nil for the current one.
	Namespace *NetNS `json:"namespace,omitempty"`
	// Timer is the pending kernel timer, TimerExpires the time until it fires, TimerRetrans
	// the retransmissions (TimerRetransmit) or probes (TimerKeepalive, TimerZeroWindow) so far.
	Timer        Timer         `json:"timer"`
	TimerExpires time.Duration `json:"timer_expires"`
	TimerRetrans int           `json:"timer_retrans"`
	// RecvQ is the number of bytes received but not read; SendQ the bytes not yet acknowledged
	// (unsent included).
	RecvQ uint32 `json:"recv_q"`
	SendQ uint32 `json:"send_q"`
	// UID owns the socket.
	UID uint32 `json:"uid"`
	// Info is the socket's tcp_info, nil when the kernel did not report it.
	Info *TCPInfo `json:"info,omitempty"`
	// Owners are the processes holding a descriptor of the socket (ListOptions.Owners); a
	// socket shared by several processes (fork, SCM_RIGHTS) has several.
	Owners []Owner `json:"owners,omitempty"`
	// Settings are the exact keepalive settings read through an owner's descriptor
	// (ListOptions.Deep); nil when they could not be read, see SettingsErr.
	Settings *keepalive.Settings `json:"settings,omitempty"`
	// SettingsErr says why Settings is nil after a deep read was asked for.
	SettingsErr error `json:"-"`
	// Inferred is true when Settings could not be read and keepalive state is only inferred
	// from the timer (see KeepaliveArmed and KeepaliveBounds).
	Inferred bool `json:"inferred"`
	// RTOMax is the socket's own TCP_RTO_MAX_MS (Linux 6.15+), read with Settings through an
	// owner's descriptor; zero when not read, unsupported, or equal to the namespace's bound.
	RTOMax time.Duration `json:"rto_max,omitempty"`
}

// Idle is the time since the last segment was received, zero when tcp_info is missing.
func (s *Socket) Idle() time.Duration {
	if s.Info == nil {
		return 0
	}
	return s.Info.Idle()
}

// KeepaliveArmed tells from sock_diag alone whether keepalive is on: the keepalive timer is
// pending (on), no timer at all on an established socket (off), or unknown (data in flight:
// the retransmission timer hides it; or a state where the timer means something else).
func (s *Socket) KeepaliveArmed() (on, known bool) {
	if s.State != StateEstablished && s.State != StateCloseWait {
		return false, false
	}
	switch s.Timer {
	case TimerKeepalive:
		return true, true
	case TimerNone:
		return false, true
	}
	return false, false
}

// String renders the socket like "10.0.0.1:5000 -> 10.0.0.2:80 ESTAB".
func (s *Socket) String() string {
	str := s.Local.String() + " -> " + s.Remote.String() + " " + s.State.String()
	if l := s.Namespace.Label(); l != "" {
		str += " (netns " + l + ")"
	} else if s.NetNS != "" {
		str += " (netns " + s.NetNS + ")"
	}
	return str
}

// Selector narrows a listing. Every non-empty field must match (AND); within a field any
// value may match (OR). The zero Selector matches every socket in ConnectedStates().
type Selector struct {
	// Ports match the local or the remote port.
	Ports []uint16
	// Peers match the remote address.
	Peers []netip.Prefix
	// PIDs and Comms match any owner (they imply ListOptions.Owners).
	PIDs  []int
	Comms []string
	// States are the wanted states; empty means ConnectedStates().
	States []State
	// IdleOver keeps sockets idle (nothing received) for longer than this.
	IdleOver time.Duration
	// Cgroups match an owner in one of these cgroups or below: a path relative to the cgroup
	// root ("/system.slice/nginx.service") or absolute under a cgroup mount
	// ("/sys/fs/cgroup/system.slice/nginx.service"); v1 hierarchies count too.
	Cgroups []string
	// Containers match an owner running in one of these containers: a full ID, an ID prefix
	// of at least 4 characters, or a Kubernetes pod UID.
	Containers []string
	// Cookies match the kernel's socket cookie exactly.
	Cookies []uint64

	// procSet, when not nil, holds the processes already found to match Cgroups and
	// Containers (Walk resolves them once).
	procSet map[int]bool
}

// IsZero reports whether no selector field is set.
func (sel *Selector) IsZero() bool {
	return len(sel.Ports) == 0 && len(sel.Peers) == 0 && len(sel.PIDs) == 0 &&
		len(sel.Comms) == 0 && len(sel.States) == 0 && sel.IdleOver == 0 &&
		len(sel.Cgroups) == 0 && len(sel.Containers) == 0 && len(sel.Cookies) == 0
}

// Narrows reports whether a field that picks particular connections or processes is set:
// ports, peers, processes, cgroups, containers or cookies. States and IdleOver alone select
// every connection of the host that is in that state or that idle.
func (sel *Selector) Narrows() bool {
	return len(sel.Ports) > 0 || len(sel.Peers) > 0 || sel.selectsProcs() || len(sel.Cookies) > 0
}

// NeedsOwners reports whether matching needs the owning processes.
func (sel *Selector) NeedsOwners() bool { return sel.selectsProcs() }

// selectsProcs reports whether a field selects owning processes.
func (sel *Selector) selectsProcs() bool {
	return len(sel.PIDs) > 0 || len(sel.Comms) > 0 || len(sel.Cgroups) > 0 || len(sel.Containers) > 0
}

// StateMask is the kernel's idiag_states bitmask for the wanted states.
func (sel *Selector) StateMask() uint32 {
	states := sel.States
	if len(states) == 0 {
		states = ConnectedStates()
	}
	var m uint32
	for _, s := range states {
		m |= 1 << uint(s)
	}
	return m
}

// Match reports whether s matches every set field. Owner fields are checked against
// s.Owners, so those must be filled in.
func (sel *Selector) Match(s *Socket) bool { return sel.matchConn(s) && sel.matchOwners(s) }

// matchConn checks the fields that need no owners.
func (sel *Selector) matchConn(s *Socket) bool {
	if len(sel.States) > 0 && !slices.Contains(sel.States, s.State) {
		return false
	}
	if len(sel.Cookies) > 0 && !slices.Contains(sel.Cookies, s.Cookie) {
		return false
	}
	if len(sel.Ports) > 0 && !slices.Contains(sel.Ports, s.Local.Port()) && !slices.Contains(sel.Ports, s.Remote.Port()) {
		return false
	}
	if len(sel.Peers) > 0 {
		ok := false
		for _, p := range sel.Peers {
			if p.Contains(s.Remote.Addr()) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if sel.IdleOver > 0 && (s.Info == nil || s.Info.Idle() <= sel.IdleOver) {
		return false
	}
	return true
}

// matchOwners checks PIDs and Comms against s.Owners.
func (sel *Selector) matchOwners(s *Socket) bool {
	if len(sel.PIDs) > 0 && !slices.ContainsFunc(s.Owners, func(o Owner) bool { return slices.Contains(sel.PIDs, o.PID) }) {
		return false
	}
	if len(sel.Comms) > 0 && !slices.ContainsFunc(s.Owners, func(o Owner) bool { return slices.Contains(sel.Comms, o.Comm) }) {
		return false
	}
	if (len(sel.Cgroups) > 0 || len(sel.Containers) > 0) && !slices.ContainsFunc(s.Owners, func(o Owner) bool { return sel.procInGroups(o.PID) }) {
		return false
	}
	return true
}

// procInGroups reports whether process pid is in one of sel.Cgroups and sel.Containers.
func (sel *Selector) procInGroups(pid int) bool {
	if sel.procSet != nil {
		return sel.procSet[pid]
	}
	r, err := cgroupns.NewReader()
	if err != nil {
		return false
	}
	defer r.Close()
	b, err := r.Read(pid)
	return err == nil && sel.cgroupMatches(string(b))
}

// cgroupMatches checks the content of /proc/PID/cgroup against Cgroups (the relative form)
// and Containers.
func (sel *Selector) cgroupMatches(content string) bool {
	if len(sel.Containers) > 0 {
		c := ParseCgroup(content)
		if c == nil || !slices.ContainsFunc(sel.Containers, c.MatchID) {
			return false
		}
	}
	if len(sel.Cgroups) == 0 {
		return true
	}
	for _, line := range strings.Split(content, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, want := range sel.Cgroups {
			if cgroupUnder(f[2], want) {
				return true
			}
		}
	}
	return false
}

// cgroupUnder reports whether path is dir or below it.
func cgroupUnder(path, dir string) bool {
	dir = "/" + strings.Trim(dir, "/")
	if dir == "/" {
		return true
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Clone returns a deep copy of s (Walk reuses its Socket between calls).
func (s *Socket) Clone() Socket {
	c := *s
	if s.Info != nil {
		i := *s.Info
		c.Info = &i
	}
	if s.Owners != nil {
		c.Owners = slices.Clone(s.Owners)
	}
	// Namespace is shared: it describes the namespace and is never changed after listing.
	if s.Settings != nil {
		st := *s.Settings
		c.Settings = &st
	}
	return c
}

// ListOptions control List and Walk.
type ListOptions struct {
	// NetNS is a named network namespace (/var/run/netns/NAME) or a path to one (an nsfs
	// mount, /proc/PID/ns/net); "" is the current one, or, when the Selector picks processes
	// (PIDs, Comms, Cgroups, Containers), the namespaces those processes live in.
	NetNS string
	// AllNetNS lists every network namespace of the host (see Namespaces): the current one,
	// every mounted one (ip netns, docker) and every one held by a process or thread. NetNS
	// is then ignored.
	AllNetNS bool
	// Namespaces, when not empty, are the namespaces to list (NetNS is then ignored).
	Namespaces []NetNS
	// Warn, when not nil, receives what was skipped when several namespaces are listed: a
	// stale /var/run/netns entry, a namespace that vanished or could not be entered. The
	// listing fails only when no namespace could be read.
	Warn func(error)
	// Selector filters the sockets; the state filter runs in the kernel.
	Selector Selector
	// Owners maps sockets to processes through one pass over /proc/*/fd.
	Owners bool
	// Deep reads each socket's exact settings through pidfd_getfd on an owner (implies
	// Owners). Without the right to do so Settings stays nil and Inferred is set.
	Deep bool
	// NoInfo leaves tcp_info out of the dump (Socket.Info stays nil), which saves the
	// kernel ≈ 15 % of its work; ignored when Selector.IdleOver needs it.
	NoInfo bool
	// DeepLimit, when positive, skips the deep read if the owner scan found more than this
	// many socket descriptors on the host (each read costs a few system calls); the sockets
	// are then Inferred with SettingsErr matching ErrDeepSkipped.
	DeepLimit int
}

// RetrofitOptions control Retrofit.
type RetrofitOptions struct {
	// DryRun reads the current settings and reports what would change, changing nothing.
	DryRun bool
}

// RetrofitResult is the outcome for one socket.
type RetrofitResult struct {
	Socket Socket `json:"socket"`
	// Owner is the process whose descriptor was used.
	Owner Owner `json:"owner"`
	// Before are the settings found; After the settings read back after the change (under
	// DryRun: the settings that would result).
	Before keepalive.Settings `json:"before"`
	After  keepalive.Settings `json:"after"`
	// Changed is true when After differs from Before.
	Changed bool `json:"changed"`
	// Err is nil on success; it names the fix when privilege or kernel support is missing
	// and matches ErrGone when the process or socket went away.
	Err error `json:"-"`
}

// Errors returned by the package. Wrapped errors carry the details; use errors.Is.
var (
	// ErrGone: the socket, its descriptor or its owning process no longer exists.
	ErrGone = errors.New("socket or process gone")
	// ErrNoOwner: no process holds a descriptor of the socket (or none could be found).
	ErrNoOwner = errors.New("no owning process found")
	// ErrDeepSkipped: the deep read was skipped because of ListOptions.DeepLimit.
	ErrDeepSkipped = errors.New("exact settings not read: more socket descriptors than the deep-read limit")
	// ErrUnsupported: the host package works on Linux only.
	ErrUnsupported = errors.ErrUnsupported
)

// Merge returns the settings that applying cfg over cur results in: SO_KEEPALIVE on and every
// non-zero field of cfg replacing the current value.
func Merge(cur keepalive.Settings, cfg keepalive.Config) keepalive.Settings {
	return keepalive.Settings{Enabled: true, Config: cfg.WithDefaults(cur.Config)}
}

// MarshalText renders the state by name, so JSON shows "ESTAB" rather than 1.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText accepts what ParseState accepts.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText renders the timer by name ("off", "on", "keepalive", "timewait", "persist").
func (t Timer) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText accepts the names MarshalText produces.
func (t *Timer) UnmarshalText(b []byte) error {
	for v := TimerNone; v <= TimerZeroWindow; v++ {
		if v.String() == string(b) {
			*t = v
			return nil
		}
	}
	return fmt.Errorf("unknown socket timer %q (allowed: off, on, keepalive, timewait, persist)", b)
}
