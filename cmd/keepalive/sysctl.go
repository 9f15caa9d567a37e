package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/spf13/cobra"
)

// sysctlView is what `keepalive sysctl --json` prints.
type sysctlView struct {
	host.Sysctl
	Detection     time.Duration `json:"detection"`
	DetectionText string        `json:"detection_text"`
	InFlight      time.Duration `json:"in_flight_detection"`
	Note          string        `json:"note"`
	Persisted     string        `json:"persisted,omitempty"`
}

const sysctlNote = "these defaults apply only to sockets that enable SO_KEEPALIVE and do not set their own values"

func newSysctlCmd(g *globalOptions) *cobra.Command {
	var netnsName string
	cmd := &cobra.Command{
		Use:   "sysctl",
		Short: "Show (or set) the system-wide keepalive defaults and the detection time they imply",
		Long: `sysctl shows net.ipv4.tcp_keepalive_time/intvl/probes and tcp_retries2 of the current
network namespace (or --netns NAME) and how long a dead peer goes unnoticed with them.

These values are per network namespace (a new namespace starts at 7200/75/9, not at the
host's values) and apply only to sockets that turn SO_KEEPALIVE on without setting their
own values. Linux only.`,
		Example: `  keepalive sysctl
  keepalive sysctl --netns blue --json
  keepalive sysctl set --idle 60 --interval 10 --count 5
  keepalive sysctl set --env aws-nat-gateway --persist`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive sysctl"); err != nil {
				return err
			}
			if err := validNetNS(netnsName); err != nil {
				return err
			}
			s, err := host.ReadSysctl(netnsName)
			if err != nil {
				return err
			}
			return sysctlPrint(g, s, "")
		},
	}
	cmd.PersistentFlags().StringVar(&netnsName, "netns", "", "network namespace `NAME` (as in 'ip netns list'); default: the current one")
	cmd.AddCommand(newSysctlSetCmd(g, &netnsName))
	return cmd
}

func sysctlPrint(g *globalOptions, s host.Sysctl, persisted string) error {
	d, _ := keepalive.DetectionTime(s.Keepalive, keepalive.ScenarioSilent)
	v := sysctlView{Sysctl: s, Detection: d, DetectionText: keepalive.HumanDuration(d),
		InFlight: keepalive.RetransmitTimeout(s.Retries2), Note: sysctlNote, Persisted: persisted}
	if g.JSON {
		return g.printJSON(v)
	}
	w := g.Stdout
	ns := s.NetNS
	if ns == "" {
		ns = "current"
	}
	fmt.Fprintf(w, "Network namespace: %s\n", ns)
	fmt.Fprintf(w, "  net.ipv4.tcp_keepalive_time   = %d  (idle before the first probe: %s)\n", int(s.Keepalive.Idle/time.Second), keepalive.HumanDuration(s.Keepalive.Idle))
	fmt.Fprintf(w, "  net.ipv4.tcp_keepalive_intvl  = %d  (between probes: %s)\n", int(s.Keepalive.Interval/time.Second), keepalive.HumanDuration(s.Keepalive.Interval))
	fmt.Fprintf(w, "  net.ipv4.tcp_keepalive_probes = %d\n", s.Keepalive.Count)
	fmt.Fprintf(w, "  net.ipv4.tcp_retries2         = %d  (data in flight to a dead peer: ≈ %s)\n", s.Retries2, keepalive.HumanDuration(v.InFlight))
	fmt.Fprintf(w, "\nA silent peer is noticed after %s (idle + count × interval) — on sockets with SO_KEEPALIVE on.\n", v.DetectionText)
	fmt.Fprintf(w, "Note: %s. Check them with 'keepalive audit'.\n", sysctlNote)
	if persisted != "" {
		fmt.Fprintf(w, "Persisted to %s%s.\n", persisted, bootNote(persisted))
	}
	return nil
}

func newSysctlSetCmd(g *globalOptions, netnsName *string) *cobra.Command {
	var (
		idle, interval time.Duration
		count          int
		env            string
		persist        string
		dryRun         bool
	)
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set the system-wide keepalive defaults (root)",
		Long: `set writes net.ipv4.tcp_keepalive_time/intvl/probes of the current (or --netns)
network namespace. Values come from --idle/--interval/--count or are recommended for a
middlebox with --env. Nothing is written unless every value is valid. It prints each value
old → new and the command that puts the old values back.

--persist also writes a sysctl.d file (default ` + host.DefaultPersistPath + `) so the
values survive a reboot: first the file (a temporary file renamed into place, never through
a symbolic link; the name must end in .conf), then the live values; if setting them fails,
the file is put back as it was. systemd-sysctl applies *.conf files from ` + strings.Join(host.SysctlDirs(), ", ") + `
and /etc/sysctl.conf at boot; a file elsewhere is written but not applied at boot.
--persist cannot be combined with --netns: sysctl.d files apply to the host's namespace.

Every socket must still enable SO_KEEPALIVE itself: these are only the defaults such
sockets use.`,
		Example: `  keepalive sysctl set --idle 60 --interval 10 --count 5
  keepalive sysctl set --env azure-lb --persist
  keepalive sysctl set --idle 300 --persist /etc/sysctl.d/70-keepalive.conf --dry-run
  keepalive sysctl set --netns blue --idle 120`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive sysctl set"); err != nil {
				return err
			}
			if err := validNetNS(*netnsName); err != nil {
				return err
			}
			cfg := keepalive.Config{Idle: idle, Interval: interval, Count: count}
			if env != "" {
				if cmd.Flags().Changed("idle") || cmd.Flags().Changed("interval") || cmd.Flags().Changed("count") {
					return usagef("--env and --idle/--interval/--count are exclusive")
				}
				e, err := keepalive.LookupEnvironment(env)
				if err != nil {
					return usagef("invalid --env: %v", err)
				}
				req := e.Requirement() // a data-only preset yields ErrDataOnly (use heartbeats)
				req.OS = "linux"
				rec, err := keepalive.Recommend(req)
				if err != nil {
					return err
				}
				cfg = rec.Config
				cfg.UserTimeout = 0
			}
			for _, z := range []struct {
				name string
				zero bool
			}{{"idle", idle == 0}, {"interval", interval == 0}, {"count", count == 0}} {
				if cmd.Flags().Changed(z.name) && z.zero {
					return usagef("invalid --%s 0 (allowed: idle/interval 1s..32767s, count 1..127)", z.name)
				}
			}
			if cfg == (keepalive.Config{}) {
				return usagef("nothing to set: give --idle, --interval, --count or --env")
			}
			if _, err := cfg.Validate("linux"); err != nil {
				return usagef("invalid value: %v", err)
			}
			path := ""
			if cmd.Flags().Changed("persist") {
				path = persist
				if path == "" {
					path = host.DefaultPersistPath
				}
				// "--persist FILE" (with a space) leaves FILE as an argument.
				if len(args) == 1 && path == host.DefaultPersistPath {
					path = args[0]
					args = nil
				}
			}
			if len(args) > 0 {
				return usagef("unexpected argument %q (sysctl set takes flags only; a file goes after --persist)", args[0])
			}
			if path != "" {
				if *netnsName != "" {
					return usagef("--persist cannot be combined with --netns %s: a sysctl.d file applies to the host's network namespace at boot, not to %s", *netnsName, *netnsName)
				}
				if !strings.HasSuffix(path, ".conf") {
					return usagef("invalid --persist %q: the name must end in .conf (systemd-sysctl reads only *.conf)", path)
				}
				if !filepath.IsAbs(path) {
					abs, err := filepath.Abs(path)
					if err != nil {
						return err
					}
					path = abs
				}
			}
			old, err := host.ReadSysctl(*netnsName)
			if err != nil {
				return err
			}
			want := cfg.WithDefaults(old.Keepalive)
			if dryRun {
				fmt.Fprintln(g.Stdout, "Dry run: nothing changed. Would set:")
				sysctlChanges(g, old.Keepalive, want)
				if path != "" {
					fmt.Fprintf(g.Stdout, "and write %s%s:\n%s", path, bootNote(path), host.PersistFile(cfg))
				}
				return nil
			}
			if os.Geteuid() != 0 {
				return errors.New("setting sysctls needs root (CAP_NET_ADMIN and write access to /proc/sys): run with sudo")
			}
			var restore func() error
			if path != "" {
				if restore, err = host.WritePersistFile(path, cfg); err != nil {
					return fmt.Errorf("--persist: nothing changed: %w", err)
				}
			}
			if err := host.SetSysctl(*netnsName, cfg); err != nil {
				if restore != nil {
					if rerr := restore(); rerr != nil {
						return fmt.Errorf("%w; and putting %s back failed: %v", err, path, rerr)
					}
					return fmt.Errorf("%w (%s put back as it was)", err, path)
				}
				return err
			}
			s, err := host.ReadSysctl(*netnsName)
			if err != nil {
				return err
			}
			if g.JSON {
				return sysctlPrint(g, s, path)
			}
			fmt.Fprintln(g.Stdout, "Set:")
			sysctlChanges(g, old.Keepalive, s.Keepalive)
			fmt.Fprintf(g.Stdout, "To put the old values back: %s\n", restoreCommand(*netnsName, old.Keepalive))
			if path != "" {
				fmt.Fprintf(g.Stdout, "Wrote %s%s.\n", path, bootNote(path))
			}
			fmt.Fprintln(g.Stdout)
			return sysctlPrint(g, s, "")
		},
	}
	f := cmd.Flags()
	f.Var(newDurationValue(&idle), "idle", "net.ipv4.tcp_keepalive_time, whole seconds 1s..32767s")
	f.Var(newDurationValue(&interval), "interval", "net.ipv4.tcp_keepalive_intvl, whole seconds 1s..32767s")
	f.IntVar(&count, "count", 0, "net.ipv4.tcp_keepalive_probes, 1..127")
	f.StringVar(&env, "env", "", "use the settings recommended for this middlebox preset (see 'keepalive plan --list-envs')")
	f.StringVar(&persist, "persist", "", "also write a sysctl.d `FILE` ending in .conf (default "+host.DefaultPersistPath+")")
	f.Lookup("persist").NoOptDefVal = host.DefaultPersistPath
	f.BoolVar(&dryRun, "dry-run", false, "show what would be written and change nothing")
	return cmd
}

// sysctlChanges prints each keepalive sysctl as old → new.
func sysctlChanges(g *globalOptions, old, new keepalive.Config) {
	for _, r := range []struct {
		key      string
		old, new int
	}{
		{"net.ipv4.tcp_keepalive_time", int(old.Idle / time.Second), int(new.Idle / time.Second)},
		{"net.ipv4.tcp_keepalive_intvl", int(old.Interval / time.Second), int(new.Interval / time.Second)},
		{"net.ipv4.tcp_keepalive_probes", old.Count, new.Count},
	} {
		note := ""
		if r.old == r.new {
			note = "  (unchanged)"
		}
		fmt.Fprintf(g.Stdout, "  %-30s %d → %d%s\n", r.key, r.old, r.new, note)
	}
}

// restoreCommand is the command that sets the old values again.
func restoreCommand(netns string, old keepalive.Config) string {
	c := fmt.Sprintf("keepalive sysctl set --idle %d --interval %d --count %d", int(old.Idle/time.Second), int(old.Interval/time.Second), old.Count)
	if netns != "" {
		c = fmt.Sprintf("keepalive sysctl --netns %s set --idle %d --interval %d --count %d", netns, int(old.Idle/time.Second), int(old.Interval/time.Second), old.Count)
	}
	return c
}

// bootNote says whether systemd-sysctl applies the file at boot.
func bootNote(path string) string {
	if host.AppliedAtBoot(path) {
		return " (applied at boot by systemd-sysctl)"
	}
	return " (NOT applied at boot: systemd-sysctl reads *.conf only from " + strings.Join(host.SysctlDirs(), ", ") + " and /etc/sysctl.conf)"
}
