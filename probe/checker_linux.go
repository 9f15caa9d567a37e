package probe

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ConnChecker returns a [Checker] for connections the caller holds: it reads
// tcp_info with getsockopt(TCP_INFO) on each one (exact and cheap; no
// sock_diag). A flow not among conns, or whose socket fails the call, is
// reported as not found.
func ConnChecker(conns ...syscall.Conn) (Checker, error) {
	byFlow := make(map[Flow]syscall.RawConn, len(conns))
	for _, c := range conns {
		nc, ok := c.(net.Conn)
		if !ok {
			return nil, fmt.Errorf("probe.ConnChecker: %T is not a net.Conn", c)
		}
		la, ok1 := nc.LocalAddr().(*net.TCPAddr)
		ra, ok2 := nc.RemoteAddr().(*net.TCPAddr)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("probe.ConnChecker: %v -> %v is not a TCP connection", nc.LocalAddr(), nc.RemoteAddr())
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return nil, err
		}
		byFlow[Flow{Local: la.AddrPort(), Remote: ra.AddrPort()}.Normalize()] = rc
	}
	return CheckFunc(func(ctx context.Context, flows []Flow) ([]SockState, error) {
		out := make([]SockState, len(flows))
		for i, f := range flows {
			rc, ok := byFlow[f.Normalize()]
			if !ok {
				continue
			}
			var info *unix.TCPInfo
			var gerr error
			if err := rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
				continue // closed
			}
			out[i] = SockState{
				Found:       true,
				Established: info.State == unix.BPF_TCP_ESTABLISHED,
				State:       fmt.Sprintf("TCP state %d", info.State),
				Unacked:     info.Unacked,
				NotSent:     info.Notsent_bytes,
			}
		}
		return out, nil
	}), nil
}
