// Package mountinfo reads the kernel's mount table (/proc/PID/mountinfo, proc(5)), the one
// place host and enforce learn where nsfs, cgroup and bpf file systems are mounted.
package mountinfo

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] -
// FSTYPE SOURCE SUPEROPTS".
type Mount struct {
	// Root is the path inside the file system that is mounted ("/", or "net:[4026531840]"
	// for a network namespace's nsfs mount).
	Root string
	// Point is where it is mounted, with the kernel's octal escapes undone.
	Point string
	// FSType is the file system type ("nsfs", "cgroup2", "cgroup", "bpf", …).
	FSType string
}

// Parse parses one mountinfo line; ok is false for a line that is not one.
func Parse(line string) (m Mount, ok bool) {
	f := strings.Fields(line)
	sep := slices.Index(f, "-")
	if len(f) < 5 || sep < 5 || sep+1 >= len(f) {
		return Mount{}, false
	}
	return Mount{Root: Unescape(f[3]), Point: Unescape(f[4]), FSType: f[sep+1]}, true
}

// Read returns the mounts of file systems whose type is in types (every mount when types is
// empty) from path, e.g. /proc/self/mountinfo or /proc/thread-self/mountinfo, in file order.
func Read(path string, types ...string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m, ok := Parse(sc.Text())
		if ok && (len(types) == 0 || slices.Contains(types, m.FSType)) {
			out = append(out, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", path, err)
	}
	return out, nil
}

// Unescape undoes mountinfo's octal escapes (\040 for a space, \011 tab, \012 newline, \134
// backslash).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
