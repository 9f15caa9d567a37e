package keepalive_test

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/keepalive-dev/keepalive"

// layers gives each package of the module its layer (ARCHITECTURE.md): a package imports only
// packages of its own layer or below. internal/ packages not listed are helpers for every
// layer: they import only the root package and each other.
var layers = map[string]int{
	"":                0, // the model and per-socket options
	"host":            1, // mechanisms
	"heartbeat":       1,
	"probe":           1,
	"enforce":         1,
	"nattimeout":      1,
	"lab":             2, // compositions of mechanisms
	"agent":           2,
	"cmd/keepalive":   3, // the command
	"internal/report": 3, // the command's rendering
	// internal/cgroupns reads /proc/PID/cgroup in the host's cgroup namespace for host,
	// enforce and agent; layer 0 keeps it below all of them (it imports internal/mountinfo).
	"internal/cgroupns": 0,
}

// TestLayers reads `go list -deps` for every package of the module and fails when one imports
// a layer above its own (test files are not counted: tests may use anything).
func TestLayers(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(gobin, "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	layerOf := func(pkg string) (int, bool) {
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		if l, ok := layers[rel]; ok {
			return l, true
		}
		return 0, strings.HasPrefix(rel, "internal/")
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg, deps := f[0], f[1:]
		if strings.HasPrefix(pkg, module+"/examples/") || strings.HasPrefix(pkg, module+"/bench") {
			continue // programs that show the library; any layer may be used
		}
		n++
		own, ok := layerOf(pkg)
		if !ok {
			t.Errorf("package %s has no layer: add it to the table in layers_test.go and to ARCHITECTURE.md", pkg)
			continue
		}
		_, listed := layers[strings.TrimPrefix(pkg, module+"/")]
		helper := strings.HasPrefix(pkg, module+"/internal/") && !listed
		for _, d := range deps {
			if d != module && !strings.HasPrefix(d, module+"/") {
				continue
			}
			dl, ok := layerOf(d)
			if !ok {
				continue // reported as a package of its own
			}
			if helper && !strings.HasPrefix(d, module+"/internal/") && d != module {
				t.Errorf("%s (a helper) imports %s: internal packages import only the root package and each other", pkg, d)
				continue
			}
			if dl > own {
				t.Errorf("%s (layer %d) imports %s (layer %d): a package never imports a layer above its own", pkg, own, d, dl)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < len(layers)-2 {
		t.Fatalf("go list reported only %d packages:\n%s", n, out)
	}
}

// TestCommandSize keeps the command thin (ARCHITECTURE.md): cmd/keepalive holds at most 15 % of
// the module's non-test Go lines outside bench/ and examples/, and no command file is over
// 300 lines. Logic goes into its package, rendering into internal/report.
func TestCommandSize(t *testing.T) {
	var all, cmd int
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (path == "bench" || path == "examples" || path == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n := bytes.Count(b, []byte("\n"))
		all += n
		if filepath.Dir(path) == filepath.Join("cmd", "keepalive") {
			cmd += n
			if n > 300 {
				t.Errorf("%s has %d lines (at most 300: move logic into its package, rendering into internal/report)", path, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cmd*100 > all*15 {
		t.Errorf("cmd/keepalive has %d of %d non-test lines (%.1f %%, at most 15 %%)", cmd, all, 100*float64(cmd)/float64(all))
	}
	t.Logf("cmd/keepalive: %d of %d non-test lines (%.1f %%)", cmd, all, 100*float64(cmd)/float64(all))
}
