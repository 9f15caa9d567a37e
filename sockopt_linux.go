//go:build linux

package keepalive

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func applyFD(fd uintptr, cfg Config) error {
	ifd := int(fd)
	set := func(field string, level, opt, v int, shown string) error {
		if err := unix.SetsockoptInt(ifd, level, opt, v); err != nil {
			return &FieldError{Field: field, Value: shown, OS: "linux", Err: os.NewSyscallError("setsockopt", err)}
		}
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
	if v, err = get("user-timeout", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); err != nil {
		return s, err
	}
	s.UserTimeout = time.Duration(v) * time.Millisecond
	return s, nil
}
