# bench/lib.sh — what the connection-holding benchmarks (agent.sh, audit.sh) share: a work
# directory removed on exit, the helper processes they start (ended by PID, only those), the
# checks of tools and descriptor limits, the helper build and its readiness, CPU accounting.
# Source it after setting NAME (the script's name in messages):  NAME=agent.sh; . lib.sh

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "/tmp/keepalive-bench-${NAME%.sh}.XXXXXX")
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	exec 3>&- 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_tools() { # tool...
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "$NAME: $tool is required" >&2; exit 1; }
	done
}

need_fds() { # conns: each helper holds two descriptors per connection
	if (( $(ulimit -n) < 2 * $1 + 100 )); then
		echo "$NAME: ulimit -n is $(ulimit -n); CONNS=$1 needs $((2 * $1 + 100))" >&2
		exit 1
	fi
}

build_helper() { # builds $work/keepalive and $work/helper (bench/audit)
	echo "building keepalive and the helper..."
	(cd "$root" && go build -o "$work/keepalive" ./cmd/keepalive && cd bench && go build -o "$work/helper" ./audit)
	# The helpers exit when their stdin reaches EOF: a FIFO held open by this script (fd 3).
	mkfifo "$work/hold"
	exec 3<>"$work/hold"
}

start_helper() { # addr n logfile
	: >"$3"
	"$work/helper" -addr "$1" -n "$2" <&3 >"$3" 2>&1 &
	pids+=($!)
}

wait_ready() { # logfile...
	local f deadline=$((SECONDS + 300))
	for f in "$@"; do
		until grep -q '^ready' "$f"; do
			if grep -q . "$f" && ! grep -q '^ready' "$f"; then echo "helper failed: $(cat "$f")" >&2; exit 1; fi
			(( SECONDS < deadline )) || { echo "helpers not ready after 300 s" >&2; exit 1; }
			sleep 0.5
		done
	done
}

start_helpers() { # procs conns: helper i listens on 127.0.0.(i+1); sets est (established sockets)
	echo "starting $1 helpers × $2 connections..."
	local i logs=()
	for i in $(seq 1 "$1"); do
		start_helper "127.0.0.$((i + 1))" "$2" "$work/h$i.log"
		logs+=("$work/h$i.log")
	done
	wait_ready "${logs[@]}"
	sleep 2
	est=$(ss -Htn state established | wc -l)
	echo "established TCP sockets on the host: $est"
}

cpu_ticks() { # pid [children]: utime+stime (+cutime+cstime) in clock ticks
	awk -v c="${2:-0}" '{ sub(/^.*\) /, ""); t = $12 + $13; if (c) t += $14 + $15; print t }' "/proc/$1/stat"
}
