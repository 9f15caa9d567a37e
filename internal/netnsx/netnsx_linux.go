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

// NewNamed creates the namespace /var/run/netns/name (like 'ip netns add') on a dedicated
// thread, without moving the caller, and returns a handle on it. On failure it removes a
// mount point the attempt left behind.
func NewNamed(name string) (netns.NsHandle, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return netns.None(), fmt.Errorf("invalid network namespace name %q", name)
	}
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
		h, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			if err == nil {
				h.Close()
			}
			// The thread stays locked and is discarded when this goroutine ends.
			rc <- res{netns.None(), fmt.Errorf("return to original network namespace: %w", serr)}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			if !errors.Is(err, fs.ErrExist) {
				_ = os.Remove(filepath.Join(Dir, name))
			}
			rc <- res{netns.None(), fmt.Errorf("create network namespace %q: %w", name, err)}
			return
		}
		rc <- res{h, nil}
	}()
	r := <-rc
	return r.h, r.err
}
