//go:build !linux && !darwin && !freebsd && !windows

package keepalive

import "runtime"

func applyFD(fd uintptr, cfg Config) error {
	return &FieldError{Field: "keepalive", OS: runtime.GOOS, Err: ErrUnsupported,
		Fix: "per-socket keepalive is not supported on " + runtime.GOOS + " by this package; use net.Dialer.KeepAliveConfig or the system-wide settings"}
}

func getFD(fd uintptr) (Settings, error) {
	return Settings{}, &FieldError{Field: "keepalive", OS: runtime.GOOS, Err: ErrUnsupported}
}

func disableFD(fd uintptr) error {
	return &FieldError{Field: "keepalive", Value: "off", OS: runtime.GOOS, Err: ErrUnsupported}
}
