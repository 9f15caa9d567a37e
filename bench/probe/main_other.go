//go:build !linux

// Command probe-bench measures 'keepalive probe'; it works on Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "probe-bench works on Linux only (network namespaces, raw sockets)")
	os.Exit(1)
}
