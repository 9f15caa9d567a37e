//go:build linux

package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ownerIndex maps socket inodes to the descriptors that hold them, built by one pass over
// /proc/*/fd. A socket held by several descriptors (several processes, or dup) is a chain.
type ownerIndex struct {
	// denied lists the processes whose /proc/PID/fd could not be read (EACCES/EPERM) and
	// missing those that did not exist; only filled for an explicit PID list.
	denied, missing []int
	procs           []procEntry
	first           map[uint32]int32 // inode → index into links
	links           []ownerLink
}

type procEntry struct {
	pid      int
	comm     string
	commRead bool
}

type ownerLink struct {
	proc int32
	fd   int32
	next int32 // -1 ends the chain
}

// procResult is what a worker found in one /proc/PID/fd: packed inode<<32 | fd.
type procResult struct {
	pid   int
	links []uint64
	err   error
}

// scanOwners reads /proc/*/fd (or only the given pids) in parallel and indexes every socket
// descriptor. Processes that vanish or cannot be read are skipped; with explicit (pids named
// by the user) they are listed in denied and missing.
func scanOwners(pids []int, explicit bool) (*ownerIndex, error) {
	if len(pids) == 0 {
		var err error
		pids, err = listPIDs()
		if err != nil {
			return nil, err
		}
	}
	results := make([]procResult, len(pids))
	var next atomic.Int64
	workers := min(runtime.GOMAXPROCS(0), len(pids), 8)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dents := make([]byte, 32<<10)
			link := make([]byte, 64)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pids) {
					return
				}
				links, err := scanFDs(pids[i], dents, link)
				results[i] = procResult{pid: pids[i], links: links, err: err}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, r := range results {
		total += len(r.links)
	}
	x := &ownerIndex{first: make(map[uint32]int32, total), links: make([]ownerLink, 0, total)}
	for _, r := range results {
		if explicit && r.err != nil {
			if errors.Is(r.err, unix.ENOENT) || errors.Is(r.err, unix.ESRCH) {
				x.missing = append(x.missing, r.pid)
			} else {
				x.denied = append(x.denied, r.pid)
			}
		}
		if len(r.links) == 0 {
			continue
		}
		pi := int32(len(x.procs))
		x.procs = append(x.procs, procEntry{pid: r.pid})
		for _, v := range r.links {
			ino := uint32(v >> 32)
			li := int32(len(x.links))
			nxt := int32(-1)
			if f, ok := x.first[ino]; ok {
				nxt = f
			}
			x.links = append(x.links, ownerLink{proc: pi, fd: int32(uint32(v)), next: nxt})
			x.first[ino] = li
		}
	}
	return x, nil
}

// OwnersOf calls fn with the owners of each of the given socket inodes that a process
// holds: one pass over /proc/*/fd, as Walk makes with ListOptions.Owners, without a
// sock_diag dump (socket inodes are unique across namespaces). Processes that vanish or
// cannot be read are skipped; a set-user-ID run sees only its real user's processes. The
// owners slice is reused between calls of fn.
func OwnersOf(ctx context.Context, inodes []uint32, fn func(inode uint32, owners []Owner)) error {
	if len(inodes) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	x, err := scanOwners(nil, false)
	if err != nil {
		return fmt.Errorf("host: %w", err)
	}
	if priv := currentPrivilege(); priv.secure && priv.ruid != 0 {
		x.keepOwnedBy(priv)
	}
	var buf []Owner
	for _, ino := range inodes {
		if buf = x.owners(ino, buf[:0]); len(buf) > 0 {
			fn(ino, buf)
		}
	}
	return ctx.Err()
}

// keepOwnedBy drops the descriptors of processes p does not allow (set-user-ID or
// file-capability runs see only their real user's processes as owners).
func (x *ownerIndex) keepOwnedBy(p privilege) {
	allowed := make([]bool, len(x.procs))
	for i, pr := range x.procs {
		allowed[i] = p.allows(pr.pid) == nil
	}
	for ino, li := range x.first {
		// Unlink the chain entries of processes not allowed.
		prev := int32(-1)
		for cur := li; cur >= 0; cur = x.links[cur].next {
			if allowed[x.links[cur].proc] {
				prev = cur
				continue
			}
			if prev < 0 {
				x.first[ino] = x.links[cur].next
			} else {
				x.links[prev].next = x.links[cur].next
			}
		}
		if x.first[ino] < 0 {
			delete(x.first, ino)
		}
	}
}

// owners appends the owners of inode to dst.
func (x *ownerIndex) owners(inode uint32, dst []Owner) []Owner {
	li, ok := x.first[inode]
	if !ok || inode == 0 {
		return dst
	}
	start := len(dst)
	for li >= 0 {
		l := &x.links[li]
		p := &x.procs[l.proc]
		if !p.commRead {
			p.comm = readComm(p.pid)
			p.commRead = true
		}
		dst = append(dst, Owner{PID: p.pid, Comm: p.comm, FD: int(l.fd)})
		li = l.next
	}
	// The chain is newest-first; present owners in /proc order (lowest PID, FD first).
	for i, j := start, len(dst)-1; i < j; i, j = i+1, j-1 {
		dst[i], dst[j] = dst[j], dst[i]
	}
	return dst
}

func readComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return string(bytes.TrimRight(b, "\n"))
}

func listPIDs() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n == "" || n[0] < '0' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

const socketPrefix = "socket:["

// scanFDs reads the socket descriptors of one process without allocating per descriptor. It
// returns inode<<32 | fd for every socket, and the error of opening /proc/PID/fd (a process
// that exited, or one we may not look into).
//
// Since Linux 6.2, stat on /proc/PID/fd reports the number of open descriptors as its size;
// descriptor tables are usually dense, so readlinkat on 0, 1, 2, ... until that many were
// found skips getdents64 (≈ 1 µs per entry: proc instantiates each one). A sparse table or a
// process that closes descriptors meanwhile falls back to listing the directory.
func scanFDs(pid int, dents, link []byte) ([]uint64, error) {
	dfd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if unix.Fstat(dfd, &st) == nil && st.Size > 0 && st.Size < 1<<24 {
		if out, ok := probeFDs(dfd, int(st.Size), link); ok {
			return out, nil
		}
	}
	return listFDs(dfd, dents, link), nil
}

// probeFDs tries descriptor numbers in order until want of them were found; ok is false when
// the table proved too sparse (or changed) for that.
func probeFDs(dfd, want int, link []byte) (out []uint64, ok bool) {
	var name [12]byte
	found, misses := 0, 0
	for fd := 0; found < want; fd++ {
		n := len(strconv.AppendInt(name[:0], int64(fd), 10))
		name[n] = 0
		r, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dfd), uintptr(unsafe.Pointer(&name[0])),
			uintptr(unsafe.Pointer(&link[0])), uintptr(len(link)), 0, 0)
		if e != 0 {
			if misses++; misses > want+64 {
				return nil, false
			}
			continue
		}
		found++
		if ino, isSock := socketInode(link[:r]); isSock {
			out = append(out, ino<<32|uint64(uint32(fd)))
		}
	}
	return out, true
}

// listFDs lists the directory with getdents64 and reads each link.
func listFDs(dfd int, dents, link []byte) []uint64 {
	var out []uint64
	for {
		n, err := unix.Getdents(dfd, dents)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return out
		}
		for off := 0; off+19 < n; {
			reclen := int(ne.Uint16(dents[off+16 : off+18]))
			if reclen == 0 {
				break
			}
			name := dents[off+19 : off+reclen] // NUL-terminated
			off += reclen
			if name[0] < '0' || name[0] > '9' {
				continue
			}
			fd := 0
			for _, c := range name {
				if c == 0 {
					break
				}
				fd = fd*10 + int(c-'0')
			}
			r, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dfd), uintptr(unsafe.Pointer(&name[0])),
				uintptr(unsafe.Pointer(&link[0])), uintptr(len(link)), 0, 0)
			if e != 0 {
				continue
			}
			if ino, isSock := socketInode(link[:r]); isSock {
				out = append(out, ino<<32|uint64(uint32(fd)))
			}
		}
	}
}

// socketInode parses "socket:[12345]".
func socketInode(l []byte) (uint64, bool) {
	if len(l) < len(socketPrefix)+2 || string(l[:len(socketPrefix)]) != socketPrefix || l[len(l)-1] != ']' {
		return 0, false
	}
	var ino uint64
	for _, c := range l[len(socketPrefix) : len(l)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		ino = ino*10 + uint64(c-'0')
	}
	return ino, true
}

// SessionPIDs returns pid and its ancestors up to (not including) init: the processes whose
// connections carry the session pid runs in (sshd's per-session process, a terminal
// multiplexer, the shell). Commands that destroy connections leave these alone by default.
func SessionPIDs(pid int) []int {
	var out []int
	for i := 0; pid > 1 && i < 256; i++ {
		out = append(out, pid)
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			break
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		j := bytes.LastIndexByte(b, ')')
		if j < 0 {
			break
		}
		f := strings.Fields(string(b[j+1:]))
		if len(f) < 2 {
			break
		}
		pid, err = strconv.Atoi(f[1])
		if err != nil {
			break
		}
	}
	return out
}
