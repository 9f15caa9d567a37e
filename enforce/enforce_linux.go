//go:build linux

package enforce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/keepalive-dev/keepalive"
	"golang.org/x/sys/unix"
)

// Names of the pins under PinDir. The CLI and the agent share them: one owner for the pins.
const (
	pinPolicy      = "policy"
	pinCounters    = "counters"
	pinAttachments = "attachments"

	metaPathLen  = 240
	metaOwnerLen = 16
	metaSize     = metaPathLen + metaOwnerLen + 8

	maxAttachments = 4096
	maxRules       = 16384
)

// Host is an open handle on the pinned programs and maps of this host. A Host serialises
// its changes with other processes through a lock on PinDir. Close it when done; the pinned
// attachments stay.
type Host struct {
	pinDir, cgMount          string
	policy, counters, meta   *ebpf.Map
	readOnly, empty          bool
	lock                     *os.File
	notes                    []string
	sockopsProg, sockoptProg *ebpf.Program
}

// Probe checks that the kernel has what enforce needs and returns an error naming the
// missing feature and the kernel version that has it.
func Probe() error {
	if _, err := Cgroup2Mount(); err != nil {
		return err
	}
	checks := []struct {
		what string
		err  func() error
	}{
		{"BPF_PROG_TYPE_SOCK_OPS programs", func() error { return features.HaveProgramType(ebpf.SockOps) }},
		{"BPF_PROG_TYPE_CGROUP_SOCKOPT programs (cgroup/setsockopt)", func() error { return features.HaveProgramType(ebpf.CGroupSockopt) }},
		{"BPF_MAP_TYPE_LPM_TRIE maps", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
		{"BPF_MAP_TYPE_PERCPU_HASH maps", func() error { return features.HaveMapType(ebpf.PerCPUHash) }},
		{"bpf_setsockopt in sock_ops programs", func() error { return features.HaveProgramHelper(ebpf.SockOps, asm.FnSetsockopt) }},
	}
	for _, c := range checks {
		if err := c.err(); err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) {
				return fmt.Errorf("this kernel (%s) lacks %s: %w", kernelRelease(), c.what, err)
			}
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("probing %s: %w: loading BPF programs needs CAP_BPF and CAP_NET_ADMIN (run as root)", c.what, err)
			}
			// Probes that cannot decide (no probe for a helper) do not block.
			if !strings.Contains(err.Error(), "no feature probe") {
				return fmt.Errorf("probing %s: %w", c.what, err)
			}
		}
	}
	return nil
}

// inContainer reports the usual marks of a container runtime (Docker, Podman).
func inContainer() bool {
	for _, p := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

func mapSpecs() []*ebpf.MapSpec {
	return []*ebpf.MapSpec{
		{Name: pinPolicy, Type: ebpf.LPMTrie, KeySize: keySize, ValueSize: policyVSize, MaxEntries: maxRules,
			Flags: unix.BPF_F_NO_PREALLOC, Pinning: ebpf.PinByName},
		{Name: pinCounters, Type: ebpf.PerCPUHash, KeySize: 8, ValueSize: counterSize, MaxEntries: maxAttachments, Pinning: ebpf.PinByName},
		{Name: pinAttachments, Type: ebpf.Hash, KeySize: 8, ValueSize: metaSize, MaxEntries: maxAttachments, Pinning: ebpf.PinByName},
	}
}

// DefaultPinDir returns <bpffs>/keepalive, or ErrNoBPFFS.
func DefaultPinDir() (string, error) {
	m, err := BPFFSMount()
	if err != nil {
		return "", err
	}
	return filepath.Join(m, "keepalive"), nil
}

// Open opens (creating, unless ReadOnly) the pinned maps under opt.PinDir. With ReadOnly and
// nothing pinned yet, the Host lists nothing.
func Open(opt Options) (*Host, error) {
	h := &Host{readOnly: opt.ReadOnly}
	var err error
	if h.cgMount, err = Cgroup2Mount(); err != nil {
		return nil, err
	}
	h.pinDir = opt.PinDir
	if h.pinDir == "" {
		h.pinDir, err = DefaultPinDir()
		if errors.Is(err, ErrNoBPFFS) {
			if opt.ReadOnly {
				h.empty = true
				return h, nil
			}
			if !opt.MountBPFFS {
				return nil, err
			}
			m, merr := mountBPFFS()
			if merr != nil {
				return nil, fmt.Errorf("%w; mounting one failed: %v", ErrNoBPFFS, merr)
			}
			h.notes = append(h.notes, "no BPF filesystem was mounted: mounted one at "+m+" (pins live there until reboot)")
			if inContainer() {
				h.notes = append(h.notes, "this looks like a container: a bpffs mounted here is private to it and the attachments' pins go with it; bind-mount the host's /sys/fs/bpf to share them with the host")
			}
			h.pinDir = filepath.Join(m, "keepalive")
		} else if err != nil {
			return nil, err
		}
	}
	if opt.ReadOnly {
		if _, err := os.Stat(filepath.Join(h.pinDir, pinAttachments)); errors.Is(err, os.ErrNotExist) {
			h.empty = true
			return h, nil
		}
		if err := h.lockDir(unix.LOCK_SH); err != nil {
			return nil, err
		}
		for _, s := range mapSpecs() {
			m, err := ebpf.LoadPinnedMap(filepath.Join(h.pinDir, s.Name), &ebpf.LoadPinOptions{ReadOnly: true})
			if err != nil {
				h.Close()
				return nil, fmt.Errorf("open pinned map %s: %w", filepath.Join(h.pinDir, s.Name), err)
			}
			if m.Type() != s.Type || m.KeySize() != s.KeySize || m.ValueSize() != s.ValueSize {
				m.Close()
				h.Close()
				return nil, fmt.Errorf("pinned map %s has another layout (%s, key %d, value %d bytes; this version uses %s, %d, %d): made by an incompatible keepalive version",
					filepath.Join(h.pinDir, s.Name), m.Type(), m.KeySize(), m.ValueSize(), s.Type, s.KeySize, s.ValueSize)
			}
			h.setMap(s.Name, m)
		}
		return h, nil
	}
	if err := Probe(); err != nil {
		return nil, err
	}
	// The last Detach removes the directory (under the lock): lock, then make sure the
	// directory locked is still the one in place.
	for try := 0; ; try++ {
		if err := os.MkdirAll(h.pinDir, 0o700); err != nil {
			return nil, fmt.Errorf("create pin directory: %w", err)
		}
		if err := h.lockDir(unix.LOCK_EX); err != nil {
			return nil, err
		}
		var a, b unix.Stat_t
		if unix.Fstat(int(h.lock.Fd()), &a) == nil && unix.Stat(h.pinDir, &b) == nil && a.Ino == b.Ino {
			break
		}
		h.lock.Close()
		h.lock = nil
		if try == 3 {
			return nil, fmt.Errorf("pin directory %s keeps changing under us", h.pinDir)
		}
	}
	for _, s := range mapSpecs() {
		m, err := ebpf.NewMapWithOptions(s, ebpf.MapOptions{PinPath: h.pinDir})
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("create or open pinned map %s: %w (pins made by an incompatible keepalive version must be detached first)", filepath.Join(h.pinDir, s.Name), err)
		}
		h.setMap(s.Name, m)
	}
	return h, nil
}

func (h *Host) setMap(name string, m *ebpf.Map) {
	switch name {
	case pinPolicy:
		h.policy = m
	case pinCounters:
		h.counters = m
	case pinAttachments:
		h.meta = m
	}
}

func (h *Host) lockDir(how int) error {
	f, err := os.Open(h.pinDir)
	if err != nil {
		return fmt.Errorf("open pin directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return fmt.Errorf("lock pin directory %s: %w", h.pinDir, err)
	}
	h.lock = f
	return nil
}

// Notes returns what Open did on the way that the user should know (a bpffs it mounted).
func (h *Host) Notes() []string { return h.notes }

// PinDir returns the directory of the pins.
func (h *Host) PinDir() string { return h.pinDir }

// Cgroup2 returns the cgroup2 mount point.
func (h *Host) Cgroup2() string { return h.cgMount }

// Close releases the handles; pinned attachments stay.
func (h *Host) Close() error {
	for _, m := range []*ebpf.Map{h.policy, h.counters, h.meta} {
		if m != nil {
			m.Close()
		}
	}
	for _, p := range []*ebpf.Program{h.sockopsProg, h.sockoptProg} {
		if p != nil {
			p.Close()
		}
	}
	if h.lock != nil {
		h.lock.Close() // releases the flock
		h.lock = nil
	}
	return nil
}

// policyValue encodes a rule's settings.
func policyValue(r Rule) []byte {
	b := make([]byte, policyVSize)
	flags := uint32(0)
	if r.Mode == ModeEnforce {
		flags |= flagEnforce
	}
	if !r.Match.IsDefault() {
		flags |= flagRule
	}
	if r.Listeners {
		flags |= flagListen
	}
	put := func(off int, flag uint32, v int64) {
		if v > 0 {
			flags |= flag
			binary.NativeEndian.PutUint32(b[off:], uint32(v))
		}
	}
	put(polIdle, flagIdle, int64(r.Config.Idle/time.Second))
	put(polIntvl, flagIntvl, int64(r.Config.Interval/time.Second))
	put(polCnt, flagCnt, int64(r.Config.Count))
	put(polUT, flagUT, r.Config.UserTimeout.Milliseconds())
	binary.NativeEndian.PutUint32(b[polFlags:], flags)
	return b
}

func decodePolicy(b []byte) (keepalive.Config, Mode, bool) {
	flags := binary.NativeEndian.Uint32(b[polFlags:])
	var c keepalive.Config
	if flags&flagIdle != 0 {
		c.Idle = time.Duration(binary.NativeEndian.Uint32(b[polIdle:])) * time.Second
	}
	if flags&flagIntvl != 0 {
		c.Interval = time.Duration(binary.NativeEndian.Uint32(b[polIntvl:])) * time.Second
	}
	if flags&flagCnt != 0 {
		c.Count = int(binary.NativeEndian.Uint32(b[polCnt:]))
	}
	if flags&flagUT != 0 {
		c.UserTimeout = time.Duration(binary.NativeEndian.Uint32(b[polUT:])) * time.Millisecond
	}
	m := ModeDefault
	if flags&flagEnforce != 0 {
		m = ModeEnforce
	}
	return c, m, flags&flagListen != 0
}

// policyKey encodes the LPM key of a rule of cgroup id.
func policyKey(id uint64, m Match) []byte {
	k := make([]byte, keySize)
	binary.NativeEndian.PutUint64(k[4:], id)
	bits := 64
	switch {
	case m.RemotePort != 0:
		binary.NativeEndian.PutUint16(k[12:], kindRemote)
		binary.NativeEndian.PutUint16(k[14:], m.RemotePort)
		bits = keyFixedBits
	case m.LocalPort != 0:
		binary.NativeEndian.PutUint16(k[12:], kindLocal)
		binary.NativeEndian.PutUint16(k[14:], m.LocalPort)
		bits = keyFixedBits
	}
	if m.Peer.IsValid() {
		p := m.Peer.Masked()
		a := p.Addr().As16() // IPv4 becomes ::ffff:a.b.c.d
		copy(k[16:], a[:])
		pb := p.Bits()
		if p.Addr().Is4() {
			pb += 96
		}
		bits = keyFixedBits + pb
	}
	binary.NativeEndian.PutUint32(k[0:], uint32(bits))
	return k
}

func decodeKey(k []byte) (uint64, Match) {
	id := binary.NativeEndian.Uint64(k[4:])
	bits := int(binary.NativeEndian.Uint32(k[0:]))
	var m Match
	port := binary.NativeEndian.Uint16(k[14:])
	switch binary.NativeEndian.Uint16(k[12:]) {
	case kindRemote:
		m.RemotePort = port
	case kindLocal:
		m.LocalPort = port
	}
	if bits > keyFixedBits || (bits > 64 && m.LocalPort == 0 && m.RemotePort == 0) {
		a := netip.AddrFrom16([16]byte(k[16:32]))
		pb := bits - keyFixedBits
		if a.Is4In6() && pb >= 96 {
			a = a.Unmap()
			pb -= 96
		}
		m.Peer = netip.PrefixFrom(a, pb)
	}
	return id, m
}

type meta struct {
	path  string
	owner string
	since time.Time
}

func encodeMeta(m meta) []byte {
	b := make([]byte, metaSize)
	copy(b[:metaPathLen-1], m.path)
	copy(b[metaPathLen:metaPathLen+metaOwnerLen-1], m.owner)
	binary.NativeEndian.PutUint64(b[metaPathLen+metaOwnerLen:], uint64(m.since.Unix()))
	return b
}

func decodeMeta(b []byte) meta {
	cstr := func(b []byte) string {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return string(b)
	}
	return meta{path: cstr(b[:metaPathLen]), owner: cstr(b[metaPathLen : metaPathLen+metaOwnerLen]),
		since: time.Unix(int64(binary.NativeEndian.Uint64(b[metaPathLen+metaOwnerLen:])), 0)}
}

func (h *Host) allMeta() (map[uint64]meta, error) {
	out := map[uint64]meta{}
	if h.empty {
		return out, nil
	}
	var k uint64
	v := make([]byte, metaSize)
	it := h.meta.Iterate()
	for it.Next(&k, &v) {
		out[k] = decodeMeta(v)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read attachments: %w", err)
	}
	return out, nil
}

// ResolveCgroup returns the path relative to the cgroup2 mount and the id of a cgroup given
// relative to the mount or absolute.
func (h *Host) ResolveCgroup(p string) (rel string, id uint64, err error) {
	cg, err := resolveCgroup(h.cgMount, p)
	return cg.Rel, cg.ID, err
}

func checkRule(r Rule) error {
	if err := r.Match.Check(); err != nil {
		return err
	}
	if r.Mode != ModeDefault && r.Mode != ModeEnforce {
		return fmt.Errorf("unknown mode %q (allowed: default, enforce)", r.Mode)
	}
	if r.Config == (keepalive.Config{}) {
		return fmt.Errorf("empty policy: set at least one of idle, interval, count, user timeout")
	}
	if _, err := r.Config.Validate("linux"); err != nil {
		return fmt.Errorf("invalid policy: %w", err)
	}
	if r.Config.UserTimeout > 0 && r.Config.UserTimeout.Milliseconds() > 1<<31-1 {
		return fmt.Errorf("invalid user timeout %s (allowed: 1ms..%dms)", r.Config.UserTimeout, 1<<31-1)
	}
	return nil
}

// Attach adds (or replaces) one rule of a cgroup's policy and makes sure the programs are
// linked so that it applies to every new connection of the cgroup. It returns the
// attachment as List would show it. Nothing is changed when the request is invalid.
func (h *Host) Attach(req AttachRequest) (Attachment, error) {
	if h.readOnly {
		return Attachment{}, fmt.Errorf("enforce: host opened read-only")
	}
	if err := checkRule(req.Rule); err != nil {
		return Attachment{}, err
	}
	owner := req.Owner
	if owner == "" {
		owner = "cli"
	}
	if len(owner) >= metaOwnerLen {
		return Attachment{}, fmt.Errorf("owner name %q too long (at most %d bytes)", owner, metaOwnerLen-1)
	}
	cg, err := resolveCgroup(h.cgMount, req.Cgroup)
	if err != nil {
		return Attachment{}, err
	}
	if len(cg.Rel) >= metaPathLen {
		return Attachment{}, fmt.Errorf("cgroup path %s too long (at most %d bytes)", cg.Rel, metaPathLen-1)
	}
	metas, err := h.allMeta()
	if err != nil {
		return Attachment{}, err
	}
	old, existed := metas[cg.ID]
	if existed && old.owner != owner && !req.Takeover {
		return Attachment{}, fmt.Errorf("cgroup %s: %w %q (changing it must be asked for explicitly)", cg.Rel, ErrOtherOwner, old.owner)
	}
	key := policyKey(cg.ID, req.Rule.Match)
	prev := make([]byte, policyVSize)
	hadRule := h.policy.Lookup(key, &prev) == nil
	if !existed {
		zero := make([][]byte, ebpfPossibleCPUs())
		for i := range zero {
			zero[i] = make([]byte, counterSize)
		}
		if err := h.counters.Put(cg.ID, zero); err != nil {
			return Attachment{}, fmt.Errorf("create counters: %w", err)
		}
		m := meta{path: cg.Rel, owner: owner, since: time.Now()}
		if err := h.meta.Put(cg.ID, encodeMeta(m)); err != nil {
			h.counters.Delete(cg.ID)
			return Attachment{}, fmt.Errorf("record attachment: %w", err)
		}
		metas[cg.ID] = m
	}
	rollback := func() {
		if hadRule {
			h.policy.Put(key, prev)
		} else {
			h.policy.Delete(key)
		}
		if !existed {
			h.meta.Delete(cg.ID)
			h.counters.Delete(cg.ID)
		}
	}
	if err := h.policy.Put(key, policyValue(req.Rule)); err != nil {
		rollback()
		return Attachment{}, fmt.Errorf("store policy: %w", err)
	}
	if err := h.reconcile(cg.Rel, metas); err != nil {
		rollback()
		if !existed {
			h.detachProgs(cg.ID, cg.Abs)
			delete(metas, cg.ID)
		}
		return Attachment{}, err
	}
	return h.attachment(cg.ID, metas)
}

// Detach removes a cgroup's policy: every rule when match is nil, otherwise the one rule.
// Removing the last rule removes the attachment, its counters and its links. owner must be
// the attachment's owner unless force is set.
func (h *Host) Detach(cgroupPath string, match *Match, owner string, force bool) error {
	if h.readOnly {
		return fmt.Errorf("enforce: host opened read-only")
	}
	if owner == "" {
		owner = "cli"
	}
	metas, err := h.allMeta()
	if err != nil {
		return err
	}
	id, m, err := h.find(cgroupPath, metas)
	if err != nil {
		return err
	}
	if m.owner != owner && !force {
		return fmt.Errorf("cgroup %s: %w %q (detach it explicitly with force)", m.path, ErrOtherOwner, m.owner)
	}
	rules, err := h.rules(id)
	if err != nil {
		return err
	}
	remaining := 0
	found := false
	for _, r := range rules {
		if match == nil || r.Match == *match {
			if err := h.policy.Delete(policyKey(id, r.Match)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete rule %s: %w", r.Match, err)
			}
			found = true
			continue
		}
		remaining++
	}
	if match != nil && !found {
		return fmt.Errorf("cgroup %s has no rule for %s", m.path, *match)
	}
	if remaining > 0 {
		// The mode of what is left decides whether the setsockopt program stays.
		return h.reconcile(m.path, metas)
	}
	delete(metas, id)
	h.detachProgs(id, filepath.Join(h.cgMount, m.path))
	// Attachments below lose this cgroup from their chain.
	if err := h.reconcile(m.path, metas); err != nil {
		return err
	}
	h.meta.Delete(id)
	h.counters.Delete(id)
	if len(metas) == 0 {
		h.tidy()
	}
	return nil
}

// tidy removes the map pins and the pin directory once nothing is attached, so a host where
// every policy was detached keeps nothing in its BPF filesystem. The open handles stay
// usable (the maps live until closed).
func (h *Host) tidy() {
	for _, s := range mapSpecs() {
		os.Remove(filepath.Join(h.pinDir, s.Name))
	}
	os.Remove(h.pinDir) // only when empty
}

// find locates an attachment by cgroup path (relative, absolute) even when the cgroup is gone.
func (h *Host) find(p string, metas map[uint64]meta) (uint64, meta, error) {
	if cg, err := resolveCgroup(h.cgMount, p); err == nil {
		if m, ok := metas[cg.ID]; ok {
			return cg.ID, m, nil
		}
		return 0, meta{}, fmt.Errorf("cgroup %s: %w", cg.Rel, ErrNotAttached)
	}
	rel := p
	if r, err := filepath.Rel(h.cgMount, p); err == nil && !strings.HasPrefix(r, "..") {
		rel = "/" + r
	}
	rel = filepath.Clean("/" + strings.TrimPrefix(rel, "/"))
	for id, m := range metas {
		if m.path == rel {
			return id, m, nil
		}
	}
	return 0, meta{}, fmt.Errorf("cgroup %s: %w", rel, ErrNotAttached)
}

func progPins(dir string, id uint64) [2]string {
	return [2]string{filepath.Join(dir, fmt.Sprintf("prog_%d_sockops", id)), filepath.Join(dir, fmt.Sprintf("prog_%d_setsockopt", id))}
}

var attachTypes = [2]ebpf.AttachType{ebpf.AttachCGroupSockOps, ebpf.AttachCGroupSetsockopt}

// coveredBy returns the attached strict ancestor nearest to path, "" when none.
func coveredBy(path string, metas map[uint64]meta) string {
	best := ""
	for _, m := range metas {
		if ancestorOf(m.path, path) && len(m.path) > len(best) {
			best = m.path
		}
	}
	return best
}

// chain returns id followed by the ids of its attached ancestors, nearest first.
func (h *Host) chain(id uint64, metas map[uint64]meta) []uint64 {
	type anc struct {
		id  uint64
		len int
	}
	var as []anc
	for aid, m := range metas {
		if ancestorOf(m.path, metas[id].path) && cgroupID(filepath.Join(h.cgMount, m.path)) == aid {
			as = append(as, anc{aid, len(m.path)})
		}
	}
	sort.Slice(as, func(i, j int) bool { return as[i].len > as[j].len })
	out := []uint64{id}
	for _, a := range as {
		out = append(out, a.id)
	}
	return out
}

// reconcile (re)attaches the programs of the attachment at path and of every attachment
// below it, so that each program knows its cgroup's attached ancestors. Programs are
// attached with BPF_F_ALLOW_OVERRIDE: for a socket only the program of the nearest attached
// cgroup runs, and it looks up the policies of that cgroup and its attached ancestors, most
// specific first. Re-attaching replaces the previous program atomically: a connection never
// sees no program.
func (h *Host) reconcile(path string, metas map[uint64]meta) error {
	for id, m := range metas {
		if m.path != path && !ancestorOf(path, m.path) {
			continue
		}
		abs := filepath.Join(h.cgMount, m.path)
		if cgroupID(abs) != id {
			continue // gone
		}
		// The cgroup/setsockopt program only where a cgroup of the chain has an enforce-mode
		// rule: default mode costs the application's setsockopt calls nothing. (A cgroup below
		// an enforcing one always gets its own, so the parent's never speaks for it.)
		enforcing := false
		var chain []chainLink
		for _, cid := range h.chain(id, metas) {
			rs, err := h.rules(cid)
			if err != nil {
				return err
			}
			for _, r := range rs {
				enforcing = enforcing || r.Mode == ModeEnforce
			}
			chain = append(chain, chainOf(cid, rs))
		}
		if err := h.attachProgs(id, abs, chain, enforcing); err != nil {
			return fmt.Errorf("attach programs to %s: %w", m.path, err)
		}
	}
	return nil
}

func (h *Host) attachProgs(id uint64, abs string, chain []chainLink, sockopt bool) error {
	specs := [2]*ebpf.ProgramSpec{
		{Name: "ka_sockops", Type: ebpf.SockOps, License: "GPL", Instructions: sockOpsProgram(h.policy, h.counters, chain)},
		{Name: "ka_setsockopt", Type: ebpf.CGroupSockopt, AttachType: ebpf.AttachCGroupSetsockopt, License: "GPL",
			Instructions: setsockoptProgram(h.policy, h.counters, chain)},
	}
	if !sockopt {
		specs[1] = nil
	}
	var progs [2]*ebpf.Program
	defer func() {
		for _, p := range progs {
			if p != nil {
				p.Close()
			}
		}
	}()
	for i, spec := range specs {
		if spec == nil {
			continue
		}
		prog, err := ebpf.NewProgram(spec)
		if err != nil {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				return fmt.Errorf("the kernel's verifier refused the %s program: %+v", spec.Name, ve)
			}
			return fmt.Errorf("load %s program: %w", spec.Name, err)
		}
		progs[i] = prog
	}
	cg, err := os.Open(abs)
	if err != nil {
		return err
	}
	defer cg.Close()
	pins := progPins(h.pinDir, id)
	for i, prog := range progs {
		if prog == nil {
			h.detachProg(cg, 1, pins[1])
			continue
		}
		err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: int(cg.Fd()), Program: prog, Attach: attachTypes[i],
			Flags: unix.BPF_F_ALLOW_OVERRIDE})
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w (another program is attached to this cgroup or an ancestor without BPF_F_ALLOW_OVERRIDE, or CAP_NET_ADMIN/CAP_BPF is missing)", err)
			}
			if i == 1 {
				// Keep the pair consistent: take the sock_ops program off again.
				h.detachProgs(id, abs)
			}
			return fmt.Errorf("attach %s: %w", specs[i].Name, err)
		}
		os.Remove(pins[i])
		if err := prog.Pin(pins[i]); err != nil {
			return fmt.Errorf("pin %s: %w", pins[i], err)
		}
	}
	return nil
}

// detachProg takes the pinned program of attach type attachTypes[i] off cg (nil: the cgroup
// is gone) and removes its pin.
func (h *Host) detachProg(cg *os.File, i int, pin string) {
	prog, err := ebpf.LoadPinnedProgram(pin, nil)
	if err != nil {
		return
	}
	if cg != nil {
		link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(cg.Fd()), Program: prog, Attach: attachTypes[i]})
	}
	prog.Unpin()
	prog.Close()
}

// detachProgs takes this attachment's programs off its cgroup and removes their pins.
func (h *Host) detachProgs(id uint64, abs string) {
	cg, err := os.Open(abs)
	if err == nil && cgroupID(abs) != id {
		cg.Close()
		err = os.ErrNotExist
	}
	if err != nil {
		cg = nil
	}
	for i, pin := range progPins(h.pinDir, id) {
		h.detachProg(cg, i, pin)
	}
	if cg != nil {
		cg.Close()
	}
}

// rules returns the rules of cgroup id.
func (h *Host) rules(id uint64) ([]Rule, error) {
	var out []Rule
	if h.empty {
		return out, nil
	}
	k := make([]byte, keySize)
	v := make([]byte, policyVSize)
	it := h.policy.Iterate()
	for it.Next(&k, &v) {
		kid, m := decodeKey(k)
		if kid != id {
			continue
		}
		c, mode, listeners := decodePolicy(v)
		out = append(out, Rule{Match: m, Config: c, Mode: mode, Listeners: listeners})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i].Match) < rank(out[j].Match) })
	return out, nil
}

func (h *Host) counts(id uint64) (Counters, error) {
	var c Counters
	if h.empty {
		return c, nil
	}
	var per [][]byte
	if err := h.counters.Lookup(id, &per); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return c, nil
		}
		return c, fmt.Errorf("read counters: %w", err)
	}
	var fail [numOpts]uint64
	var errno [numOpts]uint64
	for _, b := range per {
		u := func(off int) uint64 { return binary.NativeEndian.Uint64(b[off:]) }
		c.Seen += u(cntSeen)
		c.Set += u(cntSet)
		c.Rewritten += u(cntRewritten)
		for i := range numOpts {
			fail[i] += u(cntFail + 8*i)
			if e := u(cntErrno + 8*i); e != 0 {
				errno[i] = e
			}
		}
	}
	for i := range numOpts {
		if fail[i] > 0 {
			c.Failures = append(c.Failures, OptionFailure{Option: optionNames[i], Count: fail[i], Errno: int(errno[i]),
				Error: syscall.Errno(errno[i]).Error()})
		}
	}
	return c, nil
}

func (h *Host) attachment(id uint64, metas map[uint64]meta) (Attachment, error) {
	m := metas[id]
	a := Attachment{Cgroup: m.path, CgroupID: id, Owner: m.owner, Since: m.since}
	a.Gone = cgroupID(filepath.Join(h.cgMount, m.path)) != id
	a.CoveredBy = coveredBy(m.path, metas)
	for _, p := range progPins(h.pinDir, id) {
		if _, err := os.Stat(p); err == nil {
			a.Pins = append(a.Pins, p)
		}
	}
	a.Linked = !a.Gone && slices.Contains(a.Pins, progPins(h.pinDir, id)[0])
	a.Rewriting = !a.Gone && slices.Contains(a.Pins, progPins(h.pinDir, id)[1])
	var err error
	if a.Rules, err = h.rules(id); err != nil {
		return a, err
	}
	if a.Counters, err = h.counts(id); err != nil {
		return a, err
	}
	return a, nil
}

// List returns every attachment, sorted by cgroup path.
func (h *Host) List() ([]Attachment, error) {
	metas, err := h.allMeta()
	if err != nil {
		return nil, err
	}
	out := make([]Attachment, 0, len(metas))
	for id := range metas {
		a, err := h.attachment(id, metas)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Attachment) int { return strings.Compare(a.Cgroup, b.Cgroup) })
	return out, nil
}

func ebpfPossibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil || n < 1 {
		return runtime.NumCPU()
	}
	return n
}
