//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

// labState is what a running lab owns, checked by the resources themselves.
type labState struct {
	ns      map[string]uint64 // namespace name → nsfs inode
	helpers []string
}

func labStateOf(t *testing.T, pid int) labState {
	t.Helper()
	st := labState{ns: map[string]uint64{}, helpers: labHelpersOf(pid)}
	for _, n := range labNamespacesOf(pid) {
		var fs unix.Statfs_t
		var s unix.Stat_t
		p := filepath.Join(netnsx.Dir, n)
		if unix.Statfs(p, &fs) != nil || fs.Type != unix.NSFS_MAGIC || unix.Stat(p, &s) != nil {
			t.Errorf("%s is not a mounted namespace", p)
			continue
		}
		if err := netnsx.DoNamed(n, func() error { return nil }); err != nil {
			t.Errorf("cannot enter %s: %v", n, err)
		}
		st.ns[n] = s.Ino
	}
	return st
}

func (a labState) same(t *testing.T, what string, b labState) {
	t.Helper()
	if len(a.ns) == 0 || fmt.Sprint(a.ns) != fmt.Sprint(b.ns) {
		t.Errorf("%s: namespaces changed: %v → %v", what, a.ns, b.ns)
	}
	if len(a.helpers) != 1 || !slices.Equal(a.helpers, b.helpers) {
		t.Errorf("%s: server processes changed: %v → %v", what, a.helpers, b.helpers)
	}
}

// TestLabTwoCopies runs two lab processes at once, with 'lab clean' and 'ip netns add/del'
// beside them: neither copy removes, reuses or breaks the other's namespaces or server
// process, and each cleans up only its own when interrupted.
func TestLabTwoCopies(t *testing.T) {
	nstest.Require(t)
	bin := filepath.Join(t.TempDir(), "keepalive")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	a := startLongLab(t, bin)
	stA := labStateOf(t, a.Process.Pid)
	b := startLongLab(t, bin)
	stB := labStateOf(t, b.Process.Pid)
	for n := range stB.ns {
		if _, dup := stA.ns[n]; dup {
			t.Fatalf("the second copy reused namespace %s", n)
		}
	}
	for n, ino := range stB.ns {
		for m, ino2 := range stA.ns {
			if ino == ino2 {
				t.Fatalf("namespaces %s and %s are the same namespace", n, m)
			}
		}
	}
	if _, err := exec.LookPath("ip"); err == nil {
		name := fmt.Sprintf("kacopies-%d", os.Getpid())
		if out, err := exec.Command("sh", "-c", "ip netns add "+name+" && ip netns del "+name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add/del beside the labs: %v: %s", err, out)
		}
	}
	if _, stderr, code := labExec(t, bin, "lab", "clean"); code != 0 {
		t.Fatalf("lab clean beside two runs: exit %d: %s", code, stderr)
	}
	stA.same(t, "first copy after the second started, ip netns and lab clean", labStateOf(t, a.Process.Pid))
	stB.same(t, "second copy after ip netns and lab clean", labStateOf(t, b.Process.Pid))
	// Stop the second copy: it removes its own, and only its own.
	stop := func(c *exec.Cmd) {
		t.Helper()
		if err := c.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
				t.Errorf("interrupted lab: %v, want exit %d", err, exitInterrupted)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("interrupted lab did not stop within 15 s")
		}
	}
	stop(b)
	if left := labNamespacesOf(b.Process.Pid); len(left) > 0 {
		t.Errorf("second copy left %v", left)
	}
	stA.same(t, "first copy after the second stopped", labStateOf(t, a.Process.Pid))
	stop(a)
	if left := labNamespacesOf(a.Process.Pid); len(left) > 0 {
		t.Errorf("first copy left %v", left)
	}
}
