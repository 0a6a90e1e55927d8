# Shell helpers sourced by scripts/bench.sh and scripts/pgcost.sh: free
# loopback ports, process liveness and a throwaway PostgreSQL. Sourcing
# defines functions and sets used_ports and the pg_* variables below; it
# starts nothing.

# free_port prints a free loopback port below the ephemeral range (32768+,
# which benchmark clients use). Within one shell it never prints a port
# twice; called in $(...), which runs in a subshell, only its probe of the
# port guards against that.
used_ports=" "
free_port() {
	local p
	for _ in $(seq 1 1000); do
		p=$((20000 + RANDOM % 12000))
		case $used_ports in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			echo "$p"
			return 0
		fi
	done
	echo "no free port found" >&2
	return 1
}

# alive PID: whether the process runs (a zombie, exited but not yet
# reaped by its parent, does not).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	case $(ps -o stat= -p "$1" 2>/dev/null) in
	Z*) return 1 ;;
	esac
}

# as_pg runs a command as the postgres user when we are root (PostgreSQL
# refuses to run as root), else as ourselves.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start DIR PORT LOGDIR [server options...] initialises a cluster in
# DIR/data (DIR must exist and is handed to postgres when we are root),
# starts it on 127.0.0.1:PORT with its log in LOGDIR/postgres.log (initdb's
# in LOGDIR/initdb.log) and waits until it takes connections. It sets
# pg_data, pg_launcher (the background job that runs the server) and pg_pid
# (the postmaster, whose SIGINT is a fast shutdown). $pg_bin names the
# server binaries. It fails, saying why, if the server does not come up.
pg_data="" pg_launcher="" pg_pid=""
pg_start() {
	local dir=$1 port=$2 logs=$3
	shift 3
	pg_data=$dir/data # set first: pg_stop removes DIR whatever fails below
	if [ ! -x "$pg_bin/initdb" ]; then
		echo "no PostgreSQL server binaries in $pg_bin (set PG_BIN)" >&2
		return 1
	fi
	chmod 755 "$dir"
	[ "$(id -u)" != 0 ] || chown postgres: "$dir"
	as_pg "$pg_bin/initdb" -D "$pg_data" -U postgres -A trust -E UTF8 --no-locale >"$logs/initdb.log" 2>&1 ||
		{ echo "initdb failed; see $logs/initdb.log" >&2; return 1; }
	as_pg "$pg_bin/postgres" -D "$pg_data" -p "$port" -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
		"$@" >"$logs/postgres.log" 2>&1 &
	pg_launcher=$!
	for _ in $(seq 1 200); do
		"$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1 && break
		alive "$pg_launcher" || break
		sleep 0.1
	done
	pg_pid=$(head -n 1 "$pg_data/postmaster.pid" 2>/dev/null || true)
	if [ -z "$pg_pid" ] || ! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
		echo "PostgreSQL did not start; its log:" >&2
		tail -n 30 "$logs/postgres.log" >&2
		return 1
	fi
}

# pg_stop stops the server pg_start started, if it runs — SIGINT, which is
# PostgreSQL's fast shutdown (the data is thrown away), then SIGKILL after
# 30 s — and removes pg_start's DIR. It does nothing before pg_start and is
# safe to call twice, so an EXIT trap may call it whatever happened.
pg_stop() {
	[ -n "$pg_data" ] || return 0
	local pm
	pm=$(head -n 1 "$pg_data/postmaster.pid" 2>/dev/null || echo "$pg_pid")
	if [ -n "$pm" ] && alive "$pm"; then
		kill -INT "$pm" 2>/dev/null || true
		for _ in $(seq 1 300); do alive "$pm" || break; sleep 0.1; done
		if alive "$pm"; then
			echo "  postgres (pid $pm) ignored SIGINT; killing it" >&2
			kill -KILL "$pm" 2>/dev/null || true
		fi
	fi
	[ -z "$pg_launcher" ] || wait "$pg_launcher" 2>/dev/null || true
	rm -rf "$(dirname "$pg_data")"
	pg_data="" pg_launcher="" pg_pid=""
}
