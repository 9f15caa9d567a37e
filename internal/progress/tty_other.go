//go:build !linux && !darwin && !freebsd && !windows

package progress

func isTerminal(fd uintptr) bool { return false }
