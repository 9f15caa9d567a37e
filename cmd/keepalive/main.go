// Command keepalive finds dead TCP peers and keeps live ones alive.
//
// Exit codes: 0 success; 1 runtime error (system call failure, missing privilege, nothing
// readable); 2 usage error (unknown flag or command, bad flag value); 3 a check found a problem
// (audit: connections at risk; probe: dead peers; heartbeat connect: peer dead or hung; lab:
// not detected within the bound); 130 interrupted (SIGINT or SIGTERM).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keepalive-dev/keepalive/lab"
)

func main() {
	// The lab's server process is this binary re-executed; it must branch off before anything else.
	lab.RunHelperIfRequested()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globalOptions{Stdout: os.Stdout, Stderr: os.Stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if ctx.Err() != nil {
		// Interrupted: whatever the command made of it, scripts see 128+SIGINT.
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "keepalive:", err)
		}
		return exitInterrupted
	}
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "keepalive:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "keepalive:", err)
	if isUsageError(err) {
		fmt.Fprintln(os.Stderr, "Run 'keepalive --help' for usage.")
		return exitUsage
	}
	return exitError1
}
