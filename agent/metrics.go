package agent

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Labels chooses the opt-in labels of the connection metrics. By default the
// connection metrics carry only state and risk (bounded cardinality); each
// opt-in label keeps its TopN most frequent values and folds the rest into
// "other".
type Labels struct {
	Namespace, Process, Pod bool
	// TopN caps the values of each opt-in label and of the namespace label of
	// the TcpExt metrics (default 20, at most 1000).
	TopN int
}

// DetectBuckets are the buckets (seconds) of keepalive_predicted_detection_seconds.
func DetectBuckets() []float64 {
	return []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 8400, 14400, 86400}
}

// TcpExtCounters are the /proc/net/netstat TcpExt counters exported per namespace.
func TcpExtCounters() []string {
	return []string{"TCPKeepAlive", "TCPAbortOnTimeout", "TCPAbortOnData", "TCPAbortOnClose",
		"TCPAbortOnMemory", "TCPAbortOnLinger", "TCPAbortFailed", "TCPTimeouts", "TCPSynRetrans"}
}

type connKey struct{ state, risk, ns, proc, pod string }

// snapshot is what the last sweep saw; the collector renders it at scrape time.
type snapshot struct {
	conns       map[connKey]int
	noKA        map[connKey]int
	atRisk      map[connKey]int
	detectCount uint64
	detectSum   float64
	detectBkt   map[float64]uint64
	rules       map[[2]string]int // {rule, action} → connections
	tcpext      map[string]map[string]uint64
	bpf         bpfTotals
	bpfOK       bool
	namespaces  int
	sockets     int
}

type bpfTotals struct {
	attachments          int
	seen, set, rewritten uint64
	failures             map[string]uint64
}

type metrics struct {
	labels Labels
	last   atomic.Pointer[snapshot]

	sweeps, overruns prometheus.Counter
	sweepDur         prometheus.Histogram
	lastSweep        prometheus.Gauge
	probes           prometheus.Counter
	verdicts         *prometheus.CounterVec
	deadPeers        prometheus.Counter
	reaps            *prometheus.CounterVec
	retrofits        *prometheus.CounterVec
	enforcements     *prometheus.CounterVec
	reloads          *prometheus.CounterVec
	policyRules      prometheus.Gauge
	errors           *prometheus.CounterVec
	vanished         *prometheus.CounterVec
	actionsSkipped   *prometheus.CounterVec

	dConns, dAtRisk, dNoKA, dDetect, dRules, dTcpExt *prometheus.Desc
	dBPFAtt, dBPFSeen, dBPFSet, dBPFRewr             *prometheus.Desc
	dBPFFail, dNS, dSocks                            *prometheus.Desc
}

func (l Labels) names() []string {
	var n []string
	if l.Namespace {
		n = append(n, "namespace")
	}
	if l.Process {
		n = append(n, "process")
	}
	if l.Pod {
		n = append(n, "pod")
	}
	return n
}

func (k connKey) values(base []string, l Labels) []string {
	v := base
	if l.Namespace {
		v = append(v, k.ns)
	}
	if l.Process {
		v = append(v, k.proc)
	}
	if l.Pod {
		v = append(v, k.pod)
	}
	return v
}

func newMetrics(reg prometheus.Registerer, l Labels) *metrics {
	m := &metrics{labels: l}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	cnt := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		f(c)
		return c
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		f(c)
		return c
	}
	m.sweeps = cnt("keepalive_sweeps_total", "Sweeps completed.")
	m.overruns = cnt("keepalive_sweep_overruns_total", "Sweeps that took longer than the interval (the next one started late, never overlapping).")
	m.sweepDur = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keepalive_sweep_duration_seconds",
		Help: "Duration of a sweep: listing, assessment and actions.", Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}})
	f(m.sweepDur)
	m.lastSweep = prometheus.NewGauge(prometheus.GaugeOpts{Name: "keepalive_last_sweep_timestamp_seconds", Help: "Unix time at which the last sweep ended."})
	f(m.lastSweep)
	m.probes = cnt("keepalive_probes_total", "Connections probed from user space.")
	m.verdicts = vec("keepalive_probe_verdicts_total", "Probe verdicts by outcome (alive, reset, dead, unreachable, gone, unknown, …).", "verdict")
	m.deadPeers = cnt("keepalive_dead_peers_total", "Connections whose peer a probe found dead (no answer, reset or unreachable).")
	m.reaps = vec("keepalive_reaps_total", "Connections with a dead peer destroyed (result: applied, failed, dry-run).", "result")
	m.retrofits = vec("keepalive_retrofits_total", "Existing connections given the policy's settings (result: applied, unchanged, failed, dry-run).", "result")
	m.enforcements = vec("keepalive_enforcements_total", "eBPF policy attachments to cgroups (result: applied, failed, dry-run, detached).", "result")
	m.reloads = vec("keepalive_policy_reloads_total", "Policy reloads (result: applied, rejected).", "result")
	m.policyRules = prometheus.NewGauge(prometheus.GaugeOpts{Name: "keepalive_policy_rules", Help: "Rules of the policy in force."})
	f(m.policyRules)
	m.errors = vec("keepalive_errors_total", "Errors by stage (list, owners, enforce, retrofit, probe, reap, tcpext).", "stage")
	m.vanished = vec("keepalive_vanished_total", "Things that went away during a sweep, by stage: namespaces deleted, processes exited, sockets closed (normal churn, not errors).", "stage")
	m.actionsSkipped = vec("keepalive_actions_deferred_total", "Actions deferred to a later sweep by a budget (action: probe, retrofit).", "action")

	extra := l.names()
	m.dConns = prometheus.NewDesc("keepalive_connections", "TCP connections seen by the last sweep, by state and risk kind.", append([]string{"state", "risk"}, extra...), nil)
	m.dAtRisk = prometheus.NewDesc("keepalive_connections_at_risk", "Connections at risk in the last sweep (a silently dead peer would not be noticed in time), by risk kind.", append([]string{"state", "risk"}, extra...), nil)
	m.dNoKA = prometheus.NewDesc("keepalive_connections_without_keepalive", "Established connections with SO_KEEPALIVE off, seen by the last sweep.", extra, nil)
	m.dDetect = prometheus.NewDesc("keepalive_predicted_detection_seconds", "Predicted time to notice a silently dead peer, over the connections of the last sweep where it is known.", nil, nil)
	m.dRules = prometheus.NewDesc("keepalive_rule_connections", "Connections matched by each policy rule in the last sweep.", []string{"rule", "action"}, nil)
	m.dTcpExt = prometheus.NewDesc("keepalive_tcpext_total", "The kernel's TcpExt counters (/proc/PID/net/netstat) per network namespace.", []string{"counter", "namespace"}, nil)
	m.dBPFAtt = prometheus.NewDesc("keepalive_bpf_attachments", "Cgroups with an eBPF keepalive policy attached (any owner).", nil, nil)
	m.dBPFSeen = prometheus.NewDesc("keepalive_bpf_connections_seen_total", "Connections established under an eBPF policy (BPF counters, summed over attachments).", nil, nil)
	m.dBPFSet = prometheus.NewDesc("keepalive_bpf_connections_set_total", "Connections given the policy by the eBPF program without error.", nil, nil)
	m.dBPFRewr = prometheus.NewDesc("keepalive_bpf_setsockopt_rewritten_total", "Application setsockopt calls rewritten to the policy (mode enforce).", nil, nil)
	m.dBPFFail = prometheus.NewDesc("keepalive_bpf_setsockopt_failures_total", "bpf_setsockopt calls the kernel refused, by option.", []string{"option"}, nil)
	m.dNS = prometheus.NewDesc("keepalive_namespaces", "Network namespaces walked by the last sweep.", nil, nil)
	m.dSocks = prometheus.NewDesc("keepalive_sockets", "TCP sockets seen by the last sweep.", nil, nil)
	f(m)
	return m
}

// NewRegistry returns a registry with the agent's process and Go runtime
// collectors (its own CPU, memory, descriptors and goroutines).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return reg
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.dConns, m.dAtRisk, m.dNoKA, m.dDetect, m.dRules, m.dTcpExt, m.dBPFAtt, m.dBPFSeen, m.dBPFSet, m.dBPFRewr, m.dBPFFail, m.dNS, m.dSocks} {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the last sweep's snapshot.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.last.Load()
	if s == nil {
		return
	}
	g := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	c := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	for k, n := range s.conns {
		g(m.dConns, float64(n), k.values([]string{k.state, k.risk}, m.labels)...)
	}
	for k, n := range s.atRisk {
		g(m.dAtRisk, float64(n), k.values([]string{k.state, k.risk}, m.labels)...)
	}
	if len(s.noKA) == 0 && len(m.labels.names()) == 0 {
		g(m.dNoKA, 0)
	}
	for k, n := range s.noKA {
		g(m.dNoKA, float64(n), k.values(nil, m.labels)...)
	}
	ch <- prometheus.MustNewConstHistogram(m.dDetect, s.detectCount, s.detectSum, s.detectBkt)
	for k, n := range s.rules {
		g(m.dRules, float64(n), k[0], k[1])
	}
	for ns, cs := range s.tcpext {
		for name, v := range cs {
			c(m.dTcpExt, v, name, ns)
		}
	}
	if s.bpfOK {
		g(m.dBPFAtt, float64(s.bpf.attachments))
		c(m.dBPFSeen, s.bpf.seen)
		c(m.dBPFSet, s.bpf.set)
		c(m.dBPFRewr, s.bpf.rewritten)
		for o, v := range s.bpf.failures {
			c(m.dBPFFail, v, o)
		}
	}
	g(m.dNS, float64(s.namespaces))
	g(m.dSocks, float64(s.sockets))
}

// topN returns the set of the n most frequent values of counts (ties by value).
func topN(counts map[string]int, n int) map[string]bool {
	keys := slices.Collect(maps.Keys(counts))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b)) })
	keep := make(map[string]bool, n)
	for _, k := range keys[:min(n, len(keys))] {
		keep[k] = true
	}
	return keep
}

func secs(d time.Duration) float64 { return d.Seconds() }
