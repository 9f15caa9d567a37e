package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/agent"
	"github.com/keepalive-dev/keepalive/enforce"
	"github.com/keepalive-dev/keepalive/host"
	"github.com/spf13/cobra"
)

type agentOptions struct {
	config, listen, env, pinDir string
	logLevel                    string
	interval, middlebox, within time.Duration
	labels                      []string
	topN                        int
	dryRun, noBPF, detach, once bool
}

func newAgentCmd(g *globalOptions) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent [--config FILE]",
		Short: "Run continuously: assess every connection, apply a policy, export Prometheus metrics",
		Long: `Run as a long-lived service (Linux). Every --interval the agent walks every network
namespace of the host (containers included), assesses each TCP connection like 'audit',
applies the policy of --config and serves Prometheus metrics on --listen:
/metrics, /healthz (the sweep loop is alive) and /readyz (a first sweep is done).

Policy (YAML; rules are tried in order, the first match decides; errors name the line):
  interval: 15s
  budgets: {probes_per_second: 50, retrofits_per_sweep: 200}
  rules:
    - name: databases
      match: {processes: [java], ports: [5432], peers: [10.0.0.0/8]}
      action: enforce          # eBPF for the cgroups + retrofit of existing connections
      keepalive: {idle: 60s, interval: 10s, count: 5, user_timeout: 110s}
    - name: batch
      match: {namespaces: [batch], containers: [3f2a...], pods: [UID], cgroups: [/system.slice]}
      action: probe            # user-space probe of connections idle over idle_over
      probe: {idle_over: 10m, reap: true}
    - action: report           # metrics only (also the fate of unmatched connections)
Without --config every connection is reported and nothing is changed.

Reload: SIGHUP, or a change of the file (checked every 2 s). A bad new file keeps the
old policy, says why on stderr and counts keepalive_policy_reloads_total{result="rejected"}.

Stop: SIGTERM or SIGINT end the current sweep, close the probers and exit with 130. The
eBPF attachments stay pinned in the BPF filesystem and keep giving new connections the
policy while the agent restarts or is upgraded; connections already retrofitted keep their
settings. --detach-on-exit removes the agent's own attachments (owner "agent") instead.

Budgets: sweeps never overlap (a late sweep delays the next and counts an overrun);
probes are paced to probes_per_second; at most retrofits_per_sweep connections are
changed per sweep, at-risk ones first. Owners and assessments are cached per socket.`,
		Example: `  keepalive agent --dry-run --config /etc/keepalive/agent.yaml
  keepalive agent --config /etc/keepalive/agent.yaml --listen :9977 --env aws-nat-gateway
  keepalive agent --once --json            # one sweep, print its summary
  curl -s localhost:9977/metrics | grep '^keepalive_connections_at_risk'`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := linuxOnly("keepalive agent"); err != nil {
				return err
			}
			return agentRun(c.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "policy file (YAML); reloaded on SIGHUP or change")
	f.Var(newDurationValue(&o.interval), "interval", "time between sweeps when the policy sets none (1s..1h, default 15s)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:9977", "address of /metrics, /healthz and /readyz (\"\" to serve nothing)")
	f.BoolVar(&o.dryRun, "dry-run", false, "count and log what would be done; attach, retrofit, probe and reap nothing")
	f.StringSliceVar(&o.labels, "labels", nil, "opt-in labels of the connection metrics: namespace, process, pod")
	f.IntVar(&o.topN, "labels-top", 20, "keep the N most frequent values of each opt-in label, fold the rest into \"other\" (1..1000)")
	f.StringVar(&o.env, "env", "", "environment preset giving the middlebox timeout (see 'keepalive plan --list-envs')")
	f.Var(newDurationValue(&o.middlebox), "middlebox-timeout", "idle timeout of the NAT or firewall in front (overrides --env)")
	f.Var(newDurationValue(&o.within), "detect-within", "flag connections that take longer than this to notice a dead peer")
	f.StringVar(&o.pinDir, "pin-dir", "", "directory of the eBPF pins (default <bpffs>/keepalive)")
	f.BoolVar(&o.noBPF, "no-bpf", false, "enforce by retrofit only, never attach eBPF programs")
	f.BoolVar(&o.detach, "detach-on-exit", false, "detach the agent's eBPF attachments when it stops (default: they stay pinned)")
	f.BoolVar(&o.once, "once", false, "run one sweep, print its summary and exit")
	f.StringVar(&o.logLevel, "log-level", "info", "what the log shows: debug (every sweep and skipped socket), info, warn, error")
	return cmd
}

func agentRun(ctx context.Context, g *globalOptions, o *agentOptions) error {
	opt := agent.Options{Interval: o.interval, DryRun: o.dryRun, DetachOnExit: o.detach}
	if o.interval != 0 && (o.interval < agent.MinInterval || o.interval > agent.MaxInterval) {
		return usagef("invalid --interval %s (allowed: %s to %s)", o.interval, agent.MinInterval, agent.MaxInterval)
	}
	if o.topN < 1 || o.topN > 1000 {
		return usagef("invalid --labels-top %d (allowed: 1 to 1000)", o.topN)
	}
	opt.Labels.TopN = o.topN
	for _, l := range o.labels {
		switch strings.TrimSpace(l) {
		case "namespace":
			opt.Labels.Namespace = true
		case "process":
			opt.Labels.Process = true
		case "pod":
			opt.Labels.Pod = true
		default:
			return usagef("invalid --labels value %q (allowed: namespace, process, pod)", l)
		}
	}
	ao := host.AssessOptions{Middlebox: o.middlebox, DetectWithin: o.within}
	if o.env != "" {
		e, err := keepalive.LookupEnvironment(o.env)
		if err != nil {
			return usagef("invalid --env: %v", err)
		}
		if ao.Middlebox == 0 {
			ao.Middlebox, ao.MiddleboxName = e.IdleTimeout, e.Name
		}
	}
	ao.HZ = host.DetectTimers(ctx).HZ
	opt.Assess = agent.HostAssess(ao)
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(o.logLevel)) {
		return usagef("invalid --log-level %q (allowed: debug, info, warn, error)", o.logLevel)
	}
	var h slog.Handler = slog.NewTextHandler(g.Stderr, &slog.HandlerOptions{Level: level})
	if g.JSON && !o.once {
		h = slog.NewJSONHandler(g.Stderr, &slog.HandlerOptions{Level: level})
	}
	opt.Log = slog.New(h)

	var policyBytes []byte
	if o.config != "" {
		b, err := os.ReadFile(o.config)
		if err != nil {
			return fmt.Errorf("read --config: %w", err)
		}
		p, err := agent.ParsePolicy(b)
		if err != nil {
			return usagef("invalid --config %s: %v", o.config, err)
		}
		opt.Policy, policyBytes = p, b
	}
	if !o.noBPF {
		// Without a policy file the pins are only read, for the BPF counters.
		ro := o.dryRun || o.config == ""
		eh, err := enforce.Open(enforce.Options{PinDir: o.pinDir, MountBPFFS: !ro, ReadOnly: ro})
		if err != nil {
			opt.Log.Warn("eBPF enforcement unavailable, enforce rules retrofit only", "err", err)
		} else {
			defer eh.Close()
			opt.Enforce = eh
		}
	}
	a, err := agent.New(opt)
	if err != nil {
		return usagef("%v", err)
	}
	defer func() {
		if err := a.Close(); err != nil {
			opt.Log.Warn("close", "err", err)
		}
	}()
	if o.once {
		r, err := a.Sweep(ctx)
		if err != nil {
			return err
		}
		if g.JSON {
			return g.printJSON(r)
		}
		fmt.Fprintf(g.Stdout, "%d namespaces, %d connections, %d at risk; %d attachments, %d retrofits, %d probed, %d dead, %d reaped (%s)\n",
			r.Namespaces, r.Sockets, r.AtRisk, r.Attachments, r.Retrofits, r.Probed, r.Dead, r.Reaped, r.Duration.Round(time.Millisecond))
		return nil
	}
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			return fmt.Errorf("listen on --listen %s: %w", o.listen, err)
		}
		srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		opt.Log.Info("serving metrics", "addr", ln.Addr().String())
	}
	if o.config != "" {
		go agentWatch(ctx, a, o.config, policyBytes, opt.Log)
	}
	opt.Log.Info("agent started", "interval", a.Interval(), "rules", len(a.Policy().Rules), "dry_run", o.dryRun, "ebpf", opt.Enforce != nil)
	err = a.Run(ctx)
	opt.Log.Info("agent stopping; pinned eBPF attachments stay", "detach_on_exit", o.detach)
	return err
}

// agentWatch reloads the policy on SIGHUP and when the file changes.
func agentWatch(ctx context.Context, a *agent.Agent, path string, cur []byte, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-hup:
			force = true
		case <-tick.C:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if force {
				log.Warn("policy reload failed; keeping the old policy", "file", path, "err", err)
			}
			continue
		}
		if !force && bytes.Equal(b, cur) {
			continue
		}
		cur = b
		if err := a.Reload(b); err != nil {
			var pe *agent.PolicyError
			if !errors.As(err, &pe) {
				pe = &agent.PolicyError{Msg: err.Error()}
			}
			log.Warn("bad policy; keeping the old one", "file", path, "err", pe.Error())
			continue
		}
		log.Info("policy reloaded", "file", path, "rules", len(a.Policy().Rules), "interval", a.Interval())
	}
}
