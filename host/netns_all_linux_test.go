//go:build linux

package host

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestNamespacesThreadAndNamed checks Namespaces and AllNetNS on a named namespace and on one
// held only by a thread of this process (no mount, no name): each is found once, labelled,
// and its sockets are listed with their namespace.
func TestNamespacesThreadAndNamed(t *testing.T) {
	nstest.Require(t)
	named := nstest.NewNS(t, "kahostall")
	type held struct {
		ino  uint64
		port uint16
		err  error
	}
	ready := make(chan held, 1)
	release := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(release); <-done })
	go func() {
		defer close(done)
		// The thread is never unlocked: it leaves with this goroutine, and its namespace too.
		runtime.LockOSThread()
		fail := func(err error) { ready <- held{err: err}; <-release }
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			fail(err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			fail(err)
			return
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			fail(err)
			return
		}
		defer ln.Close()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			fail(err)
			return
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			fail(err)
			return
		}
		defer s.Close()
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			fail(err)
			return
		}
		ready <- held{ino: st.Ino, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
		<-release
	}()
	h := <-ready
	if h.err != nil {
		t.Fatal(h.err)
	}
	all, err := Namespaces(func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	var thread, name *NetNS
	for i := range all {
		n := &all[i]
		if seen[n.Inode] {
			t.Errorf("namespace net:[%d] listed twice", n.Inode)
		}
		seen[n.Inode] = true
		if n.Inode == h.ino {
			thread = n
		}
		if n.Name == named.Name {
			name = n
		}
	}
	if !all[0].Current {
		t.Errorf("the current namespace is not first: %+v", all[0])
	}
	if name == nil || name.Label() != named.Name {
		t.Errorf("named namespace %s: %+v", named.Name, name)
	}
	if thread == nil || thread.PID != os.Getpid() || !strings.Contains(thread.Path, "/task/") || !strings.HasPrefix(thread.Label(), "pid ") {
		t.Fatalf("thread-held namespace net:[%d]: %+v", h.ino, thread)
	}
	socks, err := List(context.Background(), ListOptions{AllNetNS: true, Selector: Selector{Ports: []uint16{h.port}}, Owners: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range socks {
		if s.Namespace != nil && s.Namespace.Inode == h.ino {
			n++
			if len(s.Owners) != 1 || s.Owners[0].PID != os.Getpid() {
				t.Errorf("owners of %v: %+v", &s, s.Owners)
			}
			if _, err := Lookup(context.Background(), s); err != nil {
				t.Errorf("Lookup in the thread's namespace: %v", err)
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d sockets in the thread's namespace, want 2: %v", n, socks)
	}
	// The thread's namespace also mounted outside /var/run/netns (as Docker mounts its
	// own), and a /var/run/netns symbolic link to that mount (as some tools make): one
	// namespace, named by the link.
	dir := t.TempDir()
	mnt := filepath.Join(dir, "nsfile")
	if err := os.WriteFile(mnt, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tid := 0
	for _, p := range mustGlob(t, fmt.Sprintf("/proc/%d/task/*/ns/net", os.Getpid())) {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Ino == h.ino {
			tid, _ = strconv.Atoi(strings.Split(p, "/")[4])
		}
	}
	if tid == 0 {
		t.Fatal("thread not found")
	}
	if err := unix.Mount(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), tid), mnt, "none", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	link := filepath.Join(netnsDir, "kahostln-"+strconv.Itoa(os.Getpid()))
	if err := os.Symlink(mnt, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(link) })
	again, err := Namespaces(func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, n := range again {
		if n.Inode == h.ino {
			found++
			if n.Path != mnt || n.Label() != filepath.Base(link) {
				t.Errorf("mounted and linked namespace: %+v (label %q)", n, n.Label())
			}
		}
	}
	if found != 1 {
		t.Errorf("namespace net:[%d] listed %d times", h.ino, found)
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseNsfsMount(t *testing.T) {
	m, ok := parseNsfsMount(`600 30 0:4 net:[4026532999] /run/docker/netns/with\040space rw shared:5 - nsfs nsfs rw`)
	if !ok || m.inode != 4026532999 || m.path != "/run/docker/netns/with space" {
		t.Fatalf("%+v %v", m, ok)
	}
	for _, l := range []string{"", "1 2 - nsfs", `601 30 0:4 mnt:[4026531840] /run/x rw - nsfs nsfs rw`, `602 30 0:4 / /run/x rw - ext4 /dev/vda rw`} {
		if m, ok := parseNsfsMount(l); ok {
			t.Errorf("parseNsfsMount(%q) = %+v", l, m)
		}
	}
}

func FuzzParseNsfsMount(f *testing.F) {
	f.Add(`547 30 0:4 net:[4026532455] /run/netns/x rw shared:123 - nsfs nsfs rw`)
	f.Fuzz(func(t *testing.T, line string) {
		if m, ok := parseNsfsMount(line); ok && (m.path == "" || !strings.Contains(line, "nsfs")) {
			t.Fatalf("accepted %q as %+v", line, m)
		}
	})
}
