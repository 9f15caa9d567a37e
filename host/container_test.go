package host

import "testing"

func TestParseCgroup(t *testing.T) {
	const id = "4f2a9c1e0b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19"
	const pod = "0d3e2a4c-1b2f-4e5d-9a8b-7c6d5e4f3a2b"
	for _, tc := range []struct {
		name, in            string
		runtime, cid, podID string
	}{
		{"docker-cgroupfs-v1-hybrid", "9:name=systemd:/docker/" + id + "\n4:memory:/docker/" + id + "\n0::/\n", "docker", id, ""},
		{"docker-systemd-v2", "0::/system.slice/docker-" + id + ".scope\n", "docker", id, ""},
		{"containerd-k8s-systemd", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + "0d3e2a4c_1b2f_4e5d_9a8b_7c6d5e4f3a2b" + ".slice/cri-containerd-" + id + ".scope\n", "containerd", id, pod},
		{"k8s-cgroupfs-v1", "11:cpu,cpuacct:/kubepods/besteffort/pod" + pod + "/" + id + "\n", "kubernetes", id, pod},
		{"crio", "0::/kubepods.slice/kubepods-pod0d3e2a4c_1b2f_4e5d_9a8b_7c6d5e4f3a2b.slice/crio-" + id + ".scope", "cri-o", id, pod},
		{"podman", "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope\n", "podman", id, ""},
		{"path-with-colon", "0::/odd:name/docker-" + id + ".scope\n", "docker", id, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ParseCgroup(tc.in)
			if c == nil || c.Runtime != tc.runtime || c.ID != tc.cid || c.Pod != tc.podID {
				t.Fatalf("ParseCgroup = %+v, want %s %s pod %q", c, tc.runtime, tc.cid, tc.podID)
			}
			if !c.MatchID(id[:12]) || c.MatchID("abc") {
				t.Errorf("MatchID wrong for %+v", c)
			}
		})
	}
	for _, in := range []string{"", "0::/\n", "4:memory:/process_api/5b265efa801b927ad84a835bc3181aab\n", "0::/system.slice/sshd.service\n", "0::/docker/notanid\n", "garbage"} {
		if c := ParseCgroup(in); c != nil {
			t.Errorf("ParseCgroup(%q) = %+v, want nil", in, c)
		}
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add("4:memory:/docker/4f2a9c1e0b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19\n0::/\n")
	f.Add("0::/kubepods.slice/kubepods-pod0d3e2a4c_1b2f_4e5d_9a8b_7c6d5e4f3a2b.slice/crio-x.scope")
	f.Fuzz(func(t *testing.T, s string) {
		if c := ParseCgroup(s); c != nil && (c.ID == "" || c.Runtime == "") {
			t.Fatalf("container without ID or runtime: %+v", c)
		}
	})
}
