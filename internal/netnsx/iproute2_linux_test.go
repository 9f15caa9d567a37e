//go:build linux

package netnsx_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const helperEnv = "KEEPALIVE_NETNSX_IPROUTE2_HELPER"

// TestIproute2Coexistence runs NewNamed and DeleteNamed together with 'ip netns add/del' in
// every order, each time on a fresh /run (a private mount namespace with a new tmpfs, where
// /var/run/netns starts as a plain directory, as after boot): neither hides or breaks the
// other's namespaces, and nothing is left behind.
func TestIproute2Coexistence(t *testing.T) {
	if os.Getenv(helperEnv) == "1" {
		iproute2Scenarios(t)
		return
	}
	nstest.Require(t)
	_, ipErr := exec.LookPath("ip")
	nstest.Need(t, ipErr == nil, "iproute2's ip command (apt-get install iproute2)")
	_, unErr := exec.LookPath("unshare")
	nstest.Need(t, unErr == nil, "util-linux's unshare command")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run=^TestIproute2Coexistence$", "-test.v", "-test.count=1")
	parent, _ := os.Readlink("/proc/self/ns/mnt")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperEnv+"_PARENT_MNT="+parent)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestIproute2Coexistence") {
		t.Fatalf("scenarios in a private mount namespace: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func iproute2Scenarios(t *testing.T) {
	if l, _ := os.Readlink("/proc/self/ns/mnt"); l == "" || l == os.Getenv(helperEnv+"_PARENT_MNT") {
		t.Fatalf("helper is not in its own mount namespace (%q)", l)
	}
	id := os.Getpid()
	fresh := func(t *testing.T) {
		t.Helper()
		_ = unix.Unmount("/run", unix.MNT_DETACH)
		if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, "size=4m,mode=755"); err != nil {
			t.Fatalf("fresh /run: %v", err)
		}
		if err := os.Mkdir(netnsx.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ip := func(t *testing.T, args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip netns %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ours := func(t *testing.T, name string) {
		t.Helper()
		h, err := netnsx.NewNamed(name)
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	// usable checks that every listed namespace is a mounted one that can be entered.
	usable := func(t *testing.T, want ...string) {
		t.Helper()
		for _, n := range want {
			if err := netnsx.DoNamed(n, func() error { return nil }); err != nil {
				t.Fatalf("namespace %s not usable: %v", n, err)
			}
			if out, err := exec.Command("ip", "netns", "exec", n, "true").CombinedOutput(); err != nil {
				t.Fatalf("ip netns exec %s: %v: %s", n, err, out)
			}
		}
	}
	empty := func(t *testing.T) {
		t.Helper()
		ents, _ := os.ReadDir(netnsx.Dir)
		if len(ents) != 0 {
			t.Fatalf("left in %s: %v", netnsx.Dir, ents)
		}
		b, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, " nsfs ") && strings.Contains(l, netnsx.Dir+"/") {
				t.Fatalf("namespace mount left behind: %s", l)
			}
		}
	}
	a, b := fmt.Sprintf("kantours-a-%d", id), fmt.Sprintf("kantours-b-%d", id)
	x := fmt.Sprintf("kantip-x-%d", id)
	t.Run("OursBeforeIP", func(t *testing.T) {
		fresh(t)
		ours(t, a)
		ip(t, "add", x)
		ip(t, "del", x)
		usable(t, a)
		if err := netnsx.DeleteNamed(a); err != nil {
			t.Fatal(err)
		}
		empty(t)
	})
	t.Run("IPBeforeOurs", func(t *testing.T) {
		fresh(t)
		ip(t, "add", x)
		ours(t, a)
		usable(t, x, a)
		ip(t, "del", x)
		usable(t, a)
		if err := netnsx.DeleteNamed(a); err != nil {
			t.Fatal(err)
		}
		empty(t)
	})
	t.Run("IPDuringOurs", func(t *testing.T) {
		fresh(t)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				name := fmt.Sprintf("%s-%d", b, i)
				h, err := netnsx.NewNamed(name)
				if err != nil {
					errs <- err
					return
				}
				h.Close()
				if err := netnsx.DoNamed(name, func() error { return nil }); err != nil {
					errs <- err
				}
				if err := netnsx.DeleteNamed(name); err != nil {
					errs <- err
				}
			}
		}()
		for i := 0; i < 20; i++ {
			n := fmt.Sprintf("%s-%d", x, i)
			if out, err := exec.Command("sh", "-c", "ip netns add "+n+" && ip netns exec "+n+" true && ip netns del "+n).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("ip netns %s: %v: %s", n, err, out)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		empty(t)
	})
	t.Run("HiddenEntryRemoved", func(t *testing.T) {
		// The state before this package made the directory shared: a plain bind mount of a
		// namespace, then 'ip netns add' mounts the directory over it.
		fresh(t)
		h, err := netns.NewNamed(a) // bind mount without a shared directory
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
		ip(t, "add", x)
		if err := netnsx.DeleteNamed(a); err == nil {
			t.Fatal("deleting a hidden entry worked: the scenario did not reproduce the old state")
		}
		if err := netnsx.RemoveHidden(a); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(netnsx.Dir, a)); !os.IsNotExist(err) {
			t.Fatalf("%s still there: %v", a, err)
		}
		usable(t, x)
		ip(t, "del", x)
		empty(t)
	})
	t.Run("OursAfterIP", func(t *testing.T) {
		fresh(t)
		ip(t, "add", x)
		ip(t, "del", x)
		ours(t, a)
		ip(t, "add", x)
		usable(t, a, x)
		if err := netnsx.DeleteNamed(a); err != nil {
			t.Fatal(err)
		}
		ip(t, "del", x)
		empty(t)
		if _, err := os.Stat(filepath.Join(netnsx.Dir, a)); !os.IsNotExist(err) {
			t.Fatalf("%s still there: %v", a, err)
		}
	})
}
