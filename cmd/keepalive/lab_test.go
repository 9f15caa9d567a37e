//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/keepalive-dev/keepalive/lab"
)

// TestLab builds the binary once and runs the lab command tests against it as parallel
// subtests; the binary goes away with the test's temporary directory.
func TestLab(t *testing.T) {
	nstest.Need(t, os.Geteuid() == 0, "keepalive lab needs root")
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // NotRoot runs the binary as nobody
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "keepalive")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, string)
	}{
		{"UsageErrors", testLabUsageErrors},
		{"NotRoot", testLabNotRoot},
		{"JSON", testLabCommandJSON},
		{"TextSVG", testLabCommandTextSVG},
		{"NotDetectedExit3", testLabCommandNotDetectedExit3},
		{"KilledThenClean", testLabKilledThenClean},
		{"InterruptedCleansUp", testLabInterruptedCleansUp},
		{"Random20", testLabRandom20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, bin)
		})
	}
}

func labExec(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// labNamespacesOf lists the lab namespaces created by process pid.
func labNamespacesOf(pid int) []string {
	ents, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("%s-%d-", lab.Prefix, pid)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// labHelpersOf lists live server processes whose namespace belongs to lab process pid.
func labHelpersOf(pid int) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	var out []string
	want := fmt.Sprintf("/%s-%d-", lab.Prefix, pid)
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(lab.HelperEnv+"=server")) && bytes.Contains(b, []byte(want)) {
			if st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); err == nil && !bytes.Contains(st, []byte(") Z ")) {
				out = append(out, filepath.Dir(p))
			}
		}
	}
	return out
}

func testLabUsageErrors(t *testing.T, bin string) {
	for _, args := range [][]string{{"--random", "0"}, {"--random", "5", "--idle", "3s"}, {"--random", "5", "--matrix"}, {"--hz", "5"}, {"--segments", "3"}, {"--scenario", "in-flight", "--segments", "11"}} {
		if _, stderr, code := labExec(t, bin, append([]string{"lab"}, args...)...); code != 2 || !strings.Contains(stderr, "--") {
			t.Errorf("lab %v: exit %d (%s), want 2", args, code, stderr)
		}
	}
	for _, args := range [][]string{
		{"lab", "--scenario", "meteor"},
		{"lab", "--mode", "telepathy"},
		{"lab", "--count", "0"},
		{"lab", "--idle", "1500ms"},
		{"lab", "--scenario", "crash", "--nat-expiry", "rst"},
		{"lab", "--matrix", "--scenario", "crash"},
		{"lab", "--user-timeout", "3s"},
	} {
		_, stderr, code := labExec(t, bin, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr)
		}
		if !strings.Contains(stderr, "allowed") && !strings.Contains(stderr, "--") {
			t.Errorf("%v: error does not say what is allowed: %q", args, stderr)
		}
	}
}

func testLabCommandJSON(t *testing.T, bin string) {
	stdout, stderr, code := labExec(t, bin, "lab", "--scenario", "crash", "--idle", "1s", "--interval", "1s", "--count", "2", "--json", "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r lab.Result
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	if !r.Detected || r.Error != "ETIMEDOUT" || r.Probes != 2 {
		t.Errorf("detected %v error %s probes %d, want ETIMEDOUT after 2 probes", r.Detected, r.Error, r.Probes)
	}
	if d := r.SinceLastActivity - r.Predicted.Detection; d < lab.BandLow || d > lab.BandHigh {
		t.Errorf("measured %s vs predicted %s", r.SinceLastActivity, r.Predicted.Detection)
	}
}

func testLabCommandTextSVG(t *testing.T, bin string) {
	svg := filepath.Join(t.TempDir(), "reboot.svg")
	stdout, stderr, code := labExec(t, bin, "lab", "--scenario", "reboot", "--idle", "1s", "--svg", svg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"ECONNRESET", "timeline", "verdict: detected", "predicted"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "waiting:") {
		t.Errorf("no progress line on stderr: %q", stderr)
	}
	b, err := os.ReadFile(svg)
	if err != nil || !bytes.HasPrefix(b, []byte("<svg")) {
		t.Errorf("SVG: %v %.40q", err, b)
	}
}

func testLabCommandNotDetectedExit3(t *testing.T, bin string) {
	_, stderr, code := labExec(t, bin, "lab", "--scenario", "hung", "--idle", "1s", "--max", "3s", "--no-progress")
	if code != exitFound {
		t.Fatalf("exit %d, want %d: %s", code, exitFound, stderr)
	}
}

// startLongLab starts a lab run that would take 60 s and waits until its namespaces and
// server process exist.
func startLongLab(t *testing.T, bin string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "lab", "--scenario", "hung", "--idle", "1s", "--max", "60s", "--no-progress")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	pid := cmd.Process.Pid
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if len(labNamespacesOf(pid)) >= 2 && len(labHelpersOf(pid)) == 1 {
			time.Sleep(500 * time.Millisecond) // let it reach the waiting phase
			return cmd
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("lab run did not set up within 20 s: %s", errb.String())
	return nil
}

func testLabKilledThenClean(t *testing.T, bin string) {
	cmd := startLongLab(t, bin)
	pid := cmd.Process.Pid
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The server process dies with its parent (PR_SET_PDEATHSIG).
	for i := 0; i < 100 && len(labHelpersOf(pid)) > 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if h := labHelpersOf(pid); len(h) > 0 {
		t.Errorf("server process survived its killed lab: %v", h)
	}
	if len(labNamespacesOf(pid)) == 0 {
		t.Fatalf("expected leftovers after SIGKILL, found none")
	}
	stdout, stderr, code := labExec(t, bin, "lab", "clean")
	if code != 0 {
		t.Fatalf("lab clean: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, fmt.Sprintf("removed netns %s-%d-", lab.Prefix, pid)) {
		t.Errorf("lab clean did not report the leftovers:\n%s", stdout)
	}
	if left := labNamespacesOf(pid); len(left) > 0 {
		t.Errorf("still there after lab clean: %v", left)
	}
}

func testLabInterruptedCleansUp(t *testing.T, bin string) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := startLongLab(t, bin)
		pid := cmd.Process.Pid
		// 'lab clean' keeps the namespaces of a lab that is still running.
		stdout, _, _ := labExec(t, bin, "lab", "clean")
		if len(labNamespacesOf(pid)) < 2 || !strings.Contains(stdout, fmt.Sprintf("kept netns %s-%d-", lab.Prefix, pid)) {
			t.Errorf("lab clean touched a running lab: %s", stdout)
		}
		start := time.Now()
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("%v: took %s to stop", sig, el)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
			t.Errorf("%v: exit %v, want status %d", sig, err, exitInterrupted)
		}
		if left := labNamespacesOf(pid); len(left) > 0 {
			t.Errorf("%v: left behind %v", sig, left)
		}
		if h := labHelpersOf(pid); len(h) > 0 {
			t.Errorf("%v: server process left running: %v", sig, h)
		}
	}
}

func testLabNotRoot(t *testing.T, bin string) {
	for _, args := range [][]string{{"lab", "--scenario", "crash"}, {"lab", "--matrix"}, {"lab", "clean"}} {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var e bytes.Buffer
		cmd.Stderr = &e
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitError1 {
			t.Errorf("%v as nobody: %v, want exit %d", args, err, exitError1)
		}
		if !strings.Contains(e.String(), "needs root") {
			t.Errorf("%v as nobody: stderr %q does not say root is needed", args, e.String())
		}
	}
}

// testLabRandom20 is the model's check on this kernel (issue 9): 20 random configurations
// with a fixed seed, run on the real kernel four at a time, each compared with the model's
// window. Every errno must match and every window be tight; a measurement may miss the
// window's +50 ms allowance only by scheduling delay on a loaded machine (at most 2 of 20,
// never by more than 1 s), and each such miss is logged.
func testLabRandom20(t *testing.T, bin string) {
	stdout, stderr, code := labExec(t, bin, "lab", "--random", "20", "--seed", "20261202", "--json", "--no-progress")
	if code != 0 && code != exitFound {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out struct {
		Results []lab.MatrixResult `json:"results"`
		Summary lab.RandomSummary  `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	s := out.Summary
	if s.Total != 20 || len(out.Results) != 20 || s.LabErrors != 0 || s.ErrnoOK != 20 || s.Tight != 20 || s.HZ == 0 || s.HZSource == "" {
		t.Fatalf("summary %+v", s)
	}
	for i, r := range out.Results {
		if !r.Result.Agree {
			t.Logf("run %d outside the window by %s: %s", i+1, r.Result.Distance, r.Result.Disagreement)
		}
	}
	if s.Inside < 18 || s.Worst > time.Second || s.Worst < -time.Second {
		t.Fatalf("%d of 20 inside the model's window, worst distance %s", s.Inside, s.Worst)
	}
	if (code == 0) != (s.Inside == 20) {
		t.Fatalf("exit %d with %d of 20 inside", code, s.Inside)
	}
	// The same seed gives the same configurations.
	a, b := lab.RandomConfigs(20261202, 20), lab.RandomConfigs(20261202, 20)
	for i := range a {
		if a[i].Config != b[i].Config || a[i].Scenario != b[i].Scenario || a[i].Segments != b[i].Segments || out.Results[i].Result.Config.Idle != a[i].Config.Idle {
			t.Fatalf("configuration %d differs between calls or from the run: %+v %+v", i, a[i], out.Results[i].Result.Config)
		}
	}
}
