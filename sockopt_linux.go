//go:build linux

package keepalive

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// socketProto returns the SO_PROTOCOL of fd (IPPROTO_TCP, IPProtoMPTCP, ...) and rejects anything
// that is not TCP or MPTCP. An OS too old for SO_PROTOCOL (before 2.6.32) is taken as TCP.
func socketProto(fd int) (int, error) {
	p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return unix.IPPROTO_TCP, nil
	}
	if p != unix.IPPROTO_TCP && p != IPProtoMPTCP {
		return p, &FieldError{Field: "socket", Value: fmt.Sprintf("protocol %d", p), OS: "linux", Err: ErrNotTCP}
	}
	return p, nil
}

func applyFD(fd uintptr, cfg Config) error {
	ifd := int(fd)
	proto, err := socketProto(ifd)
	if err != nil {
		return err
	}
	if proto == IPProtoMPTCP && cfg.UserTimeout > 0 {
		return &FieldError{Field: "user-timeout", Value: cfg.UserTimeout.String(), OS: "linux",
			Err: fmt.Errorf("%w on a Multipath TCP socket (%w)", ErrUnsupported, syscall.ENOPROTOOPT),
			Fix: "the kernel has no TCP_USER_TIMEOUT for MPTCP; turn MPTCP off with SetMultipathTCP(false) on the Dialer or ListenConfig (NewDialer and NewListenConfig do it), or leave UserTimeout zero"}
	}
	var applied []string
	set := func(field string, level, opt, v int, shown string) error {
		if err := unix.SetsockoptInt(ifd, level, opt, v); err != nil {
			return &FieldError{Field: field, Value: shown, OS: "linux", Err: os.NewSyscallError("setsockopt", err), Applied: applied}
		}
		applied = append(applied, field)
		return nil
	}
	if err := set("keepalive", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "on"); err != nil {
		return err
	}
	if cfg.Idle > 0 {
		if err := set("idle", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(cfg.Idle/time.Second), cfg.Idle.String()); err != nil {
			return err
		}
	}
	if cfg.Interval > 0 {
		if err := set("interval", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(cfg.Interval/time.Second), cfg.Interval.String()); err != nil {
			return err
		}
	}
	if cfg.Count > 0 {
		if err := set("count", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, cfg.Count, fmt.Sprint(cfg.Count)); err != nil {
			return err
		}
	}
	if cfg.UserTimeout > 0 {
		if err := set("user-timeout", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(cfg.UserTimeout/time.Millisecond), cfg.UserTimeout.String()); err != nil {
			return err
		}
	}
	return nil
}

func getFD(fd uintptr) (Settings, error) {
	ifd := int(fd)
	var s Settings
	proto, err := socketProto(ifd)
	if err != nil {
		return s, err
	}
	s.MPTCP = proto == IPProtoMPTCP
	get := func(field string, level, opt int) (int, error) {
		v, err := unix.GetsockoptInt(ifd, level, opt)
		if err != nil {
			return 0, &FieldError{Field: field, OS: "linux", Err: os.NewSyscallError("getsockopt", err)}
		}
		return v, nil
	}
	on, err := get("keepalive", unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil {
		return s, err
	}
	s.Enabled = on != 0
	v, err := get("idle", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	if err != nil {
		return s, err
	}
	s.Idle = time.Duration(v) * time.Second
	if v, err = get("interval", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL); err != nil {
		return s, err
	}
	s.Interval = time.Duration(v) * time.Second
	if s.Count, err = get("count", unix.IPPROTO_TCP, unix.TCP_KEEPCNT); err != nil {
		return s, err
	}
	if s.MPTCP {
		return s, nil // no TCP_USER_TIMEOUT on MPTCP sockets (EOPNOTSUPP)
	}
	if v, err = get("user-timeout", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); err != nil {
		return s, err
	}
	s.UserTimeout = time.Duration(v) * time.Millisecond
	return s, nil
}

func disableFD(fd uintptr) error {
	ifd := int(fd)
	if _, err := socketProto(ifd); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(ifd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0); err != nil {
		return &FieldError{Field: "keepalive", Value: "off", OS: "linux", Err: os.NewSyscallError("setsockopt", err)}
	}
	v, err := unix.GetsockoptInt(ifd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil {
		return &FieldError{Field: "keepalive", Value: "off", OS: "linux", Err: os.NewSyscallError("getsockopt", err), Applied: []string{"keepalive"}}
	}
	if v != 0 {
		return &FieldError{Field: "keepalive", Value: "off", OS: "linux", Err: fmt.Errorf("reads back %d after setting 0", v)}
	}
	return nil
}
