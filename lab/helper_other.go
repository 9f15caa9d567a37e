//go:build !linux

package lab

func runHelper(role string, extra []Detector) error { return ErrUnsupportedOS }

func platformDetectors() []Detector { return nil }
