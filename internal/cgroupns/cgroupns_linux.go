//go:build linux

package cgroupns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/keepalive-dev/keepalive/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// InitInode is the inode number of the initial (host) cgroup namespace's nsfs file, fixed by
// the kernel (PROC_CGROUP_INIT_INO).
const InitInode = 0xEFFFFFFB

// NewReader returns a Reader for the host's cgroup namespace: the initial one, which PID 1
// is in when the caller shares the host's PID namespace (otherwise the first process in /proc
// found in it). When the caller runs in it already, or the kernel has no cgroup namespaces,
// the Reader reads directly. When the caller's namespace differs it joins the host's on a
// thread of its own (setns, CAP_SYS_ADMIN); when no process of the host's namespace can be
// opened or setns is not permitted, it reads directly too and HostAbsolute is false (Note
// says why). Close the Reader when done.
func NewReader() (*Reader, error) {
	var own unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/cgroup", &own); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &Reader{hostAbs: true, note: "this kernel has no cgroup namespaces"}, nil
		}
		return nil, fmt.Errorf("cgroupns: own cgroup namespace: %w", err)
	}
	if own.Ino == InitInode {
		return &Reader{hostAbs: true, note: "in the host's cgroup namespace"}, nil
	}
	fd, pid, err := openHost(own.Dev)
	if err != nil {
		return &Reader{note: fmt.Sprintf("in a cgroup namespace of its own (cgroup:[%d]) and the host's cannot be opened (%v): paths are relative to this namespace", own.Ino, err)}, nil
	}
	w, err := startWorker(fd)
	unix.Close(fd)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (needs CAP_SYS_ADMIN)", err)
		}
		return &Reader{note: fmt.Sprintf("in a cgroup namespace of its own (cgroup:[%d]) and cannot join the host's (%v): paths are relative to this namespace", own.Ino, err)}, nil
	}
	r := &Reader{w: w, hostAbs: true, note: fmt.Sprintf("joined the host's cgroup namespace (that of PID %d) from cgroup:[%d]", pid, own.Ino)}
	// A Reader dropped without Close still lets its thread go.
	runtime.AddCleanup(r, func(w *worker) { w.stop() }, w)
	return r, nil
}

// openHost opens the nsfs file of the initial cgroup namespace through PID 1, else through
// the first process in /proc that is in it and whose namespaces may be opened.
func openHost(dev uint64) (fd, pid int, err error) {
	try := func(pid int) (int, error) {
		fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/cgroup", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: "/proc/" + strconv.Itoa(pid) + "/ns/cgroup", Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Ino != InitInode || st.Dev != dev {
			unix.Close(fd)
			return -1, fmt.Errorf("PID %d is not in the host's cgroup namespace", pid)
		}
		return fd, nil
	}
	fd, first := try(1)
	if first == nil {
		return fd, 1, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return -1, 0, errors.Join(first, err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 {
			continue
		}
		if fd, err := try(pid); err == nil {
			return fd, pid, nil
		}
	}
	return -1, 0, fmt.Errorf("%w; no other process of the host's cgroup namespace found (is this the host's PID namespace?)", first)
}

// worker is a goroutine locked to an OS thread that has joined the host's cgroup namespace.
type worker struct {
	reqs chan func()
	quit chan struct{}
	once sync.Once
	left chan error // the result of returning to the caller's namespace
}

// startWorker starts a worker in the cgroup namespace of the nsfs file descriptor target.
func startWorker(target int) (*worker, error) {
	w := &worker{reqs: make(chan func()), quit: make(chan struct{}), left: make(chan error, 1)}
	started := make(chan error, 1)
	go w.run(target, started)
	if err := <-started; err != nil {
		return nil, err
	}
	return w, nil
}

func (w *worker) run(target int, started chan<- error) {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/cgroup", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		started <- fmt.Errorf("open own cgroup namespace: %w", err)
		return
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWCGROUP); err != nil {
		runtime.UnlockOSThread()
		started <- fmt.Errorf("setns(CLONE_NEWCGROUP): %w", err)
		return
	}
	started <- nil
	for {
		select {
		case fn := <-w.reqs:
			fn()
		case <-w.quit:
			if err := unix.Setns(orig, unix.CLONE_NEWCGROUP); err != nil {
				// The thread stays locked and ends with this goroutine: nothing else ever
				// runs in the wrong namespace.
				w.left <- fmt.Errorf("cgroupns: return to own cgroup namespace: %w", err)
				return
			}
			runtime.UnlockOSThread()
			w.left <- nil
			return
		}
	}
}

// do runs fn on the worker's thread and waits for it.
func (w *worker) do(fn func()) error {
	done := make(chan struct{})
	select {
	case w.reqs <- func() { fn(); close(done) }:
	case <-w.quit:
		return ErrClosed
	}
	<-done
	return nil
}

// stop tells the worker to leave; it reports whether this call did.
func (w *worker) stop() bool {
	first := false
	w.once.Do(func() { close(w.quit); first = true })
	return first
}

// Close releases the Reader's thread, returning it to the caller's namespace (or ending it
// when that fails). Reads after Close fail with ErrClosed when the Reader had joined the
// host's namespace.
func (r *Reader) Close() error {
	if r.w == nil || !r.w.stop() {
		return nil
	}
	return <-r.w.left
}

func procCgroup(pid int) string { return "/proc/" + strconv.Itoa(pid) + "/cgroup" }

// Read returns the content of /proc/PID/cgroup as the host's cgroup namespace shows it (see
// HostAbsolute).
func (r *Reader) Read(pid int) ([]byte, error) {
	if r.w == nil {
		return os.ReadFile(procCgroup(pid))
	}
	var b []byte
	var err error
	if e := r.w.do(func() { b, err = os.ReadFile(procCgroup(pid)) }); e != nil {
		return nil, e
	}
	return b, err
}

// ReadMany is Read for many processes in one round trip to the Reader's thread, in the order
// of pids.
func (r *Reader) ReadMany(pids []int) ([]Content, error) {
	out := make([]Content, len(pids))
	read := func() {
		for i, pid := range pids {
			b, err := os.ReadFile(procCgroup(pid))
			out[i] = Content{PID: pid, Data: b, Err: err}
		}
	}
	if r.w == nil {
		read()
		return out, nil
	}
	if err := r.w.do(read); err != nil {
		return nil, err
	}
	return out, nil
}

// Mounts returns the mounts of the given file system types ("cgroup2", "cgroup"; every mount
// when none) as the host's cgroup namespace shows them: a cgroup mount's Root is then the
// host-absolute path of the directory mounted ("/" for the whole hierarchy), which Dir needs
// to map paths from Read onto directories.
func (r *Reader) Mounts(types ...string) ([]mountinfo.Mount, error) {
	if r.w == nil {
		return mountinfo.Read("/proc/self/mountinfo", types...)
	}
	var ms []mountinfo.Mount
	var err error
	if e := r.w.do(func() { ms, err = mountinfo.Read("/proc/thread-self/mountinfo", types...) }); e != nil {
		return nil, e
	}
	return ms, err
}
