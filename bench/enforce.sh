#!/bin/sh
# Benchmark 'keepalive enforce' side by side with its anchors, in one run:
#  1. loopback connection setup rate (connect + accept, both ends in a cgroup) with no
#     program, with the programs in default mode and in enforce mode; raw system calls and
#     Go's net.Dial/Accept (which sets its own keepalive: 4 setsockopt calls the enforce-mode
#     program rewrites). Ratio to "no program" printed (goal ≥ 0.95×).
#  2. the unprotected window of a new connection: enforce (checked by the connection's own
#     getsockopt right after connect()) against 'keepalive enable --watch 1s' (measured).
# Needs root. Creates a private bpffs and three cgroups, removed at the end.
# Usage: bench/enforce.sh [connections per round] [rounds] [window connections]
set -eu
cd "$(dirname "$0")/.."
n="${1:-10000}"
rounds="${2:-5}"
window="${3:-100}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/keepalive" ./cmd/keepalive
go build -o "$tmp/enforce-bench" ./bench/enforce
echo "kernel $(uname -r), $(nproc) CPUs, $(go version | cut -d' ' -f3)"
"$tmp/enforce-bench" -keepalive "$tmp/keepalive" -n "$n" -rounds "$rounds" -window "$window"
