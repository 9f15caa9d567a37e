//go:build linux

package enforce

import (
	"net/netip"
	"testing"

	"github.com/keepalive-dev/keepalive/internal/mountinfo"
)

// FuzzPolicyKey: every valid rule's LPM key decodes back to the same cgroup id and match.
func FuzzPolicyKey(f *testing.F) {
	f.Add(uint64(42), uint16(0), uint16(5432), "10.0.0.0/8")
	f.Add(uint64(7), uint16(8080), uint16(0), "")
	f.Add(uint64(1), uint16(0), uint16(0), "fd00::/8")
	f.Add(uint64(1<<40), uint16(0), uint16(0), "0.0.0.0/0")
	f.Fuzz(func(t *testing.T, id uint64, local, remote uint16, peer string) {
		m := Match{LocalPort: local, RemotePort: remote}
		if p, err := netip.ParsePrefix(peer); err == nil {
			m.Peer = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
			if !m.Peer.IsValid() {
				return
			}
			if m.Peer.Bits() == 0 && m.Peer.Addr().Is6() && (local != 0 || remote != 0) {
				return // ::/0 beside a port is the port rule itself
			}
		}
		if m.Check() != nil {
			return
		}
		gid, gm := decodeKey(policyKey(id, m))
		if gid != id || gm != m {
			t.Fatalf("policyKey(%d, %+v) decodes to %d, %+v", id, m, gid, gm)
		}
	})
}

// FuzzContainerIDIn: never panics; whatever it returns is a 64-digit id with the prefix.
func FuzzContainerIDIn(f *testing.F) {
	id := "47ced3c93bfcafb249387c831d64c83c904c327987f10d1a883d9c40f5b03fb1"
	f.Add("0::/docker/"+id+"\n", id[:12])
	f.Add("0::/system.slice/docker-"+id+".scope\n", id[:20])
	f.Add("12:pids:/kubepods/burstable/pod1/cri-containerd-"+id+"\n", id)
	f.Add("0::/\n", "abc")
	f.Fuzz(func(t *testing.T, cgroups, prefix string) {
		got := containerIDIn(cgroups, prefix)
		if got != "" && (len(got) != 64 || !IsContainerID(got) || got[:len(prefix)] != prefix) {
			t.Fatalf("containerIDIn(%q, %q) = %q", cgroups, prefix, got)
		}
	})
}

// FuzzUnescapeMount: never panics, and text without backslashes is unchanged.
func FuzzUnescapeMount(f *testing.F) {
	f.Add(`/sys/fs/cgroup/unified`)
	f.Add(`/mnt/with\040space`)
	f.Add(`\\\0`)
	f.Fuzz(func(t *testing.T, s string) {
		out := mountinfo.Unescape(s)
		if len(out) > len(s) {
			t.Fatalf("Unescape(%q) grew to %q", s, out)
		}
	})
}
