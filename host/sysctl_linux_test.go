//go:build linux

package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

func TestWritePersistFileAndRestore(t *testing.T) {
	dir := t.TempDir()
	cfg := keepalive.Config{Idle: 60 * time.Second, Count: 4}
	// A new file: written whole, and removed again by restore.
	p := filepath.Join(dir, "60-keepalive.conf")
	restore, err := WritePersistFile(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !strings.Contains(string(b), "net.ipv4.tcp_keepalive_time = 60") {
		t.Fatalf("written: %q", b)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("restore left the new file: %v", err)
	}
	// An existing file: replaced, and its old content put back by restore.
	if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	restore, err = WritePersistFile(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old\n" {
		t.Fatalf("restored %q", b)
	}
	// Refused: not .conf, a symbolic link, not a regular file; nothing written.
	if err := os.Symlink(filepath.Join(dir, "target.conf"), filepath.Join(dir, "link.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{filepath.Join(dir, "x.txt"), filepath.Join(dir, "link.conf"), filepath.Join(dir, "sub.conf")} {
		if _, err := WritePersistFile(bad, cfg); err == nil {
			t.Errorf("WritePersistFile(%s) accepted", bad)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "target.conf")); !os.IsNotExist(err) {
		t.Fatal("wrote through the symbolic link")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestAppliedAtBoot(t *testing.T) {
	for p, want := range map[string]bool{
		"/etc/sysctl.d/60-keepalive.conf": true, "/usr/lib/sysctl.d/x.conf": true, "/etc/sysctl.conf": true,
		"/etc/sysctl.d/x.txt": false, "/tmp/x.conf": false, "/run/sysctl.d/x.conf": false, "/etc/sysctl.d/sub/x.conf": false,
	} {
		if got := AppliedAtBoot(p); got != want {
			t.Errorf("AppliedAtBoot(%s) = %v, want %v", p, got, want)
		}
	}
}

func TestReadSysctlNamespace(t *testing.T) {
	nstest.Require(t)
	t.Parallel()
	ns := nstest.NewNS(t, "kahost")
	s, err := ReadSysctl(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	// A new namespace starts at the kernel defaults, not the host's values.
	if s.Keepalive != keepalive.LinuxDefaults() {
		t.Fatalf("fresh namespace sysctls = %+v, want %+v", s.Keepalive, keepalive.LinuxDefaults())
	}
	if err := SetSysctl(ns.Name, keepalive.Config{Idle: 60 * time.Second, Count: 4}); err != nil {
		t.Fatal(err)
	}
	s, err = ReadSysctl(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	if want := (keepalive.Config{Idle: 60 * time.Second, Interval: 75 * time.Second, Count: 4}); s.Keepalive != want {
		t.Fatalf("after set: %+v, want %+v", s.Keepalive, want)
	}
	if err := SetSysctl(ns.Name, keepalive.Config{Idle: 60 * time.Second, Count: 0, Interval: 40000 * time.Second}); err == nil {
		t.Fatal("SetSysctl accepted interval 40000s")
	}
	if s2, _ := ReadSysctl(ns.Name); s2.Keepalive != s.Keepalive {
		t.Fatalf("invalid SetSysctl changed values: %+v", s2.Keepalive)
	}
}
