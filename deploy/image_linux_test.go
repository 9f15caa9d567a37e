package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/promtest"
	corev1 "k8s.io/api/core/v1"
)

func docker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func staticBuild(t *testing.T, dir, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// dockerRunArgs turns the DaemonSet's pod spec into 'docker run' flags: host PID and network
// namespaces, the capabilities, security options, user, read-only root and the hostPath
// mounts with their propagation. volumes maps a volume name to the host directory that
// stands in for it (the ConfigMap, and the node's bpffs).
func dockerRunArgs(t *testing.T, spec corev1.PodSpec, volumes map[string]string) []string {
	t.Helper()
	c := spec.Containers[0]
	var args []string
	if spec.HostPID {
		args = append(args, "--pid=host")
	}
	if spec.HostNetwork {
		args = append(args, "--network=host")
	}
	// Kubernetes has no field for it: the pod sees the node's cgroup paths through the
	// /sys/fs/cgroup hostPath, as a host cgroup namespace gives docker.
	args = append(args, "--cgroupns=host")
	sc := c.SecurityContext
	for _, d := range sc.Capabilities.Drop {
		args = append(args, "--cap-drop="+string(d))
	}
	for _, a := range sc.Capabilities.Add {
		args = append(args, "--cap-add="+string(a))
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		args = append(args, "--security-opt=no-new-privileges")
	}
	if sc.AppArmorProfile != nil && sc.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined {
		args = append(args, "--security-opt=apparmor=unconfined")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("the image test only knows the runtime's default seccomp profile, not %+v", sc.SeccompProfile)
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		args = append(args, "--read-only")
	}
	if sc.RunAsUser != nil {
		args = append(args, "--user="+strconv.FormatInt(*sc.RunAsUser, 10))
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		src, ok := volumes[m.Name]
		if !ok {
			v := vols[m.Name]
			if v.HostPath == nil {
				t.Fatalf("volume %s: no stand-in and not a hostPath", m.Name)
			}
			src = v.HostPath.Path
			if v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectoryOrCreate {
				if err := os.MkdirAll(src, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationHostToContainer {
				src = sharedView(t, src)
			}
		}
		opts := []string{}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationHostToContainer {
			opts = append(opts, "rslave")
		}
		spec := src + ":" + m.MountPath
		if len(opts) > 0 {
			spec += ":" + strings.Join(opts, ",")
		}
		args = append(args, "--volume="+spec)
	}
	return args
}

// sharedView returns a shared recursive bind of dir in a temporary directory: on a node
// (systemd) /sys/fs/cgroup and /sys/fs/bpf are shared mounts, which HostToContainer (rslave)
// needs; this machine's may be private, and the test must not change them.
func sharedView(t *testing.T, dir string) string {
	t.Helper()
	v := filepath.Join(t.TempDir(), "view")
	if err := os.Mkdir(v, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "--rbind", dir, v).CombinedOutput(); err != nil {
		t.Fatalf("bind %s: %v %s", dir, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-R", "-l", v).Run() })
	if out, err := exec.Command("mount", "--make-rshared", v).CombinedOutput(); err != nil {
		t.Fatalf("make %s shared: %v %s", v, err, out)
	}
	return v
}

func suffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestImageAsDaemonSet builds the image with 'docker build' and runs it as the DaemonSet does:
// from its container it must see and protect the connections of the host and of another
// container.
func TestImageAsDaemonSet(t *testing.T) {
	need(t, os.Geteuid() == 0, "root (docker, bpffs)")
	_, err := exec.LookPath("docker")
	need(t, err == nil, "the docker client")
	need(t, exec.Command("docker", "version").Run() == nil, "a Docker engine")

	dir := t.TempDir()
	id := fmt.Sprintf("%d-%s", os.Getpid(), suffix())
	// The agent image, built from deploy/container/Dockerfile.
	ctxDir := filepath.Join(dir, "image")
	if err := os.Mkdir(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile("container/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	staticBuild(t, "..", filepath.Join(ctxDir, "keepalive"), "./cmd/keepalive")
	image := "keepalive-agent-test:" + id
	docker(t, "build", "-q", "-t", image, ctxDir)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })

	// The other container: holds a loopback connection pair without keepalive in its own
	// network namespace.
	connDir := filepath.Join(dir, "testconn")
	if err := os.Mkdir(connDir, 0o755); err != nil {
		t.Fatal(err)
	}
	staticBuild(t, ".", filepath.Join(connDir, "testconn"), "./internal/testconn")
	if err := os.WriteFile(filepath.Join(connDir, "Dockerfile"), []byte("FROM scratch\nCOPY testconn /testconn\nENTRYPOINT [\"/testconn\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	connImage := "keepalive-testconn:" + id
	docker(t, "build", "-q", "-t", connImage, connDir)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", connImage).Run() })
	var rb [2]byte
	_, _ = rand.Read(rb[:])
	ctrPort := 20000 + (int(rb[0])<<8|int(rb[1]))%10000
	ctrName := "keepalive-testconn-" + id
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", ctrName).Run() })
	docker(t, "run", "-d", "--name", ctrName, "--network=bridge", connImage, strconv.Itoa(ctrPort))

	// On the host: a loopback connection pair without keepalive.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hostPort := ln.Addr().(*net.TCPAddr).Port
	d := net.Dialer{KeepAlive: -1}
	hc, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hs, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()

	// The ConfigMap's stand-in: a policy that enforces on both ports.
	policyDir := filepath.Join(dir, "policy")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pol := fmt.Sprintf("interval: 1s\nrules:\n  - name: test\n    match: {ports: [%d, %d], peers: [127.0.0.1]}\n    action: enforce\n    keepalive: {idle: 30s, interval: 5s, count: 3}\n", hostPort, ctrPort)
	if err := os.WriteFile(filepath.Join(policyDir, "agent.yaml"), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	// The node's BPF filesystem: a private one for the test.
	bpffs := filepath.Join(dir, "bpf")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", bpffs).CombinedOutput(); err != nil {
		t.Fatalf("mount bpffs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", bpffs).Run() })
	// A node's /sys/fs/bpf is a shared mount (systemd); HostToContainer (rslave) needs one.
	if out, err := exec.Command("mount", "--make-shared", bpffs).CombinedOutput(); err != nil {
		t.Fatalf("make bpffs shared: %v %s", err, out)
	}

	ds := daemonSet(t)
	spec := ds.Spec.Template.Spec
	run := append([]string{"run", "-d", "--name", "keepalive-agent-" + id},
		dockerRunArgs(t, spec, map[string]string{"policy": policyDir, "bpffs": bpffs})...)
	// The DaemonSet's own arguments, with the metrics on a free loopback port instead of 9977.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metrics := probe.Addr().String()
	probe.Close()
	args := []string{}
	for _, a := range spec.Containers[0].Args {
		if strings.HasPrefix(a, "--listen=") {
			a = "--listen=" + metrics
		}
		args = append(args, a)
	}
	run = append(run, image)
	run = append(run, args...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", "keepalive-agent-"+id).CombinedOutput()
			t.Logf("agent log:\n%s", out)
		}
		_ = exec.Command("docker", "rm", "-f", "keepalive-agent-"+id).Run()
	})
	docker(t, run...)

	get := func(name string, labels ...string) float64 {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		sum, found := promtest.Sum(string(b), name, labels...)
		if !found {
			return -1
		}
		return sum
	}
	wait := func(want float64, name string, labels ...string) {
		t.Helper()
		var got float64
		for range 150 {
			if got = get(name, labels...); got == want {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
	// Four connections (two on the host, two in the other container) matched and retrofitted.
	wait(4, "keepalive_rule_connections", `rule="test"`)
	wait(4, "keepalive_retrofits_total", `result="applied"`)
	if n := get("keepalive_namespaces"); n < 2 {
		t.Fatalf("the agent saw %v namespaces", n)
	}
	// The retrofit reached the host's sockets: the kernel now runs their keepalive timer.
	raw, err := hc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on int
	_ = raw.Control(func(fd uintptr) { on, err = getsockoptInt(int(fd)) })
	if err != nil || on != 1 {
		t.Fatalf("SO_KEEPALIVE on the host connection after the agent: %d %v", on, err)
	}
}
