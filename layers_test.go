package keepalive_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/keepalive-dev/keepalive"

// layers gives each package of the module its layer (ARCHITECTURE.md): a package imports only
// packages of its own layer or below. internal/ packages are helpers: they import only the
// model and each other, and anyone may import them.
var layers = map[string]int{
	"":              0, // the model and per-socket options
	"host":          1, // mechanisms
	"heartbeat":     1,
	"probe":         1,
	"enforce":       1,
	"nattimeout":    1,
	"lab":           2, // compositions of mechanisms
	"agent":         2,
	"cmd/keepalive": 3, // the command
}

// TestLayers reads `go list -deps` for every package of the module and fails when one imports
// a layer above its own (test files are not counted: tests may use anything).
func TestLayers(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(gobin, "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	layerOf := func(pkg string) (int, bool) {
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		if strings.HasPrefix(rel, "internal/") {
			return 0, true
		}
		l, ok := layers[rel]
		return l, ok
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
		internal := strings.HasPrefix(pkg, module+"/internal/")
		for _, d := range deps {
			if d != module && !strings.HasPrefix(d, module+"/") {
				continue
			}
			dl, ok := layerOf(d)
			if !ok {
				continue // reported as a package of its own
			}
			if internal && !strings.HasPrefix(d, module+"/internal/") && d != module {
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
