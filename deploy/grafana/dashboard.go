// Package grafana builds the keepalive agent's Grafana dashboard as code; the JSON under
// deploy/grafana is its output (go run ./grafana/cmd > grafana/keepalive-agent.json), and a
// test keeps the two equal.
package grafana

import (
	"encoding/json"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend)
}

func series(title, unit string, q ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Unit(unit).Min(0).Height(8).Span(12)
	for _, x := range q {
		p = p.WithTarget(x)
	}
	return p
}

func single(title, expr, unit string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Title(title).Unit(unit).Height(4).Span(6).WithTarget(query(expr, ""))
}

// Dashboard returns the dashboard as indented JSON.
func Dashboard() ([]byte, error) {
	sel := `instance=~"$instance"`
	b := dashboard.NewDashboardBuilder("keepalive agent").
		Uid("keepalive-agent").
		Tags([]string{"keepalive", "tcp"}).
		Refresh("1m").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(dashboard.NewQueryVariableBuilder("instance").
			Label("Node").
			Query(dashboard.StringOrMap{String: ptr("label_values(keepalive_sockets, instance)")}).
			Multi(true).IncludeAll(true)).
		WithRow(dashboard.NewRowBuilder("Connections")).
		WithPanel(single("At risk", `sum(keepalive_connections_at_risk{`+sel+`})`, "short")).
		WithPanel(single("Without keepalive", `sum(keepalive_connections_without_keepalive{`+sel+`})`, "short")).
		WithPanel(single("Dead peers found (24 h)", `sum(increase(keepalive_dead_peers_total{`+sel+`}[24h]))`, "short")).
		WithPanel(single("Reaped (24 h)", `sum(increase(keepalive_reaps_total{result="applied",`+sel+`}[24h]))`, "short")).
		WithPanel(series("Connections at risk by kind", "short",
			query(`sum by (risk) (keepalive_connections_at_risk{`+sel+`})`, "{{risk}}"))).
		WithPanel(series("Connections by state", "short",
			query(`sum by (state) (keepalive_connections{`+sel+`})`, "{{state}}"))).
		WithPanel(heatmap.NewPanelBuilder().Title("Predicted time to notice a dead peer").Height(8).Span(12).
			WithTarget(query(`sum by (le) (keepalive_predicted_detection_seconds_bucket{`+sel+`})`, "{{le}}").Format(prometheus.PromQueryFormatHeatmap))).
		WithPanel(series("Connections per rule", "short",
			query(`sum by (rule, action) (keepalive_rule_connections{`+sel+`})`, "{{rule}} ({{action}})"))).
		WithRow(dashboard.NewRowBuilder("Actions")).
		WithPanel(series("Probes and verdicts", "ops",
			query(`sum by (verdict) (rate(keepalive_probe_verdicts_total{`+sel+`}[$__rate_interval]))`, "{{verdict}}"))).
		WithPanel(series("Retrofits, attachments and reaps", "ops",
			query(`sum by (result) (rate(keepalive_retrofits_total{`+sel+`}[$__rate_interval]))`, "retrofit {{result}}"),
			query(`sum by (result) (rate(keepalive_enforcements_total{`+sel+`}[$__rate_interval]))`, "attach {{result}}"),
			query(`sum by (result) (rate(keepalive_reaps_total{`+sel+`}[$__rate_interval]))`, "reap {{result}}"))).
		WithPanel(series("eBPF policy at establishment", "ops",
			query(`sum(rate(keepalive_bpf_connections_set_total{`+sel+`}[$__rate_interval]))`, "set"),
			query(`sum(rate(keepalive_bpf_setsockopt_rewritten_total{`+sel+`}[$__rate_interval]))`, "rewritten"),
			query(`sum by (option) (rate(keepalive_bpf_setsockopt_failures_total{`+sel+`}[$__rate_interval]))`, "failed {{option}}"))).
		WithPanel(series("Kernel: keepalive probes and timeouts", "ops",
			query(`sum by (counter) (rate(keepalive_tcpext_total{counter=~"TCPKeepAlive|TCPAbortOnTimeout",`+sel+`}[$__rate_interval]))`, "{{counter}}"))).
		WithRow(dashboard.NewRowBuilder("Agent")).
		WithPanel(series("Sweep duration (p50, p99)", "s",
			query(`histogram_quantile(0.5, sum by (le) (rate(keepalive_sweep_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "p50"),
			query(`histogram_quantile(0.99, sum by (le) (rate(keepalive_sweep_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "p99"))).
		WithPanel(series("Agent CPU (share of one core) and memory", "percentunit",
			query(`rate(process_cpu_seconds_total{job=~".*keepalive.*",`+sel+`}[$__rate_interval])`, "CPU {{instance}}"))).
		WithPanel(series("Agent resident memory", "bytes",
			query(`process_resident_memory_bytes{job=~".*keepalive.*",`+sel+`}`, "{{instance}}")))
	d, err := b.Build()
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func ptr[T any](v T) *T { return &v }
