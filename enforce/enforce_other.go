//go:build !linux

package enforce

import (
	"context"
	"fmt"
	"runtime"

	"github.com/keepalive-dev/keepalive/host"
)

// Host is an open handle on the pinned programs and maps of a Linux host.
type Host struct{}

func unsupported() error {
	return fmt.Errorf("enforce works on Linux only (cgroup v2 and eBPF); this is %s: %w", runtime.GOOS, ErrUnsupported)
}

// Probe reports that enforce needs Linux.
func Probe() error { return unsupported() }

// Open works on Linux only.
func Open(opt Options) (*Host, error) { return nil, unsupported() }

// Close does nothing here.
func (h *Host) Close() error { return nil }

// Notes returns nothing here.
func (h *Host) Notes() []string { return nil }

// PinDir returns "" here.
func (h *Host) PinDir() string { return "" }

// Cgroup2 returns "" here.
func (h *Host) Cgroup2() string { return "" }

// ResolveCgroup works on Linux only.
func (h *Host) ResolveCgroup(p string) (string, uint64, error) { return "", 0, unsupported() }

// Attach works on Linux only.
func (h *Host) Attach(req AttachRequest) (Attachment, error) { return Attachment{}, unsupported() }

// Detach works on Linux only.
func (h *Host) Detach(cgroupPath string, match *Match, owner string, force bool) error {
	return unsupported()
}

// List works on Linux only.
func (h *Host) List() ([]Attachment, error) { return nil, unsupported() }

// IsContainerID reports whether s looks like a container id (12 to 64 hex digits).
func IsContainerID(s string) bool { return false }

// IsPodUID reports whether s looks like a Kubernetes pod UID.
func IsPodUID(s string) bool { return false }

// PodCgroup works on Linux only.
func PodCgroup(uid string) (string, error) { return "", unsupported() }

// ContainerCgroup works on Linux only.
func ContainerCgroup(id string) (rel, note string, err error) { return "", "", unsupported() }

// RetrofitExisting works on Linux only.
func (h *Host) RetrofitExisting(ctx context.Context, cgroupPath string, opt ExistingOptions) ([]host.RetrofitResult, error) {
	return nil, unsupported()
}

// ResolveTarget works on Linux only.
func (h *Host) ResolveTarget(arg string) (rel string, id uint64, note string, err error) {
	return "", 0, "", unsupported()
}
