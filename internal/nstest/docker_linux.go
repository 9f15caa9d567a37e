//go:build linux

package nstest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NeedDocker fails the test under CI=true, and skips it elsewhere, when no Docker engine
// answers.
func NeedDocker(t testing.TB) {
	t.Helper()
	_, err := exec.LookPath("docker")
	ok := err == nil && exec.Command("docker", "version", "--format", "{{.Server.Version}}").Run() == nil
	Need(t, ok, "a running Docker engine (docker version)")
}

// Docker runs the docker command (at most three minutes: a build included) and returns its trimmed output; a
// failure ends the test with the output.
func Docker(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// StaticBinary builds the Go package pkg (a path as `go build` takes it, relative to dir)
// without cgo into the test's temporary directory and returns the binary's path.
func StaticBinary(t testing.TB, dir, pkg string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", p, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return p
}

// ImportImage makes the image tag FROM scratch holding only the static binary prog, as its
// entry point (docker import: no registry, no Dockerfile), and removes it at cleanup.
func ImportImage(t testing.TB, prog, tag string) string {
	t.Helper()
	base := filepath.Base(prog)
	tarCmd := exec.Command("tar", "-C", filepath.Dir(prog), "-c", base)
	imp := exec.Command("docker", "import", "--change", `ENTRYPOINT ["/`+base+`"]`, "-", tag)
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	imp.Stdin = pipe
	if err := tarCmd.Start(); err != nil {
		t.Fatal(err)
	}
	out, err := imp.CombinedOutput()
	if werr := tarCmd.Wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
	return tag
}
