//go:build !linux

package probe

func newTransport(netns string) (filterTransport, error) { return nil, ErrNotLinux }
