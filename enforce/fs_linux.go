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
	"github.com/keepalive-dev/keepalive/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// mountPoints returns the mount points of filesystems of type fstype, in mountinfo order.
func mountPoints(fstype string) ([]string, error) {
	ms, err := mountinfo.Read("/proc/self/mountinfo", fstype)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.Root == "/" {
			out = append(out, m.Point)
		}
	}
	return out, nil
}

// Cgroup2Mount returns where the whole cgroup v2 hierarchy is mounted (on a hybrid host
// /sys/fs/cgroup/unified, on a unified one /sys/fs/cgroup), found in the mount table as the
// host's cgroup namespace shows it (internal/cgroupns): from a pod's private namespace the
// node's tree mounted with hostPath shows the root "/" there, while this namespace shows it
// as "/../..", and the container's own cgroup2 mount (hidden under it) shows its own cgroup.
// Paths relative to the mount are then the host-absolute paths of /proc/PID/cgroup.
func Cgroup2Mount() (string, error) {
	r, err := cgroupns.NewReader()
	if err != nil {
		return "", err
	}
	defer r.Close()
	return cgroup2Mount(r)
}

// cgroup2Mount is Cgroup2Mount with the caller's Reader.
func cgroup2Mount(r *cgroupns.Reader) (string, error) {
	ms, err := r.Mounts("cgroup2")
	if err != nil {
		return "", err
	}
	var roots []string
	for _, m := range ms {
		if m.Root == "/" {
			return m.Point, nil
		}
		roots = append(roots, m.Point+" shows "+m.Root)
	}
	if len(roots) > 0 {
		return "", fmt.Errorf("%w: the cgroup2 mounts here hold only part of the hierarchy (%s); %s", ErrNoCgroup2, strings.Join(roots, ", "), r.Note())
	}
	return "", ErrNoCgroup2
}

// cgroup is a resolved cgroup2 directory.
type cgroup struct {
	Rel   string // "/a/b", "/" for the root
	Abs   string
	ID    uint64
	Level int
}

// resolveCgroup turns a path relative to the cgroup2 mount, or an absolute path under it,
// into a cgroup.
func resolveCgroup(mount, p string) (cgroup, error) {
	if strings.TrimSpace(p) == "" {
		return cgroup{}, fmt.Errorf("empty cgroup path")
	}
	// Checked before cleaning, which would turn "/../../docker/ID" (a path read from a private
	// cgroup namespace) into "/docker/ID", or "/../.." into the root of the whole host.
	if slices.Contains(strings.Split(p, "/"), "..") {
		return cgroup{}, fmt.Errorf("cgroup %q leaves the cgroup2 hierarchy (a path read in a private cgroup namespace is relative to it; read /proc/PID/cgroup in the host's)", p)
	}
	var rel string
	if filepath.IsAbs(p) {
		clean := filepath.Clean(p)
		r, err := filepath.Rel(mount, clean)
		if err == nil && !strings.HasPrefix(r, "..") {
			rel = "/" + r
		} else {
			// "/system.slice/x" written relative to the mount with a leading slash.
			if _, err := os.Stat(filepath.Join(mount, clean)); err != nil {
				return cgroup{}, fmt.Errorf("cgroup %q: no such cgroup (neither a path under the cgroup2 mount %s nor %s)", p, mount, filepath.Join(mount, clean))
			}
			rel = clean
		}
	} else {
		rel = "/" + p
	}
	rel = filepath.Clean(rel)
	if rel == "/." {
		rel = "/"
	}
	if strings.Contains(rel, "..") {
		return cgroup{}, fmt.Errorf("cgroup %q leaves the cgroup2 hierarchy", p)
	}
	abs := filepath.Join(mount, rel)
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return cgroup{}, fmt.Errorf("cgroup %s (%s): %w", rel, abs, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return cgroup{}, fmt.Errorf("cgroup %s (%s) is not a directory", rel, abs)
	}
	if _, err := os.Stat(filepath.Join(abs, "cgroup.procs")); err != nil {
		return cgroup{}, fmt.Errorf("%s is not a cgroup v2 directory (no cgroup.procs)", abs)
	}
	level := 0
	if rel != "/" {
		level = strings.Count(rel, "/")
	}
	if level >= maxDepth {
		return cgroup{}, fmt.Errorf("cgroup %s is %d levels deep; the programs look at levels 0..%d", rel, level, maxDepth-1)
	}
	// On 64-bit kernels a cgroup's id is its kernfs inode number.
	return cgroup{Rel: rel, Abs: abs, ID: st.Ino, Level: level}, nil
}

// cgroupID returns the id of the cgroup directory abs, 0 when it does not exist.
func cgroupID(abs string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return 0
	}
	return st.Ino
}

// BPFFSMount returns the mount point of the host's BPF filesystem (preferring /sys/fs/bpf),
// or ErrNoBPFFS.
func BPFFSMount() (string, error) {
	mps, err := mountPoints("bpf")
	if err != nil {
		return "", err
	}
	for _, m := range mps {
		if m == "/sys/fs/bpf" {
			return m, nil
		}
	}
	if len(mps) == 0 {
		return "", ErrNoBPFFS
	}
	return mps[0], nil
}

// mountBPFFS mounts a BPF filesystem at /sys/fs/bpf.
func mountBPFFS() (string, error) {
	const dir = "/sys/fs/bpf"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("mount bpffs: %w", err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("mount bpffs at %s: %w (needs CAP_SYS_ADMIN)", dir, err)
	}
	return dir, nil
}

// CgroupProcs returns the PIDs in the cgroup directory abs and every cgroup below it.
func cgroupProcs(abs string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(abs, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil // removed meanwhile
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids, err
}
