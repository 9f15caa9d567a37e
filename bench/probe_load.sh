#!/usr/bin/env bash
# Probe busy connections: a local redis-server loaded by redis-benchmark, and
# `keepalive probe` run RUNS times against its connections. Counts the alive
# verdicts whose RTT is negative (an answer that predates its probe) and those
# decided by a segment captured before the probe left.
#
# Usage (as root, from the repository root):
#   bench/probe_load.sh [RUNS] [CLIENTS]        # default 15 runs, 20 benchmark clients
#   KEEPALIVE=/path/to/keepalive bench/probe_load.sh   # probe with another build
#
# Needs redis-server, redis-benchmark (Debian: apt-get install -y redis-server redis-tools)
# and jq. Traffic stays on 127.0.0.0/8; everything started here is ended by PID.
set -euo pipefail

runs=${1:-15}
clients=${2:-20}
for tool in redis-server redis-benchmark redis-cli jq; do
	command -v "$tool" >/dev/null || { echo "probe_load.sh: $tool is missing (apt-get install -y redis-server redis-tools jq)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/kaprobe-load.XXXXXX)
bin=${KEEPALIVE:-}
if [[ -z $bin ]]; then
	bin=$work/keepalive
	go build -o "$bin" ./cmd/keepalive
fi

# A free 127.0.0.x address and port.
addr=127.0.0.$((100 + $$ % 100))
port=$((20000 + $$ % 20000))
while ss -Htln "( sport = :$port )" | grep -q .; do port=$((port + 1)); done

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

redis-server --bind "$addr" --port "$port" --save '' --appendonly no --daemonize no \
	--logfile "$work/redis.log" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -h "$addr" -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
timeout 600 redis-benchmark -h "$addr" -p "$port" -c "$clients" -n 1000000000 -t set,get -q -l \
	>"$work/bench.out" 2>&1 &
pids+=($!)
sleep 2

echo "# $(uname -r), $(nproc) CPUs; redis-server $addr:$port, redis-benchmark -c $clients, $runs probe runs"
for i in $(seq "$runs"); do
	rc=0
	"$bin" probe --port "$port" --json >"$work/run$i.json" 2>"$work/run$i.err" || rc=$?
	echo "run $i: exit $rc, $(jq -r '.summary.verdicts | to_entries | map("\(.value) \(.key)") | join(", ")' "$work/run$i.json")"
done
jq -s '[.[].connections[]] | {
	results: length,
	alive: (map(select(.verdict == "alive")) | length),
	negative_rtt: (map(select(.verdict == "alive" and .rtt_ns < 0)) | length),
	min_rtt_ms: ((map(select(.verdict == "alive") | .rtt_ns) | min // 0) / 1e6),
	max_rtt_ms: ((map(select(.verdict == "alive") | .rtt_ns) | max // 0) / 1e6),
	median_rtt_ms: ((map(select(.verdict == "alive") | .rtt_ns) | sort | if length > 0 then .[length / 2 | floor] else 0 end) / 1e6),
	pre_probe_segments_refused: (map(.pre_probe_segments // 0) | add),
	decided_before_probe: (map(select(.decided_by != null and .decided_by.after_probe_ns != null and .decided_by.after_probe_ns <= 0)) | length),
	verdicts: (group_by(.verdict) | map({(.[0].verdict): length}) | add)
}' "$work"/run*.json
