#!/usr/bin/env bash
# PostgreSQL's CPU per commit of the says' INSERT: starts a throwaway
# PostgreSQL 15 on loopback with the repository's migrations, and for each
# batch size runs pgbench with the store's batch INSERT (the statement of
# pgInsertMessages in internal/store/postgres.go, its arrays built from
# pgbench variables) at a fixed message rate over two connections, as two
# workers would. Prints one JSON line per batch size: commits/s and the CPU
# of all PostgreSQL processes per commit and per message. It shows what a
# say's linger buys: the cost of a commit against the cost of a row.
#
# Usage: scripts/pgcost.sh
# Settings (environment): PGCOST_ROWS (batch sizes, default "1 2 4 8 16"),
# PGCOST_RATE (messages/s over the two connections, default 2200: the
# open loop of scripts/bench.sh), PGCOST_DURATION (seconds per
# size, default 20), PGCOST_PG_OPTS (extra server options, e.g.
# "-c synchronous_commit=off" to see what the WAL flush costs; default none:
# PostgreSQL's defaults), PG_BIN (default /usr/lib/postgresql/15/bin).
#
# Everything started is stopped by its PID when the script ends; the data
# directory is removed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
rows_list=${PGCOST_ROWS:-1 2 4 8 16}
rate=${PGCOST_RATE:-2200}
duration=${PGCOST_DURATION:-20}
pg_opts=${PGCOST_PG_OPTS:-}

tmp=$(mktemp -d /tmp/pgcost.XXXXXX)
cleanup() {
	pg_stop
	rm -rf "$tmp" # when PostgreSQL never started
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in psql pgbench; do
	[ -x "$pg_bin/$tool" ] || { echo "no $pg_bin/$tool (set PG_BIN)" >&2; exit 1; }
done
port=$(free_port)
pg_start "$tmp" "$port" "$tmp" $pg_opts # split into words, as bench.sh does BENCH_PG_OPTS
psql=("$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q)
"${psql[@]}" -c "CREATE DATABASE pgcost"
for f in "$root"/internal/store/migrations/postgres/*.sql; do
	"${psql[@]}" -d pgcost -f "$f"
done

# cpu_ticks: user + system clock ticks of the postmaster and its children.
cpu_ticks() {
	local t=0 pid s
	for pid in "$pg_pid" $(pgrep -P "$pg_pid"); do
		s=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
		t=$((t + s))
	done
	echo "$t"
}
hz=$(getconf CLK_TCK)

for n in $rows_list; do
	# One batch of n messages between two uids, each with its own cmid.
	arr() { local out="" i; for ((i = 0; i < n; i++)); do out+="${out:+,}$1"; done; echo "$out"; }
	cmids="" && for ((i = 0; i < n; i++)); do cmids+="${cmids:+,}:c||'-$i'"; done
	cat >"$tmp/insert.sql" <<SQL
\set a random(1, 200)
\set b random(201, 400)
\set c random(1, 2000000000)
INSERT INTO messages (from_uid, to_uid, peer_lo, peer_hi, body, kind, cmid, delivered, conv)
SELECT u.from_uid, u.to_uid,
       LEAST(u.from_uid COLLATE "C", u.to_uid COLLATE "C"),
       GREATEST(u.from_uid COLLATE "C", u.to_uid COLLATE "C"),
       u.body, u.kind, u.cmid, false, u.conv
FROM unnest(ARRAY[$(arr "'u'||:a")]::text[], ARRAY[$(arr "'u'||:b")]::text[], ARRAY[$(arr "'hello world'")]::text[],
            ARRAY[$(arr 1)]::smallint[], ARRAY[$cmids]::text[], ARRAY[$(arr "''")]::text[])
     WITH ORDINALITY AS u(from_uid, to_uid, body, kind, cmid, conv, ord)
ORDER BY u.ord
ON CONFLICT (from_uid, cmid) WHERE cmid <> '' DO NOTHING
RETURNING id, from_uid, cmid, created_at;
SQL
	tps=$(awk -v r="$rate" -v n="$n" 'BEGIN { printf "%.1f", r / n }')
	"$pg_bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -M prepared -c 2 -j 1 -R "$tps" -T "$duration" \
		-f "$tmp/insert.sql" pgcost >"$tmp/pgbench.log" 2>&1 &
	bench=$!
	# Measure the middle of the run: the connections are open, the plan is cached.
	sleep 2
	c0=$(cpu_ticks) t0=$(date +%s.%N)
	sleep $((duration - 4))
	c1=$(cpu_ticks) t1=$(date +%s.%N)
	wait "$bench" || { cat "$tmp/pgbench.log" >&2; exit 1; }
	done_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$tmp/pgbench.log" | head -n 1)
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$tmp/pgbench.log" | head -n 1)
	awk -v n="$n" -v rate="$rate" -v tps="$done_tps" -v lat="$lat" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v opts="$pg_opts" 'BEGIN {
		cpu_s = (c1 - c0) / hz; secs = t1 - t0
		per_commit = cpu_s / secs / tps * 1e6
		printf "{\"bench\":\"pgcost\",\"rows_per_commit\":%d,\"messages_per_s\":%d,\"commits_per_s\":%.1f,\"commit_latency_ms\":%s,\"pg_cores\":%.3f,\"pg_cpu_us_per_commit\":%.1f,\"pg_cpu_us_per_message\":%.1f,\"pg_opts\":\"%s\"}\n",
			n, rate, tps, lat, cpu_s / secs, per_commit, per_commit / n, opts
	}'
done
