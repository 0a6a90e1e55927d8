#!/usr/bin/env bash
# A local multi-process gatewire cluster on loopback:
#   Redis, 1 register, 2 gateways (WebSocket on 127.0.0.1:8282 and :8283),
#   2 workers (Push API on 127.0.0.1:2100 and :2101).
#
# Usage: deploy/local/cluster.sh up|down|status
#
# All state (binaries, logs, pid files, secrets, Redis data) lives in
# $GATEWIRE_CLUSTER_DIR (default /tmp/gatewire-cluster). Set REDIS_ADDR to use
# a Redis you run yourself instead of starting one. `down` stops exactly the
# PIDs that `up` started.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${GATEWIRE_CLUSTER_DIR:-/tmp/gatewire-cluster}

start() { # name command...
	local name=$1; shift
	"$@" >"$dir/$name.log" 2>&1 &
	echo $! >"$dir/$name.pid"
	printf '  %-10s pid %-7s log %s\n' "$name" "$!" "$dir/$name.log"
}

wait_port() { # host:port
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on $1; see the logs in $dir" >&2
	return 1
}

up() {
	if ls "$dir"/*.pid >/dev/null 2>&1; then
		echo "a cluster is already up in $dir (run: $0 down)" >&2
		exit 1
	fi
	mkdir -p "$dir/bin"
	echo "building into $dir/bin"
	(cd "$root" && go build -o "$dir/bin/" ./cmd/register ./cmd/gateway ./cmd/worker)
	[ -f "$dir/secret" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/secret"
	[ -f "$dir/push-token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/push-token"
	export GATEWIRE_SECRET=$(cat "$dir/secret") # env, not argv: secrets stay out of ps
	export GATEWIRE_PUSH_TOKEN=$(cat "$dir/push-token")
	echo "starting in $dir"
	redis=${REDIS_ADDR:-}
	if [ -z "$redis" ]; then
		redis=127.0.0.1:6390
		start redis redis-server --bind 127.0.0.1 --port 6390 --save "" --appendonly no --dir "$dir"
		wait_port "$redis"
	fi
	export GATEWIRE_REDIS=$redis
	start register "$dir/bin/register" -addr 127.0.0.1:1236
	wait_port 127.0.0.1:1236
	start gateway1 "$dir/bin/gateway" -ws-addr 127.0.0.1:8282 -link-addr 127.0.0.1:2000 -register 127.0.0.1:1236
	start gateway2 "$dir/bin/gateway" -ws-addr 127.0.0.1:8283 -link-addr 127.0.0.1:2001 -register 127.0.0.1:1236
	start worker1 "$dir/bin/worker" -push-addr 127.0.0.1:2100 -register 127.0.0.1:1236 -insecure-bind
	start worker2 "$dir/bin/worker" -push-addr 127.0.0.1:2101 -register 127.0.0.1:1236 -insecure-bind
	for a in 127.0.0.1:8282 127.0.0.1:8283 127.0.0.1:2100 127.0.0.1:2101; do wait_port "$a"; done
	cat <<EOT
up: Redis $redis, register 127.0.0.1:1236,
    gateways ws://127.0.0.1:8282 and ws://127.0.0.1:8283,
    workers' Push API 127.0.0.1:2100 and 127.0.0.1:2101
    (bearer token in $dir/push-token; inner secret in $dir/secret)
stop with: $0 down
EOT
}

down() {
	local any=0
	# Workers and gateways first, Redis last, so nothing logs needless errors.
	for name in worker1 worker2 gateway1 gateway2 register redis; do
		local f="$dir/$name.pid"
		[ -e "$f" ] || continue
		any=1
		local pid
		pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
			echo "  stopped $name (pid $pid)"
		fi
		rm -f "$f"
	done
	[ "$any" = 1 ] || echo "no cluster is up in $dir"
}

status() {
	for f in "$dir"/*.pid; do
		[ -e "$f" ] || { echo "no cluster is up in $dir"; return; }
		local pid; pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then s=running; else s=dead; fi
		printf '  %-10s pid %-7s %s\n' "$(basename "$f" .pid)" "$pid" "$s"
	done
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
