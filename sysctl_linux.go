//go:build linux

package keepalive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
)

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// inNetNS runs fn inside the named network namespace ("" = current): /proc/sys/net reflects
// the namespace of the thread that opens it.
func inNetNS(name string, fn func() error) error { return netnsx.DoNamed(name, fn) }

func readSysctlInt(key string) (int, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s = %q: %w", key, strings.TrimSpace(string(b)), err)
	}
	return v, nil
}

// ReadSysctl reads the keepalive-related sysctls of the named network namespace ("" for the
// current one).
func ReadSysctl(netnsName string) (Sysctl, error) {
	s := Sysctl{NetNS: netnsName}
	err := inNetNS(netnsName, func() error {
		k := sysctlKeys()
		var vals [3]int
		for i, key := range k {
			v, err := readSysctlInt(key)
			if err != nil {
				return err
			}
			vals[i] = v
		}
		s.Keepalive = Config{Idle: time.Duration(vals[0]) * time.Second, Interval: time.Duration(vals[1]) * time.Second, Count: vals[2]}
		r2, err := readSysctlInt("net.ipv4.tcp_retries2")
		if err != nil {
			return err
		}
		s.Retries2 = r2
		rl, err := readSysctlInt("net.ipv4.tcp_invalid_ratelimit")
		if err != nil {
			return err
		}
		s.InvalidRatelimit = time.Duration(rl) * time.Millisecond
		return nil
	})
	return s, err
}

// SetSysctl writes cfg's non-zero keepalive fields as the system-wide defaults of the named
// network namespace ("" = current). cfg.UserTimeout has no sysctl and is rejected. Nothing is
// written unless every value is valid; the previous values are restored if a write fails.
func SetSysctl(netnsName string, cfg Config) error {
	if cfg.UserTimeout != 0 {
		return &FieldError{Field: "user-timeout", Value: cfg.UserTimeout.String(), OS: "linux", Err: ErrUnsupported,
			Fix: "TCP_USER_TIMEOUT has no system-wide sysctl; set it per socket (keepalive enable --user-timeout)"}
	}
	if cfg == (Config{}) {
		return errors.New("nothing to set: give at least one of idle, interval, count")
	}
	if _, err := cfg.Validate("linux"); err != nil {
		return err
	}
	return inNetNS(netnsName, func() error {
		k := sysctlKeys()
		type kv struct {
			key string
			val int
		}
		var want []kv
		if cfg.Idle > 0 {
			want = append(want, kv{k[0], int(cfg.Idle / time.Second)})
		}
		if cfg.Interval > 0 {
			want = append(want, kv{k[1], int(cfg.Interval / time.Second)})
		}
		if cfg.Count > 0 {
			want = append(want, kv{k[2], cfg.Count})
		}
		old := make([]int, len(want))
		for i, w := range want {
			v, err := readSysctlInt(w.key)
			if err != nil {
				return err
			}
			old[i] = v
		}
		for i, w := range want {
			if err := os.WriteFile(sysctlPath(w.key), []byte(strconv.Itoa(w.val)), 0o644); err != nil {
				for j := 0; j < i; j++ {
					_ = os.WriteFile(sysctlPath(want[j].key), []byte(strconv.Itoa(old[j])), 0o644)
				}
				if errors.Is(err, os.ErrPermission) {
					return fmt.Errorf("write %s: %w (run as root: writing sysctls needs CAP_NET_ADMIN in the namespace's owner)", w.key, err)
				}
				return fmt.Errorf("write %s: %w", w.key, err)
			}
		}
		return nil
	})
}
