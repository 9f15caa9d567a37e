//go:build linux

package lab

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// TestEnforceMode: keepalive set by the kernel at connect() from the cgroup's eBPF policy
// detects a crashed peer at the same time as keepalive the application set itself, and the
// threaded cgroup and private bpffs of the run are gone afterwards.
func TestEnforceMode(t *testing.T) {
	requireRoot(t)
	err := enforce.Probe()
	nstest.Need(t, err == nil, fmt.Sprintf("kernel support for enforce: %v", err))
	for _, sc := range []Scenario{Crash, Reboot} {
		t.Run(string(sc), func(t *testing.T) {
			t.Parallel()
			r := runLab(t, Options{Scenario: sc, Mode: "enforce", Config: fastCfg})
			if !r.Detected || !r.Agree {
				t.Fatalf("enforce on %s: %s", sc, r.Verdict)
			}
		})
	}
	t.Cleanup(func() {
		mnt, _ := enforce.Cgroup2Mount()
		ents, _ := os.ReadDir(mnt)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), fmt.Sprintf("keepalive-lab-enforce-%d-", os.Getpid())) {
				t.Errorf("cgroup %s left behind", e.Name())
			}
		}
		if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), "keepalive-lab-enforce-bpffs") {
			t.Errorf("a private bpffs is still mounted")
		}
	})
}
