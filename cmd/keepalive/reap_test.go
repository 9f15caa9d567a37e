//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
)

func TestReapDestroysChildConnections(t *testing.T) {
	lab := newHostLab(t, 3)
	ns := lab.pair.A.Name
	if _, errOut, code := lab.run("reap", "--netns", ns); code != 2 || !strings.Contains(errOut, "select them") {
		t.Fatalf("reap without a selector: exit %d: %s", code, errOut)
	}
	for _, args := range [][]string{{"--state", "established"}, {"--idle-over", "1s"}, {"--state", "established", "--idle-over", "1s", "--all-netns"}} {
		if _, errOut, code := lab.run(append([]string{"reap"}, args...)...); code != 2 || !strings.Contains(errOut, "alone would select every connection") {
			t.Fatalf("reap %v: exit %d: %s", args, code, errOut)
		}
	}
	// The accepted ends in B belong to this test process, an ancestor of the reap command:
	// they carry "its session" and are kept unless --include-self.
	out, errOut, code := lab.run("reap", "--netns", lab.pair.B.Name, "--port", lab.lnPort, "--json")
	var kept reapReport
	if err := json.Unmarshal([]byte(out), &kept); err != nil || code != 0 || kept.Protected != 3 || kept.Destroyed != 0 {
		t.Fatalf("reap of the session's own connections: exit %d, %+v %v\n%s%s", code, kept, err, out, errOut)
	}
	out, _, code = lab.run("reap", "--netns", lab.pair.B.Name, "--port", lab.lnPort, "--include-self", "--dry-run")
	if code != 0 || strings.Count(out, "would destroy") != 3 {
		t.Fatalf("reap --include-self --dry-run: exit %d\n%s", code, out)
	}
	// --dry-run lists and destroys nothing.
	out, errOut, code = lab.run("reap", "--netns", ns, "--port", lab.ports[0], "--dry-run")
	if code != 0 || !strings.Contains(out, lab.locals[0]) || !strings.Contains(out, "would destroy") ||
		!strings.Contains(out, "1 connection matches --port "+lab.ports[0]+" --netns "+ns+"; nothing destroyed (--dry-run)") {
		t.Fatalf("reap --dry-run: exit %d\n%s%s", code, out, errOut)
	}
	lab.quiet(300 * time.Millisecond)
	if a := lab.audit("--netns", ns, "--pid", lab.pid()); len(a.Connections) != 3 {
		t.Fatalf("after --dry-run %d connections remain, want 3", len(a.Connections))
	}
	// Destroy connection 0 only: the child sees ECONNABORTED on it and nothing else.
	out, errOut, code = lab.run("reap", "--netns", ns, "--port", lab.ports[0], "--json")
	if code != 0 {
		t.Fatalf("reap: exit %d: %s", code, errOut)
	}
	var rep reapReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Matched != 1 || rep.Destroyed != 1 || len(rep.Results) != 1 || rep.Results[0].Local != lab.locals[0] ||
		!rep.Results[0].Destroyed || !strings.Contains(rep.Results[0].Process, lab.pid()+"/hostchild") {
		t.Fatalf("reap report: %s", out)
	}
	if line := lab.expect("err ", 5*time.Second); line != "err 0 ECONNABORTED" {
		t.Fatalf("child: %q, want err 0 ECONNABORTED", line)
	}
	lab.quiet(300 * time.Millisecond)
	// The rest by owner, without --netns: --pid finds the process's namespace; text output
	// names what was destroyed.
	out, errOut, code = lab.run("reap", "--pid", lab.pid())
	if code != 0 || strings.Count(out, "destroyed") != 3 || !strings.Contains(out, "2 connections match --pid "+lab.pid()+": 2 destroyed, 0 already gone, 0 failed") {
		t.Fatalf("reap --pid: exit %d\n%s%s", code, out, errOut)
	}
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		got[lab.expect("err ", 5*time.Second)] = true
	}
	if !got["err 1 ECONNABORTED"] || !got["err 2 ECONNABORTED"] {
		t.Fatalf("child: %v", got)
	}
	if a := lab.audit("--netns", ns, "--pid", lab.pid()); len(a.Connections) != 0 {
		t.Fatalf("after reap %d connections remain", len(a.Connections))
	}
}

func TestUnprivilegedErrorsNameTheFix(t *testing.T) {
	nstest.Need(t, os.Geteuid() == 0, "needs root to drop to uid 65534 for the test")
	bin, _ := hostBuild(t)
	// t.TempDir is private to root: let uid 65534 run the binary.
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(filepath.Dir(bin)); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	nobody := func(args ...string) (string, int) {
		var e bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &e
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return e.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return e.String(), 0
	}
	if msg, code := nobody("reap", "--peer", "127.0.0.1", "--port", port); code != 1 || !strings.Contains(msg, "SOCK_DESTROY needs CAP_NET_ADMIN") {
		t.Errorf("reap as uid 65534: exit %d: %s", code, msg)
	}
	if msg, code := nobody("enable", "--pid", strconv.Itoa(os.Getpid()), "--idle", "60"); code != 1 || !strings.Contains(msg, "CAP_SYS_PTRACE") {
		t.Errorf("enable as uid 65534: exit %d: %s", code, msg)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Errorf("connection harmed by the failed reap: %v", err)
	}
}

// TestSetuidRunRefusesOthers installs the binary set-user-ID root and runs it as uid 65534
// (AT_SECURE): it must refuse to change or destroy the connections of a root process, and say
// why, while the connection stays untouched.
func TestSetuidRunRefusesOthers(t *testing.T) {
	nstest.Need(t, os.Geteuid() == 0, "needs root to install a set-user-ID binary")
	lab := newHostLab(t, 2) // a root process with two connections, in namespace A
	bin := lab.bin
	for d := filepath.Dir(bin); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if err := os.Chmod(bin, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(bin, 0o755) })
	nobody := func(args ...string) (string, string, int) {
		var o, e bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &o, &e
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return o.String(), e.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), 0
	}
	const refusal = "who ran this set-user-ID or file-capability program"
	out, errOut, code := nobody("enable", "--pid", lab.pid(), "--idle", "60")
	if code != 1 || !strings.Contains(out+errOut, refusal) || strings.Contains(out+errOut, "setcap") {
		t.Fatalf("set-user-ID enable on root's connections: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = nobody("reap", "--pid", lab.pid())
	if code != 1 || !strings.Contains(out+errOut, refusal) {
		t.Fatalf("set-user-ID reap on root's connections: exit %d\n%s%s", code, out, errOut)
	}
	for _, s := range lab.settings() {
		if !strings.HasPrefix(s, "false ") {
			t.Fatalf("a refused run changed the settings: %v", lab.settings())
		}
	}
	lab.quiet(300 * time.Millisecond) // no connection was destroyed
}
