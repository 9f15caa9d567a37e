package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/keepalive-dev/keepalive/internal/promtest"
	"golang.org/x/sys/unix"
)

// syncBuffer is a bytes.Buffer safe for a process writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func agentCgroup(t *testing.T) (rel, abs string) {
	t.Helper()
	mnt, err := enforce.Cgroup2Mount()
	nstest.Need(t, err == nil, fmt.Sprintf("cgroup v2: %v", err))
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	rel = fmt.Sprintf("/keepalive-agent-test-%d-%s", os.Getpid(), hex.EncodeToString(b))
	abs = filepath.Join(mnt, rel)
	if err := os.Mkdir(abs, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 100 {
			if err := os.Remove(abs); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("remove cgroup %s", abs)
	})
	return rel, abs
}

// bashClient starts bash in the cgroup holding one TCP connection to addr
// (bash's /dev/tcp sets no keepalive); it is killed by PID at cleanup.
func bashClient(t *testing.T, cgAbs string, port int) {
	t.Helper()
	f, err := os.Open(cgAbs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; sleep 120", port))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func getMetric(t *testing.T, addr, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum, found := promtest.Sum(string(b), name, labels...)
	if !found {
		return -1
	}
	return sum
}

func waitMetric(t *testing.T, addr string, want float64, name string, labels ...string) {
	t.Helper()
	var got float64
	for range 100 {
		if got = getMetric(t, addr, name, labels...); got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
}

// TestAgentCommand runs the built binary: eBPF enforcement and retrofit for a
// cgroup, a bad policy kept out, a SIGHUP reload, and SIGTERM leaving the
// pinned attachment in place; then --detach-on-exit removes it.
func TestAgentCommand(t *testing.T) {
	nstest.Need(t, os.Geteuid() == 0, "needs root (cgroups, BPF, pidfd_getfd)")
	err := enforce.Probe()
	nstest.Need(t, err == nil, fmt.Sprintf("kernel support for enforce: %v", err))
	_, err = exec.LookPath("bash")
	nstest.Need(t, err == nil, "bash")

	dir := t.TempDir()
	bin := filepath.Join(dir, "keepalive")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// A bad --log-level is a usage error (exit 2) that names the allowed values.
	out, err := exec.Command(bin, "agent", "--once", "--log-level", "loud").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "allowed: debug, info, warn, error") {
		t.Fatalf("--log-level loud: %v\n%s", err, out)
	}
	bpffs := filepath.Join(dir, "bpf")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, unix.MNT_DETACH) })
	pins := filepath.Join(bpffs, "keepalive")

	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	cgRel, cgAbs := agentCgroup(t)
	bashClient(t, cgAbs, port)

	policy := filepath.Join(dir, "policy.yaml")
	good := fmt.Sprintf("interval: 1s\nrules:\n  - name: test\n    match: {cgroups: [%s], ports: [%d]}\n    action: enforce\n    keepalive: {idle: 20s, interval: 5s, count: 3}\n", cgRel, port)
	if err := os.WriteFile(policy, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var stderr syncBuffer
	cmd := exec.Command(bin, "agent", "--config", policy, "--listen", addr, "--pin-dir", pins)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	})
	waitMetric(t, addr, 1, "keepalive_retrofits_total", `result="applied"`)
	waitMetric(t, addr, 2, "keepalive_enforcements_total", `result="applied"`) // local and remote port
	// A connection made after the attachment gets the policy from the kernel.
	bashClient(t, cgAbs, port)
	waitMetric(t, addr, 1, "keepalive_bpf_connections_set_total")

	// A bad file keeps the old policy.
	if err := os.WriteFile(policy, []byte("interval: 1s\nrules:\n  - action: enforce\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, addr, 1, "keepalive_policy_reloads_total", `result="rejected"`)
	if !strings.Contains(stderr.String(), "policy line 3") {
		t.Fatalf("the rejection does not name the line:\n%s", stderr.String())
	}
	waitMetric(t, addr, 1, "keepalive_policy_rules")
	// SIGHUP reloads a good file.
	if err := os.WriteFile(policy, []byte(good+"  - action: report\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitMetric(t, addr, 2, "keepalive_policy_rules")

	// SIGTERM: exit 130, the pinned attachment stays.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	exited = true
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("after SIGTERM: %v, want exit 130", err)
	}
	h, err := enforce.Open(enforce.Options{PinDir: pins, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	atts, err := h.List()
	h.Close()
	if err != nil || len(atts) != 1 || atts[0].Owner != "agent" || atts[0].Cgroup != cgRel || !atts[0].Linked {
		t.Fatalf("after SIGTERM the attachment should stay: %+v %v", atts, err)
	}

	// --detach-on-exit removes it.
	out, err = exec.Command(bin, "agent", "--once", "--config", policy, "--pin-dir", pins, "--detach-on-exit").CombinedOutput()
	if err != nil {
		t.Fatalf("agent --once --detach-on-exit: %v\n%s", err, out)
	}
	h, err = enforce.Open(enforce.Options{PinDir: pins, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	atts, err = h.List()
	h.Close()
	if err != nil || len(atts) != 0 {
		t.Fatalf("after --detach-on-exit: %+v %v", atts, err)
	}
}
