package lab

import (
	"fmt"
	"os"
)

// HelperEnv is the environment variable that turns a process started by the lab into its
// server. Its value is the helper's role ("server").
const HelperEnv = "KEEPALIVE_LAB_HELPER"

// RunHelperIfRequested turns the process into a lab server process when the lab started it
// (HelperEnv is set) and never returns in that case; otherwise it returns at once.
//
// The lab's server must be a separate process (the Hung scenario freezes it with SIGSTOP), so
// the lab re-executes the running binary (/proc/self/exe) with HelperEnv set. Every program
// that calls Run or Matrix must call RunHelperIfRequested first thing in main, before
// parsing flags; test binaries call it at the top of TestMain:
//
//	func main() {
//		lab.RunHelperIfRequested()
//		...
//	}
func RunHelperIfRequested(extra ...Detector) {
	role := os.Getenv(HelperEnv)
	if role == "" {
		return
	}
	if err := runHelper(role, extra); err != nil {
		fmt.Fprintln(os.Stderr, "keepalive lab helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
