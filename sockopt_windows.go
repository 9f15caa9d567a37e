//go:build windows

package keepalive

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Windows socket options from ws2ipdef.h (not all are in x/sys/windows).
const (
	winTCPMaxRT     = 5  // TCP_MAXRT, seconds
	winTCPKeepIdle  = 3  // TCP_KEEPIDLE (Windows 10 1709+), seconds
	winTCPKeepIntvl = 17 // TCP_KEEPINTVL (Windows 10 1709+), seconds
	winTCPKeepCnt   = 16 // TCP_KEEPCNT (Windows 10 1703+)
)

func applyFD(fd uintptr, cfg Config) error {
	h := windows.Handle(fd)
	var applied []string
	set := func(field string, level, opt, v int, shown string) error {
		if err := windows.SetsockoptInt(h, level, opt, v); err != nil {
			return &FieldError{Field: field, Value: shown, OS: "windows", Err: os.NewSyscallError("setsockopt", err), Applied: applied}
		}
		applied = append(applied, field)
		return nil
	}
	if err := set("keepalive", windows.SOL_SOCKET, windows.SO_KEEPALIVE, 1, "on"); err != nil {
		return err
	}
	idleErr, intvlErr := error(nil), error(nil)
	if cfg.Idle > 0 {
		idleErr = set("idle", windows.IPPROTO_TCP, winTCPKeepIdle, int(cfg.Idle/time.Second), cfg.Idle.String())
	}
	if cfg.Interval > 0 {
		intvlErr = set("interval", windows.IPPROTO_TCP, winTCPKeepIntvl, int(cfg.Interval/time.Second), cfg.Interval.String())
	}
	if idleErr != nil || intvlErr != nil {
		// Older Windows: SIO_KEEPALIVE_VALS sets idle and interval together (ms) and always
		// sends 10 probes. Both values must be given since the current ones cannot be read.
		if cfg.Idle == 0 || cfg.Interval == 0 {
			return &FieldError{Field: "idle/interval", OS: "windows", Err: errors.Join(idleErr, intvlErr), Applied: applied,
				Fix: "this Windows has no TCP_KEEPIDLE/TCP_KEEPINTVL; set both idle and interval so SIO_KEEPALIVE_VALS can be used (it fixes the count at 10 probes)"}
		}
		ka := windows.TCPKeepalive{OnOff: 1, Time: uint32(cfg.Idle / time.Millisecond), Interval: uint32(cfg.Interval / time.Millisecond)}
		var ret uint32
		if err := windows.WSAIoctl(h, windows.SIO_KEEPALIVE_VALS, (*byte)(unsafe.Pointer(&ka)), uint32(unsafe.Sizeof(ka)), nil, 0, &ret, nil, 0); err != nil {
			return &FieldError{Field: "idle/interval", OS: "windows", Err: os.NewSyscallError("WSAIoctl(SIO_KEEPALIVE_VALS)", err), Applied: applied}
		}
		for _, f := range []string{"idle", "interval"} {
			if !slices.Contains(applied, f) {
				applied = append(applied, f)
			}
		}
	}
	if cfg.Count > 0 {
		if err := set("count", windows.IPPROTO_TCP, winTCPKeepCnt, cfg.Count, fmt.Sprint(cfg.Count)); err != nil {
			err.(*FieldError).Fix = "TCP_KEEPCNT needs Windows 10 1703 or later; older systems always send 10 probes"
			return err
		}
	}
	if cfg.UserTimeout > 0 {
		if err := set("user-timeout", windows.IPPROTO_TCP, winTCPMaxRT, int(cfg.UserTimeout/time.Second), cfg.UserTimeout.String()); err != nil {
			return err
		}
	}
	return nil
}

func getFD(fd uintptr) (Settings, error) {
	return Settings{}, &FieldError{Field: "keepalive", OS: "windows", Err: ErrUnsupported,
		Fix: "Windows cannot read keepalive settings back from a socket"}
}

// disableFD turns SO_KEEPALIVE off. Windows reads SO_KEEPALIVE back, so the result is checked.
func disableFD(fd uintptr) error {
	h := windows.Handle(fd)
	if err := windows.SetsockoptInt(h, windows.SOL_SOCKET, windows.SO_KEEPALIVE, 0); err != nil {
		return &FieldError{Field: "keepalive", Value: "off", OS: "windows", Err: os.NewSyscallError("setsockopt", err)}
	}
	v, err := windows.GetsockoptInt(h, windows.SOL_SOCKET, windows.SO_KEEPALIVE)
	if err != nil {
		return &FieldError{Field: "keepalive", Value: "off", OS: "windows", Err: os.NewSyscallError("getsockopt", err), Applied: []string{"keepalive"}}
	}
	if v != 0 {
		return &FieldError{Field: "keepalive", Value: "off", OS: "windows", Err: fmt.Errorf("reads back %d after setting 0", v)}
	}
	return nil
}
