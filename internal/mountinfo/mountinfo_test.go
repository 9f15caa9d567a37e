package mountinfo

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Mount
		ok   bool
	}{
		{"40 30 0:37 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw", Mount{"/", "/sys/fs/cgroup/unified", "cgroup2"}, true},
		{"612 29 0:4 net:[4026532301] /run/netns/a\\040b rw shared:300 - nsfs nsfs rw", Mount{"net:[4026532301]", "/run/netns/a b", "nsfs"}, true},
		{"1 2 3:4 / /x rw - ", Mount{}, false},
		{"garbage", Mount{}, false},
		{"", Mount{}, false},
	} {
		got, ok := Parse(tc.line)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReadSelf(t *testing.T) {
	ms, err := Read("/proc/self/mountinfo", "proc")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no proc mount found in /proc/self/mountinfo")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw")
	f.Add("612 29 0:4 net:[4026532301] /run/netns/x rw shared:300 - nsfs nsfs rw")
	f.Add("a b c d e f - \\")
	f.Fuzz(func(t *testing.T, line string) {
		Parse(line)
	})
}
