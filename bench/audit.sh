#!/usr/bin/env bash
# bench/audit.sh — `keepalive audit` against `ss` on ~100 000 established loopback connections,
# and `keepalive enable` (retrofit) of 10 000 sockets of one process.
#
# Starts PROCS helper processes (bench/audit), each listening on its own 127.0.0.x address and
# dialling itself CONNS times (two sockets per connection: a process may hold at most 20 000
# descriptors here), then times, in the same run and interleaved:
#   keepalive audit --json      (owners included; streamed JSON)
#   ss -tnoi                    (no owners; the anchor)
#   ss -tnoip                   (owners; for the "-p" comparison)
# and reports medians, peak RSS and the ratios. Then a separate helper holds RETRO_CONNS
# connections (2×RETRO_CONNS sockets) and `keepalive enable --pid` retrofits all its sockets.
#
# Usage: sudo bench/audit.sh            (root: /proc of every process, pidfd_getfd)
# Env:   PROCS=11 CONNS=9000 RUNS=5 SSP_RUNS=3 RETRO_CONNS=5000 RETRO_RUNS=5
set -euo pipefail

PROCS=${PROCS:-11}
CONNS=${CONNS:-9000}
RUNS=${RUNS:-5}
SSP_RUNS=${SSP_RUNS:-3}
RETRO_CONNS=${RETRO_CONNS:-5000}
RETRO_RUNS=${RETRO_RUNS:-5}

NAME=audit.sh
. "$(dirname "$0")/lib.sh"
need_tools ss /usr/bin/time go
need_fds "$CONNS"
build_helper

start_helpers "$PROCS" "$CONNS" # sets est

# timeit NAME CMD... — appends "seconds maxrss_kb" to $work/NAME.times
timeit() {
	local name=$1; shift
	/usr/bin/time -f "%e %M" -o "$work/t" "$@" >"$work/out" 2>/dev/null
	cat "$work/t" >>"$work/$name.times"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

echo "timing ($RUNS runs each, interleaved; ss -tnoip $SSP_RUNS runs)..."
for r in $(seq 1 "$RUNS"); do
	timeit audit "$work/keepalive" audit --json
	rows=$(grep -o '"summary":{"connections":[0-9]*' "$work/out" | tail -1 | cut -d: -f3)
	timeit ss ss -tnoi
	if (( r <= SSP_RUNS )); then timeit ssp ss -tnoip; fi
done

a=$(cut -d' ' -f1 "$work/audit.times" | median)
arss=$(cut -d' ' -f2 "$work/audit.times" | sort -n | tail -1)
s=$(cut -d' ' -f1 "$work/ss.times" | median)
srss=$(cut -d' ' -f2 "$work/ss.times" | sort -n | tail -1)
p=$(cut -d' ' -f1 "$work/ssp.times" | median)
prss=$(cut -d' ' -f2 "$work/ssp.times" | sort -n | tail -1)

echo
echo "== audit of $rows connections (sockets listed by keepalive audit; $est established on the host)"
printf "%-30s %10s %14s\n" "command" "median s" "peak RSS MiB"
printf "%-30s %10s %14.1f\n" "keepalive audit --json" "$a" "$(echo "$arss/1024" | bc -l)"
printf "%-30s %10s %14.1f\n" "ss -tnoi" "$s" "$(echo "$srss/1024" | bc -l)"
printf "%-30s %10s %14.1f\n" "ss -tnoip" "$p" "$(echo "$prss/1024" | bc -l)"
printf "ratio audit / ss -tnoi   = %.2f   (goal ≤ 0.80)\n" "$(echo "$a/$s" | bc -l)"
printf "ratio ss -tnoip / audit  = %.1f×  (goal ≥ 30×)\n" "$(echo "$p/$a" | bc -l)"
printf "audit peak RSS           = %.1f MiB (goal ≤ 64 MiB)\n" "$(echo "$arss/1024" | bc -l)"
echo "raw (seconds maxrss_kb): audit: $(tr '\n' ' ' <"$work/audit.times")| ss: $(tr '\n' ' ' <"$work/ss.times")| ss -p: $(tr '\n' ' ' <"$work/ssp.times")"

echo
echo "starting one helper × $RETRO_CONNS connections for the retrofit..."
start_helper 127.0.0.200 "$RETRO_CONNS" "$work/retro.log"
wait_ready "$work/retro.log"
rp=${pids[-1]}
for r in $(seq 1 "$RETRO_RUNS"); do
	# Alternate the idle time so that every run really changes every socket.
	timeit retro "$work/keepalive" enable --pid "$rp" --idle $((600 + r % 2)) --interval 30 --count 4 --json
	changed=$(grep -o '"changed": *[0-9]*' "$work/out" | tail -1 | tr -dc 0-9)
done
timeit retrodry "$work/keepalive" enable --pid "$rp" --idle 900 --dry-run --json
m=$(cut -d' ' -f1 "$work/retro.times" | median)
d=$(cut -d' ' -f1 "$work/retrodry.times" | median)
fds=$(ls "/proc/$rp/fd" | wc -l)
echo "== retrofit of one process's sockets ($changed changed per run; helper holds $fds descriptors afterwards)"
printf "keepalive enable --pid (apply + verify)  median %s s  (goal < 1 s)\n" "$m"
printf "keepalive enable --pid --dry-run         %s s\n" "$d"
echo "raw: $(tr '\n' ' ' <"$work/retro.times")"
