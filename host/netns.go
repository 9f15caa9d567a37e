package host

import (
	"errors"
	"strconv"
	"strings"
)

// NetNS identifies one network namespace of the host: its nsfs inode (unique while the
// namespace lives) and a path through which it can be entered. The zero NetNS is the caller's
// current namespace.
type NetNS struct {
	// Inode is the namespace's inode (as in /proc/PID/ns/net -> net:[INODE]); 0 when unknown.
	Inode uint64 `json:"inode,omitempty"`
	// Name is its name under /var/run/netns ('ip netns list'), "" when it has none.
	Name string `json:"name,omitempty"`
	// Path enters it: an nsfs mount (/var/run/netns/NAME, /var/run/docker/netns/ID) or a
	// process's or thread's /proc/PID/task/TID/ns/net. "" with Current.
	Path string `json:"path,omitempty"`
	// Current is true for the caller's own namespace.
	Current bool `json:"current,omitempty"`
	// Container is the container or pod whose processes live in it (from /proc/PID/cgroup).
	Container *Container `json:"container,omitempty"`
	// PID and Comm are the first process found in it (0 for a namespace held only by a mount).
	PID  int    `json:"pid,omitempty"`
	Comm string `json:"comm,omitempty"`
}

// Label names the namespace for people: its /var/run/netns name, else its container
// ("docker:0123456789ab", "k8s:pod-uid/0123456789ab"), else the mount it is held by, else
// its first process ("pid 4242 (nginx)"). The current namespace is "".
func (n *NetNS) Label() string {
	switch {
	case n == nil || n.Current:
		return ""
	case n.Name != "":
		return n.Name
	case n.Container != nil:
		return n.Container.Label()
	case n.Path != "" && !strings.HasPrefix(n.Path, "/proc/"):
		return n.Path
	case n.PID > 0:
		if n.Comm != "" {
			return "pid " + strconv.Itoa(n.PID) + " (" + n.Comm + ")"
		}
		return "pid " + strconv.Itoa(n.PID)
	case n.Inode != 0:
		return "net:[" + strconv.FormatUint(n.Inode, 10) + "]"
	}
	return n.Path
}

// ref is what enters the namespace: the path when known, else the name.
func (n *NetNS) ref() string {
	if n == nil || n.Current {
		return ""
	}
	if n.Path != "" {
		return n.Path
	}
	return n.Name
}

// ErrStaleNetNS marks a /var/run/netns entry that holds no namespace: left by an interrupted
// 'ip netns add', or seen while one is being added or deleted.
var ErrStaleNetNS = errors.New("stale network namespace entry")
