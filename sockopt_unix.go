//go:build darwin || freebsd

package keepalive

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// unixOpts names the per-OS socket options for the BSD family.
type unixOpts struct {
	idle, intvl, cnt int
	ut               int // 0: no user-timeout option
	utUnit           time.Duration
}

func applyFD(fd uintptr, cfg Config) error {
	o := sockOpts()
	ifd := int(fd)
	var applied []string
	set := func(field string, level, opt, v int, shown string) error {
		if err := unix.SetsockoptInt(ifd, level, opt, v); err != nil {
			return &FieldError{Field: field, Value: shown, OS: runtime.GOOS, Err: os.NewSyscallError("setsockopt", err), Applied: applied}
		}
		applied = append(applied, field)
		return nil
	}
	if cfg.UserTimeout > 0 && o.ut == 0 {
		return &FieldError{Field: "user-timeout", Value: cfg.UserTimeout.String(), OS: runtime.GOOS, Err: ErrUnsupported,
			Fix: runtime.GOOS + " has no TCP_USER_TIMEOUT equivalent"}
	}
	if err := set("keepalive", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "on"); err != nil {
		return err
	}
	if cfg.Idle > 0 {
		if err := set("idle", unix.IPPROTO_TCP, o.idle, int(cfg.Idle/time.Second), cfg.Idle.String()); err != nil {
			return err
		}
	}
	if cfg.Interval > 0 {
		if err := set("interval", unix.IPPROTO_TCP, o.intvl, int(cfg.Interval/time.Second), cfg.Interval.String()); err != nil {
			return err
		}
	}
	if cfg.Count > 0 {
		if err := set("count", unix.IPPROTO_TCP, o.cnt, cfg.Count, fmt.Sprint(cfg.Count)); err != nil {
			return err
		}
	}
	if cfg.UserTimeout > 0 {
		if err := set("user-timeout", unix.IPPROTO_TCP, o.ut, int(cfg.UserTimeout/o.utUnit), cfg.UserTimeout.String()); err != nil {
			return err
		}
	}
	return nil
}

func getFD(fd uintptr) (Settings, error) {
	o := sockOpts()
	ifd := int(fd)
	var s Settings
	get := func(field string, level, opt int) (int, error) {
		v, err := unix.GetsockoptInt(ifd, level, opt)
		if err != nil {
			return 0, &FieldError{Field: field, OS: runtime.GOOS, Err: os.NewSyscallError("getsockopt", err)}
		}
		return v, nil
	}
	on, err := get("keepalive", unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil {
		return s, err
	}
	s.Enabled = on != 0
	v, err := get("idle", unix.IPPROTO_TCP, o.idle)
	if err != nil {
		return s, err
	}
	s.Idle = time.Duration(v) * time.Second
	if v, err = get("interval", unix.IPPROTO_TCP, o.intvl); err != nil {
		return s, err
	}
	s.Interval = time.Duration(v) * time.Second
	if s.Count, err = get("count", unix.IPPROTO_TCP, o.cnt); err != nil {
		return s, err
	}
	if o.ut != 0 {
		if v, err = get("user-timeout", unix.IPPROTO_TCP, o.ut); err != nil {
			return s, err
		}
		s.UserTimeout = time.Duration(v) * o.utUnit
	}
	return s, nil
}

func disableFD(fd uintptr) error {
	ifd := int(fd)
	if err := unix.SetsockoptInt(ifd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0); err != nil {
		return &FieldError{Field: "keepalive", Value: "off", OS: runtime.GOOS, Err: os.NewSyscallError("setsockopt", err)}
	}
	v, err := unix.GetsockoptInt(ifd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil {
		return &FieldError{Field: "keepalive", Value: "off", OS: runtime.GOOS, Err: os.NewSyscallError("getsockopt", err), Applied: []string{"keepalive"}}
	}
	if v != 0 {
		return &FieldError{Field: "keepalive", Value: "off", OS: runtime.GOOS, Err: fmt.Errorf("reads back %d after setting 0", v)}
	}
	return nil
}
