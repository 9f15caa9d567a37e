#!/usr/bin/env bash
# Heartbeat cost on idle loopback connections: ours (one shared scheduler) against
# the floor (a bare 16-byte ping-pong over the same kind of connections, no framework),
# (a) one goroutine + one time.Timer per connection (gRPC-go's keepalive loop),
# (b) hashicorp/yamux sessions with keepalive and (c) grpc-go v1.85 with keepalive at the same
# Time/Timeout — same run, ratios printed. ours-noread is ours with nobody reading (one
# background reader per connection end).
#
# A process here may hold at most 20 000 descriptors, so each design runs in its own process
# with PAIRS connection pairs (2 descriptors each); the 100 000-connection scale is shown with
# SCALE_PROCS processes of SCALE_PAIRS pairs of ours running at once.
#
# Usage: bench/heartbeat.sh            (about 2 minutes)
#   PAIRS=9000 GRPC_PAIRS=3000 TIME=10s SETTLE=12s WINDOW=30s SCALE_PROCS=6 SCALE_PAIRS=8400 bench/heartbeat.sh
# bench/ is its own Go module (yamux and grpc-go stay out of the library's go.mod).
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-9000}
GRPC_PAIRS=${GRPC_PAIRS:-3000}
TIME=${TIME:-10s}
SETTLE=${SETTLE:-12s}
WINDOW=${WINDOW:-30s}
SCALE_PROCS=${SCALE_PROCS:-6}
SCALE_PAIRS=${SCALE_PAIRS:-8400}

tmp=$(mktemp -d /tmp/kahb-bench-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

(cd bench && go build -o "$tmp/hbbench" ./heartbeat)
echo "# $(uname -sr), $(nproc) CPUs, $(go version | cut -d' ' -f3), descriptors per process: $(ulimit -n)"
echo "# Time=$TIME Timeout=2*Time, server side Time=2*Time; settle $SETTLE, CPU window $WINDOW"

run_set() { # name args... ; runs every process of a set at once and waits for all
	local i=0
	pids=()
	while [ $# -gt 0 ]; do
		"$tmp/hbbench" $1 -time "$TIME" -settle "$SETTLE" -window "$WINDOW" >>"$tmp/results" &
		pids+=($!)
		shift
		i=$((i + 1))
	done
	for p in "${pids[@]}"; do wait "$p"; done
	pids=()
}

echo "# phase 1: plain, floor, ours, ours-noread with $PAIRS pairs each (4 processes at once)"
run_set "-mode plain -pairs $PAIRS -addr 127.0.0.2 -src 127.0.2.2" \
	"-mode floor -pairs $PAIRS -addr 127.0.0.6 -src 127.0.2.6" \
	"-mode ours -pairs $PAIRS -addr 127.0.0.3 -src 127.0.2.3" \
	"-mode ours-noread -pairs $PAIRS -addr 127.0.0.7 -src 127.0.2.7"

echo "# phase 2: goroutine, yamux with $PAIRS pairs, grpc with $GRPC_PAIRS pairs (3 processes at once)"
run_set "-mode goroutine -pairs $PAIRS -addr 127.0.0.4 -src 127.0.2.4" \
	"-mode yamux -pairs $PAIRS -addr 127.0.0.5 -src 127.0.2.5" \
	"-mode grpc -pairs $GRPC_PAIRS -addr 127.0.0.8 -src 127.0.2.8"

echo "# phase 3: $SCALE_PROCS processes x $SCALE_PAIRS pairs of ours at once"
args=()
for i in $(seq 1 "$SCALE_PROCS"); do
	args+=("-mode ours -pairs $SCALE_PAIRS -addr 127.0.1.$i -src 127.0.3.$i -label scale-$i")
done
run_set "${args[@]}"

echo
cat "$tmp/results"
echo
"$tmp/hbbench" -report "$tmp/results"
