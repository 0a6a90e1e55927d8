# Shell helpers sourced by scripts/bench.sh and scripts/pgcost.sh: free
# loopback ports and a throwaway PostgreSQL. Sourcing defines functions and
# sets used_ports; it starts nothing.

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
pg_start() {
	local dir=$1 port=$2 logs=$3
	shift 3
	if [ ! -x "$pg_bin/initdb" ]; then
		echo "no PostgreSQL server binaries in $pg_bin (set PG_BIN)" >&2
		return 1
	fi
	chmod 755 "$dir"
	[ "$(id -u)" != 0 ] || chown postgres: "$dir"
	pg_data=$dir/data
	as_pg "$pg_bin/initdb" -D "$pg_data" -U postgres -A trust -E UTF8 --no-locale >"$logs/initdb.log" 2>&1 ||
		{ echo "initdb failed; see $logs/initdb.log" >&2; return 1; }
	as_pg "$pg_bin/postgres" -D "$pg_data" -p "$port" -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
		"$@" >"$logs/postgres.log" 2>&1 &
	pg_launcher=$!
	for _ in $(seq 1 200); do
		"$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1 && break
		kill -0 "$pg_launcher" 2>/dev/null || break
		sleep 0.1
	done
	pg_pid=$(head -n 1 "$pg_data/postmaster.pid" 2>/dev/null || true)
	if [ -z "$pg_pid" ] || ! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
		echo "PostgreSQL did not start; its log:" >&2
		tail -n 30 "$logs/postgres.log" >&2
		return 1
	fi
}
