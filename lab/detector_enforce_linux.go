package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/enforce"
	"golang.org/x/sys/unix"
)

// Enforce is the "enforce" mode: the client application never enables keepalive; the
// kernel sets it on the client's socket at establishment, from the eBPF program of
// 'keepalive enforce' attached to a cgroup that holds the dialling thread.
func platformDetectors() []Detector { return []Detector{enforceDetector{}} }

type enforceDetector struct{}

func (enforceDetector) Name() string { return "enforce" }
func (enforceDetector) Describe() string {
	return "keepalive set by the kernel at connect() from a cgroup's eBPF policy (keepalive enforce), --idle, --interval, --count"
}

// dialWrapper is a Detector that must act around the client's connect(): wrapDial runs on
// the locked OS thread (in the client namespace) that dials, calls dial, and returns what
// undoes its preparations once the run is over.
type dialWrapper interface {
	wrapDial(ctx context.Context, o Options, dial func() error) (undo func(), err error)
}

// Predict: the socket behaves exactly like kernel keepalive from its first moment.
func (enforceDetector) Predict(in PredictInput) keepalive.Timeline {
	in.Model.Enabled = true
	in.Model.Config.UserTimeout = 0
	return PredictKernel(in)
}

func enforcePolicy(o Options) keepalive.Config {
	c := o.Config
	c.UserTimeout = 0
	return c
}

// Attach checks that the application's own socket came out of connect() with the policy.
func (enforceDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	got, err := keepalive.Get(s.Conn)
	if err != nil {
		return nil, fmt.Errorf("lab: enforce: read back: %w", err)
	}
	want := keepalive.Settings{Enabled: true, Config: enforcePolicy(s.Options).WithDefaults(got.Config)}
	if got != want {
		return nil, fmt.Errorf("lab: enforce: the application's socket has %s after connect(), want %s from the program", got, want)
	}
	return func() {}, nil
}

// wrapDial puts the dialling thread alone into a threaded child of the process's cgroup
// (cgroup v2 threaded mode), attaches the enforce policy to that child (programs and maps
// pinned in a private BPF filesystem), dials, and moves the thread back. The socket keeps
// its cgroup, so the program set its options during connect(); nothing else of the process
// is affected (parallel runs dial from other threads).
func (enforceDetector) wrapDial(ctx context.Context, o Options, dial func() error) (func(), error) {
	mnt, err := enforce.Cgroup2Mount()
	if err != nil {
		return nil, fmt.Errorf("lab: enforce: %w", err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("lab: enforce: %w", err)
	}
	self := ""
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			self = p
		}
	}
	if self == "" {
		return nil, errors.New("lab: enforce: this process has no cgroup v2 membership")
	}
	parent := filepath.Join(mnt, self)
	rb := make([]byte, 3)
	rand.Read(rb)
	abs := filepath.Join(parent, fmt.Sprintf("keepalive-lab-enforce-%d-%s", os.Getpid(), hex.EncodeToString(rb)))
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	fail := func(err error) (func(), error) { cleanup(); return nil, fmt.Errorf("lab: enforce: %w", err) }
	if err := os.Mkdir(abs, 0o755); err != nil {
		return fail(err)
	}
	undo = append(undo, func() {
		for i := 0; i < 100 && os.Remove(abs) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	if err := os.WriteFile(filepath.Join(abs, "cgroup.type"), []byte("threaded"), 0); err != nil {
		return fail(fmt.Errorf("make %s a threaded cgroup (the lab process's cgroup %s must be able to become a threaded domain: no controllers enabled for its children, no domain children other than at the root): %w", abs, self, err))
	}
	bpffs, err := os.MkdirTemp("", "keepalive-lab-enforce-bpffs")
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { os.Remove(bpffs) })
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		return fail(fmt.Errorf("mount a private bpffs: %w", err))
	}
	undo = append(undo, func() { unix.Unmount(bpffs, unix.MNT_DETACH) })
	h, err := enforce.Open(enforce.Options{PinDir: filepath.Join(bpffs, "keepalive")})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { h.Close() })
	if _, err := h.Attach(enforce.AttachRequest{Cgroup: abs, Owner: "lab",
		Rule: enforce.Rule{Config: enforcePolicy(o), Mode: enforce.ModeEnforce}}); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { h.Detach(abs, nil, "lab", true) })
	tid := []byte(strconv.Itoa(unix.Gettid()))
	if err := os.WriteFile(filepath.Join(abs, "cgroup.threads"), tid, 0); err != nil {
		return fail(fmt.Errorf("move the dialling thread into %s: %w", abs, err))
	}
	derr := dial()
	if err := os.WriteFile(filepath.Join(parent, "cgroup.threads"), tid, 0); err != nil {
		// The thread must not go back to the runtime's pool inside the test cgroup.
		cleanup()
		return nil, errors.Join(derr, fmt.Errorf("lab: enforce: move the dialling thread back to %s: %w", parent, err))
	}
	if derr != nil {
		cleanup()
		return nil, derr
	}
	return cleanup, nil
}
