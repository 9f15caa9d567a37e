package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes every command shares; documented in the root help and the README.
const (
	exitOK     = 0
	exitError1 = 1
	exitUsage  = 2
	exitFound  = 3
	// exitInterrupted is 128+SIGINT, what shells report for a command stopped by Ctrl-C.
	exitInterrupted = 130
)

// globalOptions are the flags and streams every subcommand shares.
type globalOptions struct {
	JSON   bool
	Stdout io.Writer
	Stderr io.Writer
}

// exitError carries a specific exit code out of a command's RunE.
type exitError struct {
	code int
	err  error // printed to stderr when non-nil
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError marks an error caused by bad flags or arguments (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error (exit code 2) with a formatted message.
func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// isUsageError reports whether err is a usage error: a *usageError anywhere in the chain, or
// one of cobra's own argument errors (plain errors wrapping nothing, recognised by how they
// start). A runtime error whose text happens to say "invalid argument" (EINVAL) is not one.
func isUsageError(err error) bool {
	if err == nil {
		return false
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return true
	}
	if errors.Unwrap(err) != nil {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand", "unknown command", "invalid argument", "flag needs an argument", "accepts ", "requires at least", "required flag", "bad flag syntax"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// rejectEmptyStrings refuses a string flag given an empty value (--env ""): silently ignoring
// it would run the command without what the user asked for.
func rejectEmptyStrings(fs *pflag.FlagSet) error {
	var err error
	fs.Visit(func(f *pflag.Flag) {
		if err == nil && f.Value.Type() == "string" && f.Value.String() == "" {
			err = usagef("empty value for --%s (give a value or leave the flag out)", f.Name)
		}
	})
	return err
}

// plural renders "1 connection" / "2 connections".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// printJSON writes v as indented JSON to the command's stdout.
func (g *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(g.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// linuxOnly returns an error for commands that need Linux when running elsewhere.
func linuxOnly(cmd string) error {
	if runtime.GOOS == "linux" {
		return nil
	}
	return fmt.Errorf("%s works on Linux only (it uses netlink and /proc); this is %s", cmd, runtime.GOOS)
}

func newRootCmd(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "keepalive",
		Short: "Find dead TCP peers and keep live ones alive",
		Long: `keepalive finds dead TCP peers and keeps live ones alive.

TCP sends nothing on an idle connection, so a crashed peer, a broken path, a rebooted
peer or a NAT that silently forgot the flow all look like a healthy idle connection.
Linux's defaults (7200 s idle, 75 s interval, 9 probes) take 2 h 11 min 15 s to notice,
and keepalive is off unless each socket asks for it.

Start with 'keepalive plan' to see what your settings mean and what to use instead.

Exit codes:
  0    success
  1    runtime error (system call failed, missing privilege, nothing could be read)
  2    usage error (unknown command or flag, a flag value out of range)
  3    a check found a problem (connections at risk, dead peers, detection failed)
  130  interrupted (Ctrl-C, SIGTERM)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(g.Stdout)
	root.SetErr(g.Stderr)
	root.PersistentFlags().BoolVar(&g.JSON, "json", false, "print machine-readable JSON instead of text")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err} })
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return rejectEmptyStrings(c.Flags()) }
	root.AddCommand(
		newPlanCmd(g),
		newSysctlCmd(g),
		newLabCmd(g),
		newAuditCmd(g),
		newEnableCmd(g),
		newReapCmd(g),
		newProbeCmd(g),
		newHeartbeatCmd(g),
		newEnforceCmd(g),
		newNATTimeoutCmd(g),
		newAgentCmd(g),
	)
	return root
}
