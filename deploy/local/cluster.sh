#!/usr/bin/env bash
# A local multi-process gatewire cluster on loopback:
#   Redis, PostgreSQL (127.0.0.1:5439), 1 register,
#   2 gateways (WebSocket on 127.0.0.1:8282 and :8283),
#   2 workers (chat page on http://127.0.0.1:8080 and :8081; Push API on
#   127.0.0.1:2100 and :2101, as HTTP/JSON on 127.0.0.1:2180 and :2181),
#   nginx in front of them on ONE public port, 127.0.0.1:8000: WebSocket
#   handshakes (ws://127.0.0.1:8000/) go to the gateways (fewest connections
#   first), everything else to the workers' chat page
#   (http://127.0.0.1:8000/?from=85&to=86). Clients connect only to it; the
#   chat pages connect there too.
#
# Usage: deploy/local/cluster.sh up|down|status
#
# All state (binaries, logs, pid files, secrets, Redis and PostgreSQL data)
# lives in $GATEWIRE_CLUSTER_DIR (default /tmp/gatewire-cluster). Set
# REDIS_ADDR to use a Redis you run yourself instead of starting one, and
# PG_DSN (postgres://user:password@host:port/db) to use a PostgreSQL you run
# yourself. Otherwise a throwaway PostgreSQL cluster is created under the
# state directory with the server binaries in $PG_BIN (default
# /usr/lib/postgresql/15/bin), listening on 127.0.0.1:5439 only (no Unix
# socket, trust authentication); as root it runs as the system user
# "postgres". Its data survives `down` and `up`; remove the state directory
# to start afresh. nginx is Debian's package (apt-get install -y nginx;
# $NGINX_BIN, default /usr/sbin/nginx) running deploy/nginx/gatewire.conf
# with its upstreams pointed at the local processes; its configuration, pid
# file, logs and temp directories are in $GATEWIRE_CLUSTER_DIR/nginx. `down`
# stops exactly the PIDs that `up` started.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${GATEWIRE_CLUSTER_DIR:-/tmp/gatewire-cluster}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
pg_port=5439
nginx_bin=${NGINX_BIN:-/usr/sbin/nginx}
public=127.0.0.1:8000 # nginx: the one address clients use

start() { # name command...
	local name=$1; shift
	"$@" >"$dir/$name.log" 2>&1 &
	echo $! >"$dir/$name.pid"
	printf '  %-10s pid %-7s log %s\n' "$name" "$!" "$dir/$name.log"
}

# as_pg runs a command as the user PostgreSQL runs as: "postgres" when we
# are root (PostgreSQL refuses to run as root), else ourselves.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# start_postgres creates the throwaway PostgreSQL cluster if needed, starts
# it, waits until it accepts connections and records the postmaster's PID.
start_postgres() {
	local data=$dir/pg/data
	if [ ! -x "$pg_bin/initdb" ]; then
		echo "no PostgreSQL server binaries in $pg_bin (set PG_BIN, or PG_DSN to use your own server)" >&2
		return 1
	fi
	mkdir -p "$dir/pg"
	[ "$(id -u)" != 0 ] || chown postgres: "$dir/pg"
	if [ ! -f "$data/PG_VERSION" ]; then
		as_pg "$pg_bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
			{ echo "initdb failed; see $dir/initdb.log" >&2; return 1; }
	fi
	as_pg "$pg_bin/postgres" -D "$data" -p "$pg_port" \
		-c listen_addresses=127.0.0.1 -c unix_socket_directories= >"$dir/postgres.log" 2>&1 &
	local launcher=$!
	echo "$launcher" >"$dir/postgres.pid" # until the postmaster's is known
	for _ in $(seq 1 100); do
		if "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 1; then
			# The first line of postmaster.pid is the postmaster's PID (as
			# root, $! is runuser's).
			head -n 1 "$data/postmaster.pid" >"$dir/postgres.pid"
			printf '  %-10s pid %-7s log %s\n' postgres "$(cat "$dir/postgres.pid")" "$dir/postgres.log"
			if ! "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc \
				"SELECT 1 FROM pg_database WHERE datname = 'gatewire'" | grep -q 1; then
				"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres gatewire
			fi
			return 0
		fi
		alive "$launcher" || break
		sleep 0.1
	done
	echo "PostgreSQL did not start on 127.0.0.1:$pg_port; see $dir/postgres.log" >&2
	return 1
}

# start_nginx writes nginx's configuration under $dir/nginx and starts it
# in front of the gateways and the workers' chat pages. The site
# configuration is deploy/nginx/gatewire.conf itself, with the compose
# service names of its upstreams replaced by the local addresses and its
# listen port by $public.
start_nginx() {
	local n=$dir/nginx
	mkdir -p "$n"
	sed -e 's/server gateway-1:8282 /server 127.0.0.1:8282 /' \
		-e 's/server gateway-2:8282 /server 127.0.0.1:8283 /' \
		-e 's/server worker-1:8080 /server 127.0.0.1:8080 /' \
		-e 's/server worker-2:8080 /server 127.0.0.1:8081 /' \
		-e "s/^\( *\)listen 80;/\1listen $public;/" \
		"$root/deploy/nginx/gatewire.conf" >"$n/gatewire.conf"
	local want
	for want in "server 127.0.0.1:8282 " "server 127.0.0.1:8283 " "server 127.0.0.1:8080 " "server 127.0.0.1:8081 " "listen $public;"; do
		grep -qF "$want" "$n/gatewire.conf" ||
			{ echo "deploy/nginx/gatewire.conf changed: cannot make '$want' of it" >&2; return 1; }
	done
	# One process (no master/worker pair), in the foreground: the PID
	# recorded is all there is to stop.
	cat >"$n/nginx.conf" <<NGINX
daemon off;
master_process off;
pid $n/nginx.pid;
error_log $n/error.log info;
events { worker_connections 4096; }
http {
    access_log $n/access.log;
    client_body_temp_path $n/client_body;
    proxy_temp_path $n/proxy;
    fastcgi_temp_path $n/fastcgi;
    uwsgi_temp_path $n/uwsgi;
    scgi_temp_path $n/scgi;
    include $n/gatewire.conf;
}
NGINX
	"$nginx_bin" -t -q -p "$n/" -c "$n/nginx.conf" -e "$n/error.log" ||
		{ echo "nginx rejects $n/nginx.conf; see $n/error.log" >&2; return 1; }
	start nginx "$nginx_bin" -p "$n/" -c "$n/nginx.conf" -e "$n/error.log"
}

# alive reports whether process $1 runs: it exists and is not a zombie
# waiting for its (re)parent to reap it.
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	case $(ps -o stat= -p "$1" 2>/dev/null) in
	Z*) return 1 ;;
	esac
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
	if [ ! -x "$nginx_bin" ]; then
		echo "no nginx at $nginx_bin (apt-get install -y nginx, or set NGINX_BIN)" >&2
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
	store=${PG_DSN:-}
	if [ -z "$store" ]; then
		start_postgres || { down; exit 1; }
		store="postgres://postgres@127.0.0.1:$pg_port/gatewire?sslmode=disable"
	fi
	export GATEWIRE_STORE=$store # env, not argv: a password stays out of ps
	export GODEBUG=${GODEBUG:-schedtrace=2147483647} # deploy/README.md, Sizing
	start register "$dir/bin/register" -addr 127.0.0.1:1236 -metrics-addr 127.0.0.1:9236
	wait_port 127.0.0.1:1236
	local origins=127.0.0.1:8080,127.0.0.1:8081 # the workers' chat pages
	start gateway1 "$dir/bin/gateway" -ws-addr 127.0.0.1:8282 -link-addr 127.0.0.1:2000 -metrics-addr 127.0.0.1:9282 -register 127.0.0.1:1236 -origins "$origins"
	start gateway2 "$dir/bin/gateway" -ws-addr 127.0.0.1:8283 -link-addr 127.0.0.1:2001 -metrics-addr 127.0.0.1:9284 -register 127.0.0.1:1236 -origins "$origins"
	# Both load the demo users: the upsert is idempotent. Their chat pages
	# connect through nginx, like every client.
	start worker1 "$dir/bin/worker" -push-addr 127.0.0.1:2100 -push-http-addr 127.0.0.1:2180 -metrics-addr 127.0.0.1:9283 -register 127.0.0.1:1236 -insecure-bind -demo-users \
		-http-addr 127.0.0.1:8080 -ws-url "ws://$public/"
	start worker2 "$dir/bin/worker" -push-addr 127.0.0.1:2101 -push-http-addr 127.0.0.1:2181 -metrics-addr 127.0.0.1:9285 -register 127.0.0.1:1236 -insecure-bind -demo-users \
		-http-addr 127.0.0.1:8081 -ws-url "ws://$public/"
	for a in 127.0.0.1:8282 127.0.0.1:8283 127.0.0.1:2100 127.0.0.1:2101 127.0.0.1:8080 127.0.0.1:8081; do
		wait_port "$a" || { down; exit 1; }
	done
	start_nginx || { down; exit 1; }
	wait_port "$public" || { down; exit 1; }
	local pg_shown="PostgreSQL 127.0.0.1:$pg_port (database gatewire, data in $dir/pg/data)"
	[ -z "${PG_DSN:-}" ] || pg_shown="PostgreSQL from PG_DSN"
	cat <<EOT
up: Redis $redis, $pg_shown,
    register 127.0.0.1:1236,
    gateways 127.0.0.1:8282 and 127.0.0.1:8283 (clients go through nginx),
    workers' Push API 127.0.0.1:2100 and 127.0.0.1:2101 (HTTP/JSON :2180 and :2181)
    (bearer token in $dir/push-token; inner secret in $dir/secret)
public address (nginx; its config and logs in $dir/nginx):
    http://$public  -  WebSocket ws://$public/, spread over both gateways
chat pages (visitor 85 with agent 86; the two tabs land on different gateways):
    http://$public/?from=85&to=86
    http://$public/?from=86&to=85
stop with: $0 down
EOT
}

down() {
	local any=0
	# nginx first (no new clients), then workers and gateways, then
	# PostgreSQL (SIGTERM is its smart shutdown: it waits for the workers'
	# sessions, which are gone), Redis last, so nothing logs needless errors.
	for name in nginx worker1 worker2 gateway1 gateway2 register postgres redis; do
		local f="$dir/$name.pid"
		[ -e "$f" ] || continue
		any=1
		local pid
		pid=$(cat "$f")
		if alive "$pid"; then
			kill -TERM "$pid" 2>/dev/null || true
			local wait=50 # tenths of a second
			[ "$name" != postgres ] || wait=300
			for _ in $(seq 1 "$wait"); do alive "$pid" || break; sleep 0.1; done
			if alive "$pid"; then
				echo "  $name (pid $pid) ignored SIGTERM; killing it" >&2
				kill -KILL "$pid" 2>/dev/null || true
			fi
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
		if alive "$pid"; then s=running; else s=dead; fi
		printf '  %-10s pid %-7s %s\n' "$(basename "$f" .pid)" "$pid" "$s"
	done
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
