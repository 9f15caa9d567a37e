//go:build linux

package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/keepalive-dev/keepalive/internal/report"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"golang.org/x/sys/unix"
)

// enforceFixture is a private BPF filesystem and a test cgroup, both removed at cleanup.
type enforceFixture struct {
	bin, pinDir, cgroup, cgAbs string
}

func newEnforceFixture(t *testing.T) *enforceFixture {
	t.Helper()
	nstest.Need(t, os.Geteuid() == 0, "needs root (cgroups, BPF)")
	err := enforce.Probe()
	nstest.Need(t, err == nil, fmt.Sprintf("kernel support for enforce: %v", err))
	bin, err := planBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	mnt, err := enforce.Cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	name := fmt.Sprintf("keepalive-enforce-cmdtest-%d-%s", os.Getpid(), hex.EncodeToString(b))
	abs := filepath.Join(mnt, name)
	if err := os.Mkdir(abs, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 100; i++ {
			if err := os.Remove(abs); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("cgroup %s left behind", abs)
	})
	return &enforceFixture{bin: bin, pinDir: filepath.Join(dir, "keepalive"), cgroup: name, cgAbs: abs}
}

func (f *enforceFixture) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return hostRun(t, f.bin, append(args, "--pin-dir", f.pinDir)...)
}

// pyConnect connects from a Python process started inside the cgroup and returns what its
// own getsockopt reads right after connect(): "keepalive idle intvl cnt ut".
func (f *enforceFixture) pyConnect(t *testing.T, addr string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	nstest.Need(t, err == nil, "python3")
	host, port, _ := net.SplitHostPort(addr)
	cg, err := os.Open(f.cgAbs)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command(py, "-c", fmt.Sprintf(`
import socket
s = socket.create_connection((%q, %s), timeout=10)
g = lambda l, o: s.getsockopt(l, o)
print(g(socket.SOL_SOCKET, socket.SO_KEEPALIVE), g(6, 4), g(6, 5), g(6, 6), g(6, 18))
`, host, port))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// pyHold starts a Python process in the cgroup that connects to addr and holds the
// connection; the returned function asks it for its socket's settings (as pyConnect prints them).
func (f *enforceFixture) pyHold(t *testing.T, addr string) func() string {
	t.Helper()
	py, err := exec.LookPath("python3")
	nstest.Need(t, err == nil, "python3")
	host, port, _ := net.SplitHostPort(addr)
	cg, err := os.Open(f.cgAbs)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command(py, "-u", "-c", fmt.Sprintf(`
import socket, sys
s = socket.create_connection((%q, %s), timeout=10)
g = lambda l, o: s.getsockopt(l, o)
print("connected")
for line in sys.stdin:
    print(g(socket.SOL_SOCKET, socket.SO_KEEPALIVE), g(6, 4), g(6, 5), g(6, 6), g(6, 18))
`, host, port))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	rd := bufio.NewReader(outp)
	if l, err := rd.ReadString('\n'); err != nil || strings.TrimSpace(l) != "connected" {
		t.Fatalf("python holder: %q %v", l, err)
	}
	return func() string {
		fmt.Fprintln(in, "report")
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("python holder: %v", err)
		}
		return strings.TrimSpace(l)
	}
}

func TestEnforceCommand(t *testing.T) {
	f := newEnforceFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	addr := ln.Addr().String()
	policy := []string{"--idle", "7", "--interval", "3", "--count", "4", "--user-timeout", "19s"}

	// Usage errors: exit 2, nothing attached.
	for _, bad := range [][]string{
		{"enforce", "attach", "--cgroup", f.cgroup, "--idle", "0"},
		{"enforce", "attach", "--cgroup", f.cgroup, "--idle", "40000"},
		{"enforce", "attach", "--cgroup", f.cgroup},
		{"enforce", "attach", "--cgroup", f.cgroup, "--idle", "7", "--mode", "strict"},
		{"enforce", "attach", "--cgroup", f.cgroup, "--idle", "7", "--peer", "10.0.0.0/99"},
		{"enforce", "attach", "--idle", "7"},
	} {
		if _, stderr, code := f.run(t, bad...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want 2", bad, code, stderr)
		}
	}

	// --dry-run changes nothing.
	out, stderr, code := f.run(t, append([]string{"enforce", "attach", "--cgroup", f.cgroup, "--dry-run", "--json"}, policy...)...)
	if code != 0 || !strings.Contains(out, `"dry_run": true`) {
		t.Fatalf("dry run: exit %d: %s %s", code, out, stderr)
	}
	if got := f.pyConnect(t, addr); got != "0 7200 75 9 0" {
		t.Errorf("after --dry-run a new connection has %q", got)
	}

	// A connection the cgroup already holds, for --existing.
	held := f.pyHold(t, addr)
	out, stderr, code = f.run(t, append([]string{"enforce", "attach", "--cgroup", f.cgroup, "--existing", "--dry-run", "--json"}, policy...)...)
	var dry report.EnforceAttach
	if code != 0 || json.Unmarshal([]byte(out), &dry) != nil || len(dry.Existing) != 1 || !dry.Existing[0].Changed ||
		dry.Existing[0].After == nil || dry.Existing[0].After.IdleMS != 7000 {
		t.Fatalf("attach --existing --dry-run: exit %d: %s %s", code, out, stderr)
	}
	if got := held(); got != "0 7200 75 9 0" {
		t.Errorf("--dry-run changed an existing connection: %q", got)
	}
	out, stderr, code = f.run(t, append([]string{"enforce", "attach", "--cgroup", f.cgAbs, "--mode", "enforce", "--existing"}, policy...)...)
	if code != 0 || !strings.Contains(out, "existing connections: 1 found, 1 changed") {
		t.Fatalf("attach: exit %d: %s %s", code, out, stderr)
	}
	if got := held(); got != "1 7 3 4 19000" {
		t.Errorf("existing connection after attach --existing: %q", got)
	}
	if got := f.pyConnect(t, addr); got != "1 7 3 4 19000" {
		t.Errorf("new connection in the cgroup: %q, want %q", got, "1 7 3 4 19000")
	}

	// A second process finds the pinned attachment.
	out, stderr, code = f.run(t, "enforce", "list", "--json")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	var l report.EnforceList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(l.Attachments) != 1 || l.Attachments[0].Cgroup != "/"+f.cgroup || !l.Attachments[0].Attached || !l.Attachments[0].Rewriting ||
		len(l.Attachments[0].Rules) != 1 || l.Attachments[0].Rules[0].Mode != enforce.ModeEnforce ||
		l.Attachments[0].Counters.Seen != 1 || l.Attachments[0].Counters.Set != 1 {
		t.Errorf("list: %s", out)
	}
	out, _, _ = f.run(t, "enforce", "list")
	if !strings.Contains(out, "/"+f.cgroup) || !strings.Contains(out, "7s/3s/4") || !strings.Contains(out, "sock_ops+setsockopt") {
		t.Errorf("list text: %s", out)
	}

	// Detach: new connections are back to the defaults; list is empty.
	if out, stderr, code = f.run(t, "enforce", "detach", "--cgroup", f.cgroup); code != 0 {
		t.Fatalf("detach: exit %d: %s %s", code, out, stderr)
	}
	if got := f.pyConnect(t, addr); got != "0 7200 75 9 0" {
		t.Errorf("after detach: %q", got)
	}
	out, _, _ = f.run(t, "enforce", "list")
	if !strings.Contains(out, "no keepalive policy attached") {
		t.Errorf("list after detach: %s", out)
	}
	if _, _, code = f.run(t, "enforce", "detach", "--cgroup", f.cgroup); code != exitError1 {
		t.Errorf("detaching twice: exit %d, want 1", code)
	}
	ents, _ := os.ReadDir(f.pinDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "prog_") {
			t.Errorf("program pin left after detach: %s", e.Name())
		}
	}
}

// TestEnforceDockerContainer attaches by container id. Docker here (cgroupfs driver on a
// hybrid host) creates /docker/<id> in the cgroup2 hierarchy too; the id resolves to it.
// The container has no network (only its own loopback), and everything is removed after.
func TestEnforceDockerContainer(t *testing.T) {
	f := newEnforceFixture(t)
	docker, err := exec.LookPath("docker")
	nstest.Need(t, err == nil, "docker CLI")
	nstest.Need(t, exec.Command(docker, "info").Run() == nil, "a running Docker engine")
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "enforceprobe"), "./testdata/enforceprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static: the image is FROM scratch
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY enforceprobe /enforceprobe\nENTRYPOINT [\"/enforceprobe\"]\n"), 0o644)
	rb := make([]byte, 3)
	rand.Read(rb)
	tag := fmt.Sprintf("keepalive-enforce-test-%d:%s", os.Getpid(), hex.EncodeToString(rb))
	if out, err := exec.Command(docker, "build", "-q", "-t", tag, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", tag).Run() })
	out, err := exec.Command(docker, "run", "-d", "--rm", "--network", "none", tag, "sleep").Output()
	if err != nil {
		t.Fatalf("docker run: %v", err)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command(docker, "rm", "-f", id).Run() })
	probe := func() string {
		t.Helper()
		out, err := exec.Command(docker, "exec", id, "/enforceprobe", "once").CombinedOutput()
		if err != nil {
			t.Fatalf("docker exec: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := probe(); got != "0 7200 75 9 0 / 0 7200 75 9 0" {
		t.Fatalf("container before attach: %q", got)
	}
	out2, stderr, code := f.run(t, "enforce", "attach", "--cgroup", id[:12], "--idle", "7", "--interval", "3", "--count", "4", "--user-timeout", "19s", "--json")
	if code != 0 {
		t.Fatalf("attach by container id: exit %d: %s %s", code, out2, stderr)
	}
	t.Cleanup(func() { f.run(t, "enforce", "detach", "--cgroup", "/docker/"+id) })
	var rep report.EnforceAttach
	json.Unmarshal([]byte(out2), &rep)
	if rep.Cgroup != "/docker/"+id {
		t.Errorf("container resolved to %q, want /docker/%s", rep.Cgroup, id)
	}
	if got := probe(); got != "1 7 3 4 19000 / 1 7 3 4 19000" {
		t.Errorf("container after attach: %q", got)
	}
	if _, stderr, code := f.run(t, "enforce", "detach", "--cgroup", id); code != 0 {
		t.Errorf("detach by container id: exit %d: %s", code, stderr)
	}
}

// TestEnforceAttachBadCgroupLeavesNothing: a --cgroup that does not exist is refused before
// anything is pinned (no maps, no pin directory).
func TestEnforceAttachBadCgroupLeavesNothing(t *testing.T) {
	f := newEnforceFixture(t)
	_, errOut, code := f.run(t, "enforce", "attach", "--cgroup", f.cgroup+"-does-not-exist", "--idle", "60")
	if code != 1 || !strings.Contains(errOut, "does-not-exist") || !strings.Contains(errOut, "no such") {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming the missing cgroup", code, errOut)
	}
	if ents, err := os.ReadDir(f.pinDir); err == nil && len(ents) > 0 {
		t.Fatalf("pins left after a refused attach: %v", ents)
	}
}
