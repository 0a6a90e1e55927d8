#!/usr/bin/env bash
# The benchmark suite: builds register, gateway, worker and chatbench,
# starts its own multi-process cluster on loopback (Redis, a throwaway
# PostgreSQL 15, 1 register, G gateways, BENCH_WORKERS workers), runs chatbench against
# it and appends one JSON line per run to bench/results.jsonl (each with the
# time, the git commit and the suite's settings as tags). bench/README.md
# explains the fields.
#
# Usage: scripts/bench.sh            the full suite (about 9 minutes)
#        SMOKE=1 scripts/bench.sh    tiny sizes, well under a minute; results go
#                                    to $BENCH_DIR/results-smoke.jsonl
#        scripts/bench.sh run CMD... CMD against a cluster of $BENCH_GATEWAYS (2)
#                                    gateways: $BENCH_WS, $BENCH_PUSH_HTTP, $BENCH_PIDS,
#                                    $BENCH_METRICS and $BENCH_BIN (chatbench) say where it is
#
# Runs, in order: host (BENCH_HOST_DURATION, before any cluster starts: how
# often this machine takes the CPUs away; see bench/README.md), then on a
# cluster of 2 gateways:
#   idle       BENCH_IDLE bound connections on gateway 1: its RSS per connection
#   chat       closed loop, BENCH_CLOSED_PAIRS pairs across the 2 gateways: max say/s
#   chat       open loop at BENCH_RATE say/s, BENCH_OPEN_PAIRS pairs across 2 gateways
#   fanout     SendToGroup and SendToAll to BENCH_FANOUT members across 2 gateways
#   floor      the same fan-out's floor on this machine: one frame written
#              to each of BENCH_FANOUT loopback TCP sockets by raw write(2)
#              from 2 threads, read by a second process with epoll; no
#              gatewire code runs (the cluster is up and idle)
#   relay      no gatewire code either (the cluster is up and idle): messages
#              at BENCH_RATE through a chain of 4 bare Go processes over
#              loopback TCP (relay-4hops), and at BENCH_SCALE_RATE through
#              one such process or dealt among 4 (relay-scale-1, -4): what
#              crossing a process costs a message here, and how that moves
#              when the same traffic is spread over more processes
#   gc         BENCH_GC_IDLE idle bound connections held on gateway 1 while an
#              open loop at BENCH_GC_RATE say/s (BENCH_GC_PAIRS pairs) runs
#              across the 2 gateways for BENCH_GC_DURATION: the servers' GC
#              pauses under load
# then, each on a fresh cluster of 1, 2 and 4 gateways (BENCH_SCALE_GATEWAYS),
# and again in reverse order (BENCH_SCALE_PASSES, 2; 1 with SMOKE=1):
#   chat       open loop at BENCH_SCALE_RATE say/s: CPU per say; the suite's
#              summary gives each count's mean and its ratio to 1 gateway
# then, on a fresh cluster of 2 gateways and one worker:
#   chat       open loop at BENCH_RATE say/s (chat-open-1worker)
# then, on a fresh cluster of 2 gateways whose workers run -save-linger 0:
#   chat       open loop at BENCH_RATE say/s (chat-open-nolinger): the
#              latency end of the CPU/latency trade
# and host once more (host-end), with every cluster stopped. It ends by
# printing the suite's lines as a Markdown table, each run beside the target
# it answers to (chatbench summary; bench/README.md).
#
# Settings (environment): BENCH_DIR (state: binaries, logs, PostgreSQL data;
# default /tmp/gatewire-bench), BENCH_RESULTS (the results file), BENCH_BIND
# (token: workers get a -jwt-secret that chatbench signs bind tokens with,
# the default; insecure: workers with -insecure-bind), BENCH_DURATION,
# BENCH_WARMUP, BENCH_DRAIN (how long open-loop runs wait for late texts),
# PG_BIN (default /usr/lib/postgresql/15/bin), BENCH_PG_OPTS
# (extra server options, e.g. "-c synchronous_commit=off"; recorded in the
# tags), BENCH_GOMAXPROCS (GOMAXPROCS of each gatewire server process,
# default 1; "default" leaves Go's, one per core; recorded in the tags),
# BENCH_GODEBUG (GODEBUG of each gatewire server process, default
# schedtrace=2147483647 as deploy/README.md advises; "none" leaves it unset;
# recorded in the tags), BENCH_WORKERS (worker processes in every cluster,
# default 2; recorded in the tags) and the sizes named above. The gateways run with
# their per-client message rate and per-IP connection limits off
# (-message-rate -1 -max-conns-per-ip -1): the benchmark's clients are few
# IPs sending fast on purpose.
#
# Everything started is stopped by its PID when the script ends, also on
# failure or Ctrl-C; the PostgreSQL data directory is removed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
dir=${BENCH_DIR:-/tmp/gatewire-bench}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
workers=${BENCH_WORKERS:-2}
smoke=${SMOKE:-0}

if [ "$smoke" = 1 ]; then
	idle_n=${BENCH_IDLE:-20}
	closed_pairs=${BENCH_CLOSED_PAIRS:-2}
	open_pairs=${BENCH_OPEN_PAIRS:-2}
	rate=${BENCH_RATE:-50}
	fanout_n=${BENCH_FANOUT:-10}
	fanout_rounds=${BENCH_FANOUT_ROUNDS:-5}
	host_duration=${BENCH_HOST_DURATION:-1s}
	gc_idle=${BENCH_GC_IDLE:-20}
	gc_rate=${BENCH_GC_RATE:-50}
	gc_pairs=${BENCH_GC_PAIRS:-2}
	gc_duration=${BENCH_GC_DURATION:-2s}
	scale_rate=${BENCH_SCALE_RATE:-50}
	scale_pairs=${BENCH_SCALE_PAIRS:-4}
	scale_gateways=${BENCH_SCALE_GATEWAYS:-1 2 4}
	scale_passes=${BENCH_SCALE_PASSES:-1}
	duration=${BENCH_DURATION:-2s}
	warmup=${BENCH_WARMUP:-0.5s}
	settle=1s
	drain=${BENCH_DRAIN:-5s}
	results=${BENCH_RESULTS:-$dir/results-smoke.jsonl}
	suite=smoke
else
	idle_n=${BENCH_IDLE:-19000}
	closed_pairs=${BENCH_CLOSED_PAIRS:-100}
	open_pairs=${BENCH_OPEN_PAIRS:-200}
	rate=${BENCH_RATE:-2200}
	fanout_n=${BENCH_FANOUT:-10000}
	fanout_rounds=${BENCH_FANOUT_ROUNDS:-30}
	host_duration=${BENCH_HOST_DURATION:-10s}
	gc_idle=${BENCH_GC_IDLE:-19000}
	gc_rate=${BENCH_GC_RATE:-800}
	gc_pairs=${BENCH_GC_PAIRS:-200}
	# A gateway holding 19,000 connections has a large heap and collects
	# rarely under 1:1 load: a 20 s window may see no GC at all.
	gc_duration=${BENCH_GC_DURATION:-60s}
	scale_rate=${BENCH_SCALE_RATE:-800}
	scale_pairs=${BENCH_SCALE_PAIRS:-200}
	scale_gateways=${BENCH_SCALE_GATEWAYS:-1 2 4}
	scale_passes=${BENCH_SCALE_PASSES:-2}
	duration=${BENCH_DURATION:-20s}
	warmup=${BENCH_WARMUP:-3s}
	settle=3s
	drain=${BENCH_DRAIN:-30s}
	results=${BENCH_RESULTS:-$root/bench/results.jsonl}
	suite=full
fi
bind_mode=${BENCH_BIND:-token}

mkdir -p "$dir/bin" "$dir/logs"
chmod 755 "$dir" # PostgreSQL runs as "postgres" when we are root
if [ -e "$dir/bench.pid" ] && kill -0 "$(cat "$dir/bench.pid")" 2>/dev/null; then
	echo "another bench.sh (pid $(cat "$dir/bench.pid")) uses $dir" >&2
	exit 1
fi
echo $$ >"$dir/bench.pid"
rm -f "$dir"/logs/*.log # the previous run's

# ---- processes: every PID we start is recorded, and stopped by PID.
names=() # parallel arrays, in start order
pids=()

# Logs of the gatewire processes are per cluster: logs/c<N>-<name>.log.
generation=0
log_of() { # name
	case $1 in
	redis) echo "$dir/logs/redis.log" ;;
	*) echo "$dir/logs/c$generation-$1.log" ;;
	esac
}

# server_env: the environment of gatewire server processes. Seven Go
# servers share the host's cores with Redis, PostgreSQL and chatbench;
# with Go's default of one P per core each, every process spins, steals and
# stops the world across all cores, which cost the 2-core machine ~2x the
# CPU per say and stretched GC pauses to several ms (bench/HISTORY.md).
# One P each is what a container with a 1-CPU limit gets from Go anyway.
server_env=()
gomaxprocs=${BENCH_GOMAXPROCS:-1}
[ "$gomaxprocs" = default ] || server_env=("GOMAXPROCS=$gomaxprocs")
# Go's sysmon thread stays out of its deep sleep, so a system call after a
# quiet moment does not have to wake it (deploy/README.md, Sizing).
godebug=${BENCH_GODEBUG:-schedtrace=2147483647}
[ "$godebug" = none ] || server_env+=("GODEBUG=$godebug")

start() { # name command...
	local name=$1; shift
	"$@" >"$(log_of "$name")" 2>&1 &
	names+=("$name")
	pids+=("$!")
}

# start_server name command...: start, in server_env (env execs the
# command, so the PID is the server's).
start_server() { local name=$1; shift; start "$name" env ${server_env[@]+"${server_env[@]}"} "$@"; }

pid_of() { # name
	local i
	for i in "${!names[@]}"; do
		[ "${names[$i]}" = "$1" ] && { echo "${pids[$i]}"; return 0; }
	done
	return 1
}

# stop_proc NAME PID [SIGNAL]: signal, wait up to 30 s, then SIGKILL.
stop_proc() {
	local name=$1 pid=$2 sig=${3:-TERM}
	alive "$pid" || return 0
	kill "-$sig" "$pid" 2>/dev/null || true
	for _ in $(seq 1 300); do alive "$pid" || return 0; sleep 0.1; done
	echo "  $name (pid $pid) ignored SIG$sig; killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

# stop_matching PATTERN: stops, newest first, the processes whose name
# matches PATTERN (a bash glob), and forgets them.
stop_matching() {
	local i keep_n=() keep_p=()
	for ((i = ${#names[@]} - 1; i >= 0; i--)); do
		# shellcheck disable=SC2053
		if [[ ${names[$i]} == $1 ]]; then
			stop_proc "${names[$i]}" "${pids[$i]}"
		fi
	done
	for i in "${!names[@]}"; do
		# shellcheck disable=SC2053
		if [[ ${names[$i]} != $1 ]]; then
			keep_n+=("${names[$i]}"); keep_p+=("${pids[$i]}")
		fi
	done
	names=(${keep_n[@]+"${keep_n[@]}"})
	pids=(${keep_p[@]+"${keep_p[@]}"})
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	echo "== stopping what bench.sh started"
	stop_matching 'gc-idle'
	stop_matching 'worker*'
	stop_matching 'gateway*'
	stop_matching 'register*'
	pg_stop
	stop_matching 'redis'
	rm -f "$dir/bench.pid"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port name
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		local pid
		pid=$(pid_of "$2" || true)
		if [ -n "$pid" ] && ! alive "$pid"; then break; fi
		sleep 0.1
	done
	echo "$2 does not listen on 127.0.0.1:$1; its log:" >&2
	tail -n 30 "$(log_of "$2")" >&2 || true
	return 1
}

# ---- build
echo "== building into $dir/bin"
(cd "$root" && go build -o "$dir/bin/" ./cmd/register ./cmd/gateway ./cmd/worker ./cmd/chatbench)
commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit+="-dirty"
fi

# Secrets by the environment, never on a command line.
rand_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export GATEWIRE_SECRET=$(rand_hex 24)
export GATEWIRE_PUSH_TOKEN=$(rand_hex 24)
export CHATBENCH_PUSH_TOKEN=$GATEWIRE_PUSH_TOKEN
bind_flags=(-insecure-bind)
if [ "$bind_mode" = token ]; then
	export GATEWIRE_JWT_SECRET=$(rand_hex 32)
	export CHATBENCH_JWT_SECRET=$GATEWIRE_JWT_SECRET
	bind_flags=()
fi

# Gateway flags that switch off the per-client limits, where the gateway
# has them.
gw_help=$("$dir/bin/gateway" -h 2>&1 || true)
gw_flags=()
for f in "-message-rate -1" "-max-conns-per-ip -1" "-max-conns -1"; do
	case $gw_help in *"${f%% *}"*) gw_flags+=($f) ;; esac
done

# metrics_flag BIN: a -metrics-addr on a free port when BIN has the flag
# (each role has a fixed default port, which several processes of one kind
# would share).
metrics_flag() {
	case $("$1" -h 2>&1 || true) in
	*-metrics-addr*) echo "-metrics-addr=127.0.0.1:$(free_port)" ;;
	esac
}

# metrics_urls: name=http://addr of every gatewire process serving
# metrics, for chatbench -metrics (GC pauses).
metrics_urls=()
note_metrics() { # name flag
	[ -z "$2" ] || metrics_urls+=("$1=http://${2#-metrics-addr=}")
}

# ---- Redis and PostgreSQL, for the whole suite.
echo "== starting Redis and PostgreSQL"
redis_port=$(free_port)
start redis redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$dir"
wait_port "$redis_port" redis
export GATEWIRE_REDIS=127.0.0.1:$redis_port

pg_port=$(free_port)
pg_start "$(mktemp -d "$dir/pg.XXXXXX")" "$pg_port" "$dir/logs" -c max_connections=200 ${BENCH_PG_OPTS:-}
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres gatewire
export GATEWIRE_STORE="postgres://postgres@127.0.0.1:$pg_port/gatewire?sslmode=disable"

# ---- the gatewire cluster: 1 register, G gateways, $workers workers.
ws_urls=()
push_urls=()
cluster_workers=$workers # the worker count of the cluster up (or last up), for the tags
cluster_up() { # G [W]: G gateways and W workers (default $workers)
	cluster_workers=${2:-$workers}
	local g=$1 i
	generation=$((generation + 1))
	ws_urls=() push_urls=() metrics_urls=()
	local reg_port mflag
	reg_port=$(free_port)
	mflag=$(metrics_flag "$dir/bin/register")
	note_metrics register "$mflag"
	start_server register "$dir/bin/register" -addr "127.0.0.1:$reg_port" $mflag
	wait_port "$reg_port" register
	export GATEWIRE_REGISTER=127.0.0.1:$reg_port
	local ws_ports=()
	for ((i = 1; i <= g; i++)); do
		local ws link
		ws=$(free_port) link=$(free_port) mflag=$(metrics_flag "$dir/bin/gateway")
		note_metrics "gateway$i" "$mflag"
		start_server "gateway$i" "$dir/bin/gateway" -ws-addr "127.0.0.1:$ws" -link-addr "127.0.0.1:$link" \
			$mflag ${gw_flags[@]+"${gw_flags[@]}"}
		ws_ports+=("$ws")
		ws_urls+=("ws://127.0.0.1:$ws/")
	done
	for ((i = 1; i <= cluster_workers; i++)); do
		local push http
		push=$(free_port) http=$(free_port) mflag=$(metrics_flag "$dir/bin/worker")
		note_metrics "worker$i" "$mflag"
		start_server "worker$i" "$dir/bin/worker" -push-addr "127.0.0.1:$push" -push-http-addr "127.0.0.1:$http" \
			-http-addr "" $mflag ${bind_flags[@]+"${bind_flags[@]}"}
		wait_port "$http" "worker$i"
		push_urls+=("http://127.0.0.1:$http")
	done
	for ((i = 1; i <= g; i++)); do
		wait_port "${ws_ports[$((i - 1))]}" "gateway$i"
		# Each gateway must have every worker linked.
		local n=0
		for _ in $(seq 1 200); do
			n=$(grep -c 'msg="worker linked"' "$(log_of "gateway$i")" || true)
			[ "$n" -ge "$cluster_workers" ] && break
			sleep 0.1
		done
		[ "$n" -ge "$cluster_workers" ] || { echo "gateway$i: workers did not link; see $dir/logs" >&2; exit 1; }
	done
	echo "  cluster $generation: $g gateway(s) up: ${ws_urls[*]} (logs $dir/logs/c$generation-*.log)"
}

cluster_down() {
	stop_matching 'worker*'
	stop_matching 'gateway*'
	stop_matching 'register*'
}

# server_pids: the -pids value naming every server process (not the gc
# run's idle chatbench).
server_pids() {
	local out="" i
	for i in "${!names[@]}"; do
		[ "${names[$i]}" = gc-idle ] || out+="${names[$i]}=${pids[$i]},"
	done
	echo "${out}postgres=$pg_pid"
}

join() { local IFS=,; echo "$*"; }

# server_metrics: the -metrics value naming every gatewire process.
server_metrics() { join ${metrics_urls[@]+"${metrics_urls[@]}"}; }

mkdir -p "$(dirname "$results")"
# bench RUN-NAME chatbench-args...: runs chatbench, prints its line and
# appends it to the results and to this suite's own lines.
bench() {
	local run=$1; shift
	echo "== $run: chatbench $*"
	rm -f "$dir/logs/chatbench-$run.log"
	local line
	line=$("$dir/bin/chatbench" "$@" -tag "run=$run" -tag "suite=$suite" -tag "commit=$commit" \
		-tag "host_cpus=$(nproc)" -tag "bind_mode=$bind_mode" -tag "server_gomaxprocs=$gomaxprocs" -tag "server_godebug=$godebug" -tag "workers=$cluster_workers" ${BENCH_PG_OPTS:+-tag "pg_opts=$BENCH_PG_OPTS"} 2>"$dir/logs/chatbench-$run.log") || {
		echo "chatbench failed; its log:" >&2
		tail -n 30 "$dir/logs/chatbench-$run.log" >&2
		return 1
	}
	echo "$line"
	echo "$line" >>"$results"
	echo "$line" >>"$suite_lines"
}

if [ "${1:-}" = run ]; then
	# scripts/bench.sh run CMD...: CMD runs against a cluster of
	# BENCH_GATEWAYS (default 2) gateways, with its addresses in BENCH_WS,
	# BENCH_PUSH_HTTP and BENCH_PIDS (and chatbench in BENCH_BIN); the
	# cluster stops when CMD ends.
	shift
	[ $# -gt 0 ] || { echo "usage: $0 run COMMAND [ARGS...]" >&2; exit 2; }
	cluster_up "${BENCH_GATEWAYS:-2}"
	BENCH_WS=$(join "${ws_urls[@]}") BENCH_PUSH_HTTP=$(join "${push_urls[@]}") BENCH_PIDS=$(server_pids) \
		BENCH_METRICS=$(server_metrics) BENCH_BIN=$dir/bin/chatbench "$@"
	exit
fi

echo "== suite ($suite), results to $results"
suite_lines=$dir/suite-$suite.jsonl
: >"$suite_lines"
bench host host -duration "$host_duration"
cluster_up 2
bench idle idle -ws "${ws_urls[0]}" -n "$idle_n" -settle "$settle" -pids "gateway1=$(pid_of gateway1)" \
	-metrics "$(server_metrics)"
# The idle connections are gone; give the gateway a moment to drop them.
sleep 2
bench chat-closed chat -mode closed -ws "$(join "${ws_urls[@]}")" -pairs "$closed_pairs" \
	-duration "$duration" -warmup "$warmup" -pids "$(server_pids)" -metrics "$(server_metrics)"
bench chat-open chat -mode open -rate "$rate" -ws "$(join "${ws_urls[@]}")" -pairs "$open_pairs" \
	-duration "$duration" -warmup "$warmup" -drain "$drain" -pids "$(server_pids)" -metrics "$(server_metrics)"
for op in group all; do
	bench "fanout-$op" fanout -op "$op" -ws "$(join "${ws_urls[@]}")" -push-http "$(join "${push_urls[@]}")" \
		-members "$fanout_n" -rounds "$fanout_rounds" -pids "$(server_pids)" -metrics "$(server_metrics)"
done
bench floor floor -members "$fanout_n" -rounds "$fanout_rounds"
relay_opts=(-duration "$duration" -warmup "$warmup" -relay-gomaxprocs "$gomaxprocs" -relay-godebug "$godebug")
bench relay-4hops relay -hops 4 -rate "$rate" "${relay_opts[@]}"
for c in 1 4; do
	bench "relay-scale-$c" relay -hops 1 -chains "$c" -rate "$scale_rate" "${relay_opts[@]}"
done
# gc: idle connections held on gateway 1 (by a chatbench idle that holds
# them until it is stopped) while the open loop runs; the line is the chat
# run's, with every server's gc_pauses.
start gc-idle "$dir/bin/chatbench" idle -ws "${ws_urls[0]}" -n "$gc_idle" -settle 0s -hold 24h
for _ in $(seq 1 3000); do
	grep -q 'connections bound in' "$(log_of gc-idle)" && break
	alive "$(pid_of gc-idle)" || { echo "gc-idle chatbench failed; its log:" >&2; tail -n 30 "$(log_of gc-idle)" >&2; exit 1; }
	sleep 0.1
done
grep -q 'connections bound in' "$(log_of gc-idle)" || { echo "gc-idle: connections not bound in 5 minutes" >&2; exit 1; }
bench gc chat -mode open -rate "$gc_rate" -ws "$(join "${ws_urls[@]}")" -pairs "$gc_pairs" \
	-duration "$gc_duration" -warmup "$warmup" -drain "$drain" -pids "$(server_pids)" -metrics "$(server_metrics)" \
	-tag "idle_conns=$gc_idle"
stop_matching 'gc-idle'
# Scaling: a fresh cluster per gateway count, in BENCH_SCALE_GATEWAYS
# order and then, in a second pass, in reverse (1 2 4 4 2 1), so that what
# drifts over the suite (the table growing, the host's load) weighs on
# every count alike. The summary at the end gives each count's mean CPU
# per say over the passes and its ratio to the first count's: the whole
# cluster's, and gatewire's own processes' alone.
counts=($scale_gateways)
order=("${counts[@]}")
for ((pass = 1; pass <= scale_passes; pass++)); do
	for g in "${order[@]}"; do
		cluster_down
		cluster_up "$g"
		bench "scale-$g" chat -mode open -rate "$scale_rate" -ws "$(join "${ws_urls[@]}")" -pairs "$scale_pairs" \
			-duration "$duration" -warmup "$warmup" -drain "$drain" -pids "$(server_pids)" -metrics "$(server_metrics)" \
			-tag "gateways=$g" -tag "scale_pass=$pass"
	done
	order=($(printf '%s\n' "${order[@]}" | tac))
done
# chat-open-1worker: the open loop once more, on a fresh cluster of 2
# gateways and one worker, which on a small machine costs less than two
# (README, Performance).
cluster_down
cluster_up 2 1
bench chat-open-1worker chat -mode open -rate "$rate" -ws "$(join "${ws_urls[@]}")" -pairs "$open_pairs" \
	-duration "$duration" -warmup "$warmup" -drain "$drain" -pids "$(server_pids)" -metrics "$(server_metrics)"
cluster_down
# chat-open-nolinger: the open loop once more, on a fresh cluster whose
# workers do not linger (-save-linger 0): the latency end of the trade the
# default makes (README, Performance).
server_env+=("GATEWIRE_SAVE_LINGER=0")
cluster_up 2
bench chat-open-nolinger chat -mode open -rate "$rate" -ws "$(join "${ws_urls[@]}")" -pairs "$open_pairs" \
	-duration "$duration" -warmup "$warmup" -drain "$drain" -pids "$(server_pids)" -metrics "$(server_metrics)" \
	-tag "save_linger=0"
cluster_down
bench host-end host -duration "$host_duration"
echo "== done; results appended to $results. The suite against the targets (chatbench summary $suite_lines):"
"$dir/bin/chatbench" summary "$suite_lines"
