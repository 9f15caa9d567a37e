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

	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/keepalive-dev/keepalive/internal/promtest"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

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
// namespaces, the capabilities, security options, user, environment, read-only root and the hostPath
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
	// Kubernetes has no field for the cgroup namespace: on a cgroup v2 node containerd gives
	// every pod a private one. The agent reads other processes' cgroups in the node's
	// namespace itself (internal/cgroupns) and the node's tree through the /sys/fs/cgroup
	// hostPath.
	args = append(args, "--cgroupns=private")
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
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s: the image test only knows literal values", e.Name)
		}
		args = append(args, "--env="+e.Name+"="+e.Value)
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
// needs; this machine's may be private, and the test must not change them. The view is a
// slave of dir first: mounts made under dir (a namespace 'ip netns add' creates) still
// appear in it, but nothing done to the view goes back. A plain shared bind would be a peer
// of dir, and unmounting the view at the end would unmount every namespace under
// /var/run/netns on the host (TestSharedViewKeepsMounts).
func sharedView(t *testing.T, dir string) string {
	t.Helper()
	v := filepath.Join(t.TempDir(), "view")
	if err := os.Mkdir(v, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "--rbind", dir, v).CombinedOutput(); err != nil {
		t.Fatalf("bind %s: %v %s", dir, err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("mount", "--make-rprivate", v).Run()
		_ = exec.Command("umount", "-R", "-l", v).Run()
	})
	for _, prop := range []string{"--make-rslave", "--make-rshared"} {
		if out, err := exec.Command("mount", prop, v).CombinedOutput(); err != nil {
			t.Fatalf("mount %s %s: %v %s", prop, v, err, out)
		}
	}
	return v
}

// TestSharedViewKeepsMounts: the view of a shared directory follows mounts made under the
// directory, and removing the view leaves the directory's own mounts in place (a scratch
// directory stands in for /var/run/netns, a bind-mounted file for a namespace).
func TestSharedViewKeepsMounts(t *testing.T) {
	need(t, os.Geteuid() == 0, "root (mount)")
	dir := filepath.Join(t.TempDir(), "netns")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mount := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v %s", args, err, out)
		}
	}
	mount("-t", "tmpfs", "tmpfs", dir)
	t.Cleanup(func() { _ = exec.Command("umount", "-R", "-l", dir).Run() })
	mount("--make-rshared", dir)
	entry := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		mount("--bind", "/proc/self/ns/net", p)
		return p
	}
	mounted := func(p string) bool {
		var st unix.Statfs_t
		return unix.Statfs(p, &st) == nil && st.Type == unix.NSFS_MAGIC
	}
	before := entry("before")
	t.Run("view", func(t *testing.T) {
		v := sharedView(t, dir)
		after := entry("after")
		if !mounted(filepath.Join(v, "before")) || !mounted(filepath.Join(v, "after")) {
			t.Fatalf("the view misses the directory's mounts")
		}
		_ = after
	})
	for _, p := range []string{before, filepath.Join(dir, "after")} {
		if !mounted(p) {
			t.Errorf("%s was unmounted with the view", p)
		}
	}
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
	nstest.Docker(t, "build", "-q", "-t", image, ctxDir)
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
	nstest.Docker(t, "build", "-q", "-t", connImage, connDir)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", connImage).Run() })
	var rb [2]byte
	_, _ = rand.Read(rb[:])
	ctrPort := 20000 + (int(rb[0])<<8|int(rb[1]))%10000
	ctrName := "keepalive-testconn-" + id
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", ctrName).Run() })
	nstest.Docker(t, "run", "-d", "--name", ctrName, "--network=bridge", connImage, strconv.Itoa(ctrPort))
	// A third container that no rule matches: 'enforce attach' from the agent's container
	// attaches to it without meeting the agent's own attachments.
	idleName := "keepalive-testconn-idle-" + id
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", idleName).Run() })
	nstest.Docker(t, "run", "-d", "--name", idleName, "--network=bridge", connImage, strconv.Itoa(ctrPort+1))

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
	nstest.Docker(t, run...)
	agentName := "keepalive-agent-" + id

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
	// From its private cgroup namespace the agent names the other container's cgroup as the
	// node does and attaches the eBPF policy there (never to "/.." or the node's root).
	for i := 0; get("keepalive_enforcements_total", `result="applied"`) < 1; i++ {
		if i == 150 {
			t.Fatalf("no eBPF attachment applied (failed: %v)", get("keepalive_enforcements_total", `result="failed"`))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if logs, _ := exec.Command("docker", "logs", agentName).CombinedOutput(); strings.Contains(string(logs), "cgroup=/..") {
		t.Fatalf("the agent names a cgroup outside its namespace:\n%s", logs)
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

	privateCgroupTools(t, agentName, ctrName, idleName, ctrPort)
}

// privateCgroupTools checks that the commands in the agent's container, which runs in a
// cgroup namespace of its own as a pod does, name other containers' cgroups as the node does
// (no "/.." paths) and attach eBPF policies to them.
func privateCgroupTools(t *testing.T, agentName, ctrName, idleName string, ctrPort int) {
	t.Helper()
	agentPID := nstest.Docker(t, "inspect", "-f", "{{.State.Pid}}", agentName)
	theirs, err := os.Readlink("/proc/" + agentPID + "/ns/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.Readlink("/proc/self/ns/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if theirs == ours {
		t.Fatalf("the agent's container shares the test's cgroup namespace %s: not run as a pod", ours)
	}
	hostCgroup := func(name string) (id, cg string) {
		t.Helper()
		id = nstest.Docker(t, "inspect", "-f", "{{.Id}}", name)
		pid := nstest.Docker(t, "inspect", "-f", "{{.State.Pid}}", name)
		b, err := os.ReadFile("/proc/" + pid + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if p, ok := strings.CutPrefix(l, "0::"); ok {
				return id, p
			}
		}
		t.Fatalf("container %s: no cgroup2 line in %q", name, b)
		return "", ""
	}
	inAgent := func(args ...string) string {
		t.Helper()
		return nstest.Docker(t, append([]string{"exec", agentName, "/keepalive"}, args...)...)
	}
	noDotDot := func(what, out string) {
		t.Helper()
		if strings.Contains(out, "/..") {
			t.Fatalf("%s names a cgroup outside the agent's namespace (\"/..\"):\n%s", what, out)
		}
	}
	ctrID, ctrCg := hostCgroup(ctrName)
	if strings.Contains(ctrCg, "/..") || ctrCg == "/" {
		t.Fatalf("the other container's cgroup2 path on the host is %q", ctrCg)
	}
	// Where the node's cgroup2 tree is, here and (through the hostPath) in the agent's
	// container: /sys/fs/cgroup/unified on a hybrid node, /sys/fs/cgroup on a unified one.
	mnt := "/sys/fs/cgroup/unified"
	if _, err := os.Stat(mnt + ctrCg); err != nil {
		mnt = "/sys/fs/cgroup"
	}
	port := strconv.Itoa(ctrPort)
	for _, sel := range [][]string{
		{"--container", ctrID[:12]},
		{"--cgroup", ctrCg},
		{"--cgroup", mnt + ctrCg},
	} {
		out := inAgent(append([]string{"audit", "--json"}, sel...)...)
		what := "audit " + strings.Join(sel, " ")
		noDotDot(what, out)
		if !strings.Contains(out, port) {
			t.Fatalf("%s does not list the container's connections on port %s:\n%s", what, port, out)
		}
		if sel[0] == "--container" && !strings.Contains(out, ctrID) {
			t.Fatalf("%s does not name the container %s:\n%s", what, ctrID, out)
		}
	}
	// The text form too: the container column.
	out := inAgent("audit", "--container", ctrID[:12])
	noDotDot("audit --container (text)", out)

	// eBPF: attach to the idle container's cgroup by its id, from inside the agent's
	// container, and find the attachment keyed by the node's path and cgroup id. The running
	// agent holds the lock of its own pins (<bpffs>/keepalive) for its lifetime: the command
	// pins elsewhere.
	pins := "--pin-dir=/sys/fs/bpf/image-test"
	idleID, idleCg := hostCgroup(idleName)
	out = inAgent("enforce", "attach", pins, "--cgroup", idleID, "--owner", "image-test", "--idle", "30", "--interval", "5", "--count", "3", "--json")
	noDotDot("enforce attach --cgroup ID", out)
	if !strings.Contains(out, `"cgroup": "`+idleCg+`"`) {
		t.Fatalf("enforce attach --cgroup ID %s did not attach to %s:\n%s", idleID, idleCg, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("docker", "exec", agentName, "/keepalive", "enforce", "detach", pins, "--cgroup", idleCg, "--owner", "image-test").Run()
	})
	var st unix.Stat_t
	if err := unix.Stat(mnt+idleCg, &st); err != nil {
		t.Fatal(err)
	}
	out = inAgent("enforce", "list", pins, "--json")
	noDotDot("enforce list", out)
	if !strings.Contains(out, `"cgroup": "`+idleCg+`"`) || !strings.Contains(out, `"cgroup_id": `+strconv.FormatUint(st.Ino, 10)+",") || !strings.Contains(out, `"attached": true`) {
		t.Fatalf("enforce list does not show %s (cgroup id %d):\n%s", idleCg, st.Ino, out)
	}
	inAgent("enforce", "detach", pins, "--cgroup", idleCg, "--owner", "image-test")
}
