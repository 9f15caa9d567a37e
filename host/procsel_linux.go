//go:build linux

package host

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/keepalive-dev/keepalive/internal/cgroupns"
	"github.com/keepalive-dev/keepalive/internal/mountinfo"
)

// procInfo is a process picked by a process selector.
type procInfo struct{ pid int }

// selectProcs resolves the process fields of sel (PIDs, Comms, Cgroups, Containers) to the
// processes that satisfy all of them. It returns nil when sel picks no processes, and
// normalises sel.Cgroups to paths relative to the cgroup roots and fills sel.procSet.
// /proc/PID/cgroup and the cgroup mounts are read in the host's cgroup namespace
// (internal/cgroupns), so the paths are the host's also from a pod's private namespace.
func selectProcs(sel *Selector) []procInfo {
	if !sel.selectsProcs() {
		return nil
	}
	groups := len(sel.Cgroups) > 0 || len(sel.Containers) > 0
	var r *cgroupns.Reader
	if groups {
		var err error
		if r, err = cgroupns.NewReader(); err == nil {
			defer r.Close()
		} else {
			r = nil
		}
	}
	if len(sel.Cgroups) > 0 {
		mounts := cgroupMounts(r)
		norm := make([]string, len(sel.Cgroups))
		for i, c := range sel.Cgroups {
			norm[i] = relCgroup(c, mounts)
		}
		sel.Cgroups = norm
	}
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
	var cand []int
	for _, pid := range pids {
		if len(sel.Comms) > 0 && !slices.Contains(sel.Comms, readComm(pid)) {
			continue
		}
		if !groups {
			out = append(out, procInfo{pid: pid})
			continue
		}
		cand = append(cand, pid)
	}
	if len(cand) == 0 {
		return out
	}
	var cs []cgroupns.Content
	if r != nil {
		cs, _ = r.ReadMany(cand)
	} else {
		for _, pid := range cand {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
			cs = append(cs, cgroupns.Content{PID: pid, Data: b, Err: err})
		}
	}
	for _, c := range cs {
		if c.Err != nil || !sel.cgroupMatches(string(c.Data)) {
			continue
		}
		sel.procSet[c.PID] = true
		out = append(out, procInfo{pid: c.PID})
	}
	return out
}

// cgroupMounts lists the mounts of cgroup file systems (v2 and every v1 hierarchy) as r
// shows them (nil r: this namespace's view), longest mount point first, so that
// /sys/fs/cgroup/unified wins over /sys/fs/cgroup.
func cgroupMounts(r *cgroupns.Reader) []mountinfo.Mount {
	var ms []mountinfo.Mount
	var err error
	if r != nil {
		ms, err = r.Mounts("cgroup2", "cgroup")
	} else {
		ms, err = mountinfo.Read("/proc/self/mountinfo", "cgroup2", "cgroup")
	}
	if err != nil {
		return nil
	}
	slices.SortStableFunc(ms, func(a, b mountinfo.Mount) int { return len(b.Point) - len(a.Point) })
	return ms
}

// relCgroup turns an absolute path under a cgroup mount into the path /proc/PID/cgroup shows:
// the mount's root (the whole hierarchy's "/", or the directory a bind mount shows) joined
// with the rest. Other paths are taken as cgroup paths already.
func relCgroup(p string, mounts []mountinfo.Mount) string {
	p = filepath.Clean("/" + strings.TrimSpace(p))
	for _, m := range mounts {
		if rel, ok := strings.CutPrefix(p, m.Point); ok && (rel == "" || rel[0] == '/') {
			root := m.Root
			if !strings.HasPrefix(root, "/") {
				root = "/"
			}
			if strings.HasPrefix(root, "/..") && rel != "" {
				return root + path.Clean(rel) // path.Join would drop the leading ".."
			}
			return path.Join(root, "/"+rel)
		}
	}
	return p
}
