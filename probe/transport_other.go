//go:build !linux

package probe

func newTransport(netns string) (filterTransport, error) { return nil, ErrNotLinux }

func withLinkCheck(chk Checker, ns string) (Checker, error) { return chk, nil }
