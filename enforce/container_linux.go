//go:build linux

package enforce

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/keepalive-dev/keepalive/internal/cgroupns"
)

// IsContainerID reports whether s looks like a container id (12 to 64 hex digits).
func IsContainerID(s string) bool {
	if len(s) < 12 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ContainerCgroup finds the cgroup2 directory that holds the processes of a container (a
// Docker, containerd or CRI-O container id, full or a unique prefix of at least 12 digits),
// from /proc/PID/cgroup. It returns the path relative to the cgroup2 mount and a note when
// the directory is not the container's own.
//
// With Docker's cgroupfs driver on a hybrid host (cgroup v1 controllers, cgroup2 mounted
// beside them) a container gets directories only in the v1 hierarchies; in cgroup2 its
// processes stay where the runtime's shim is, usually the root, shared with the whole host.
// ContainerCgroup then refuses with that reason instead of keying the policy by a cgroup
// that holds other processes. When the nearest cgroup2 directory holds only the
// container's processes it is used, and the note says so.
func ContainerCgroup(id string) (rel, note string, err error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if !IsContainerID(id) {
		return "", "", fmt.Errorf("%q is not a container id (12 to 64 hex digits)", id)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return "", "", err
	}
	// /proc/PID/cgroup as the host's cgroup namespace shows it: from a pod's private one the
	// paths would start with "/.." and name no directory under the mount.
	r, err := cgroupns.NewReader()
	if err != nil {
		return "", "", err
	}
	defer r.Close()
	var all []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			all = append(all, pid)
		}
	}
	cs, err := r.ReadMany(all)
	if err != nil {
		return "", "", err
	}
	var pids []int
	paths := map[string]bool{}
	fullIDs := map[string]bool{}
	for _, c := range cs {
		if c.Err != nil {
			continue
		}
		full := containerIDIn(string(c.Data), id)
		if full == "" {
			continue
		}
		fullIDs[full] = true
		pids = append(pids, c.PID)
		if p, ok := cgroupns.Cgroup2Path(c.Data); ok {
			paths[p] = true
		}
	}
	if len(fullIDs) > 1 {
		return "", "", fmt.Errorf("container id prefix %s is ambiguous (%d containers match): give more digits", id, len(fullIDs))
	}
	if len(pids) == 0 {
		return "", "", fmt.Errorf("no running process of container %s found in /proc/*/cgroup (is it running, and is this the host's PID namespace?)", id)
	}
	if len(paths) != 1 {
		return "", "", fmt.Errorf("the processes of container %s are spread over %d cgroup2 directories; attach to one of them with --cgroup", id, len(paths))
	}
	var p string
	for k := range paths {
		p = k
	}
	if !r.HostAbsolute() && strings.HasPrefix(p, "/..") {
		return "", "", fmt.Errorf("container %s is in cgroup2 %s, outside this cgroup namespace, and the host's cannot be read: %s", id, p, r.Note())
	}
	if strings.Contains(p, id) {
		return p, "", nil
	}
	mount, err := cgroup2Mount(r)
	if err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(filepath.Join(mount, p, "cgroup.procs"))
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", filepath.Join(mount, p, "cgroup.procs"), err)
	}
	var others []string
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
			others = append(others, f)
		}
	}
	if len(others) > 0 || p == "/" {
		return "", "", fmt.Errorf("container %s has no cgroup v2 directory of its own (the runtime put it in the cgroup v1 hierarchies only, e.g. Docker's cgroupfs driver on a hybrid host): "+
			"its processes sit in cgroup2 %s with %d other processes, and a policy there would apply to all of them; "+
			"run the container under cgroup v2 (or with --cgroup-parent pointing to a cgroup2 directory of its own) and attach to that", id, p, len(others))
	}
	return p, fmt.Sprintf("container %s has no cgroup v2 directory of its own; using the nearest one that holds it, %s, which holds only its processes", id, p), nil
}

// containerIDIn returns the full container id in a /proc/PID/cgroup text that starts with
// prefix, "" when none.
func containerIDIn(cgroups, prefix string) string {
	for _, line := range strings.Split(cgroups, "\n") {
		_, path, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		_, path, _ = strings.Cut(path, ":")
		for _, seg := range strings.Split(path, "/") {
			seg = strings.TrimSuffix(seg, ".scope")
			if i := strings.LastIndexAny(seg, "-:"); i >= 0 {
				seg = seg[i+1:] // docker-ID, cri-containerd-ID, crio-ID
			}
			if len(seg) == 64 && strings.HasPrefix(seg, prefix) && IsContainerID(seg) {
				return seg
			}
		}
	}
	return ""
}

// IsPodUID reports whether s looks like a Kubernetes pod UID (a UUID).
func IsPodUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// PodCgroup finds the cgroup2 directory of a Kubernetes pod by its UID: the kubelet names it
// pod<UID> (cgroupfs driver) or kubepods-<qos>-pod<UID with _ for ->.slice (systemd driver);
// it holds every container of the pod. The search goes at most 6 levels below the mount.
func PodCgroup(uid string) (string, error) {
	uid = strings.ToLower(strings.TrimSpace(uid))
	if !IsPodUID(uid) {
		return "", fmt.Errorf("%q is not a pod UID", uid)
	}
	mount, err := Cgroup2Mount()
	if err != nil {
		return "", err
	}
	names := []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_")}
	var found []string
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			n := strings.TrimSuffix(e.Name(), ".slice")
			if slices.ContainsFunc(names, func(s string) bool { return n == s || strings.HasSuffix(n, "-"+s) }) {
				found = append(found, p)
				continue
			}
			if depth < 6 {
				walk(p, depth+1)
			}
		}
	}
	walk(mount, 1)
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no cgroup v2 directory for pod %s under %s (is the pod on this node, and does the kubelet use cgroup v2?)", uid, mount)
	case 1:
		rel, _ := filepath.Rel(mount, found[0])
		return "/" + rel, nil
	}
	return "", fmt.Errorf("pod %s matches %d cgroup directories: %v", uid, len(found), found)
}

// ResolveTarget resolves what a user names as a cgroup: a path relative to the cgroup2 mount or
// absolute (ResolveCgroup), a Kubernetes pod UID (PodCgroup) or a container id
// (ContainerCgroup). It returns the path relative to the mount, the cgroup's id, and a note
// saying how a pod or container was resolved ("" for a path).
func (h *Host) ResolveTarget(arg string) (rel string, id uint64, note string, err error) {
	rel, id, err = h.ResolveCgroup(arg)
	if err == nil {
		return rel, id, "", nil
	}
	if IsPodUID(arg) {
		prel, perr := PodCgroup(arg)
		if perr != nil {
			return "", 0, "", perr
		}
		rel, id, err = h.ResolveCgroup(prel)
		return rel, id, "pod " + arg + " is cgroup " + prel, err
	}
	if IsContainerID(arg) {
		crel, cnote, cerr := ContainerCgroup(arg)
		if cerr != nil {
			return "", 0, "", cerr
		}
		rel, id, err = h.ResolveCgroup(crel)
		return rel, id, cnote, err
	}
	return "", 0, "", err
}
