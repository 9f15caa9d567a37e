// Package enforce applies a keepalive policy to every new TCP connection of a cgroup, set by
// the kernel at the moment the connection is established (Linux, eBPF).
//
// A BPF_PROG_TYPE_SOCK_OPS program attached to a cgroup v2 directory runs when a TCP
// connection of any process in that cgroup (or below) becomes established, actively
// (connect) or passively (accept), and sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL,
// TCP_KEEPCNT and TCP_USER_TIMEOUT with bpf_setsockopt before connect() or accept() returns:
// the socket is never without the policy. In ModeEnforce a BPF_PROG_TYPE_CGROUP_SOCKOPT
// program attached as cgroup/setsockopt also rewrites the application's own later setsockopt
// calls of those options to the policy's values (Go, for one, sets a 15 s keepalive on every
// connection after it is established).
//
// Precedence: the policy lives in one map keyed by cgroup id, shared by every attachment.
// The programs are attached with BPF_F_ALLOW_OVERRIDE, so for a socket only the program of
// the nearest attached cgroup runs (the kernel runs nested multi-attached programs child
// first, which would let a parent's later bpf_setsockopt win); each attached cgroup's program
// knows the ids of its attached ancestors and looks them up in turn, most specific first,
// and the first cgroup that holds a matching policy decides. Within a cgroup, a
// remote-port rule wins over a local-port rule, which wins over a remote-prefix rule, which
// wins over the cgroup's default; among rules of one kind the longer prefix wins. Attaching
// or detaching a cgroup re-attaches the programs below it (atomically replacing them), so
// no connection is ever established without a program.
//
// Programs and maps are pinned under the host's BPF filesystem (PinDir, by default
// <bpffs>/keepalive), so attachments outlive the process that made them and any later
// process — the CLI or the agent — finds them again. The programs are written with
// cilium/ebpf's asm package: building this package needs no C compiler.
//
// The types work everywhere; Open works on Linux only and returns an error matching
// ErrUnsupported elsewhere.
package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Mode says what the policy does about an application's own setsockopt calls.
type Mode string

const (
	// ModeDefault sets the policy when a connection is established; the application may
	// still change its own sockets afterwards (its values then win).
	ModeDefault Mode = "default"
	// ModeEnforce also rewrites the application's later setsockopt of SO_KEEPALIVE,
	// TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT to the policy's values.
	ModeEnforce Mode = "enforce"
)

// ParseMode accepts "default" and "enforce".
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToLower(strings.TrimSpace(s))) {
	case ModeDefault, "":
		return ModeDefault, nil
	case ModeEnforce:
		return ModeEnforce, nil
	}
	return "", fmt.Errorf("unknown mode %q (allowed: default, enforce)", s)
}

// Match narrows a policy to some connections of the cgroup. The zero Match is the cgroup's
// default policy.
type Match struct {
	// LocalPort and RemotePort, when non-zero, must equal the connection's port. At most one
	// of them may be set.
	LocalPort  uint16 `json:"local_port,omitempty"`
	RemotePort uint16 `json:"remote_port,omitempty"`
	// Peer, when valid, must contain the remote address (IPv4 or IPv6).
	Peer netip.Prefix `json:"peer,omitzero"`
}

// IsDefault reports whether m is the cgroup's default (matches every connection).
func (m Match) IsDefault() bool { return m.LocalPort == 0 && m.RemotePort == 0 && !m.Peer.IsValid() }

// String renders the match like "remote port 5432, peer 10.0.0.0/8" or "default".
func (m Match) String() string {
	var parts []string
	if m.LocalPort != 0 {
		parts = append(parts, fmt.Sprintf("local port %d", m.LocalPort))
	}
	if m.RemotePort != 0 {
		parts = append(parts, fmt.Sprintf("remote port %d", m.RemotePort))
	}
	if m.Peer.IsValid() {
		parts = append(parts, "peer "+m.Peer.String())
	}
	if len(parts) == 0 {
		return "default"
	}
	return strings.Join(parts, ", ")
}

// Check validates the match.
func (m Match) Check() error {
	if m.LocalPort != 0 && m.RemotePort != 0 {
		return fmt.Errorf("a rule matches the local port or the remote port, not both (got local %d, remote %d)", m.LocalPort, m.RemotePort)
	}
	return nil
}

// Contains reports whether a connection with these endpoints matches.
func (m Match) Contains(local, remote netip.AddrPort) bool {
	if m.LocalPort != 0 && local.Port() != m.LocalPort {
		return false
	}
	if m.RemotePort != 0 && remote.Port() != m.RemotePort {
		return false
	}
	if m.Peer.IsValid() {
		a := remote.Addr().Unmap()
		if !m.Peer.Contains(a) {
			return false
		}
	}
	return true
}

// Rule is one policy entry of an attachment: the settings for connections that Match.
type Rule struct {
	Match  Match            `json:"match"`
	Config keepalive.Config `json:"config"`
	Mode   Mode             `json:"mode"`
	// Listeners makes ModeEnforce rewrite a listening socket's own setsockopt too (by
	// default a listener's options are the application's; accepted connections get the
	// policy at establishment either way).
	Listeners bool `json:"listeners,omitempty"`
}

// Counters count, per attached cgroup, what the programs did. Seen counts established
// connections in the cgroup's subtree (counted at the nearest attached cgroup); Set those
// whose policy was applied without error; Rewritten the application setsockopt calls
// changed in ModeEnforce.
type Counters struct {
	Seen      uint64 `json:"seen"`
	Set       uint64 `json:"set"`
	Rewritten uint64 `json:"rewritten"`
	// Failures are per option ("keepalive", "idle", "interval", "count", "user-timeout"):
	// how many bpf_setsockopt calls the kernel refused and the last errno it gave.
	Failures []OptionFailure `json:"failures,omitempty"`
}

// OptionFailure is the kernel's refusal of one option.
type OptionFailure struct {
	Option string `json:"option"`
	Count  uint64 `json:"count"`
	Errno  int    `json:"errno"`
	// Error is the errno's text, e.g. "invalid argument".
	Error string `json:"error"`
}

// Attachment is a cgroup that has a policy.
type Attachment struct {
	// Cgroup is the path relative to the cgroup2 mount ("/" is the root), CgroupID its id.
	Cgroup   string `json:"cgroup"`
	CgroupID uint64 `json:"cgroup_id"`
	// Owner is who attached it ("cli", "agent", …); detaching another owner's attachment
	// must be asked for explicitly.
	Owner string `json:"owner"`
	// Since is when the attachment was first made.
	Since time.Time `json:"since"`
	// Linked is true when the sock_ops program is attached to the cgroup (pinned under Pins).
	Linked bool `json:"linked"`
	// Rewriting is true when the cgroup/setsockopt program is attached too: only when this
	// cgroup or an attached ancestor has an enforce-mode rule.
	Rewriting bool `json:"rewriting"`
	// CoveredBy is the nearest attached ancestor, whose policy applies to connections
	// that no rule of this cgroup matches.
	CoveredBy string `json:"covered_by,omitempty"`
	// Gone is true when the cgroup directory no longer exists.
	Gone     bool     `json:"gone,omitempty"`
	Rules    []Rule   `json:"rules"`
	Counters Counters `json:"counters"`
	// Pins are the bpffs paths of this attachment's programs.
	Pins []string `json:"pins,omitempty"`
}

// Options configure Open.
type Options struct {
	// PinDir is where programs, maps and links are pinned; "" means <bpffs>/keepalive on the
	// host's BPF filesystem (found in /proc/self/mountinfo).
	PinDir string
	// MountBPFFS mounts a BPF filesystem at /sys/fs/bpf when none is mounted (the CLI does,
	// and says so); otherwise Open fails with ErrNoBPFFS.
	MountBPFFS bool
	// ReadOnly opens existing pins only (list, dry runs): nothing is created or mounted.
	ReadOnly bool
}

// AttachRequest is one policy to attach.
type AttachRequest struct {
	// Cgroup is a path relative to the cgroup2 mount or an absolute path under it.
	Cgroup string
	Rule   Rule
	// Owner names the attaching program; "" means "cli".
	Owner string
	// Takeover allows replacing a rule of an attachment that another owner made.
	Takeover bool
}

// ExistingOptions control Host.RetrofitExisting.
type ExistingOptions struct {
	// DryRun reads the connections' settings and reports what would change.
	DryRun bool
	// Pending are rules of the cgroup to use as if they were attached already.
	Pending []Rule
}

// Errors returned by the package; use errors.Is.
var (
	// ErrUnsupported: not Linux.
	ErrUnsupported = errors.ErrUnsupported
	// ErrNoCgroup2: no cgroup v2 hierarchy is mounted.
	ErrNoCgroup2 = errors.New("no cgroup v2 (cgroup2) filesystem mounted: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy; cgroup BPF needs Linux ≥ 4.10")
	// ErrNoBPFFS: no BPF filesystem is mounted and Options.MountBPFFS was false.
	ErrNoBPFFS = errors.New("no BPF filesystem (bpffs) mounted: mount -t bpf bpf /sys/fs/bpf (from a container, bind-mount the host's /sys/fs/bpf, or the pins stay private to the container)")
	// ErrNotAttached: the cgroup has no policy.
	ErrNotAttached = errors.New("no keepalive policy attached to this cgroup")
	// ErrOtherOwner: the attachment belongs to another owner.
	ErrOtherOwner = errors.New("attachment made by another owner")
)

// ancestorOf reports whether a is a strict ancestor of b (cgroup paths relative to the mount).
func ancestorOf(a, b string) bool {
	if a == b {
		return false
	}
	return a == "/" || strings.HasPrefix(b, a+"/")
}

// rank orders rules by precedence, most specific first.
func rank(m Match) int {
	bits := 0
	if m.Peer.IsValid() {
		bits = m.Peer.Bits()
		if m.Peer.Addr().Is4() {
			bits += 96
		}
	}
	switch {
	case m.RemotePort != 0:
		return 0*1000 + 200 - bits
	case m.LocalPort != 0:
		return 1*1000 + 200 - bits
	case m.Peer.IsValid():
		return 2*1000 + 200 - bits
	}
	return 3000
}

// PolicyFor returns the rule that applies to a connection of a process in cgroup path (relative
// to the cgroup2 mount) with these endpoints, and the attached cgroup it comes from, following
// the same precedence as the programs. ok is false when no policy applies.
func PolicyFor(atts []Attachment, cgroupPath string, local, remote netip.AddrPort) (r Rule, from string, ok bool) {
	best := -1
	for i := range atts {
		a := &atts[i]
		if a.Gone || !(a.Cgroup == cgroupPath || ancestorOf(a.Cgroup, cgroupPath)) {
			continue
		}
		if best >= 0 && len(atts[best].Cgroup) >= len(a.Cgroup) {
			continue
		}
		for _, rr := range a.Rules { // sorted by precedence
			if rr.Match.Contains(local, remote) {
				best = i
				break
			}
		}
	}
	if best < 0 {
		return Rule{}, "", false
	}
	for _, rr := range atts[best].Rules {
		if rr.Match.Contains(local, remote) {
			return rr, atts[best].Cgroup, true
		}
	}
	return Rule{}, "", false
}
