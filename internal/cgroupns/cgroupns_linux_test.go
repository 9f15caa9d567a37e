//go:build linux

package cgroupns_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/cgroupns"
	"github.com/keepalive-dev/keepalive/internal/mountinfo"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

const helperEnv = "KEEPALIVE_CGROUPNS_HELPER"

// cgroup2Mount finds the mount of the whole cgroup2 hierarchy in this process's mount table.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	ms, err := mountinfo.Read("/proc/self/mountinfo", "cgroup2")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Root == "/" {
			return m.Point
		}
	}
	nstest.Need(t, false, "a cgroup2 mount (cgroup v2 or a hybrid layout)")
	return ""
}

func cg2(t *testing.T, b []byte, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := cgroupns.Cgroup2Path(b)
	if !ok {
		t.Fatalf("no cgroup2 line in %q", b)
	}
	return p
}

// TestReaderHost: in the host's namespace a Reader reads directly and its paths are the
// plain ones.
func TestReaderHost(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("helper run")
	}
	var st unix.Stat_t
	nstest.Need(t, unix.Stat("/proc/self/ns/cgroup", &st) == nil && st.Ino == cgroupns.InitInode, "running in the host's cgroup namespace")
	r, err := cgroupns.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Joined() || !r.HostAbsolute() {
		t.Fatalf("Joined %v HostAbsolute %v (%s)", r.Joined(), r.HostAbsolute(), r.Note())
	}
	plain, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Read(os.Getpid())
	if err != nil || string(got) != string(plain) {
		t.Fatalf("Read = %q, %v; want %q", got, err, plain)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReaderPrivateNamespace runs this test binary in a fresh child cgroup of the cgroup2
// hierarchy, in a cgroup namespace rooted there ('unshare --cgroup', as a pod's container
// on a cgroup v2 node): plain reads show the parent's cgroup as "/.." and the cgroup2 mount's
// root as "/..", a Reader shows both host-absolute and maps them onto the mount. A second
// run without CAP_SYS_ADMIN falls back to plain reads and says so.
func TestReaderPrivateNamespace(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "joined":
		helperJoined(t)
		return
	case "nocap":
		helperNoCap(t)
		return
	case "":
	default:
		t.Skip("helper run")
	}
	nstest.Require(t)
	var st unix.Stat_t
	nstest.Need(t, unix.Stat("/proc/self/ns/cgroup", &st) == nil && st.Ino == cgroupns.InitInode, "running in the host's cgroup namespace")
	for _, c := range []string{"unshare", "setpriv"} {
		_, err := exec.LookPath(c)
		nstest.Need(t, err == nil, "util-linux's "+c)
	}
	mnt := cgroup2Mount(t)
	own, err := os.ReadFile("/proc/self/cgroup")
	parentCg := cg2(t, own, err)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("kacgns-%d-%s", os.Getpid(), hex.EncodeToString(b))
	dir := filepath.Join(mnt, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ { // the helper's exit empties the cgroup shortly after
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cgroup %s left behind", dir)
	})
	childCg := parentCg
	if !strings.HasSuffix(childCg, "/") {
		childCg += "/"
	}
	childCg += name
	for _, mode := range []string{"joined", "nocap"} {
		t.Run(mode, func(t *testing.T) {
			script := `echo 0 > "$1/cgroup.procs" && shift && exec "$@"`
			args := []string{"-c", script, "sh", dir, "unshare", "--cgroup"}
			if mode == "nocap" {
				args = append(args, "setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin")
			}
			args = append(args, os.Args[0], "-test.run=^TestReaderPrivateNamespace$", "-test.v", "-test.count=1")
			cmd := exec.Command("sh", args...)
			cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_PARENT="+strconv.Itoa(os.Getpid()),
				helperEnv+"_PARENT_CG="+parentCg, helperEnv+"_CHILD_CG="+childCg, helperEnv+"_CHILD_DIR="+dir)
			timer := time.AfterFunc(2*time.Minute, func() {
				if cmd.Process != nil {
					_ = cmd.Process.Kill()
				}
			})
			defer timer.Stop()
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestReaderPrivateNamespace") {
				t.Fatalf("helper in a private cgroup namespace: %v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}

type helperEnvs struct {
	parent             int
	parentCg, childCg  string
	childDir           string
	plainParent, plain string
}

// helperCommon checks what a process in the private namespace sees without a Reader.
func helperCommon(t *testing.T) helperEnvs {
	t.Helper()
	h := helperEnvs{parentCg: os.Getenv(helperEnv + "_PARENT_CG"), childCg: os.Getenv(helperEnv + "_CHILD_CG"), childDir: os.Getenv(helperEnv + "_CHILD_DIR")}
	h.parent, _ = strconv.Atoi(os.Getenv(helperEnv + "_PARENT"))
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/cgroup", &st); err != nil || st.Ino == cgroupns.InitInode {
		t.Fatalf("helper is not in a cgroup namespace of its own: %v", err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if h.plain = cg2(t, b, err); h.plain != "/" {
		t.Fatalf("own cgroup2 path in the private namespace = %q, want /", h.plain)
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", h.parent))
	if h.plainParent = cg2(t, b, err); !strings.HasPrefix(h.plainParent, "/..") {
		t.Fatalf("plain read of the parent's cgroup2 path = %q, want /..", h.plainParent)
	}
	ms, err := mountinfo.Read("/proc/self/mountinfo", "cgroup2")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Root == "/" {
			t.Fatalf("plain mountinfo shows a cgroup2 mount rooted at / in the private namespace: %+v", m)
		}
	}
	// Without the host's view the mount, rooted above this namespace, still maps the paths
	// that lead through its root (the parent's), not those of this namespace (the names
	// between are unknown).
	if d, ok := cgroupns.Dir(ms, h.plainParent); !ok || !sameDir(d, filepath.Dir(h.childDir)) {
		t.Fatalf("Dir(plain mounts %v, %q) = %q, %v; want %s", ms, h.plainParent, d, ok, filepath.Dir(h.childDir))
	}
	if d, ok := cgroupns.Dir(ms, h.plain); ok {
		t.Fatalf("Dir(plain mounts %v, %q) = %q: the names between the mount and this namespace are unknown", ms, h.plain, d)
	}
	return h
}

func readCg(t *testing.T, r *cgroupns.Reader, pid int) string {
	t.Helper()
	b, err := r.Read(pid)
	return cg2(t, b, err)
}

func sameDir(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Ino == sb.Ino && sa.Dev == sb.Dev
}

func helperJoined(t *testing.T) {
	h := helperCommon(t)
	r, err := cgroupns.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Note())
	if !r.Joined() || !r.HostAbsolute() {
		t.Fatalf("Joined %v HostAbsolute %v: %s", r.Joined(), r.HostAbsolute(), r.Note())
	}
	if p := readCg(t, r, h.parent); p != h.parentCg {
		t.Errorf("Read(parent) = %q, want %q", p, h.parentCg)
	}
	if p := readCg(t, r, os.Getpid()); p != h.childCg {
		t.Errorf("Read(self) = %q, want %q", p, h.childCg)
	}
	res, err := r.ReadMany([]int{h.parent, os.Getpid(), 1 << 30})
	if err != nil || len(res) != 3 {
		t.Fatalf("ReadMany: %v %v", res, err)
	}
	if p := cg2(t, res[0].Data, res[0].Err); p != h.parentCg {
		t.Errorf("ReadMany parent = %q", p)
	}
	if p := cg2(t, res[1].Data, res[1].Err); p != h.childCg {
		t.Errorf("ReadMany self = %q", p)
	}
	if !errors.Is(res[2].Err, os.ErrNotExist) {
		t.Errorf("ReadMany of a missing process: %v", res[2].Err)
	}
	// Many goroutines at once share the thread.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				b, err := r.Read(h.parent)
				if p, _ := cgroupns.Cgroup2Path(b); err != nil || p != h.parentCg {
					t.Errorf("concurrent Read = %q, %v", b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ms, err := r.Mounts("cgroup2")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{h.childCg, h.parentCg} {
		d, ok := cgroupns.Dir(ms, p)
		if !ok {
			t.Fatalf("Dir(%v, %q) found nothing", ms, p)
		}
		if p == h.childCg && !sameDir(d, h.childDir) {
			t.Errorf("Dir(%q) = %s, not the child cgroup %s", p, d, h.childDir)
		}
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			t.Errorf("Dir(%q) = %s: %v", p, d, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.Read(h.parent); !errors.Is(err, cgroupns.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	// Nothing else has moved: plain reads on every thread still show the private view.
	for range 20 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", h.parent))
		if p := cg2(t, b, err); p != h.plainParent {
			t.Fatalf("plain read after Close = %q, want %q", p, h.plainParent)
		}
	}
}

func helperNoCap(t *testing.T) {
	h := helperCommon(t)
	r, err := cgroupns.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Log(r.Note())
	if r.Joined() || r.HostAbsolute() || !strings.Contains(r.Note(), "relative to this namespace") {
		t.Fatalf("without CAP_SYS_ADMIN: Joined %v HostAbsolute %v: %s", r.Joined(), r.HostAbsolute(), r.Note())
	}
	if p := readCg(t, r, h.parent); p != h.plainParent {
		t.Errorf("fallback Read(parent) = %q, want the plain %q", p, h.plainParent)
	}
}
