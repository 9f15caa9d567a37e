package probe

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keepalive-dev/keepalive/internal/probewire"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const (
	ethPIP   = 0x0800
	ethPIPv6 = 0x86dd
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// captureQueue is how many decoded packets wait for the prober's loop (≈ 160 B each). The
// capture socket's 64 MiB kernel buffer absorbs longer bursts; a larger queue costs every
// prober (the agent keeps one per namespace) its size in resident memory once the ring has
// gone round: 65 536 entries were 10 MiB per namespace.
const captureQueue = 4096

// linuxTransport captures with one AF_PACKET socket (SOCK_DGRAM, ETH_P_ALL,
// kernel BPF filter) and injects with one raw socket per family.
type linuxTransport struct {
	capFD      int
	raw4, raw6 int
	ch         chan Wire
	done       chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex // guards enc and the raw sockets
	enc        *probewire.Encoder
	closeOnce  sync.Once
	active     atomic.Bool // packets are delivered only while a run is active
}

func newTransport(ns string) (filterTransport, error) {
	t := &linuxTransport{capFD: -1, raw4: -1, raw6: -1, enc: probewire.NewEncoder(),
		ch: make(chan Wire, captureQueue), done: make(chan struct{})}
	open := func() error {
		var err error
		// Protocol 0: receive nothing until the filter is attached and the
		// socket bound to ETH_P_ALL.
		t.capFD, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return sockErr("AF_PACKET capture socket", err)
		}
		t.raw4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return sockErr("IPv4 raw socket", err)
		}
		t.raw6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return sockErr("IPv6 raw socket", err)
		}
		return nil
	}
	var err error
	if ns == "" {
		err = open()
	} else {
		err = inNetns(ns, open)
	}
	if err != nil {
		t.closeFDs()
		return nil, err
	}
	for _, fd := range []int{t.raw4, t.raw6} {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	}
	if err := t.attach(nil); err != nil {
		t.closeFDs()
		return nil, err
	}
	if err := unix.SetsockoptInt(t.capFD, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		_ = unix.SetsockoptInt(t.capFD, unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<20)
	}
	// Kernel receive timestamps (CLOCK_REALTIME, set when the packet passed the
	// capture tap: on egress as it left, on ingress as it arrived) decide
	// which segment came after which probe; a user-space clock read after
	// recvmsg cannot.
	if err := unix.SetsockoptInt(t.capFD, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		t.closeFDs()
		return nil, fmt.Errorf("capture socket SO_TIMESTAMPNS: %w", err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(t.capFD, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.closeFDs()
		return nil, fmt.Errorf("capture socket SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(t.capFD, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)}); err != nil {
		t.closeFDs()
		return nil, fmt.Errorf("bind capture socket to ETH_P_ALL: %w", err)
	}
	t.wg.Add(1)
	go t.read()
	return t, nil
}

func sockErr(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: opening %s: %v", ErrPermission, what, err)
	}
	return fmt.Errorf("opening %s: %w", what, err)
}

// inNetns runs fn on a locked OS thread switched into the named namespace (or the one at
// a path). Sockets created by fn stay in that namespace.
func inNetns(name string, fn func() error) error { return netnsx.DoNamed(name, fn) }

// attach installs the capture filter for flows (nil: accept nothing).
func (t *linuxTransport) attach(flows []Flow) error {
	var prog []bpf.Instruction
	if len(flows) == 0 {
		prog = []bpf.Instruction{bpf.RetConstant{Val: 0}}
	} else {
		var err error
		if prog, err = buildFilter(flows); err != nil {
			return err
		}
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("assemble capture filter: %w", err)
	}
	ins := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}
	if err := unix.SetsockoptSockFprog(t.capFD, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attach capture filter (SO_ATTACH_FILTER, %d instructions): %w", len(ins), err)
	}
	return nil
}

func (t *linuxTransport) setFlows(flows []Flow) error {
	if len(flows) == 0 {
		t.active.Store(false)
		return t.attach(nil)
	}
	if err := t.attach(flows); err != nil {
		return err
	}
	// Forget what was captured before this run.
	for {
		select {
		case <-t.ch:
			continue
		default:
		}
		break
	}
	t.active.Store(true)
	return nil
}

func (t *linuxTransport) read() {
	defer t.wg.Done()
	defer close(t.ch)
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	dec := probewire.NewDecoder()
	for {
		select {
		case <-t.done:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(t.capFD, buf, oob, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return
		}
		if !t.active.Load() {
			continue
		}
		at, ok := kernelStamp(oob[:oobn])
		if !ok {
			continue // no kernel timestamp: the packet cannot be placed in time
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok {
			continue
		}
		if ll.Protocol != htons(ethPIP) && ll.Protocol != htons(ethPIPv6) {
			continue
		}
		// On loopback every packet is seen twice (out and in): keep one.
		if ll.Pkttype == unix.PACKET_OUTGOING && ll.Ifindex == 1 {
			continue
		}
		w, ok := dec.Decode(buf[:n])
		if !ok {
			continue
		}
		w.At = at
		select {
		case t.ch <- w:
		case <-t.done:
			return
		}
	}
}

// kernelStamp returns the SCM_TIMESTAMPNS control message's time.
func kernelStamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			if ts.Sec == 0 && ts.Nsec == 0 {
				return time.Time{}, false
			}
			return time.Unix(ts.Unix()), true
		}
	}
	return time.Time{}, false
}

// Packets implements Transport.
func (t *linuxTransport) Packets() <-chan Wire { return t.ch }

// Inject implements Transport.
func (t *linuxTransport) Inject(p Packet) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, err := t.enc.Encode(p)
	if err != nil {
		return err
	}
	dst := p.Dst.Addr().Unmap()
	var sa unix.Sockaddr
	fd := t.raw4
	if dst.Is4() {
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		fd = t.raw6
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
	}
	if fd < 0 {
		return errors.New("probe: transport closed")
	}
	for try := 0; ; try++ {
		err = unix.Sendto(fd, b, 0, sa)
		if err == nil {
			return nil
		}
		if (errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN)) && try < 50 {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		return &os.SyscallError{Syscall: "sendto " + netip.AddrPortFrom(dst, p.Dst.Port()).String(), Err: err}
	}
}

// Close stops the capture and closes the sockets.
func (t *linuxTransport) Close() error {
	t.closeOnce.Do(func() {
		close(t.done)
		// Unblock the reader if it waits on a full channel or in recvfrom
		// (SO_RCVTIMEO bounds the latter).
		go func() {
			for range t.ch {
			}
		}()
		t.wg.Wait()
		t.mu.Lock()
		t.closeFDs()
		t.mu.Unlock()
	})
	return nil
}

func (t *linuxTransport) closeFDs() {
	for _, fd := range []*int{&t.capFD, &t.raw4, &t.raw6} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
