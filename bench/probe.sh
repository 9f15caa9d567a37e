#!/bin/sh
# Benchmark 'keepalive probe' on 10 000 idle connections to a namespace peer:
# all alive, then all reset (the peer forgot them), against the kernel's own
# keepalive with idle 1 s and interval 1 s as the anchor. Needs root.
# Usage: bench/probe.sh [connections]   (default 10000)
set -eu
cd "$(dirname "$0")/.."
n="${1:-10000}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/keepalive" ./cmd/keepalive
(cd bench && go build -o "$tmp/probe-bench" ./probe)
echo "kernel $(uname -r), $(nproc) CPUs"
"$tmp/probe-bench" -keepalive "$tmp/keepalive" -n "$n"
