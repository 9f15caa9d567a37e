//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// TestSysctlSetInNamespace sets and persists real sysctls, in a namespace of its own so the
// host is untouched.
func TestSysctlSetInNamespace(t *testing.T) {
	nstest.Require(t)
	ns := nstest.NewNS(t, "kacmd")
	file := filepath.Join(t.TempDir(), "60-keepalive.conf")
	out, stderr, code := planRun(t, "sysctl", "set", "--netns", ns.Name, "--idle", "60", "--interval", "10", "--count", "4", "--persist", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "1 min 40 s") {
		t.Fatalf("output should state the new detection time (60 + 4×10 s):\n%s", out)
	}
	s, err := keepalive.ReadSysctl(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	if want := (keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 4}); s.Keepalive != want {
		t.Fatalf("namespace now has %+v, want %+v", s.Keepalive, want)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), "net.ipv4.tcp_keepalive_probes = 4") {
		t.Fatalf("persist file: %v\n%s", err, b)
	}
	// The host namespace was not touched.
	host, err := keepalive.ReadSysctl("")
	if err != nil {
		t.Fatal(err)
	}
	if host.Keepalive.Idle == 60*time.Second && host.Keepalive.Count == 4 {
		t.Fatalf("host namespace changed: %+v", host.Keepalive)
	}
}
