//go:build linux

package host

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdGrabber duplicates descriptors out of other processes with pidfd_getfd, keeping one pidfd
// per process open until close.
type fdGrabber struct {
	pidfds map[int]int
	errs   map[int]error // processes that cannot be opened
	priv   privilege
}

func newFDGrabber() *fdGrabber {
	return &fdGrabber{pidfds: map[int]int{}, errs: map[int]error{}, priv: currentPrivilege()}
}

// privilege says whether this process runs with privileges its real user lacks.
type privilege struct {
	// secure is the kernel's AT_SECURE: set-user-ID, set-group-ID or file capabilities.
	secure bool
	ruid   int
}

// atSecure is the auxiliary vector key of AT_SECURE (include/uapi/linux/auxvec.h).
const atSecure = 23

func currentPrivilege() privilege {
	p := privilege{ruid: os.Getuid()}
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		// Cannot tell: assume elevated whenever the real and effective users differ.
		p.secure = os.Getuid() != os.Geteuid()
		return p
	}
	const w = 8 // 64-bit auxv entries; 32-bit ones are handled below
	if unsafeSizeofUintptr == 4 {
		for i := 0; i+8 <= len(b); i += 8 {
			if ne.Uint32(b[i:]) == atSecure {
				p.secure = ne.Uint32(b[i+4:]) != 0
			}
		}
		return p
	}
	for i := 0; i+2*w <= len(b); i += 2 * w {
		if ne.Uint64(b[i:]) == atSecure {
			p.secure = ne.Uint64(b[i+w:]) != 0
		}
	}
	return p
}

// allows refuses, when this process is privileged beyond its real user (AT_SECURE), any
// process the real user does not own: a set-user-ID or file-capability copy of this program
// must not let a local user change or destroy other users' connections.
func (p privilege) allows(pid int) error {
	if !p.secure || p.ruid == 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid), &st); err != nil {
		return fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	if int(st.Uid) != p.ruid {
		return fmt.Errorf("pid %d belongs to uid %d, not to uid %d who ran this set-user-ID or file-capability program: %w",
			pid, st.Uid, p.ruid, os.ErrPermission)
	}
	return nil
}

func (g *fdGrabber) close() {
	for _, fd := range g.pidfds {
		unix.Close(fd)
	}
	clear(g.pidfds)
}

// dup returns a duplicate of the socket's descriptor from the first owner that allows it, and
// that owner. The caller closes the duplicate. The duplicate is checked to be the same socket
// (inode), so a descriptor number reused since the listing is reported as gone.
func (g *fdGrabber) dup(s *Socket) (int, Owner, error) {
	if len(s.Owners) == 0 {
		return -1, Owner{}, fmt.Errorf("%s: %w (orphaned, or the owner is in another PID namespace)", s, ErrNoOwner)
	}
	var errs []error
	for _, o := range s.Owners {
		fd, err := g.dupOne(o, s.Inode)
		if err == nil {
			return fd, o, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return -1, s.Owners[0], errs[0]
	}
	return -1, s.Owners[0], errors.Join(errs...)
}

func (g *fdGrabber) dupOne(o Owner, inode uint32) (int, error) {
	if err, ok := g.errs[o.PID]; ok {
		return -1, err
	}
	pfd, ok := g.pidfds[o.PID]
	if !ok {
		if err := g.priv.allows(o.PID); err != nil {
			g.errs[o.PID] = err
			return -1, err
		}
		var err error
		pfd, err = unix.PidfdOpen(o.PID, 0)
		if err != nil {
			err = explainPidfd("pidfd_open", o, err)
			g.errs[o.PID] = err
			return -1, err
		}
		g.pidfds[o.PID] = pfd
	}
	fd, err := unix.PidfdGetfd(pfd, o.FD, 0)
	if err != nil {
		err = explainPidfd("pidfd_getfd", o, err)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ESRCH) {
			g.errs[o.PID] = err
		}
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || uint32(st.Ino) != inode {
		unix.Close(fd)
		return -1, fmt.Errorf("pid %d (%s) fd %d no longer holds socket inode %d: %w", o.PID, o.Comm, o.FD, inode, ErrGone)
	}
	return fd, nil
}

const unsafeSizeofUintptr = unsafe.Sizeof(uintptr(0))

// explainPidfd turns an errno from pidfd_open/pidfd_getfd into an error that names the fix.
func explainPidfd(op string, o Owner, err error) error {
	who := fmt.Sprintf("pid %d (%s) fd %d", o.PID, o.Comm, o.FD)
	serr := os.NewSyscallError(op, err)
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		fix := "run it as the process's user, or as root (CAP_SYS_PTRACE)"
		if b, rerr := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); rerr == nil {
			scope := strings.TrimSpace(string(b))
			if scope != "0" {
				fix += "; kernel.yama.ptrace_scope is " + scope + ", so even the same user needs it (0 allows same-uid access)"
			}
		}
		return fmt.Errorf("%s: %w: no ptrace access to the owner; %s", who, serr, fix)
	case errors.Is(err, unix.ENOSYS):
		var u unix.Utsname
		rel := "unknown"
		if unix.Uname(&u) == nil {
			rel = unix.ByteSliceToString(u.Release[:])
		}
		return fmt.Errorf("%s: %w: needs Linux ≥ 5.6 for pidfd_getfd (this kernel is %s)", who, serr, rel)
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("%s: process exited (%w): %w", who, ErrGone, serr)
	case errors.Is(err, unix.EBADF):
		return fmt.Errorf("%s: descriptor closed (%w): %w", who, ErrGone, serr)
	}
	return fmt.Errorf("%s: %w", who, serr)
}
