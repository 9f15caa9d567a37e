#!/usr/bin/env bash
# bench/agent-soak.sh — `keepalive agent` for DURATION (default one hour) under churn, not in CI.
#
# Builds PAIRS client/server namespace pairs (veth, 10.200.<200+i>.0/24) and CONTAINERS Docker
# containers (FROM scratch, the agentchurn helper), each client holding CONNS connections and
# replacing CHURN of them per second (CONNS=500 CHURN=20 on 4 pairs: 4 800 opened and closed
# per minute). The agent runs with a policy that probes and reaps connections idle over
# IDLE_OVER seconds in the client namespaces (sweep every INTERVAL seconds) and reports the
# rest. Two probe rules match the same connections two ways: by the namespaces'
# /var/run/netns names, and by the clients' process name (kasoakchurn) with the servers'
# addresses. Either alone failed once on the shared test machine: the image test's clean-up
# unmounted the names mid-run (0 of 200 dead peers found; fixed since, see deploy's
# TestSharedViewKeepsMounts), and the process rule alone, with another benchmark's 198 000
# sockets on the host, found 104 of 200 (not confirmed: owners not found in one pass were
# never looked for again, which they now are, up to three passes). The end of the run prints how many connections each rule
# matched. The script itself enters the namespaces through /proc/PID/ns/net. The agent walks
# every namespace of the host: run the hour on a quiet machine (the CSV's sockets column says
# how many it saw).
#
# Dead peers. Every KILL_EVERY seconds one server namespace is black-holed (nftables drop in
# both directions) for KILL_FOR seconds. Its client is stopped (SIGSTOP) for that time, so that
# none of its connections is closed or opened by the application: every connection established
# to the server when the drop goes in is a dead peer the probe rule covers once it is idle over
# IDLE_OVER, and KILL_FOR must leave the agent time for that (IDLE_OVER + 3 × INTERVAL). For each
# black hole the script counts those connections from the client namespace (ss, an independent
# witness), the agent's dead-peer and reap counters over the window, and the connections still
# established when the drop is lifted (dead peers the agent missed). Then it destroys the server
# side of those connections (ss -K; their client side was reaped, the server would hold them
# forever) and resumes the client. A black hole is started only if it ends within DURATION.
# At the end: "dead peers created N, found M", and exit status 1 when they differ or one was
# missed.
#
# Samples. The agent's /metrics is read every POLL seconds (each increment of
# keepalive_sweeps_total gives that sweep's exact duration from the histogram's sum); every
# SAMPLE seconds a CSV line goes to stdout and to $CSV:
#   elapsed_s, rss_kib, fds, goroutines, sweeps, overruns, sweep_max_s, dead_peers, reaps,
#   sockets, namespaces
# (sweep_max_s: the longest sweep that ended since the previous line, empty if none did;
# dead_peers and reaps: the agent's counters; sockets and namespaces: what its last sweep saw,
# the whole host's, other people's tests included). The black holes go to $KILLS
#   start_s, end_s, pair, created, idle_over_at_start, found, reaped, left
# and at the end bench/soakplot draws $CSV as $SVG and prints its verdict (flat or not).
#
# Usage: sudo bench/agent-soak.sh
# Env:   DURATION=3600 PAIRS=4 CONTAINERS=2 CONNS=500 CHURN=20 SAMPLE=30 POLL=2
#        KILL_EVERY=300 KILL_FOR=120 INTERVAL=15 IDLE_OVER=30
#        CSV=docs/agent-soak.csv KILLS=docs/agent-soak-blackholes.csv SVG=docs/agent-soak.svg
set -euo pipefail
DURATION=${DURATION:-3600}
PAIRS=${PAIRS:-4}
CONTAINERS=${CONTAINERS:-2}
CONNS=${CONNS:-500}
CHURN=${CHURN:-20}
SAMPLE=${SAMPLE:-30}
POLL=${POLL:-2}
KILL_EVERY=${KILL_EVERY:-300}
KILL_FOR=${KILL_FOR:-120}
INTERVAL=${INTERVAL:-15}
IDLE_OVER=${IDLE_OVER:-30}

root=$(cd "$(dirname "$0")/.." && pwd)
CSV=${CSV:-$root/docs/agent-soak.csv}
KILLS=${KILLS:-$root/docs/agent-soak-blackholes.csv}
SVG=${SVG:-$root/docs/agent-soak.svg}
tag="kasoak$$"
work=$(mktemp -d /tmp/keepalive-soak.XXXXXX)
pids=() clients=() servers=() killer=""
cleanup() {
	set +e
	local p i
	if [[ -n $killer ]]; then
		pkill -P "$killer" 2>/dev/null
		kill "$killer" 2>/dev/null
		wait "$killer" 2>/dev/null
	fi
	for p in "${clients[@]}"; do kill -CONT "$p" 2>/dev/null; done # a stopped process ignores TERM
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for i in $(seq 1 "$PAIRS"); do ip netns del "$tag-c$i" 2>/dev/null; ip netns del "$tag-s$i" 2>/dev/null; done
	for i in $(seq 1 "$CONTAINERS"); do docker rm -f "$tag-ctr$i" >/dev/null 2>&1; done
	docker rmi -f "$tag:soak" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in ip nsenter nft ss go curl docker awk; do
	command -v "$tool" >/dev/null || { echo "agent-soak.sh: $tool is required" >&2; exit 1; }
done
if (( KILL_FOR < IDLE_OVER + 3 * INTERVAL )); then
	echo "agent-soak.sh: KILL_FOR=$KILL_FOR is shorter than IDLE_OVER + 3 × INTERVAL = $((IDLE_OVER + 3 * INTERVAL)):" \
		"the agent may not get to every dead peer before the black hole is lifted" >&2
fi
echo "building..." >&2
(cd "$root" && go build -o "$work/keepalive" ./cmd/keepalive)
(cd "$root/bench" && CGO_ENABLED=0 go build -o "$work/kasoakchurn" ./agentchurn && go build -o "$work/soakplot" ./soakplot)

for i in $(seq 1 "$PAIRS"); do
	c="$tag-c$i" s="$tag-s$i" net="10.200.$((200 + i))"
	ip netns add "$c"; ip netns add "$s"
	ip link add "ka$$c$i" netns "$c" type veth peer name "ka$$s$i" netns "$s"
	ip -n "$c" addr add "$net.1/24" dev "ka$$c$i"; ip -n "$s" addr add "$net.2/24" dev "ka$$s$i"
	for n in "$c" "$s"; do ip -n "$n" link set lo up; done
	ip -n "$c" link set "ka$$c$i" up; ip -n "$s" link set "ka$$s$i" up
	ip netns exec "$s" "$work/kasoakchurn" -listen "$net.2:9000" >"$work/s$i.log" 2>&1 &
	pids+=($!) servers+=($!) # ip netns exec execs the command: $! is the helper itself
	for _ in $(seq 1 50); do grep -q '^ready' "$work/s$i.log" && break; sleep 0.1; done
	ip netns exec "$c" "$work/kasoakchurn" -connect "$net.2:9000" -n "$CONNS" -churn "$CHURN" >"$work/c$i.log" 2>&1 &
	pids+=($!) clients+=($!)
done
for i in $(seq 1 "$PAIRS"); do
	for _ in $(seq 1 600); do grep -q '^ready' "$work/c$i.log" && break; sleep 0.1; done
	grep -q '^ready' "$work/c$i.log" || { echo "agent-soak.sh: client $i not ready: $(cat "$work/c$i.log")" >&2; exit 1; }
done
if (( CONTAINERS > 0 )); then
	mkdir -p "$work/img" && cp "$work/kasoakchurn" "$work/img/churn"
	printf 'FROM scratch\nCOPY churn /churn\n' >"$work/img/Dockerfile"
	docker build -q -t "$tag:soak" "$work/img" >/dev/null
	for i in $(seq 1 "$CONTAINERS"); do
		docker run -d --name "$tag-ctr$i" --entrypoint /churn "$tag:soak" -listen 127.0.0.1:9000 >/dev/null
		docker exec -d "$tag-ctr$i" /churn -connect 127.0.0.1:9000 -n "$CONNS" -churn "$CHURN"
	done
fi

ns_list=$(for i in $(seq 1 "$PAIRS"); do printf '%s-c%s, ' "$tag" "$i"; done)
servers_list=$(for i in $(seq 1 "$PAIRS"); do printf '10.200.%s.2, ' $((200 + i)); done)
cat >"$work/policy.yaml" <<POLICY
interval: ${INTERVAL}s
budgets: {probes_per_second: 200, retrofits_per_sweep: 200}
rules:
  - name: soak-by-namespace
    match: {namespaces: [${ns_list%, }]}
    action: probe
    probe: {idle_over: ${IDLE_OVER}s, reap: true}
  - name: soak-by-process
    match: {processes: [kasoakchurn], peers: [${servers_list%, }], ports: [9000]}
    action: probe
    probe: {idle_over: ${IDLE_OVER}s, reap: true}
  - action: report
POLICY
port=$((20000 + RANDOM % 20000))
"$work/keepalive" agent --config "$work/policy.yaml" --listen "127.0.0.1:$port" --no-bpf 2>"$work/agent.log" &
apid=$!
pids+=($apid)

scrape() { curl -s --max-time 5 "127.0.0.1:$port/metrics" || true; }
# metric NAME reads a sample from the scrape on stdin (0 when absent: a vector not yet used).
metric() { awk -v n="$1" '$1 == n {v = $2} END {print (v == "" ? 0 : v)}'; }
reaped() { metric 'keepalive_reaps_total{result="applied"}'; }
# in_ns PID COMMAND...: run COMMAND in the network namespace of process PID.
in_ns() { nsenter --net="/proc/$1/ns/net" "${@:2}"; }
# established PID SERVER_IP: the established connections from the namespace of PID to the
# server, and how many of them are idle over IDLE_OVER (min(lastrcv, lastack), as the kernel and
# the agent count idle).
established() {
	local out
	out=$(in_ns "$1" ss -Htni state established dst "$2" '( dport = :9000 )') || return 1
	awk -v over=$((IDLE_OVER * 1000)) '
			/^[0-9]/ {n++; next}
			{ r = a = -1
			  for (f = 1; f <= NF; f++) {
				if ($f ~ /^lastrcv:/) r = substr($f, 9) + 0
				if ($f ~ /^lastack:/) a = substr($f, 9) + 0
			  }
			  idle = (r >= 0 && a >= 0) ? (r < a ? r : a) : (r >= 0 ? r : a)
			  if (idle > over) i++ }
			END {print n + 0, i + 0}' <<<"$out"
}
t0=$EPOCHSECONDS

# One black hole after the other, each ending within DURATION.
blackholes() {
	local k=0 at i c s ip n idle d0 r0 d1 r1 left start m r
	while :; do
		at=$(((k + 1) * KILL_EVERY))
		(( at + KILL_FOR <= DURATION )) || return 0
		(( at > EPOCHSECONDS - t0 )) && { sleep $((at - (EPOCHSECONDS - t0))) & wait $!; }
		i=$((k % PAIRS + 1)) c=${clients[k % PAIRS]} s=${servers[k % PAIRS]} ip="10.200.$((200 + i)).2"
		k=$((k + 1))
		: >"$work/blackhole.active"
		start=$((EPOCHSECONDS - t0))
		kill -STOP "$c"
		m=$(scrape) d0=$(metric keepalive_dead_peers_total <<<"$m") r0=$(reaped <<<"$m")
		in_ns "$s" nft -f - <<NFT || echo "agent-soak.sh: cannot black-hole server $i" >&2
table inet soakdrop {
	chain soakin { type filter hook input priority 0; policy drop; }
	chain soakout { type filter hook output priority 0; policy drop; }
}
NFT
		r=$(established "$c" "$ip") || r="? ?"
		read -r n idle <<<"$r"
		echo "agent-soak.sh: ${start}s: server $i black-holed for ${KILL_FOR}s, client stopped: $n connections to it ($idle idle over ${IDLE_OVER}s);" \
			"the agent's last sweep matched $(metric 'keepalive_rule_connections{action="probe",rule="soak-by-namespace"}' <<<"$m") connections by namespace," \
			"$(metric 'keepalive_rule_connections{action="probe",rule="soak-by-process"}' <<<"$m") more by process" >&2
		sleep "$KILL_FOR" & wait $!
		r=$(established "$c" "$ip") || r="?"
		read -r left _ <<<"$r"
		m=$(scrape) d1=$(metric keepalive_dead_peers_total <<<"$m") r1=$(reaped <<<"$m")
		in_ns "$s" nft delete table inet soakdrop || echo "agent-soak.sh: cannot lift the black hole of server $i" >&2
		in_ns "$s" ss -Htn -K state established >/dev/null || echo "agent-soak.sh: ss -K failed in server $i" >&2
		kill -CONT "$c"
		echo "$start,$((EPOCHSECONDS - t0)),$i,$n,$idle,$((d1 - d0)),$((r1 - r0)),$left" >>"$work/blackholes.csv"
		echo "agent-soak.sh: $((EPOCHSECONDS - t0))s: server $i back: dead peers created $n, found $((d1 - d0)), reaped $((r1 - r0)), still open $left" >&2
		rm -f "$work/blackhole.active"
	done
}
blackholes &
killer=$!

header="elapsed_s,rss_kib,fds,goroutines,sweeps,overruns,sweep_max_s,dead_peers,reaps,sockets,namespaces"
echo "$header" | tee "$CSV"
next=$SAMPLE prev_n=0 prev_sum=0 smax="" merged=0 el=0
while (( el < DURATION )); do
	sleep "$POLL" & wait $!
	kill -0 "$apid" 2>/dev/null || { echo "agent-soak.sh: the agent exited:" >&2; tail -20 "$work/agent.log" >&2; exit 1; }
	m=$(scrape)
	n=$(metric keepalive_sweeps_total <<<"$m") sum=$(metric keepalive_sweep_duration_seconds_sum <<<"$m")
	if [[ -n $m ]] && (( n > prev_n )); then
		# one sweep ended since the last poll: its exact duration; more: their mean (a lower bound)
		smax=$(awk -v a="$sum" -v b="$prev_sum" -v k=$((n - prev_n)) -v m="$smax" 'BEGIN {d = (a - b) / k; if (m != "" && m + 0 > d) d = m; printf "%.3f", d}')
		(( n - prev_n > 1 )) && merged=$((merged + 1))
		prev_n=$n prev_sum=$sum
	fi
	el=$((EPOCHSECONDS - t0))
	if (( el >= next || el >= DURATION )); then
		next=$((next + SAMPLE))
		[[ -n $m ]] || { echo "agent-soak.sh: ${el}s: no answer from the agent's /metrics" >&2; echo "$el,,,,,,,,,," | tee -a "$CSV"; continue; }
		printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$el" "$(awk '/^VmRSS/ {print $2}' "/proc/$apid/status")" \
			"$(ls "/proc/$apid/fd" | wc -l)" "$(metric go_goroutines <<<"$m")" "$n" \
			"$(metric keepalive_sweep_overruns_total <<<"$m")" "$smax" \
			"$(metric keepalive_dead_peers_total <<<"$m")" "$(reaped <<<"$m")" \
			"$(metric keepalive_sockets <<<"$m")" "$(metric keepalive_namespaces <<<"$m")" | tee -a "$CSV"
		smax=""
	fi
done

# A black hole still in force ends within a few seconds (each ends by DURATION); wait for it.
for _ in $(seq 1 $((KILL_FOR + 60))); do [[ -e $work/blackhole.active ]] || break; sleep 1; done
m=$(scrape)
echo "start_s,end_s,pair,created,idle_over_at_start,found,reaped,left" >"$KILLS"
[[ -e $work/blackholes.csv ]] && cat "$work/blackholes.csv" >>"$KILLS"
# "?": ss could not count (the namespace was not there any more)
read -r holes created found reap left unknown < <(awk -F, 'NR > 1 {k++; c += $4; f += $6; r += $7; l += $8; if ($4 == "?" || $8 == "?") u++}
	END {print k + 0, c + 0, f + 0, r + 0, l + 0, u + 0}' "$KILLS")
(( merged == 0 )) || echo "agent-soak.sh: $merged polls saw more than one sweep end: their mean stands for the longest" >&2

"$work/soakplot" -o "$SVG" -interval "${INTERVAL}s" -blackholes "$KILLS" \
	-title "keepalive agent: $((DURATION / 60)) min soak under connection churn (bench/agent-soak.sh)" \
	-note "$(nproc)-core machine, Linux $(uname -r), $(date -u +%Y-%m-%d): $PAIRS namespace pairs + $CONTAINERS containers × $CONNS connections, $CHURN replaced per second each; a server black-holed ${KILL_FOR}s every ${KILL_EVERY}s; sweep every ${INTERVAL}s" \
	"$CSV"
if [[ -n ${SUDO_UID:-} ]]; then chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$CSV" "$KILLS" "$SVG" 2>/dev/null || true; fi
echo "agent-soak.sh: CSV $CSV, black holes $KILLS, plot $SVG" >&2
echo "agent-soak.sh: $holes black holes: dead peers created $created, found $found (reaped $reap; still open when the black hole lifted: $left);" \
	"agent's totals: dead peers $(metric keepalive_dead_peers_total <<<"$m"), reaped $(reaped <<<"$m")" >&2
# What the agent counted on the way (errors by stage, actions deferred by a budget, verdicts).
grep -E '^keepalive_(errors_total|actions_deferred_total|probe_verdicts_total|rule_connections)' <<<"$m" | sed 's/^/agent-soak.sh:   /' >&2 || true
if (( unknown > 0 )); then
	echo "agent-soak.sh: FAIL: $unknown black holes could not be counted" >&2
	exit 1
fi
if (( created != found || left > 0 )); then
	echo "agent-soak.sh: FAIL: not every dead peer the policy covers was found" >&2
	exit 1
fi
