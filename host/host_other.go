//go:build !linux

package host

import (
	"context"
	"fmt"
	"runtime"

	"github.com/keepalive-dev/keepalive"
)

func errLinuxOnly(what string) error {
	return fmt.Errorf("host: %s works on Linux only (sock_diag, /proc, pidfd_getfd); this is %s: %w", what, runtime.GOOS, ErrUnsupported)
}

// List works on Linux only.
func List(ctx context.Context, opt ListOptions) ([]Socket, error) {
	return nil, errLinuxOnly("listing sockets")
}

// Walk works on Linux only.
func Walk(ctx context.Context, opt ListOptions, fn func(*Socket) error) error {
	return errLinuxOnly("listing sockets")
}

// Lookup works on Linux only.
func Lookup(ctx context.Context, s Socket) (Socket, error) {
	return Socket{}, errLinuxOnly("socket lookup")
}

// ReadSettings works on Linux only.
func ReadSettings(ctx context.Context, s Socket) (keepalive.Settings, Owner, error) {
	return keepalive.Settings{}, Owner{}, errLinuxOnly("reading another process's socket")
}

// OwnersOf works on Linux only.
func OwnersOf(ctx context.Context, inodes []uint32, fn func(inode uint32, owners []Owner)) error {
	return errLinuxOnly("finding the owners of sockets")
}

// Destroy works on Linux only.
func Destroy(ctx context.Context, s Socket) error {
	return errLinuxOnly("destroying sockets")
}

// Retrofit works on Linux only; every result carries the error.
func Retrofit(ctx context.Context, socks []Socket, cfg keepalive.Config, opt RetrofitOptions) []RetrofitResult {
	out := make([]RetrofitResult, len(socks))
	for i := range socks {
		out[i] = RetrofitResult{Socket: socks[i], Err: errLinuxOnly("retrofitting sockets")}
	}
	return out
}

// NetNSNames works on Linux only.
func NetNSNames() ([]string, error) {
	return nil, errLinuxOnly("listing network namespaces")
}

// SessionPIDs works on Linux only; elsewhere it returns pid alone.
func SessionPIDs(pid int) []int { return []int{pid} }

// ContainerOf works on Linux only.
func ContainerOf(pid int) (*Container, error) { return nil, errLinuxOnly("reading a process's cgroup") }

// Namespaces works on Linux only.
func Namespaces(warn func(error)) ([]NetNS, error) {
	return nil, errLinuxOnly("listing network namespaces")
}

// ResolveNetNS works on Linux only.
func ResolveNetNS(name string) (NetNS, error) {
	return NetNS{}, errLinuxOnly("network namespaces")
}

// NamespaceOf works on Linux only.
func NamespaceOf(pid int) (NetNS, error) { return NetNS{}, errLinuxOnly("network namespaces") }

// DockerContainerID works on Linux only.
func DockerContainerID(ctx context.Context, socket, name string) (string, error) {
	return "", errLinuxOnly("asking the Docker engine")
}
