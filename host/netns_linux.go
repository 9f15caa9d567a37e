//go:build linux

package host

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/keepalive-dev/keepalive/internal/cgroupns"
	"github.com/keepalive-dev/keepalive/internal/mountinfo"
	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` keeps named namespaces.
const netnsDir = "/var/run/netns"

// inNetNS runs fn on a locked OS thread switched into ns (nil or current: run fn directly).
// A namespace known by inode is checked to be the same one when it is entered through a
// path that could have been reused (a process's /proc entry). Sockets created by fn stay in
// that namespace after the thread switches back.
func inNetNS(ns *NetNS, fn func() error) error {
	ref := ns.ref()
	if ref == "" {
		return fn()
	}
	if !strings.Contains(ref, "/") && (ref == "." || ref == ".." || strings.ContainsRune(ref, 0)) {
		return fmt.Errorf("host: invalid network namespace name %q (a name from 'ip netns list')", ref)
	}
	h, err := netnsx.OpenInode(ref, ns.Inode)
	if err != nil {
		return fmt.Errorf("host: %w", err)
	}
	defer h.Close()
	ran := false
	err = netnsx.Do(h, func() error { ran = true; return fn() })
	if err != nil && !ran {
		return fmt.Errorf("host: network namespace %s: %w", ns.Label(), err)
	}
	return err
}

// nsOfSocket is the namespace a listed socket lives in: its Namespace, else the NetNS name
// or path (a Socket built by hand).
func nsOfSocket(s *Socket) *NetNS {
	if s.Namespace != nil {
		return s.Namespace
	}
	if s.NetNS == "" {
		return nil
	}
	return &NetNS{Name: s.NetNS}
}

// NetNSNames lists the named network namespaces (/var/run/netns), sorted, leaving out any that
// is the current namespace and any entry that is not a mounted namespace (a stale file).
func NetNSNames() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("host: list network namespaces: %w", err)
	}
	self, _ := currentNetNSInode()
	var names []string
	for _, e := range ents {
		ino, err := nsfsInode(filepath.Join(netnsDir, e.Name()))
		if err != nil || ino == self {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// nsfsInode returns the inode of the namespace mounted at path, or an error when path is not
// a mounted namespace (a stale file left by an interrupted 'ip netns add', or one hidden when
// /var/run/netns was mounted over).
func nsfsInode(path string) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, err
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return 0, fmt.Errorf("%s is not a mounted network namespace (a stale entry; 'ip netns del %s' or 'keepalive lab clean' for the lab's own): %w",
			path, filepath.Base(path), ErrStaleNetNS)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// currentNetNSInode is the inode of the calling thread's network namespace.
func currentNetNSInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("host: read the current network namespace: %w", err)
	}
	return st.Ino, nil
}

// ResolveNetNS returns the namespace called name in /var/run/netns, or mounted or linked at a
// path (anything with a slash: /var/run/docker/netns/ID, /proc/PID/ns/net).
func ResolveNetNS(name string) (NetNS, error) {
	if name == "" {
		ino, err := currentNetNSInode()
		return NetNS{Inode: ino, Current: true}, err
	}
	path := name
	n := NetNS{Path: name}
	if !strings.Contains(name, "/") {
		if name == "." || name == ".." || strings.ContainsRune(name, 0) {
			return NetNS{}, fmt.Errorf("host: invalid network namespace name %q (a name from 'ip netns list')", name)
		}
		path = filepath.Join(netnsDir, name)
		n = NetNS{Name: name, Path: path}
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return NetNS{}, fmt.Errorf("host: network namespace %q not found (list them with 'ip netns list'): %w", name, err)
		}
		return NetNS{}, fmt.Errorf("host: network namespace %q: %w", name, err)
	}
	if strings.HasPrefix(path, "/proc/") {
		n.Inode = st.Ino
		// /proc/PID/ns/net or /proc/PID/task/TID/ns/net: label it by its process.
		if f := strings.Split(path, "/"); len(f) > 2 {
			if pid, err := strconv.Atoi(f[2]); err == nil && pid > 0 {
				n.PID, n.Comm = pid, readComm(pid)
				n.Container, _ = ContainerOf(pid)
			}
		}
	} else {
		ino, err := nsfsInode(path)
		if err != nil {
			return NetNS{}, fmt.Errorf("host: network namespace %q: %w", name, err)
		}
		n.Inode = ino
	}
	if cur, err := currentNetNSInode(); err == nil && cur == n.Inode {
		n.Current = true
	}
	return n, nil
}

// NamespaceOf returns the network namespace process pid lives in (its main thread's).
func NamespaceOf(pid int) (NetNS, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/ns/net"
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return NetNS{}, fmt.Errorf("host: no process with pid %d: %w", pid, ErrGone)
		}
		return NetNS{}, fmt.Errorf("host: network namespace of pid %d: %w", pid, err)
	}
	n := NetNS{Inode: st.Ino, Path: p, PID: pid, Comm: readComm(pid)}
	if cur, err := currentNetNSInode(); err == nil && cur == n.Inode {
		return NetNS{Inode: n.Inode, Current: true}, nil
	}
	if c, _ := ContainerOf(pid); c != nil {
		n.Container = c
	}
	return n, nil
}

// ContainerOf recognises the container process pid runs in from /proc/PID/cgroup, read in
// the host's cgroup namespace (internal/cgroupns) so that the path is the host's also when the
// caller runs in a private one (a pod); nil (and no error) when it runs in none.
func ContainerOf(pid int) (*Container, error) {
	r, err := cgroupns.NewReader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return containerOf(r, pid)
}

// containerOf is ContainerOf with the caller's Reader.
func containerOf(r *cgroupns.Reader, pid int) (*Container, error) {
	b, err := r.Read(pid)
	if err != nil {
		return nil, err
	}
	return ParseCgroup(string(b)), nil
}

// Namespaces lists every network namespace of the host, each once (by inode): the current one
// first, then the ones mounted anywhere (/var/run/netns, /var/run/docker/netns, ...) in mount
// order, then those held only by a process or one of its threads. Each is labelled with its
// name, the container of its processes (from /proc/PID/cgroup) and its first process. Entries
// that cannot be used (a stale /var/run/netns file) are passed to warn, when not nil, and left
// out.
func Namespaces(warn func(error)) ([]NetNS, error) {
	cur, err := currentNetNSInode()
	if err != nil {
		return nil, err
	}
	out := []NetNS{{Inode: cur, Current: true}}
	byIno := map[uint64]int{cur: 0}
	mounts, err := nsfsMounts()
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		n := NetNS{Inode: m.inode, Path: m.path}
		if dir := filepath.Dir(m.path); dir == netnsDir || dir == "/run/netns" {
			n.Name = filepath.Base(m.path)
			n.Path = filepath.Join(netnsDir, n.Name)
		}
		if i, ok := byIno[m.inode]; ok {
			if out[i].Name == "" && n.Name != "" && !out[i].Current {
				out[i].Name, out[i].Path = n.Name, n.Path // prefer the ip-netns name
			}
			continue
		}
		byIno[m.inode] = len(out)
		out = append(out, n)
	}
	// /var/run/netns entries that are not mounts: symbolic links to a namespace (named after
	// all), or stale files.
	if ents, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range ents {
			ino, err := nsfsInode(filepath.Join(netnsDir, e.Name()))
			if err != nil {
				if warn != nil {
					warn(fmt.Errorf("host: skipping network namespace %q: %w", e.Name(), err))
				}
				continue
			}
			if i, ok := byIno[ino]; ok && out[i].Name == "" && !out[i].Current {
				out[i].Name = e.Name()
			}
		}
	}
	pids, err := listPIDs()
	if err != nil {
		return nil, fmt.Errorf("host: list processes: %w", err)
	}
	cgroupTries := map[uint64]int{}
	var cgr *cgroupns.Reader // opened for the first label
	defer func() {
		if cgr != nil {
			cgr.Close()
		}
	}()
	link := make([]byte, 64)
	for _, pid := range pids {
		base := "/proc/" + strconv.Itoa(pid)
		tids := []string{""}
		if ts, err := os.ReadDir(base + "/task"); err == nil && len(ts) > 1 {
			tids = tids[:0]
			for _, t := range ts {
				tids = append(tids, t.Name())
			}
		}
		for _, tid := range tids {
			p := base + "/ns/net"
			if tid != "" {
				p = base + "/task/" + tid + "/ns/net"
			}
			ino, ok := readNSLink(p, link)
			if !ok {
				continue
			}
			i, seen := byIno[ino]
			if !seen {
				i = len(out)
				byIno[ino] = i
				out = append(out, NetNS{Inode: ino, Path: p})
			}
			n := &out[i]
			if n.Current {
				continue // the host's processes need no labels; other threads may be elsewhere
			}
			if n.PID == 0 {
				n.PID, n.Comm = pid, readComm(pid)
			}
			if n.Container == nil && cgroupTries[ino] < 8 {
				cgroupTries[ino]++
				if cgr == nil {
					if cgr, err = cgroupns.NewReader(); err != nil {
						return nil, fmt.Errorf("host: %w", err)
					}
				}
				if c, _ := containerOf(cgr, pid); c != nil {
					n.Container = c
				}
			}
		}
	}
	return out, nil
}

// readNSLink reads a /proc/.../ns/net link "net:[INODE]".
func readNSLink(p string, buf []byte) (uint64, bool) {
	n, err := unix.Readlink(p, buf)
	if err != nil {
		return 0, false
	}
	l := buf[:n]
	if !bytes.HasPrefix(l, []byte("net:[")) || l[len(l)-1] != ']' {
		return 0, false
	}
	ino, err := strconv.ParseUint(string(l[5:len(l)-1]), 10, 64)
	return ino, err == nil
}

type nsfsMount struct {
	path  string
	inode uint64
}

// nsfsMounts lists the mounts of network namespaces (fstype nsfs, root "net:[INODE]") from
// /proc/thread-self/mountinfo.
func nsfsMounts() ([]nsfsMount, error) {
	ms, err := mountinfo.Read("/proc/thread-self/mountinfo", "nsfs")
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	var out []nsfsMount
	for _, m := range ms {
		if n, ok := nsfsOf(m); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// parseNsfsMount parses one mountinfo line; ok is false unless it is a network namespace's
// nsfs mount.
func parseNsfsMount(line string) (nsfsMount, bool) {
	m, ok := mountinfo.Parse(line)
	if !ok {
		return nsfsMount{}, false
	}
	return nsfsOf(m)
}

// nsfsOf returns the namespace inode of an nsfs mount whose root is "net:[INODE]".
func nsfsOf(m mountinfo.Mount) (nsfsMount, bool) {
	if m.FSType != "nsfs" || !strings.HasPrefix(m.Root, "net:[") || !strings.HasSuffix(m.Root, "]") {
		return nsfsMount{}, false
	}
	ino, err := strconv.ParseUint(m.Root[5:len(m.Root)-1], 10, 64)
	if err != nil {
		return nsfsMount{}, false
	}
	return nsfsMount{path: m.Point, inode: ino}, true
}

// namespaces returns the namespaces opt asks for, and whether failing to read one of them is
// a warning (several were asked for) rather than an error.
func (opt *ListOptions) namespaces(procs []procInfo) ([]*NetNS, bool, error) {
	var nss []NetNS
	switch {
	case opt.AllNetNS:
		all, err := Namespaces(opt.Warn)
		if err != nil {
			return nil, false, err
		}
		nss = all
	case len(opt.Namespaces) > 0:
		nss = opt.Namespaces
	case opt.NetNS != "":
		n, err := ResolveNetNS(opt.NetNS)
		if err != nil {
			return nil, false, err
		}
		if n.Current {
			n = NetNS{Inode: n.Inode, Current: true}
		}
		nss = []NetNS{n}
	case procs != nil:
		// A process selector: look wherever the selected processes live.
		seen := map[uint64]bool{}
		for _, p := range procs {
			n, err := NamespaceOf(p.pid)
			if err != nil || seen[n.Inode] {
				continue
			}
			seen[n.Inode] = true
			nss = append(nss, n)
		}
		slices.SortStableFunc(nss, func(a, b NetNS) int {
			switch {
			case a.Current == b.Current:
				return 0
			case a.Current:
				return -1
			}
			return 1
		})
		if len(nss) == 0 {
			nss = []NetNS{{Current: true}}
		}
		out := make([]*NetNS, len(nss))
		for i := range nss {
			out[i] = &nss[i]
		}
		return out, len(out) > 1, nil
	default:
		return []*NetNS{{Current: true}}, false, nil
	}
	out := make([]*NetNS, len(nss))
	for i := range nss {
		out[i] = &nss[i]
	}
	return out, opt.AllNetNS || len(out) > 1, nil
}
