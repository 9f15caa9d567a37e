package main

import (
	"slices"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/keepalive-dev/keepalive/internal/report"
	"github.com/spf13/cobra"
)

type auditOptions struct {
	sel          selectorFlags
	middlebox    time.Duration
	env          string
	detectWithin time.Duration
	sort         string
	deep         string
	failOnRisk   bool
	hz           int
}

// auditDeepAutoLimit is the number of socket descriptors on the host up to which
// --deep=auto reads every socket's exact settings (≈ 6 µs each).
const auditDeepAutoLimit = 20000

func newAuditCmd(g *globalOptions) *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List TCP connections that would not notice a dead peer",
		Long: `audit lists the TCP connections of this host (IPv4 and IPv6) with their owning
processes and keepalive settings, predicts how long each would take to notice a peer
that vanished silently (crash, pulled cable, black-holed path), and flags those at risk:

  no keepalive           a dead peer is never noticed (idle connections hang forever)
  middlebox              the first probe comes after the NAT/firewall/load balancer in
                         front (--middlebox-timeout or --env) has forgotten the flow
  in flight              data is unacknowledged and no TCP_USER_TIMEOUT is set: only
                         tcp_retries2 ends it (≈ 15 min)
  slow                   detection takes longer than --detect-within

Columns: NETNS (with --all-netns or when a selector follows processes into other
namespaces: the namespace's name, its container as docker:ID or k8s:POD/ID, or its first
process), LOCAL PEER STATE PROCESS (pid/comm, several when shared), CONTAINER (when an
owner runs in a container: from /proc/PID/cgroup), KEEPALIVE (off, or
idle/interval/count and "ut" user timeout), IDLE (since the last segment received),
UNACKED (bytes not yet acknowledged, unsent included), TIMER (kernel timer, time to
expiry, probes or retransmissions so far), DETECT (predicted time from the last
received segment to the application's error for a silent peer), RISK.

KEEPALIVE values are exact when read from the socket itself: that duplicates the
owner's descriptor with pidfd_getfd (Linux ≥ 5.6, CAP_SYS_PTRACE or same user with
kernel.yama.ptrace_scope=0). Otherwise, or with --deep=never, only what the kernel's
timer proves is shown, marked "~": on/off from whether the keepalive timer is armed, and
bounds from its expiry and probe count — "~on idle|intvl≥14s" (max(idle, interval) is at
least 14 s), or with probes out "~idle≤58s intvl≥4s cnt≥2" — never the namespace's
sysctl defaults, which the socket may have overridden. Verdicts on such rows say
"on bounds", and a risk is reported only when the bounds prove it; --json then gives
"bounds": {"refresh_min_ms", "interval_min_ms", "idle_max_ms", "count_min"} instead of
idle/interval/count values, and "detect_min_ms".
--deep=auto (the default) reads exactly when the host holds at most 20000 socket
descriptors, so that auditing a very busy host stays fast.

Rows are in the kernel's order unless --sort is given. --json prints
{"connections":[...],"summary":{...}} (durations in milliseconds).
Exit status: 0, or 3 with --fail-on-risk when a connection is at risk.`,
		Example: `  keepalive audit
  keepalive audit --env aws-nat-gateway --sort risk
  keepalive audit --comm nginx --port 443 --middlebox-timeout 350s
  keepalive audit --idle-over 10m --sort idle
  keepalive audit --all-netns --json
  keepalive audit --container 3f2a9c1e0b7d        # a container's connections, in its namespace
  keepalive audit --pid 4242                      # wherever that process's namespace is
  keepalive audit --fail-on-risk --env azure-lb >/dev/null || echo "connections at risk"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linuxOnly("keepalive audit"); err != nil {
				return err
			}
			return auditRun(cmd, g, &o)
		},
	}
	f := cmd.Flags()
	o.sel.register(f)
	f.Var(newDurationValue(&o.middlebox), "middlebox-timeout", "idle timeout of the NAT/firewall/load balancer in front, e.g. 350s")
	f.StringVar(&o.env, "env", "", "environment preset giving the middlebox timeout (see 'keepalive plan --list-envs')")
	f.Var(newDurationValue(&o.detectWithin), "detect-within", "flag connections that would take longer than this to notice a dead peer")
	f.StringVar(&o.sort, "sort", "none", "row order: none (kernel order), risk, idle, detect, process, local, peer, state")
	f.StringVar(&o.deep, "deep", "auto", "read exact settings through the owner's descriptor: auto, always, never")
	f.BoolVar(&o.failOnRisk, "fail-on-risk", false, "exit with status 3 when any connection is at risk")
	f.IntVar(&o.hz, "hz", 0, "kernel CONFIG_HZ for the detection windows (default: detected on this host; 100 when unknown)")
	return cmd
}

func auditRun(cmd *cobra.Command, g *globalOptions, o *auditOptions) error {
	opt, err := o.sel.listOptions()
	if err != nil {
		return err
	}
	ao := report.AuditOptions{Assess: host.AssessOptions{Middlebox: o.middlebox, DetectWithin: o.detectWithin},
		Sort: o.sort, JSON: g.JSON, DeepAutoLimit: auditDeepAutoLimit}
	if o.env != "" {
		e, err := keepalive.LookupEnvironment(o.env)
		if err != nil {
			return usagef("invalid --env: %v", err)
		}
		if ao.Assess.Middlebox == 0 {
			ao.Assess.Middlebox, ao.Assess.MiddleboxName = e.IdleTimeout, e.Name
		}
		if e.Refresh == keepalive.RefreshDataOnly {
			ao.DataOnly = e.Name
		}
	}
	if o.hz != 0 && (o.hz < 10 || o.hz > 10000) {
		return usagef("invalid --hz %d (allowed: 10..10000, typically 100, 250, 300 or 1000)", o.hz)
	}
	if o.hz != 0 {
		ao.Assess.HZ, ao.HZSource = o.hz, "--hz"
	} else {
		tm := host.DetectTimers(cmd.Context())
		ao.Assess.HZ, ao.HZSource = tm.HZ, tm.HZSource
	}
	if !slices.Contains(report.SortKeys(), o.sort) {
		return usagef("invalid --sort %q (allowed: none, risk, idle, detect, process, local, peer, state)", o.sort)
	}
	opt.Owners = true
	switch o.deep {
	case "auto":
		opt.Deep, opt.DeepLimit = true, auditDeepAutoLimit
	case "always":
		opt.Deep = true
	case "never":
	default:
		return usagef("invalid --deep %q (allowed: auto, always, never)", o.deep)
	}
	ao.List = opt
	atRisk, err := report.Audit(cmd.Context(), g.Stdout, ao)
	if err != nil {
		return err
	}
	if o.failOnRisk && atRisk > 0 {
		return &exitError{code: exitFound}
	}
	return nil
}
