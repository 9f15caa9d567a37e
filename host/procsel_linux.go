//go:build linux

package host

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/keepalive-dev/keepalive/internal/mountinfo"
)

// procInfo is a process picked by a process selector.
type procInfo struct{ pid int }

// selectProcs resolves the process fields of sel (PIDs, Comms, Cgroups, Containers) to the
// processes that satisfy all of them. It returns nil when sel picks no processes, and
// normalises sel.Cgroups to paths relative to the cgroup roots and fills sel.procSet.
func selectProcs(sel *Selector) []procInfo {
	if !sel.selectsProcs() {
		return nil
	}
	if len(sel.Cgroups) > 0 {
		roots := cgroupRoots()
		norm := make([]string, len(sel.Cgroups))
		for i, c := range sel.Cgroups {
			norm[i] = relCgroup(c, roots)
		}
		sel.Cgroups = norm
	}
	groups := len(sel.Cgroups) > 0 || len(sel.Containers) > 0
	if groups {
		sel.procSet = map[int]bool{}
	}
	var pids []int
	if len(sel.PIDs) > 0 {
		pids = sel.PIDs
	} else {
		pids, _ = listPIDs()
	}
	out := []procInfo{}
	for _, pid := range pids {
		if len(sel.Comms) > 0 && !slices.Contains(sel.Comms, readComm(pid)) {
			continue
		}
		if groups {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
			if err != nil || !sel.cgroupMatches(string(b)) {
				continue
			}
			sel.procSet[pid] = true
		}
		out = append(out, procInfo{pid: pid})
	}
	return out
}

// cgroupRoots lists the mount points of cgroup file systems (v2 and every v1 hierarchy).
func cgroupRoots() []string {
	ms, err := mountinfo.Read("/proc/self/mountinfo", "cgroup2", "cgroup")
	if err != nil {
		return nil
	}
	roots := make([]string, 0, len(ms))
	for _, m := range ms {
		roots = append(roots, m.Point)
	}
	// Longest first, so /sys/fs/cgroup/unified wins over /sys/fs/cgroup.
	slices.SortFunc(roots, func(a, b string) int { return len(b) - len(a) })
	return roots
}

// relCgroup turns an absolute path under a cgroup mount into the path /proc/PID/cgroup shows.
func relCgroup(p string, roots []string) string {
	p = filepath.Clean("/" + strings.TrimSpace(p))
	for _, r := range roots {
		if rel, ok := strings.CutPrefix(p, r); ok && (rel == "" || rel[0] == '/') {
			if rel == "" {
				return "/"
			}
			return rel
		}
	}
	return p
}
