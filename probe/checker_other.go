//go:build !linux

package probe

import (
	"syscall"
	"time"
)

// ConnChecker works on Linux only.
func ConnChecker(conns ...syscall.Conn) (Checker, error) { return nil, ErrNotLinux }

// InvalidRateLimit works on Linux only.
func InvalidRateLimit(netns string) (time.Duration, error) { return 0, ErrNotLinux }
