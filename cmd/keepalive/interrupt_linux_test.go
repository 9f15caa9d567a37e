//go:build linux

package main

import (
	"bytes"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInterruptedExits130 interrupts long-running commands: each stops promptly with exit
// status 130 (128 + SIGINT), as shells report a command stopped by Ctrl-C.
func TestInterruptedExits130(t *testing.T) {
	b := hbBuild(t)
	for _, args := range [][]string{
		{"enable", "--port", "1", "--idle", "60", "--dry-run", "--watch", "1s"},
		{"heartbeat", "serve", "--listen", "127.0.0.1:0"},
	} {
		cmd := exec.Command(string(b), args...)
		var e bytes.Buffer
		cmd.Stderr = &e
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != exitInterrupted {
				t.Errorf("%s interrupted: %v, want exit %d; stderr %s", strings.Join(args, " "), err, exitInterrupted, e.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("%s did not stop within 10 s of SIGINT", strings.Join(args, " "))
		}
	}
}
