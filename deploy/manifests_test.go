package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/keepalive-dev/keepalive/agent"
	"github.com/keepalive-dev/keepalive/deploy/grafana"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// need fails under CI=true and skips otherwise when a tool is missing.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("prerequisite missing under CI=true: %s", what)
	}
	t.Skipf("skipping: %s", what)
}

// decodeStrict decodes a manifest into v, refusing unknown and duplicate fields.
func decodeStrict(t *testing.T, file string, v any, apiVersion, kind string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(b, &tm); err != nil || tm.APIVersion != apiVersion || tm.Kind != kind {
		t.Fatalf("%s: %s %s, want %s %s (%v)", file, tm.APIVersion, tm.Kind, apiVersion, kind, err)
	}
}

// DaemonSet returns the agent's DaemonSet as decoded strictly from kubernetes/daemonset.yaml.
func daemonSet(t *testing.T) *appsv1.DaemonSet {
	var ds appsv1.DaemonSet
	decodeStrict(t, "kubernetes/daemonset.yaml", &ds, "apps/v1", "DaemonSet")
	return &ds
}

func TestManifests(t *testing.T) {
	ds := daemonSet(t)
	spec := ds.Spec.Template.Spec
	if !spec.HostPID || !spec.HostNetwork || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Fatalf("pod spec: hostPID %v hostNetwork %v automount %v", spec.HostPID, spec.HostNetwork, spec.AutomountServiceAccountToken)
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Fatalf("security context: %+v", sc)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("seccomp: %+v", sc.SeccompProfile)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	for _, p := range []string{"/var/run/netns", "/sys/fs/bpf", "/sys/fs/cgroup", "/etc/keepalive"} {
		if _, ok := mounts[p]; !ok {
			t.Errorf("no mount at %s", p)
		}
	}
	if *mounts["/sys/fs/bpf"].MountPropagation != corev1.MountPropagationHostToContainer {
		t.Error("/sys/fs/bpf propagation")
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--config=/etc/keepalive/agent.yaml") {
		t.Errorf("args %v", c.Args)
	}

	var sa corev1.ServiceAccount
	decodeStrict(t, "kubernetes/serviceaccount.yaml", &sa, "v1", "ServiceAccount")
	if sa.Name != spec.ServiceAccountName {
		t.Errorf("ServiceAccount %q, DaemonSet uses %q", sa.Name, spec.ServiceAccountName)
	}
	var svc corev1.Service
	decodeStrict(t, "kubernetes/service.yaml", &svc, "v1", "Service")
	var sm monitoringv1.ServiceMonitor
	decodeStrict(t, "kubernetes/servicemonitor.yaml", &sm, "monitoring.coreos.com/v1", "ServiceMonitor")
	if sm.Spec.Endpoints[0].Port != "metrics" || svc.Spec.Ports[0].Name != "metrics" || c.Ports[0].Name != "metrics" {
		t.Error("the ServiceMonitor, Service and container do not agree on the metrics port")
	}
	var cm corev1.ConfigMap
	decodeStrict(t, "kubernetes/configmap.yaml", &cm, "v1", "ConfigMap")
	if _, err := agent.ParsePolicy([]byte(cm.Data["agent.yaml"])); err != nil {
		t.Fatalf("ConfigMap policy: %v", err)
	}
	b, err := os.ReadFile("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.ParsePolicy(b); err != nil {
		t.Fatalf("policy.yaml: %v", err)
	}
}

func TestStrictDecodeRefusesUnknownField(t *testing.T) {
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  hostPid: true\n"), &ds); err == nil {
		t.Fatal("a misspelt field was accepted")
	}
}

func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	need(t, err == nil, "promtool (Debian package prometheus)")
	out, err := exec.Command(promtool, "check", "rules", "prometheus/alerts.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestSystemdUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	need(t, err == nil, "systemd-analyze (Debian package systemd)")
	unit, err := os.ReadFile("systemd/keepalive-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify needs the executables: point ExecStart at a stand-in binary.
	dir := t.TempDir()
	bin := filepath.Join(dir, "keepalive")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	u := bytes.ReplaceAll(unit, []byte("/usr/local/bin/keepalive"), []byte(bin))
	path := filepath.Join(dir, "keepalive-agent.service")
	if err := os.WriteFile(path, u, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestDashboardUpToDate(t *testing.T) {
	want, err := grafana.Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("grafana/keepalive-agent.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("grafana/keepalive-agent.json is stale: go run ./grafana/cmd > grafana/keepalive-agent.json")
	}
	plugins.RegisterDefaultPlugins()
	var d dashboard.Dashboard
	// The SDK returns an empty cog.BuildErrors as a non-nil error on success.
	if err := d.UnmarshalJSONStrict(got); err != nil {
		if be, ok := err.(cog.BuildErrors); !ok || len(be) > 0 {
			t.Fatalf("the dashboard does not decode strictly: %v", err)
		}
	}
	if len(d.Panels) < 10 {
		t.Fatalf("%d panels", len(d.Panels))
	}
}
