//go:build linux

package host

import (
	"context"
	"testing"
)

// BenchmarkWalk measures a full listing of the host's connected TCP sockets with owners
// (and with a deep read). Run it while bench/audit.sh's helpers hold connections to get
// meaningful numbers.
func BenchmarkWalk(b *testing.B) {
	for _, bc := range []struct {
		name string
		opt  ListOptions
	}{
		{"sockets", ListOptions{}},
		{"sockets-noinfo", ListOptions{NoInfo: true}},
		{"owners", ListOptions{Owners: true}},
		{"deep", ListOptions{Deep: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				n = 0
				if err := Walk(context.Background(), bc.opt, func(*Socket) error { n++; return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n), "sockets")
		})
	}
}

// BenchmarkScanOwners measures the /proc/*/fd pass alone.
func BenchmarkScanOwners(b *testing.B) {
	for b.Loop() {
		if _, err := scanOwners(nil, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNamespaces measures the discovery of every network namespace on the host (mounts,
// every process and thread), the extra work of --all-netns before any socket is dumped.
func BenchmarkNamespaces(b *testing.B) {
	n := 0
	for b.Loop() {
		all, err := Namespaces(nil)
		if err != nil {
			b.Fatal(err)
		}
		n = len(all)
	}
	b.ReportMetric(float64(n), "namespaces")
}
