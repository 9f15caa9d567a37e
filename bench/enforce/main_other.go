//go:build !linux

// Command enforce-bench measures 'keepalive enforce'; it works on Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "enforce-bench works on Linux only (cgroup v2, eBPF)")
	os.Exit(1)
}
