#!/bin/sh
# Benchmark 'keepalive nat-timeout measure' in the lab: a client namespace behind a router
# namespace (masquerade, conntrack established timeout T, nf_conntrack_tcp_loose=0, packets
# of forgotten flows dropped) in front of a server namespace. For each T it measures the
# client→server direction alone (the algorithm's goal: wall ≤ 1.25 T + 10 s, error ≤ 1 s),
# then both directions with the keepalive pass, and prints wall / T next to the anchor,
# NAT-TCP-test's fixed schedule (130 connections, one tested per minute: 130 min whatever T,
# 1-minute resolution; the last column is its wall time divided by ours). Needs root, nft
# and iproute2.
# Usage: sudo bench/nattimeout.sh [T seconds ...]   (default: 4 9 30 60 120)
set -eu
cd "$(dirname "$0")/.."
ts="${*:-4 9 30 60 120}"
tmp="$(mktemp -d)"
p="natb$$"
srv=""
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null || true
	for r in c r s; do ip netns del "$p-$r" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
go build -o "$tmp/keepalive" ./cmd/keepalive
modprobe -q nf_conntrack 2>/dev/null || true

topology() { # $1 = conntrack established timeout in seconds
	timeout="$1"
	for r in c r s; do ip netns add "$p-$r"; ip -n "$p-$r" link set lo up; done
	ip link add c0 netns "$p-c" type veth peer name rc netns "$p-r"
	ip link add s0 netns "$p-s" type veth peer name rs netns "$p-r"
	ip -n "$p-c" addr add 10.200.151.1/24 dev c0
	ip -n "$p-r" addr add 10.200.151.254/24 dev rc
	ip -n "$p-r" addr add 10.200.152.254/24 dev rs
	ip -n "$p-s" addr add 10.200.152.2/24 dev s0
	for l in "c c0" "r rc" "r rs" "s s0"; do set -- $l; ip -n "$p-$1" link set "$2" up; done
	ip -n "$p-c" route add default via 10.200.151.254
	ip -n "$p-s" route add default via 10.200.152.254
	ip netns exec "$p-r" sh -c "echo 1 > /proc/sys/net/ipv4/ip_forward"
	ip netns exec "$p-r" nft -f - <<NFT
table inet natbench {
	chain natpost { type nat hook postrouting priority srcnat; oifname "rs" masquerade; }
	chain natfwd { type filter hook forward priority filter; ct state invalid drop; }
	chain natin { type filter hook input priority filter; ct state invalid drop; }
}
NFT
	ip netns exec "$p-r" sh -c "echo 0 > /proc/sys/net/netfilter/nf_conntrack_tcp_loose; echo $timeout > /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"
	ip netns exec "$p-s" "$tmp/keepalive" nat-timeout serve --listen 10.200.152.2:7414 --token bench >"$tmp/serve.log" 2>&1 &
	srv=$!
	sleep 0.3
}

teardown() {
	kill "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
	srv=""
	for r in c r s; do ip netns del "$p-$r"; done
}

measure() { # extra flags...; prints the JSON
	ip netns exec "$p-c" "$tmp/keepalive" nat-timeout measure 10.200.152.2:7414 --token bench --no-progress --json "$@" || true
}

echo "kernel $(uname -r), $(nproc) CPUs, $(date -u +%FT%TZ)"
echo "anchor: NAT-TCP-test fixed schedule, 130 connections, one tested per minute: 7800 s, resolution 60 s"
printf '%6s | %-22s %7s %7s %8s | %-28s %8s | %s\n' "T (s)" "measured c→s (s)" "wall" "wall/T" "goal" "both dirs + keepalive pass" "wall/T" "anchor/ours"
for T in $ts; do
	topology "$T"
	one="$(measure --direction client-to-server --no-keepalive-pass)"
	full="$(measure)"
	teardown
	python3 - "$T" "$one" "$full" <<'PY'
import json, sys
T = float(sys.argv[1])
one, full = json.loads(sys.argv[2]), json.loads(sys.argv[3])
u = one["client_to_server"]
meas = "(%.2f, %.2f]" % (u["lower_seconds"], u.get("upper_seconds", 0)) if u["expired"] else "no timeout"
w = u["wall_seconds"]
fu, fd = full["client_to_server"], full["server_to_client"]
both = "c→s %.1f s→c %.1f ka=%s" % (fu.get("upper_seconds", 0), fd.get("upper_seconds", 0), "yes" if full["keepalive_recognised"] else "no")
print("%6g | %-22s %7.1f %7.2f %8.1f | %-28s %8.2f | %.0f" % (T, meas, w, w / T, 1.25 * T + 10, both, full["wall_seconds"] / T, 7800 / w))
PY
done
