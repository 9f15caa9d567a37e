//go:build linux

package netnsx_test

import (
	"os"
	"strings"
	"testing"

	"github.com/keepalive-dev/keepalive/internal/netnsx"
	"github.com/keepalive-dev/keepalive/internal/nstest"
)

func netnsInode(t *testing.T) string {
	t.Helper()
	l, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDoNamedEntersAndReturns(t *testing.T) {
	nstest.Require(t)
	ns := nstest.NewNS(t, "kanetnsx")
	before := netnsInode(t)
	var inside string
	if err := netnsx.DoNamed(ns.Name, func() error { inside = netnsInode(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside == before {
		t.Fatalf("fn ran in the caller's namespace %s", before)
	}
	if after := netnsInode(t); after != before {
		t.Fatalf("caller's namespace changed: %s → %s", before, after)
	}
	var direct string
	if err := netnsx.DoNamed("", func() error { direct = netnsInode(t); return nil }); err != nil || direct != before {
		t.Fatalf(`DoNamed("") ran in %s (err %v), want the current namespace %s`, direct, err, before)
	}
}

func TestDoNamedErrors(t *testing.T) {
	for _, name := range []string{"kanetnsx-does-not-exist", "..", "/nonexistent/path"} {
		err := netnsx.DoNamed(name, func() error { t.Error("fn ran"); return nil })
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("DoNamed(%q) = %v, want an error naming it", name, err)
		}
	}
}
