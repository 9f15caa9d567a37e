//go:build linux

// Package netnsx runs code inside a Linux network namespace safely: on a dedicated, locked
// OS thread that either returns to its original namespace or dies with its goroutine, so no
// other goroutine ever runs in the wrong namespace.
package netnsx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are bind-mounted (iproute2's convention).
const Dir = "/var/run/netns"

// Open returns a handle on the namespace called name (as in 'ip netns list') or at a path
// (anything containing a slash). The caller closes it.
func Open(name string) (netns.NsHandle, error) {
	path := name
	if !strings.Contains(name, "/") {
		if name == "" || name == "." || name == ".." || strings.ContainsRune(name, 0) {
			return netns.None(), fmt.Errorf("invalid network namespace name %q (a name from 'ip netns list')", name)
		}
		path = filepath.Join(Dir, name)
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return netns.None(), fmt.Errorf("network namespace %q not found (list them with 'ip netns list'): %w", name, err)
		}
		return netns.None(), fmt.Errorf("open network namespace %q: %w", name, err)
	}
	return h, nil
}

// OpenInode is Open checked against the namespace's inode (when ino is not 0): a path such as
// /proc/PID/ns/net may meanwhile belong to a different process and namespace.
func OpenInode(name string, ino uint64) (netns.NsHandle, error) {
	h, err := Open(name)
	if err != nil || ino == 0 {
		return h, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return netns.None(), fmt.Errorf("network namespace %q: %w", name, err)
	}
	if st.Ino != ino {
		h.Close()
		return netns.None(), fmt.Errorf("network namespace %q is now net:[%d], not net:[%d] (its process exited): %w", name, st.Ino, ino, fs.ErrNotExist)
	}
	return h, nil
}

// Do runs fn on a dedicated OS thread that has joined the namespace h and waits for it.
// Sockets fn creates belong to that namespace and stay there.
func Do(h netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("read current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w (needs CAP_SYS_ADMIN)", err)
			}
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and is discarded when this goroutine ends.
			errc <- errors.Join(ferr, fmt.Errorf("return from network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DoNamed is Do on the namespace called name or at a path; "" runs fn directly, in the
// caller's namespace.
func DoNamed(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	h, err := Open(name)
	if err != nil {
		return err
	}
	defer h.Close()
	ran := false
	err = Do(h, func() error { ran = true; return fn() })
	if err != nil && !ran {
		return fmt.Errorf("network namespace %q: %w", name, err)
	}
	return err
}

// NewNamed creates the namespace /var/run/netns/name exactly as 'ip netns add' does, without
// moving the caller, and returns a handle on it: under an exclusive flock on /var/run/netns
// it makes the directory a shared mount point (a recursive bind mount of itself the first
// time), so that its namespace mounts propagate to every mount namespace and a later
// 'ip netns add' never mounts the directory over them; then it creates the file and bind-mounts
// a new network namespace onto it. On failure it removes what the attempt left behind.
func NewNamed(name string) (netns.NsHandle, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return netns.None(), fmt.Errorf("invalid network namespace name %q", name)
	}
	unlock, err := LockDir()
	if err != nil {
		return netns.None(), fmt.Errorf("create network namespace %q: %w", name, err)
	}
	defer unlock()
	path := filepath.Join(Dir, name)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return netns.None(), fmt.Errorf("create network namespace %q: %w", name, &fs.PathError{Op: "create", Path: path, Err: err})
	}
	unix.Close(fd)
	type res struct {
		h   netns.NsHandle
		err error
	}
	rc := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			rc <- res{netns.None(), fmt.Errorf("read current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			rc <- res{netns.None(), fmt.Errorf("unshare(CLONE_NEWNET): %w", err)}
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		merr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if merr != nil {
			merr = fmt.Errorf("bind mount %s on %s: %w", src, path, merr)
		}
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and is discarded when this goroutine ends.
			rc <- res{netns.None(), errors.Join(merr, fmt.Errorf("return to original network namespace: %w", err))}
			return
		}
		runtime.UnlockOSThread()
		rc <- res{netns.None(), merr}
	}()
	r := <-rc
	if r.err == nil {
		r.h, r.err = netns.GetFromPath(path)
	}
	if r.err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return netns.None(), fmt.Errorf("create network namespace %q: %w", name, r.err)
	}
	return r.h, nil
}

// LockDir takes iproute2's lock for changing /var/run/netns (an exclusive flock on the
// directory), creating the directory and making it a shared mount point first if needed, and
// returns the function that releases it.
func LockDir() (unlock func(), err error) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: Dir, Err: err}
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "flock", Path: Dir, Err: err}
	}
	unlock = func() {
		_ = unix.Flock(fd, unix.LOCK_UN)
		unix.Close(fd)
	}
	// As ip netns add: make the directory shared; EINVAL means it is no mount point yet, so
	// bind-mount it onto itself (once) and try again.
	made := false
	for {
		err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return unlock, nil
		}
		if err != unix.EINVAL || made {
			unlock()
			return nil, fmt.Errorf("mount --make-rshared %s: %w", Dir, err)
		}
		if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			unlock()
			return nil, fmt.Errorf("mount --rbind %s %s: %w", Dir, Dir, err)
		}
		made = true
	}
}

// DeleteNamed removes the named namespace as 'ip netns del' does (detach the mount, remove
// the file); a namespace that does not exist is not an error. The namespace itself lives on
// while a process or an open handle still holds it.
func DeleteNamed(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("invalid network namespace name %q", name)
	}
	path := filepath.Join(Dir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("delete network namespace %q: unmount %s: %w", name, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete network namespace %q: %w", name, err)
	}
	return nil
}

// RemoveHidden removes the entry Dir/name when its namespace mount is hidden under a later
// mount of Dir, the state an older 'ip netns add' ordering leaves behind: the path then shows
// the later mount's copy, and unlinking fails with EBUSY because the hidden mount still sits
// on the file. On a throw-away thread in a private copy of the mount namespace it peels the
// mounts of Dir off until the file is reachable, unmounts it there and unlinks it; the kernel
// then detaches the mounts on that file in every namespace. The caller's mounts are not
// changed otherwise.
func RemoveHidden(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("invalid network namespace name %q", name)
	}
	path := filepath.Join(Dir, name)
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it dies with this goroutine, its mount namespace too.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("make the private mount namespace private: %w", err)
			return
		}
		for layer := 0; layer < 16; layer++ {
			for i := 0; i < 16 && unix.Unmount(path, unix.MNT_DETACH) == nil; i++ {
			}
			err := unix.Unlink(path)
			if err == nil || err == unix.ENOENT {
				errc <- nil
				return
			}
			if err != unix.EBUSY {
				errc <- fmt.Errorf("remove %s: %w", path, err)
				return
			}
			if err := unix.Unmount(Dir, unix.MNT_DETACH); err != nil {
				errc <- fmt.Errorf("remove %s: still busy and no mount of %s left to look under: %w", path, Dir, err)
				return
			}
		}
		errc <- fmt.Errorf("remove %s: still busy under 16 mounts of %s", path, Dir)
	}()
	return <-errc
}
