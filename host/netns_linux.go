//go:build linux

package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` keeps named namespaces.
const netnsDir = "/var/run/netns"

// inNetNS runs fn on a locked OS thread switched into the named namespace ("" = run fn
// directly). Sockets created by fn stay in that namespace after the thread switches back.
func inNetNS(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("host: invalid network namespace name %q (a name from 'ip netns list')", name)
	}
	target, err := netns.GetFromPath(filepath.Join(netnsDir, name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("host: network namespace %q not found in %s (list them with 'ip netns list'): %w", name, netnsDir, err)
		}
		return fmt.Errorf("host: open network namespace %q: %w", name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("host: read current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("host: enter network namespace %q: %w (needs CAP_SYS_ADMIN)", name, err)
		}
		return fmt.Errorf("host: enter network namespace %q: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the wrong namespace: keep it locked so the runtime
		// discards it when this goroutine ends.
		return errors.Join(ferr, fmt.Errorf("host: return from network namespace %q: %w", name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// NetNSNames lists the named network namespaces (/var/run/netns), sorted, leaving out any that
// is the current namespace.
func NetNSNames() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("host: list network namespaces: %w", err)
	}
	var self unix.Stat_t
	selfOK := unix.Stat("/proc/self/ns/net", &self) == nil
	var names []string
	for _, e := range ents {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(netnsDir, e.Name()), &st); err != nil {
			continue
		}
		if selfOK && st.Ino == self.Ino && st.Dev == self.Dev {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// namespaces returns the namespaces opt asks for.
func (opt *ListOptions) namespaces() ([]string, error) {
	if !opt.AllNetNS {
		return []string{opt.NetNS}, nil
	}
	names, err := NetNSNames()
	if err != nil {
		return nil, err
	}
	return append([]string{""}, names...), nil
}
