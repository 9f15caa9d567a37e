//go:build !linux

package probe

import "syscall"

// ConnChecker works on Linux only.
func ConnChecker(conns ...syscall.Conn) (Checker, error) { return nil, ErrNotLinux }
