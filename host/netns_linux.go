//go:build linux

package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` keeps named namespaces.
const netnsDir = "/var/run/netns"

// inNetNS runs fn on a locked OS thread switched into the named namespace ("" = run fn
// directly). Sockets created by fn stay in that namespace after the thread switches back.
func inNetNS(name string, fn func() error) error {
	if name != "" && (strings.ContainsAny(name, "/\x00") || name == "." || name == "..") {
		return fmt.Errorf("host: invalid network namespace name %q (a name from 'ip netns list')", name)
	}
	if err := netnsx.DoNamed(name, fn); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	return nil
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
