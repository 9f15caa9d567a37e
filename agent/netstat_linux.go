package agent

import (
	"os"
	"strconv"

	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/netnsx"
)

// readNetstat returns /proc/net/netstat as seen from a namespace: through a
// process in it when there is one (no need to enter it), else from a thread
// that enters it.
func readNetstat(ns *host.NetNS) ([]byte, error) {
	if ns.Current {
		return os.ReadFile("/proc/self/net/netstat")
	}
	if ns.PID > 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(ns.PID) + "/net/netstat"); err == nil {
			if cur, err := host.NamespaceOf(ns.PID); err == nil && cur.Inode == ns.Inode {
				return b, nil
			}
		}
	}
	h, err := netnsx.OpenInode(ns.Path, ns.Inode)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var b []byte
	err = netnsx.Do(h, func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/netstat")
		return err
	})
	return b, err
}
