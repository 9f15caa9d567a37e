#!/usr/bin/env bash
# bench/agent-soak.sh — `keepalive agent` for DURATION (default one hour) under churn, not in CI.
#
# Builds PAIRS client/server namespace pairs (veth, 10.200.<200+i>.0/24) and CONTAINERS Docker
# containers (FROM scratch, the agentchurn helper), each client holding CONNS connections and
# replacing CHURN of them per second (CONNS=500 CHURN=20 on 4 pairs: 4 800 opened and closed
# per minute). Every KILL_EVERY seconds one server namespace is black-holed (nftables drop)
# for KILL_FOR seconds: its peers die silently and the agent's probe rule must find them.
# The agent runs with a policy that probes and reaps idle connections in the client
# namespaces. Every SAMPLE seconds a line of CSV is printed:
#   elapsed_s, rss_kib, fds, goroutines, sweeps, overruns, sweep_max_s, dead_peers, reaps
# Plot rss/fds/goroutines over time for docs/benchmarks.md; overruns must stay 0.
#
# Usage: sudo bench/agent-soak.sh > soak.csv
# Env:   DURATION=3600 PAIRS=4 CONTAINERS=2 CONNS=500 CHURN=20 SAMPLE=60 KILL_EVERY=300 KILL_FOR=120
set -euo pipefail
DURATION=${DURATION:-3600}
PAIRS=${PAIRS:-4}
CONTAINERS=${CONTAINERS:-2}
CONNS=${CONNS:-500}
CHURN=${CHURN:-20}
SAMPLE=${SAMPLE:-60}
KILL_EVERY=${KILL_EVERY:-300}
KILL_FOR=${KILL_FOR:-120}

root=$(cd "$(dirname "$0")/.." && pwd)
tag="kasoak$$"
work=$(mktemp -d /tmp/keepalive-soak.XXXXXX)
pids=()
cleanup() {
	local p i
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	for i in $(seq 1 "$PAIRS"); do ip netns del "$tag-c$i" 2>/dev/null || true; ip netns del "$tag-s$i" 2>/dev/null || true; done
	for i in $(seq 1 "$CONTAINERS"); do docker rm -f "$tag-ctr$i" >/dev/null 2>&1 || true; done
	docker rmi -f "$tag:soak" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in ip nft go curl docker; do
	command -v "$tool" >/dev/null || { echo "agent-soak.sh: $tool is required" >&2; exit 1; }
done
echo "building..." >&2
(cd "$root" && go build -o "$work/keepalive" ./cmd/keepalive)
(cd "$root/bench" && CGO_ENABLED=0 go build -o "$work/churn" ./agentchurn)

for i in $(seq 1 "$PAIRS"); do
	c="$tag-c$i" s="$tag-s$i" net="10.200.$((200 + i))"
	ip netns add "$c"; ip netns add "$s"
	ip link add "ka$$c$i" netns "$c" type veth peer name "ka$$s$i" netns "$s"
	ip -n "$c" addr add "$net.1/24" dev "ka$$c$i"; ip -n "$s" addr add "$net.2/24" dev "ka$$s$i"
	for n in "$c" "$s"; do ip -n "$n" link set lo up; done
	ip -n "$c" link set "ka$$c$i" up; ip -n "$s" link set "ka$$s$i" up
	ip netns exec "$s" "$work/churn" -listen "$net.2:9000" >"$work/s$i.log" 2>&1 &
	pids+=($!)
	sleep 0.3
	ip netns exec "$c" "$work/churn" -connect "$net.2:9000" -n "$CONNS" -churn "$CHURN" >"$work/c$i.log" 2>&1 &
	pids+=($!)
done
if (( CONTAINERS > 0 )); then
	mkdir -p "$work/img" && cp "$work/churn" "$work/img/churn"
	printf 'FROM scratch\nCOPY churn /churn\n' >"$work/img/Dockerfile"
	docker build -q -t "$tag:soak" "$work/img" >/dev/null
	for i in $(seq 1 "$CONTAINERS"); do
		docker run -d --name "$tag-ctr$i" --entrypoint /churn "$tag:soak" -listen 127.0.0.1:9000 >/dev/null
		docker exec -d "$tag-ctr$i" /churn -connect 127.0.0.1:9000 -n "$CONNS" -churn "$CHURN"
	done
fi

ns_list=$(for i in $(seq 1 "$PAIRS"); do printf '%s-c%s, ' "$tag" "$i"; done)
cat >"$work/policy.yaml" <<POLICY
interval: 15s
budgets: {probes_per_second: 200, retrofits_per_sweep: 200}
rules:
  - name: soak
    match: {namespaces: [${ns_list%, }]}
    action: probe
    probe: {idle_over: 30s, reap: true}
  - action: report
POLICY
port=$((20000 + RANDOM % 20000))
"$work/keepalive" agent --config "$work/policy.yaml" --listen "127.0.0.1:$port" --no-bpf 2>"$work/agent.log" &
apid=$!
pids+=($apid)

echo "elapsed_s,rss_kib,fds,goroutines,sweeps,overruns,sweep_max_s,dead_peers,reaps"
start=$SECONDS next_kill=$KILL_EVERY killed=0 maxsweep=0 prev_sum=0 prev_n=0
while (( SECONDS - start < DURATION )); do
	sleep "$SAMPLE"
	el=$((SECONDS - start))
	if (( el >= next_kill )); then
		killed=$((killed % PAIRS + 1))
		ip netns exec "$tag-s$killed" nft -f - <<NFT
table inet soakdrop {
	chain soakin { type filter hook input priority 0; policy drop; }
	chain soakout { type filter hook output priority 0; policy drop; }
}
NFT
		( sleep "$KILL_FOR"; ip netns exec "$tag-s$killed" nft delete table inet soakdrop 2>/dev/null ) &
		pids+=($!)
		next_kill=$((next_kill + KILL_EVERY))
	fi
	m=$(curl -s "127.0.0.1:$port/metrics")
	get() { awk -v n="$1" '$1 == n {print $2}' <<<"$m"; }
	n=$(get keepalive_sweeps_total) sum=$(get keepalive_sweep_duration_seconds_sum)
	if (( ${n:-0} > prev_n )); then
		mean=$(echo "($sum - $prev_sum) / ($n - $prev_n)" | bc -l)
		maxsweep=$(echo "if ($mean > $maxsweep) $mean else $maxsweep" | bc -l)
	fi
	prev_n=${n:-0} prev_sum=${sum:-0}
	printf '%s,%s,%s,%s,%s,%s,%.3f,%s,%s\n' "$el" "$(awk '/^VmRSS/ {print $2}' /proc/$apid/status)" \
		"$(ls /proc/$apid/fd | wc -l)" "$(get go_goroutines)" "$n" "$(get keepalive_sweep_overruns_total)" "$maxsweep" \
		"$(get keepalive_dead_peers_total)" "$(awk '/^keepalive_reaps_total\{result="applied"\}/ {print $2}' <<<"$m")"
done
