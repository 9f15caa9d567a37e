package host

import (
	"strings"
)

// Container is a container (and its Kubernetes pod, if any) as recognised from a process's
// cgroup paths.
type Container struct {
	// Runtime is "docker", "containerd", "cri-o", "podman" or "kubernetes" (a pod's container
	// whose runtime the path does not tell).
	Runtime string `json:"runtime"`
	// ID is the container's full ID (64 hex digits for docker, containerd and cri-o).
	ID string `json:"id"`
	// Pod is the Kubernetes pod UID, "" outside Kubernetes.
	Pod string `json:"pod,omitempty"`
	// Cgroup is the cgroup path the container was recognised from.
	Cgroup string `json:"cgroup"`
}

// ShortID is the first 12 characters of the ID, as 'docker ps' shows it.
func (c *Container) ShortID() string {
	if len(c.ID) > 12 {
		return c.ID[:12]
	}
	return c.ID
}

// Label renders the container as "docker:0123456789ab" or, in a pod,
// "k8s:POD-UID/0123456789ab".
func (c *Container) Label() string {
	if c == nil {
		return ""
	}
	if c.Pod != "" {
		return "k8s:" + c.Pod + "/" + c.ShortID()
	}
	return c.Runtime + ":" + c.ShortID()
}

// MatchID reports whether id names this container: its full ID, a prefix of at least 4
// characters (as docker accepts), or its pod UID.
func (c *Container) MatchID(id string) bool {
	id = strings.ToLower(strings.TrimSpace(id))
	if c == nil || id == "" {
		return false
	}
	if len(id) >= 4 && strings.HasPrefix(c.ID, id) {
		return true
	}
	return c.Pod != "" && (c.Pod == id || strings.ReplaceAll(c.Pod, "_", "-") == id)
}

// ParseCgroup recognises the container in the content of /proc/PID/cgroup. It reads every
// line, cgroup v2 ("0::/system.slice/docker-ID.scope") and v1 ("4:memory:/docker/ID", as on a
// hybrid host with Docker's cgroupfs driver, where "0::" may just be "/"), and returns nil when
// no line names a container.
func ParseCgroup(content string) *Container {
	var best *Container
	for _, line := range strings.Split(content, "\n") {
		// hierarchy-ID:controllers:path; the path may itself contain ':'.
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if c := containerOfPath(f[2]); c != nil && (best == nil || (best.Pod == "" && c.Pod != "")) {
			best = c
		}
	}
	return best
}

// containerOfPath recognises one cgroup path.
func containerOfPath(path string) *Container {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var c *Container
	pod, kube := "", false
	for i, p := range parts {
		kube = kube || strings.HasPrefix(p, "kubepods")
		if u := podUID(p); u != "" && kube {
			pod = u
		}
		rt, id := containerOfElem(p)
		if id == "" {
			// cgroupfs drivers: ".../docker/ID", ".../kubepods/.../podUID/ID".
			if isHexID(p) && i > 0 {
				switch prev := parts[i-1]; {
				case prev == "docker":
					rt, id = "docker", p
				case podUID(prev) != "":
					rt, id = "kubernetes", p
				case prev == "libpod_parent" || strings.HasPrefix(prev, "libpod"):
					rt, id = "podman", p
				}
			}
		}
		if id != "" {
			c = &Container{Runtime: rt, ID: id, Cgroup: path}
		}
	}
	if c != nil && pod != "" {
		c.Pod = pod
	}
	return c
}

// containerOfElem recognises systemd-driver scope names: docker-ID.scope,
// cri-containerd-ID.scope, crio-ID.scope, libpod-ID.scope.
func containerOfElem(p string) (runtime, id string) {
	name := strings.TrimSuffix(p, ".scope")
	if name == p {
		return "", ""
	}
	for _, k := range []struct{ prefix, rt string }{
		{"docker-", "docker"}, {"cri-containerd-", "containerd"}, {"containerd-", "containerd"},
		{"crio-", "cri-o"}, {"libpod-", "podman"},
	} {
		if s, ok := strings.CutPrefix(name, k.prefix); ok && isHexID(s) {
			return k.rt, s
		}
	}
	return "", ""
}

// podUID extracts the UID from "pod0a1b..." or "kubepods-besteffort-pod0a1b_2c3d....slice".
func podUID(p string) string {
	p = strings.TrimSuffix(p, ".slice")
	i := strings.LastIndex(p, "pod")
	if i < 0 || (i > 0 && p[i-1] != '-') {
		return ""
	}
	u := strings.ReplaceAll(p[i+3:], "_", "-")
	if len(u) != 36 || strings.Count(u, "-") != 4 {
		return ""
	}
	for _, r := range u {
		if r != '-' && !isHex(r) {
			return ""
		}
	}
	return u
}

func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !isHex(r) {
			return false
		}
	}
	return true
}

func isHex(r rune) bool { return r >= '0' && r <= '9' || r >= 'a' && r <= 'f' }
