//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces are bind-mounted (iproute2's convention).
const netnsDir = "/var/run/netns"

// inNS runs fn on an OS thread that has joined ns (see netnsx.Do).
func inNS(ns netns.NsHandle, fn func() error) error {
	if err := netnsx.Do(ns, fn); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// newNamedNS creates the named namespace /var/run/netns/name without moving the caller.
func newNamedNS(name string) (netns.NsHandle, error) {
	h, err := netnsx.NewNamed(name)
	if err != nil {
		return h, namespaceError(name, err)
	}
	return h, nil
}

func namespaceError(name string, err error) error {
	switch {
	case errors.Is(err, os.ErrExist):
		return fmt.Errorf("lab: namespace %s already exists (a leftover of a killed run?); run 'keepalive lab clean': %w", name, err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: creating namespace %s: %v", ErrNotRoot, name, err)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return &FeatureError{Feature: "network namespaces (CONFIG_NET_NS)", Step: "creating namespace " + name, Err: err}
	}
	return fmt.Errorf("lab: creating namespace %s: %w", name, err)
}

// deleteNamedNS unmounts and removes a named namespace as 'ip netns del' does; a missing one
// is not an error.
func deleteNamedNS(name string) error {
	if err := netnsx.DeleteNamed(name); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// writeSysctl writes a /proc/sys value (key like "net/ipv4/ip_forward") inside ns.
func writeSysctl(ns netns.NsHandle, key, value string) error {
	return inNS(ns, func() error {
		p := filepath.Join("/proc/sys", key)
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return &FeatureError{Feature: sysctlFeature(key), Step: "setting " + strings.ReplaceAll(key, "/", ".") + "=" + value, Err: err}
			}
			return fmt.Errorf("lab: sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
		}
		return nil
	})
}

func sysctlFeature(key string) string {
	switch {
	case strings.Contains(key, "nf_conntrack"):
		return "connection tracking (nf_conntrack module, CONFIG_NF_CONNTRACK)"
	case strings.Contains(key, "ipv6"):
		return "IPv6 (CONFIG_IPV6)"
	}
	return "sysctl " + key
}

// counterFile is a /proc/net statistics file opened inside a namespace; it keeps showing
// that namespace's counters however often it is re-read and from whichever thread.
type counterFile struct{ f *os.File }

func openCounters(ns netns.NsHandle, name string) (*counterFile, error) {
	var f *os.File
	err := inNS(ns, func() error {
		var err error
		f, err = os.Open(filepath.Join("/proc/thread-self/net", name))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: open /proc/net/%s in the client namespace: %w", name, err)
	}
	return &counterFile{f}, nil
}

// read returns the value of prefix's field (e.g. "TcpExt:", "TCPKeepAlive").
func (c *counterFile) read(prefix, field string) (int, error) {
	buf := make([]byte, 0, 8192)
	tmp := make([]byte, 4096)
	for off := int64(0); ; {
		n, err := c.f.ReadAt(tmp, off)
		buf = append(buf, tmp[:n]...)
		off += int64(n)
		if err != nil || n == 0 {
			break
		}
	}
	return parseNetstat(buf, prefix, field)
}

func (c *counterFile) Close() error { return c.f.Close() }
