package agent

import (
	"net/netip"
	"time"

	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/cgroupns"
)

// The agent remembers every socket between sweeps. At 198 000 sockets the
// memory and the garbage collector's work are dominated by this table, so an
// entry holds no pointer and no string: addresses are packed, and what many
// sockets share (their namespace, their owning process, their assessment, the
// rule they match) is an index into a small table of the agent. A slab of such
// entries and a map from cookie to slot are never scanned by the collector.

// addr is a netip.AddrPort without pointers (sock_diag addresses carry no zone).
type addr struct {
	ip   [16]byte
	port uint16
	is4  bool
}

func packAddr(ap netip.AddrPort) addr {
	a := ap.Addr()
	return addr{ip: a.As16(), port: ap.Port(), is4: a.Is4()}
}

func (p addr) unpack() netip.AddrPort {
	if p.is4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(p.ip[12:])), p.port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(p.ip), p.port)
}

// entry flags.
const (
	flagMoreOwners = 1 << iota // further owners in Agent.moreOwners
	flagSettings               // settings the agent gave it, in Agent.settings
)

// entry is what the agent remembers of one socket between sweeps (120 bytes).
type entry struct {
	cookie    uint64
	firstSeen int64 // unix nanoseconds
	probedAt  int64 // unix nanoseconds, 0 never
	local     addr
	remote    addr
	inode     uint32
	ns        uint32 // slot in Agent.nss
	proc      uint32 // slot in Agent.procs of the first owner (0: owners not known)
	fd        int32  // the first owner's descriptor
	idleMS    uint32 // time since the last segment received (only with tcp_info)
	lastSweep uint32 // 0 marks a free slot
	ruleGen   uint32 // the policy generation rule was matched for
	assess    uint32 // index in Agent.assessments
	fixed     uint32 // fix key (see fixKeyID) of the retrofit done, 0 none
	retryAt   uint32 // sweep from which a failed retrofit may be tried again
	next      uint32 // slot + 1 of the socket the last dump listed after this one
	rule      int16  // index in the policy's rules, -1 none
	fails     uint8  // failed retrofits in a row
	ownerTry  uint8  // owner passes that did not find the owners (see maxOwnerTries)
	family    uint8
	state     host.State
	flags     uint8
}

func (e *entry) idle() time.Duration { return time.Duration(e.idleMS) * time.Millisecond }

// table is the slab of entries and its index by cookie. The slab grows by
// fixed chunks, so growing never copies it and a pointer to an entry stays
// valid until the entry is removed.
type table struct {
	idx    map[uint64]uint32
	chunks []*[chunkLen]entry
	n      uint32 // slots handed out (live or free)
	free   []uint32
}

const (
	chunkBits = 12
	chunkLen  = 1 << chunkBits // 4096 entries, 480 KiB
)

func newTable() table { return table{idx: map[uint64]uint32{}} }

func (t *table) live() int { return len(t.idx) }

func (t *table) at(i uint32) *entry { return &t.chunks[i>>chunkBits][i&(chunkLen-1)] }

// find returns the slot of cookie. A dump lists sockets in the same order from
// one sweep to the next, so the socket after prev (slot + 1, 0: none) is tried
// before the index: at 198 000 sockets the map lookups were a fifth of a sweep.
func (t *table) find(cookie uint64, prev uint32) (uint32, bool) {
	if prev != 0 {
		if nx := t.at(prev - 1).next; nx != 0 && nx <= t.n {
			if e := t.at(nx - 1); e.cookie == cookie && e.lastSweep != 0 {
				return nx - 1, true
			}
		}
	}
	i, ok := t.idx[cookie]
	return i, ok
}

// add stores e and returns its slot.
func (t *table) add(e entry) uint32 {
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		if int(t.n) == len(t.chunks)*chunkLen {
			t.chunks = append(t.chunks, new([chunkLen]entry))
		}
		i = t.n
		t.n++
	}
	*t.at(i) = e
	t.idx[e.cookie] = i
	return i
}

func (t *table) remove(i uint32) {
	e := t.at(i)
	delete(t.idx, e.cookie)
	*e = entry{}
	t.free = append(t.free, i)
}

// compact rebuilds the slab and the index when most slots are free, so that a
// burst of connections does not hold its memory for ever (Go maps never
// shrink). Slots change: call it only where no slot number is held.
func (t *table) compact() {
	if t.n < 2*chunkLen || t.live() > int(t.n)/4 {
		return
	}
	old := *t
	*t = table{idx: make(map[uint64]uint32, old.live())}
	for i := range old.n {
		if e := old.at(i); e.lastSweep != 0 {
			t.add(*e)
		}
	}
}

// nsInfo is what the agent knows of one network namespace.
type nsInfo struct {
	key         string      // nsKey
	path        string      // host.Socket.NetNS: how to enter it
	ns          *host.NetNS // from the last sweep's listing (nil: the agent's own)
	name, label string
	sys         sysctlRef
	sysRead     uint64 // sweep the sysctls were read
	seen        uint64 // last sweep that walked it
}

// procInfo is what the agent knows of one owning process.
type procInfo struct {
	pid    int32
	comm   string
	cgroup string
	ctr    *host.Container
}

// ownerRef is one further owner of a socket (see flagMoreOwners).
type ownerRef struct {
	proc uint32
	fd   int32
}

// nsSlot returns the slot of the namespace of s, creating or refreshing it.
func (a *Agent) nsSlot(s *host.Socket, n uint64) uint32 {
	k := nsKey(s.Namespace)
	i, ok := a.nsIdx[k]
	if !ok {
		if m := len(a.nsFree); m > 0 {
			i = a.nsFree[m-1]
			a.nsFree = a.nsFree[:m-1]
		} else {
			i = uint32(len(a.nss))
			a.nss = append(a.nss, nsInfo{})
		}
		a.nss[i] = nsInfo{key: k}
		a.nsIdx[k] = i
	}
	ni := &a.nss[i]
	// The kernel reuses a deleted namespace's inode at once: a known inode reached
	// through another path is likely another namespace, so what was read through
	// the old one (sysctls, the prober) is not trusted.
	moved := ok && ni.path != s.NetNS
	if p := a.probers[k]; moved && p != nil {
		_ = p.close()
		delete(a.probers, k)
	}
	ni.path, ni.ns, ni.seen = s.NetNS, s.Namespace, n
	ni.name, ni.label = s.NetNS, ""
	if s.Namespace != nil {
		ni.name, ni.label = s.Namespace.Name, s.Namespace.Label()
	}
	if !ok || moved || n-ni.sysRead > sysctlRefresh {
		sys, err := host.ReadSysctl(s.NetNS)
		if err != nil {
			a.warn("sysctl")(err)
			sys = host.Sysctl{}
		}
		a.sysIdx++
		ni.sys, ni.sysRead = sysctlRef{sys, a.sysIdx}, n
	}
	return i
}

// sysctlRefresh is how many sweeps a namespace's sysctls are kept before they are read again.
const sysctlRefresh = 40

// dropStaleNamespaces frees the slots of namespaces the sweep did not walk
// (their sockets are gone from the table in the same sweep).
func (a *Agent) dropStaleNamespaces(n uint64) {
	for i := range a.nss {
		ni := &a.nss[i]
		if ni.seen != 0 && ni.seen != n {
			delete(a.nsIdx, ni.key)
			*ni = nsInfo{}
			a.nsFree = append(a.nsFree, uint32(i))
		}
	}
}

// ownerPass is the state of one owner pass: the processes met so far and the
// reader of their cgroups (nil when it could not be opened).
type ownerPass struct {
	slots   map[int]uint32
	cgroups *cgroupns.Reader
}

// procSlot returns the slot of a process seen in this owner pass; a PID reused
// by another process gets a new slot.
func (a *Agent) procSlot(pid int, comm string, pass *ownerPass) uint32 {
	if i, ok := pass.slots[pid]; ok {
		return i
	}
	cg, ctr := a.procCgroup(pass.cgroups, pid)
	if i, ok := a.procIdx[int32(pid)]; ok {
		p := &a.procs[i]
		if p.comm == comm && p.cgroup == cg {
			pass.slots[pid] = i
			return i
		}
	}
	i := uint32(len(a.procs))
	a.procs = append(a.procs, procInfo{pid: int32(pid), comm: comm, cgroup: cg, ctr: ctr})
	a.procIdx[int32(pid)] = i
	pass.slots[pid] = i
	return i
}

// compactProcs drops the processes no socket refers to any more, when they are
// most of the table.
func (a *Agent) compactProcs() {
	if len(a.procs) < 1024 {
		return
	}
	used := make([]uint32, len(a.procs)) // old slot → new slot + 1
	live := 0
	mark := func(i uint32) {
		if i != 0 && used[i] == 0 {
			live++
			used[i] = 1
		}
	}
	for i := range a.cache.n {
		if e := a.cache.at(i); e.lastSweep != 0 {
			mark(e.proc)
		}
	}
	for _, more := range a.moreOwners {
		for _, o := range more {
			mark(o.proc)
		}
	}
	if live*2 > len(a.procs) {
		return
	}
	procs := make([]procInfo, 1, live+1)
	for i := range used {
		if used[i] != 0 {
			used[i] = uint32(len(procs))
			procs = append(procs, a.procs[i])
		}
	}
	for i := range a.cache.n {
		if e := a.cache.at(i); e.lastSweep != 0 && e.proc != 0 {
			e.proc = used[e.proc]
		}
	}
	for _, more := range a.moreOwners {
		for j := range more {
			more[j].proc = used[more[j].proc]
		}
	}
	clear(a.procIdx)
	for i := 1; i < len(procs); i++ {
		a.procIdx[procs[i].pid] = uint32(i)
	}
	a.procs = procs
}

// owners calls fn for each owner of e (first the first).
func (a *Agent) owners(e *entry, fn func(p *procInfo, fd int32)) {
	if e.proc == 0 {
		return
	}
	fn(&a.procs[e.proc], e.fd)
	if e.flags&flagMoreOwners != 0 {
		for _, o := range a.moreOwners[e.cookie] {
			fn(&a.procs[o.proc], o.fd)
		}
	}
}

// forgetOwners drops what is known of e's owners, so that the next owner pass
// looks for them again.
func (a *Agent) forgetOwners(e *entry) {
	if e.flags&flagMoreOwners != 0 {
		delete(a.moreOwners, e.cookie)
	}
	e.flags &^= flagMoreOwners
	e.proc, e.fd, e.ownerTry = 0, 0, 0
}

// connOf fills c (reusing its slices) with what the policy matches on.
func (a *Agent) connOf(e *entry, c *Conn) {
	ns := &a.nss[e.ns]
	*c = Conn{NetNS: ns.name, NetNSLabel: ns.label, Local: e.local.unpack(), Remote: e.remote.unpack(),
		Comms: c.Comms[:0], Cgroups: c.Cgroups[:0], Containers: c.Containers[:0]}
	a.owners(e, func(p *procInfo, _ int32) {
		c.Comms = appendNew(c.Comms, p.comm)
		if p.cgroup != "" {
			c.Cgroups = appendNew(c.Cgroups, p.cgroup)
		}
		if p.ctr != nil {
			c.Containers = append(c.Containers, p.ctr)
		}
	})
}

// socketOf rebuilds the host.Socket that Retrofit, Lookup and Destroy need.
func (a *Agent) socketOf(e *entry) host.Socket {
	ns := &a.nss[e.ns]
	s := host.Socket{Family: int(e.family), Local: e.local.unpack(), Remote: e.remote.unpack(), State: e.state,
		Inode: e.inode, Cookie: e.cookie, NetNS: ns.path, Namespace: ns.ns}
	a.owners(e, func(p *procInfo, fd int32) {
		s.Owners = append(s.Owners, host.Owner{PID: int(p.pid), Comm: p.comm, FD: int(fd)})
	})
	return s
}

// dropEntry forgets the socket in slot i.
func (a *Agent) dropEntry(i uint32) {
	e := a.cache.at(i)
	if e.flags&flagSettings != 0 {
		delete(a.settings, e.cookie)
	}
	if e.flags&flagMoreOwners != 0 {
		delete(a.moreOwners, e.cookie)
	}
	a.cache.remove(i)
}
