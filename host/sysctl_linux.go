//go:build linux

package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/netnsx"
)

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// inNamedNetNS runs fn inside the named network namespace ("" = current): /proc/sys/net reflects
// the namespace of the thread that opens it.
func inNamedNetNS(name string, fn func() error) error { return netnsx.DoNamed(name, fn) }

func readSysctlKey(key string) (int, error) {
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
	err := inNamedNetNS(netnsName, func() error {
		k := sysctlKeys()
		var vals [3]int
		for i, key := range k {
			v, err := readSysctlKey(key)
			if err != nil {
				return err
			}
			vals[i] = v
		}
		s.Keepalive = keepalive.Config{Idle: time.Duration(vals[0]) * time.Second, Interval: time.Duration(vals[1]) * time.Second, Count: vals[2]}
		r2, err := readSysctlKey("net.ipv4.tcp_retries2")
		if err != nil {
			return err
		}
		s.Retries2 = r2
		rl, err := readSysctlKey("net.ipv4.tcp_invalid_ratelimit")
		if err != nil {
			return err
		}
		s.InvalidRatelimit = time.Duration(rl) * time.Millisecond
		// Linux 6.x: the RTO bounds are tunable; older kernels have neither file.
		if v, err := readSysctlKey("net.ipv4.tcp_rto_min_us"); err == nil && v > 0 {
			s.RTOMin = time.Duration(v) * time.Microsecond
		}
		if v, err := readSysctlKey("net.ipv4.tcp_rto_max_ms"); err == nil && v > 0 {
			s.RTOMax = time.Duration(v) * time.Millisecond
		}
		return nil
	})
	return s, err
}

// SetSysctl writes cfg's non-zero keepalive fields as the system-wide defaults of the named
// network namespace ("" = current). cfg.UserTimeout has no sysctl and is rejected. Nothing is
// written unless every value is valid; the previous values are restored if a write fails.
func SetSysctl(netnsName string, cfg keepalive.Config) error {
	if cfg.UserTimeout != 0 {
		return &keepalive.FieldError{Field: "user-timeout", Value: cfg.UserTimeout.String(), OS: "linux", Err: keepalive.ErrUnsupported,
			Fix: "TCP_USER_TIMEOUT has no system-wide sysctl; set it per socket (keepalive enable --user-timeout)"}
	}
	if cfg == (keepalive.Config{}) {
		return errors.New("nothing to set: give at least one of idle, interval, count")
	}
	if _, err := cfg.Validate("linux"); err != nil {
		return err
	}
	return inNamedNetNS(netnsName, func() error {
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
			v, err := readSysctlKey(w.key)
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

// WritePersistFile writes PersistFile(cfg) to path without ever following a symbolic link
// there: into a temporary file in the same directory, synced, then renamed over path. path
// must end in ".conf" (systemd-sysctl ignores other names). It returns a function that puts
// back what was at path before (the old content, or nothing), for a caller whose next step
// failed.
func WritePersistFile(path string, cfg keepalive.Config) (restore func() error, err error) {
	if !strings.HasSuffix(path, ".conf") {
		return nil, fmt.Errorf("persist file %q must end in .conf (systemd-sysctl reads only *.conf)", path)
	}
	fi, err := os.Lstat(path)
	var old []byte
	existed := false
	switch {
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		return nil, fmt.Errorf("persist file %q is a symbolic link: refusing to write through it", path)
	case err == nil && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("persist file %q is not a regular file", path)
	case err == nil:
		if old, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read the current %s: %w", path, err)
		}
		existed = true
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := replaceFile(path, []byte(PersistFile(cfg))); err != nil {
		return nil, err
	}
	return func() error {
		if existed {
			return replaceFile(path, old)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}, nil
}

// replaceFile atomically replaces path with content (mode 0644).
func replaceFile(path string, content []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
