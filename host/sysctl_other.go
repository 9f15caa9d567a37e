//go:build !linux

package host

import (
	"fmt"
	"runtime"

	"github.com/keepalive-dev/keepalive"
)

// ReadSysctl reads Linux's keepalive sysctls; on other systems it returns ErrUnsupported.
func ReadSysctl(netnsName string) (Sysctl, error) {
	return Sysctl{}, fmt.Errorf("keepalive sysctls are Linux only (this is %s): %w", runtime.GOOS, ErrUnsupported)
}

// SetSysctl writes Linux's keepalive sysctls; on other systems it returns ErrUnsupported.
func SetSysctl(netnsName string, cfg keepalive.Config) error {
	return fmt.Errorf("keepalive sysctls are Linux only (this is %s): %w", runtime.GOOS, ErrUnsupported)
}

// WritePersistFile writes a Linux sysctl.d file; on other systems it returns ErrUnsupported.
func WritePersistFile(path string, cfg keepalive.Config) (restore func() error, err error) {
	return nil, fmt.Errorf("sysctl.d files are Linux only (this is %s): %w", runtime.GOOS, ErrUnsupported)
}
