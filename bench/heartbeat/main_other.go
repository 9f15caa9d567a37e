//go:build !linux

// Command heartbeat-bench measures heartbeat cost on idle loopback connections; it reads
// /proc and getrusage and works on Linux only.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "heartbeat-bench works on Linux only (it reads /proc/self/status and getrusage); this is %s\n", runtime.GOOS)
	os.Exit(1)
}
