// Package cgroupns reads the cgroup paths of processes as the host's cgroup namespace shows
// them, also from a process that runs in a cgroup namespace of its own (a Kubernetes pod on a
// cgroup v2 node, 'docker run --cgroupns=private'). There /proc/PID/cgroup of a process outside
// the caller's cgroup shows paths such as "0::/../../kubepods/pod…/…", relative to the
// caller's namespace root, and the cgroup2 mount of the host's tree shows a root of "/../..":
// a Reader joins the host's cgroup namespace on one locked OS thread and reads there, so the
// paths are host-absolute and match the directories under a mount of the whole hierarchy.
package cgroupns

import (
	"errors"
	"path"
	"strings"

	"github.com/keepalive-dev/keepalive/internal/mountinfo"
)

// ErrClosed is returned by the methods of a closed Reader.
var ErrClosed = errors.New("cgroupns: reader closed")

// Content is the result of reading one process's /proc/PID/cgroup.
type Content struct {
	PID  int
	Data []byte
	Err  error
}

// Reader reads /proc/PID/cgroup and the mount table in the host's cgroup namespace. A Reader
// may be used by several goroutines at once; Close releases its thread.
type Reader struct {
	w       *worker // nil: plain reads in the caller's namespace
	hostAbs bool
	note    string
}

// HostAbsolute reports whether the paths the Reader returns are host-absolute: the caller
// runs in the host's (initial) cgroup namespace, or the Reader joined it. When false the
// paths are relative to the caller's own namespace root and may start with "/..".
func (r *Reader) HostAbsolute() bool { return r.hostAbs }

// Joined reports whether the Reader reads from inside another cgroup namespace (the host's)
// than the caller's.
func (r *Reader) Joined() bool { return r.w != nil }

// Note says how the Reader reads: in the caller's namespace (and why), or after joining the
// host's.
func (r *Reader) Note() string { return r.note }

// Cgroup2Path returns the cgroup v2 path (the "0::" line) in the content of /proc/PID/cgroup.
func Cgroup2Path(content []byte) (string, bool) {
	for _, l := range strings.Split(string(content), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p, true
		}
	}
	return "", false
}

// Dir maps a cgroup path, in the coordinates the mounts were read in (host-absolute for the
// mounts of a Reader that is HostAbsolute), onto a directory under one of mounts: the mount
// whose root is the path or its nearest ancestor, the last such in mount order (a later mount
// on the same point hides an earlier one). ok is false when no mount holds the path.
func Dir(mounts []mountinfo.Mount, p string) (dir string, ok bool) {
	p = cleanRel(p)
	best := -1
	var rest string
	for i, m := range mounts {
		root := cleanRel(m.Root)
		r, under := cutDir(p, root)
		if !under {
			continue
		}
		if best < 0 || len(root) >= len(cleanRel(mounts[best].Root)) {
			best, rest = i, r
		}
	}
	if best < 0 {
		return "", false
	}
	return path.Join(mounts[best].Point, rest), true
}

// cleanRel cleans a cgroup path as the kernel prints it: absolute, possibly starting with
// "/.." segments (which path.Clean would drop).
func cleanRel(p string) string {
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 && out[len(out)-1] != ".." {
				out = out[:len(out)-1]
			} else {
				out = append(out, "..")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// cutDir returns p relative to dir ("" for dir itself) when p is dir or below it; both are
// cleaned (cleanRel), so ".." segments can only lead.
func cutDir(p, dir string) (string, bool) {
	var rest string
	switch {
	case p == dir:
		return "", true
	case dir == "/":
		rest = p[1:]
	default:
		var ok bool
		if rest, ok = strings.CutPrefix(p, dir+"/"); !ok {
			return "", false
		}
	}
	if rest == ".." || strings.HasPrefix(rest, "../") {
		return "", false
	}
	return rest, true
}
