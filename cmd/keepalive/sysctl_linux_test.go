//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// TestSysctlSetInNamespace sets and persists real sysctls, in a namespace of its own so the
// host is untouched: --netns for the live values, and the binary started inside the
// namespace for --persist (which refuses --netns).
func TestSysctlSetInNamespace(t *testing.T) {
	nstest.Require(t)
	ns := nstest.NewNS(t, "kacmd")
	out, stderr, code := planRun(t, "sysctl", "set", "--netns", ns.Name, "--idle", "60", "--interval", "10", "--count", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"1 min 40 s", "net.ipv4.tcp_keepalive_time    7200 → 60", "net.ipv4.tcp_keepalive_probes  9 → 4",
		"To put the old values back: keepalive sysctl --netns " + ns.Name + " set --idle 7200 --interval 75 --count 9"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	s, err := host.ReadSysctl(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	if want := (keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 4}); s.Keepalive != want {
		t.Fatalf("namespace now has %+v, want %+v", s.Keepalive, want)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "60-keepalive.conf")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--netns", ns.Name, "--idle", "61", "--persist", file}, "cannot be combined with --netns"},
		{[]string{"--netns", "../x", "--idle", "61", "--dry-run"}, "invalid --netns"},
		{[]string{"--idle", "61", "--persist", filepath.Join(dir, "keepalive.txt")}, "must end in .conf"},
	} {
		_, stderr, code := planRun(t, append([]string{"sysctl", "set"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("sysctl set %v: exit %d (want 2): %s", tc.args, code, stderr)
		}
	}
	bin, err := planBinary()
	if err != nil {
		t.Fatal(err)
	}
	inside := func(args ...string) (string, string, int) {
		var o, e strings.Builder
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &o, &e
		var runErr error
		ns.Do(t, func() error { runErr = cmd.Run(); return nil })
		code := 0
		if ee, ok := runErr.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if runErr != nil {
			t.Fatal(runErr)
		}
		return o.String(), e.String(), code
	}
	out, stderr, code = inside("sysctl", "set", "--idle", "90", "--persist", file)
	if code != 0 || !strings.Contains(out, "60 → 90") || !strings.Contains(out, "NOT applied at boot") {
		t.Fatalf("persist inside the namespace: exit %d\n%s%s", code, out, stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), "net.ipv4.tcp_keepalive_time = 90") {
		t.Fatalf("persist file: %v\n%s", err, b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left in %s: %v", dir, ents)
	}
	// Never through a symbolic link.
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link.conf")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = inside("sysctl", "set", "--idle", "91", "--persist", link)
	if code != 1 || !strings.Contains(stderr, "symbolic link") {
		t.Fatalf("persist to a symlink: exit %d: %s", code, stderr)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("wrote through the symlink: %v", err)
	}
	if s, _ := host.ReadSysctl(ns.Name); s.Keepalive.Idle != 90*time.Second {
		t.Fatalf("a refused --persist changed the live value: %+v", s.Keepalive)
	}
	// The host namespace was not touched.
	host, err := host.ReadSysctl("")
	if err != nil {
		t.Fatal(err)
	}
	if host.Keepalive.Idle == 60*time.Second || host.Keepalive.Idle == 90*time.Second {
		t.Fatalf("host namespace changed: %+v", host.Keepalive)
	}
}
