//go:build !linux

package keepalive

import (
	"fmt"
	"runtime"
)

// ReadSysctl reads Linux's keepalive sysctls; on other systems it returns ErrUnsupported.
func ReadSysctl(netnsName string) (Sysctl, error) {
	return Sysctl{}, fmt.Errorf("keepalive sysctls are Linux only (this is %s): %w", runtime.GOOS, ErrUnsupported)
}

// SetSysctl writes Linux's keepalive sysctls; on other systems it returns ErrUnsupported.
func SetSysctl(netnsName string, cfg Config) error {
	return fmt.Errorf("keepalive sysctls are Linux only (this is %s): %w", runtime.GOOS, ErrUnsupported)
}
