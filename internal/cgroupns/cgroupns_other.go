//go:build !linux

package cgroupns

import (
	"errors"
	"fmt"

	"github.com/keepalive-dev/keepalive/internal/mountinfo"
)

// worker exists on Linux only.
type worker struct{}

func unsupported() error {
	return fmt.Errorf("cgroupns: cgroups are Linux-only: %w", errors.ErrUnsupported)
}

// NewReader returns a Reader whose reads fail with errors.ErrUnsupported: cgroups are
// Linux-only.
func NewReader() (*Reader, error) {
	return &Reader{note: "no cgroups on this system"}, nil
}

// Close does nothing here.
func (r *Reader) Close() error { return nil }

// Read works on Linux only.
func (r *Reader) Read(pid int) ([]byte, error) { return nil, unsupported() }

// ReadMany works on Linux only.
func (r *Reader) ReadMany(pids []int) ([]Content, error) { return nil, unsupported() }

// Mounts works on Linux only.
func (r *Reader) Mounts(types ...string) ([]mountinfo.Mount, error) { return nil, unsupported() }
