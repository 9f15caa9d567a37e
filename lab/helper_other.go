//go:build !linux

package lab

func runHelper(role string) error { return ErrUnsupportedOS }
