#!/usr/bin/env bash
# bench/agent.sh — the cost of `keepalive agent` on a host with ~198 000 established loopback
# sockets at the default 15 s interval, side by side with its anchor: one `ss -tnoi` every 15 s
# (which lists the sockets and does less: no owners, no namespaces, no assessment, no metrics).
#
# Starts PROCS helpers (bench/audit), each holding CONNS loopback connections (2 sockets each),
# then, for DURATION seconds each and one after the other:
#   keepalive agent --interval 15s --listen 127.0.0.1:PORT     (policy: report everything)
#   while :; do ss -tnoi >/dev/null; sleep 15; done
# and reports CPU time as a share of one core (utime+stime over the window, from
# /proc/PID/stat, children included for the ss loop), the agent's peak RSS (VmHWM, first sweep
# included) and the ratio. The agent's window is whole sweeps (from the end of its second
# sweep to the end of sweep 2+N, read from its debug log) with one scrape of /metrics per
# interval, as Prometheus would; the first sweep is reported on its own.
#
# Usage: sudo bench/agent.sh
# Env:   PROCS=11 CONNS=9000 DURATION=120 INTERVAL=15
#        POLICY=FILE  a policy (e.g. bench/agent-owners.yaml: rules by process name, which
#                     need every socket's owners: the first sweep makes one /proc pass)
set -euo pipefail

PROCS=${PROCS:-11}
CONNS=${CONNS:-9000}
DURATION=${DURATION:-120}
INTERVAL=${INTERVAL:-15}
POLICY=${POLICY:-} # a policy file; default: report everything (no owners needed)

NAME=agent.sh
. "$(dirname "$0")/lib.sh"
need_tools ss go curl bc
need_fds "$CONNS"
build_helper
start_helpers "$PROCS" "$CONNS" # sets est

hz=$(getconf CLK_TCK)

port=$((20000 + RANDOM % 20000))
sweeps_n=$(( (DURATION + INTERVAL - 1) / INTERVAL ))
echo "keepalive agent for $sweeps_n sweeps (interval ${INTERVAL}s), scraped once per interval like Prometheus..."
cfg=()
[[ -n "$POLICY" ]] && cfg=(--config "$POLICY")
"$work/keepalive" agent --interval "${INTERVAL}s" --listen "127.0.0.1:$port" --no-bpf --log-level debug "${cfg[@]}" 2>"$work/agent.log" &
apid=$!
pids+=($apid)
bash -c "while :; do sleep $INTERVAL; curl -s 127.0.0.1:$port/metrics >/dev/null; done" &
pids+=($!)
# Completed sweeps are read from the debug log (no scrape needed to see them). The first sweep
# resolves what every socket is and is timed on its own; the steady window runs from the end
# of sweep 2 to the end of sweep 2+N: whole intervals, so the count of sweeps inside it
# cannot be off by one.
swept() { grep -c 'msg=sweep ' "$work/agent.log" || true; }
wait_sweeps() { # n: wait until n sweeps completed
	local t=$SECONDS
	until (( $(swept) >= $1 )); do
		(( SECONDS - t < 600 )) || { echo "no sweep $1 after 600 s" >&2; cat "$work/agent.log" >&2; exit 1; }
		sleep 0.1
	done
}
f0=$SECONDS
wait_sweeps 1
first_cpu=$(echo "$(cpu_ticks $apid) / $hz" | bc -l)
first_wall=$((SECONDS - f0))
first_dur=$(grep -m1 'msg=sweep ' "$work/agent.log" | sed -n 's/.*duration=\([^ ]*\).*/\1/p')
wait_sweeps 2
t0=$(cpu_ticks $apid); w0=$(date +%s.%N)
wait_sweeps $((2 + sweeps_n))
t1=$(cpu_ticks $apid); w1=$(date +%s.%N)
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$apid/status")
curl -s "127.0.0.1:$port/metrics" >"$work/metrics" || true
kill $apid; wait $apid 2>/dev/null || true
socks=$(awk '/^keepalive_sockets / {print $2}' "$work/metrics")
acpu=$(echo "($t1 - $t0) / $hz / ($w1 - $w0) * 100" | bc -l)
durs=$(grep 'msg=sweep ' "$work/agent.log" | sed -n 's/.*duration=\([0-9.]*\)\(m\?s\).*/\1 \2/p' |
	awk 'NR > 1 { v = ($2 == "ms") ? $1 / 1000 : $1; s += v; if (v > m) m = v; n++ } END { printf "%.3f %.3f", s / n, m }')

echo "ss -tnoi every ${INTERVAL}s for ${DURATION}s..."
bash -c "while :; do ss -tnoi >/dev/null; sleep $INTERVAL; done" &
spid=$!
pids+=($spid)
s0=$(cpu_ticks $spid 1)
sleep "$DURATION"
s1=$(cpu_ticks $spid 1)
kill $spid; wait $spid 2>/dev/null || true
scpu=$(echo "($s1 - $s0) / $hz / $DURATION * 100" | bc -l)

echo
echo "== keepalive agent at $socks sockets ($est established on the host), ${INTERVAL}s interval, ${DURATION}s window"
printf "%-40s %12s %14s\n" "" "CPU % core" "peak RSS MiB"
printf "%-40s %12.2f %14.1f\n" "keepalive agent" "$acpu" "$(echo "$hwm/1024" | bc -l)"
printf "%-40s %12.2f %14s\n" "ss -tnoi every ${INTERVAL}s" "$scpu" "-"
printf "ratio agent / ss loop = %.2f   (goals: agent ≤ 2 %% of a core, ≤ 100 MiB)\n" "$(echo "$acpu/$scpu" | bc -l)"
printf "first sweep: %s (≈ %s s after start, %.2f s CPU with start-up)\n" "$first_dur" "$first_wall" "$first_cpu"
printf "steady window: %d sweeps over %.1f s; sweep wall time mean %s s, max %s s\n" "$sweeps_n" "$(echo "$w1 - $w0" | bc -l)" ${durs}
