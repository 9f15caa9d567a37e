package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNATTimeoutCommand runs 'keepalive nat-timeout serve' and 'measure' as real processes on
// 127.0.0.1, where nothing expires.
func TestNATTimeoutCommand(t *testing.T) {
	b := hbBuild(t)
	srv := exec.Command(string(b), "nat-timeout", "serve", "--listen", "127.0.0.1:0", "--token", "tok")
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = srv.Process.Kill()
			_ = srv.Wait()
		}
	})
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "listening on ") {
		t.Fatalf("first line %q", sc.Text())
	}
	addr := strings.TrimPrefix(sc.Text(), "listening on ")
	go func() {
		for sc.Scan() {
		}
	}()

	stdout, stderr, code, _ := b.run(t, "nat-timeout", "measure", addr, "--token", "tok", "--max", "3s", "--json", "--no-progress")
	if code != 0 {
		t.Fatalf("measure exit %d: %s", code, stderr)
	}
	var j struct {
		Up *struct {
			Expired      bool
			LowerSeconds float64 `json:"lower_seconds"`
		} `json:"client_to_server"`
		Down   *struct{ Expired bool } `json:"server_to_client"`
		Advice string                  `json:"advice"`
		Conns  int                     `json:"conns_per_direction"`
	}
	if err := json.Unmarshal([]byte(stdout), &j); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout)
	}
	if j.Up == nil || j.Up.Expired || j.Up.LowerSeconds < 3 || j.Down == nil || j.Down.Expired || !strings.Contains(j.Advice, "no idle timeout") || j.Conns < 4 {
		t.Errorf("unexpected result: %s", stdout)
	}

	stdout, _, code, _ = b.run(t, "nat-timeout", "measure", addr, "--token", "tok", "--max", "2s", "--direction", "client-to-server", "--no-progress")
	if code != 0 || !strings.Contains(stdout, "client → server: no timeout up to 2.0s") || strings.Contains(stdout, "server → client") {
		t.Errorf("text output (exit %d):\n%s", code, stdout)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nat-timeout", "measure", addr, "--token", "wrong", "--max", "2s"}, 1, "token"},
		{[]string{"nat-timeout", "measure", addr, "--max", "1s"}, 2, "--max 1s out of range"},
		{[]string{"nat-timeout", "measure", addr, "--max", "0s"}, 2, "--max 0s out of range"},
		{[]string{"nat-timeout", "measure", addr, "--max-conns", "3"}, 2, "--max-conns 3 out of range"},
		{[]string{"nat-timeout", "measure", addr, "--direction", "sideways"}, 2, "--direction"},
		{[]string{"nat-timeout", "measure", "no-port"}, 2, "not host:port"},
		{[]string{"nat-timeout", "measure"}, 2, "exactly one ADDR"},
		{[]string{"nat-timeout", "serve"}, 2, "--listen is required"},
		{[]string{"nat-timeout", "serve", "--listen", ":0", "--max-per-client", "1"}, 2, "per-client connection cap"},
	} {
		_, stderr, code, _ := b.run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}

	// Interrupted, the server closes everything and exits with 130.
	_ = srv.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		exited = true
		if srv.ProcessState.ExitCode() != 130 {
			t.Errorf("serve after SIGINT: %v (exit %d), want 130", err, srv.ProcessState.ExitCode())
		}
	case <-time.After(10 * time.Second):
		t.Error("serve did not stop after SIGINT")
	}
}
