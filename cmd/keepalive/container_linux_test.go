//go:build linux

package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

// ctrAudit is the part of `audit --json` the container tests read.
type ctrAudit struct {
	Connections []struct {
		NetNS      string `json:"netns"`
		NetNSPath  string `json:"netns_path"`
		NetNSInode uint64 `json:"netns_inode"`
		Container  *struct {
			Runtime string `json:"runtime"`
			ID      string `json:"id"`
		} `json:"container"`
		Local     string `json:"local"`
		Cookie    uint64 `json:"cookie"`
		Owners    []struct{ PID int }
		Keepalive struct {
			Enabled *bool `json:"enabled"`
			IdleMS  int64 `json:"idle_ms"`
		} `json:"keepalive"`
	} `json:"connections"`
}

func ctrRun(t *testing.T, bin string, args ...string) (ctrAudit, string) {
	t.Helper()
	out, errOut, code := hostRun(t, bin, append([]string{"audit", "--json"}, args...)...)
	if code != 0 && code != 3 {
		t.Fatalf("audit %v: exit %d: %s", args, code, errOut)
	}
	var a ctrAudit
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("audit %v --json: %v\n%s", args, err, out)
	}
	return a, errOut
}

// ctrpairBuild builds the static test program that runs inside containers and namespaces.
func ctrpairBuild(t *testing.T) string {
	t.Helper()
	return nstest.StaticBinary(t, ".", "./testdata/ctrpair")
}

func uniq() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b))
}

// TestContainerConnections runs a real Docker container (an image imported from a static
// test binary, no registry, no network but its own loopback) whose server and client talk
// inside the container's own namespace, and finds, retrofits and reaps them from the host
// by --all-netns, --container and --pid.
func TestContainerConnections(t *testing.T) {
	nstest.Require(t)
	nstest.NeedDocker(t)
	bin, _ := hostBuild(t)
	prog := ctrpairBuild(t)
	id := uniq()
	image := nstest.ImportImage(t, prog, "keepalive-test-ctrpair:"+id)
	name := "keepalive-test-" + id
	cid := nstest.Docker(t, "run", "-d", "--name", name, "--network", "none", image, "-n", "3")
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	pid := nstest.Docker(t, "inspect", "-f", "{{.State.Pid}}", cid)
	short := cid[:12]
	var port string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		logs := nstest.Docker(t, "logs", name)
		if f := strings.Fields(logs); len(f) >= 2 && f[0] == "ready" {
			port = f[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container not ready: %q", logs)
		}
	}
	const want = 6 // 3 connections, both ends inside the container
	mine := func(a ctrAudit) int {
		n := 0
		for _, c := range a.Connections {
			if c.Container != nil && c.Container.ID == cid && c.Container.Runtime == "docker" &&
				len(c.Owners) == 1 && strconv.Itoa(c.Owners[0].PID) == pid && c.NetNS == "docker:"+short && c.NetNSInode != 0 {
				n++
			}
		}
		return n
	}
	t.Run("AllNetNS", func(t *testing.T) {
		a, _ := ctrRun(t, bin, "--all-netns", "--port", port)
		if n := mine(a); n != want {
			t.Fatalf("--all-netns found %d of the container's %d connections: %+v", n, want, a)
		}
	})
	t.Run("ContainerAndPID", func(t *testing.T) {
		sels := [][]string{{"--container", short}, {"--container", cid}, {"--container", name}, {"--pid", pid}, {"--comm", "ctrpair", "--port", port}}
		// The container's cgroup, as /proc/PID/cgroup shows it (a v1 line on a hybrid host with
		// the cgroupfs driver, a v2 scope with the systemd driver), relative and absolute.
		if b, err := os.ReadFile("/proc/" + pid + "/cgroup"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.SplitN(line, ":", 3)
				if len(f) == 3 && strings.Contains(f[2], cid) {
					sels = append(sels, []string{"--cgroup", f[2]})
					if ctl := strings.TrimPrefix(f[1], "name="); ctl != "" && !strings.Contains(ctl, ",") {
						if _, err := os.Stat("/sys/fs/cgroup/" + ctl + f[2]); err == nil {
							sels = append(sels, []string{"--cgroup", "/sys/fs/cgroup/" + ctl + f[2]})
						}
					}
					break
				}
			}
		}
		t.Logf("selectors: %v", sels)
		for _, sel := range sels {
			a, _ := ctrRun(t, bin, sel...)
			if n := mine(a); n != want || len(a.Connections) != want {
				t.Fatalf("audit %v: %d of %d rows are the container's, want %d", sel, n, len(a.Connections), want)
			}
		}
		if out, _, _ := hostRun(t, bin, "audit", "--pid", pid); !strings.Contains(out, "CONTAINER") || !strings.Contains(out, "docker:"+short) {
			t.Fatalf("audit table lacks the container column:\n%s", out)
		}
	})
	t.Run("Enable", func(t *testing.T) {
		out, errOut, code := hostRun(t, bin, "enable", "--container", short, "--idle", "77", "--interval", "7", "--count", "3")
		if code != 0 || !strings.Contains(out, "6 connections: 6 changed") {
			t.Fatalf("enable --container: exit %d\n%s%s", code, out, errOut)
		}
		a, _ := ctrRun(t, bin, "--container", short)
		for _, c := range a.Connections {
			if c.Keepalive.Enabled == nil || !*c.Keepalive.Enabled || c.Keepalive.IdleMS != 77000 {
				t.Fatalf("after enable: %+v", c)
			}
		}
	})
	t.Run("UnknownName", func(t *testing.T) {
		_, errOut, code := hostRun(t, bin, "audit", "--container", "keepalive-test-no-such-"+id)
		if code != 1 || !strings.Contains(errOut, "no such container") {
			t.Fatalf("unknown container name: exit %d (want 1): %s", code, errOut)
		}
	})
	t.Run("Reap", func(t *testing.T) {
		a, _ := ctrRun(t, bin, "--container", short)
		if len(a.Connections) == 0 {
			t.Fatal("nothing to reap")
		}
		victim := a.Connections[0]
		out, errOut, code := hostRun(t, bin, "reap", "--container", short, "--cookie", strconv.FormatUint(victim.Cookie, 10), "--json")
		var rep reapReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.Destroyed != 1 || rep.Matched != 1 {
			t.Fatalf("reap --container --cookie: exit %d %v\n%s%s", code, err, out, errOut)
		}
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(nstest.Docker(t, "logs", name), "err "); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the container's process did not see the connection end")
			}
		}
		b, _ := ctrRun(t, bin, "--container", short)
		for _, c := range b.Connections {
			if c.Cookie == victim.Cookie {
				t.Fatalf("reaped connection still there: %+v", c)
			}
		}
	})
}

// TestUnshareNamespaceConnections finds a process's connections in a namespace that only the
// process holds (unshare -n: no mount, no name) by --all-netns and --pid, and changes them.
func TestUnshareNamespaceConnections(t *testing.T) {
	nstest.Require(t)
	_, err := exec.LookPath("unshare")
	nstest.Need(t, err == nil, "util-linux's unshare command")
	bin, _ := hostBuild(t)
	prog := ctrpairBuild(t)
	cmd := exec.Command("unshare", "-n", "sh", "-c", "ip link set lo up && exec "+prog+" -n 2")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var port string
	select {
	case l := <-lines:
		if f := strings.Fields(l); len(f) == 2 && f[0] == "ready" {
			port = f[1]
		} else {
			t.Fatalf("ctrpair: %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ctrpair not ready")
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	count := func(a ctrAudit) int {
		n := 0
		for _, c := range a.Connections {
			if len(c.Owners) == 1 && strconv.Itoa(c.Owners[0].PID) == pid && c.NetNS == "pid "+pid+" (ctrpair)" {
				n++
			}
		}
		return n
	}
	if a, _ := ctrRun(t, bin, "--all-netns", "--port", port); count(a) != 4 {
		t.Fatalf("--all-netns: %d of 4: %+v", count(a), a)
	}
	if a, _ := ctrRun(t, bin, "--pid", pid); count(a) != 4 || len(a.Connections) != 4 {
		t.Fatalf("--pid: %d of 4: %+v", count(a), a)
	}
	out, errOut, code := hostRun(t, bin, "enable", "--pid", pid, "--idle", "66")
	if code != 0 || !strings.Contains(out, "4 connections: 4 changed") {
		t.Fatalf("enable --pid: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = hostRun(t, bin, "reap", "--pid", pid, "--port", port)
	// Both ends are local: destroying one resets the other, which may then be gone already.
	if code != 0 || !strings.Contains(out, "4 connections match") || !strings.Contains(out, ", 0 failed") || strings.Contains(out, " 0 destroyed") {
		t.Fatalf("reap --pid: exit %d\n%s%s", code, out, errOut)
	}
}

// TestAllNetNSSkipsStaleEntry puts a stale file in /var/run/netns (what an interrupted
// 'ip netns add' leaves): --all-netns warns about it and goes on; naming it is a runtime
// error (exit 1), not a usage error.
func TestAllNetNSSkipsStaleEntry(t *testing.T) {
	nstest.Require(t)
	bin, _ := hostBuild(t)
	name := "kahosts-stale-" + uniq()
	unlock, err := netnsx.LockDir()
	if err != nil {
		t.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(netnsx.Dir, name), nil, 0)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join(netnsx.Dir, name)) })
	for _, args := range [][]string{
		{"audit", "--all-netns", "--port", "1"},
		{"enable", "--all-netns", "--port", "1", "--idle", "60", "--dry-run"},
		{"reap", "--all-netns", "--port", "1", "--dry-run"},
	} {
		_, errOut, code := hostRun(t, bin, args...)
		if code != 0 || !strings.Contains(errOut, "warning") || !strings.Contains(errOut, name) {
			t.Errorf("%v with a stale entry: exit %d: %s", args, code, errOut)
		}
	}
	_, errOut, code := hostRun(t, bin, "audit", "--netns", name)
	if code != 1 || !strings.Contains(errOut, "not a mounted network namespace") {
		t.Errorf("audit --netns on the stale entry: exit %d (want 1): %s", code, errOut)
	}
}
