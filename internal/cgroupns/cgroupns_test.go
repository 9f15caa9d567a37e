package cgroupns

import (
	"testing"

	"github.com/keepalive-dev/keepalive/internal/mountinfo"
)

func TestDir(t *testing.T) {
	host := []mountinfo.Mount{
		{Root: "/", Point: "/sys/fs/cgroup/unified", FSType: "cgroup2"},
	}
	// From inside a private namespace two levels down, without the host's view.
	private := []mountinfo.Mount{
		{Root: "/", Point: "/own", FSType: "cgroup2"},
		{Root: "/../..", Point: "/sys/fs/cgroup", FSType: "cgroup2"},
	}
	// A pure cgroup v2 container: its own mount, then the node's tree mounted over it.
	stacked := []mountinfo.Mount{
		{Root: "/kubepods/pod1/ctr", Point: "/sys/fs/cgroup", FSType: "cgroup2"},
		{Root: "/", Point: "/sys/fs/cgroup", FSType: "cgroup2"},
	}
	for _, tc := range []struct {
		ms     []mountinfo.Mount
		p      string
		want   string
		wantOK bool
	}{
		{host, "/", "/sys/fs/cgroup/unified", true},
		{host, "/docker/abc", "/sys/fs/cgroup/unified/docker/abc", true},
		{host, "/../x", "", false},
		{private, "/", "/own", true},
		{private, "/sub", "/own/sub", true},
		{private, "/../../kubepods/pod2/c", "/sys/fs/cgroup/kubepods/pod2/c", true},
		{private, "/../x/../../y", "/sys/fs/cgroup/y", true},
		{private, "/../../..", "", false},
		{stacked, "/kubepods/pod2/c", "/sys/fs/cgroup/kubepods/pod2/c", true},
		{stacked, "/kubepods/pod1/ctr", "/sys/fs/cgroup", true},
		{nil, "/", "", false},
	} {
		got, ok := Dir(tc.ms, tc.p)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("Dir(%v, %q) = %q, %v; want %q, %v", tc.ms, tc.p, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestCgroup2Path(t *testing.T) {
	p, ok := Cgroup2Path([]byte("4:memory:/x\n0::/../../docker/abc\n"))
	if !ok || p != "/../../docker/abc" {
		t.Fatalf("Cgroup2Path = %q, %v", p, ok)
	}
	if _, ok := Cgroup2Path([]byte("4:memory:/x\n")); ok {
		t.Fatal("found a cgroup2 line in v1 only content")
	}
}
