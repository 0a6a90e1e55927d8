#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
# installs what the tests start themselves (redis-server, PostgreSQL 15,
# Chromium) when missing, checks that the generated protobuf code is fresh,
# gofmt, then every test with -race and every go vet analyzer, then a short
# run of each fuzzer. Tests start their own Redis servers on free loopback
# ports and stop them; with CI set, a missing service fails the run instead
# of skipping. Each stage's line says how many seconds the run had taken.
set -euo pipefail
cd "$(dirname "$0")/.."

# stage prints a stage's name and how long the run has taken so far.
stage() { echo "== $* (${SECONDS}s)"; }

# Services and tools the tests start themselves: redis-server, the
# PostgreSQL 15 server binaries, headless Chromium (with a CJK font for the
# screenshots).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x "${PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ] || missing+=(postgresql-15)
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || missing+=(fonts-wqy-microhei)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
	stage "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Without recommends: 214 packages instead of 371 on a bare bookworm,
	# 66 s instead of 112 s, and headless Chromium needs none of the rest.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Packages may start system services; the tests start their own.
	for svc in redis-server postgresql; do
		(service "$svc" stop || true) >/dev/null 2>&1
	done
fi

# tools/protogen generates what go generate does; buf lint is left to go
# generate, since building buf costs a fresh machine 2.5 minutes.
stage "generated code is fresh (go generate ./proto)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
go run -C tools ./protogen -root ../proto -out "$scratch"
stale=0
while IFS= read -r f; do
	rel=${f#"$scratch"/}
	if ! cmp -s "$f" "proto/$rel"; then
		echo "stale: proto/$rel"
		stale=1
	fi
done < <(find "$scratch" -name '*.go')
for f in $(cd proto && find . -name '*.pb.go'); do
	[ -f "$scratch/$f" ] || { echo "no longer generated: proto/$f"; stale=1; }
done
if [ "$stale" = 1 ]; then
	echo "generated code is stale: run 'go generate ./proto' and commit the result"
	exit 1
fi

stage gofmt
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

# go test vets every package it builds, those without tests too; with
# -vet=all it runs what go vet ./... runs, on the race build's type
# information, where a separate go vet would compile every dependency a
# second time (two of a fresh machine's minutes).
stage "go test -race -vet=all"
CI=${CI:-true} go test -race -vet=all -count=1 -timeout 10m ./...

# A short run of each fuzzer (the seed corpora already ran above). Names are
# anchored: -fuzz must match exactly one fuzz test per package. Each run is
# a count of executions, about 10 seconds' worth here, not a duration: Go
# 1.26's coordinator can fail a run whose -fuzztime deadline comes while a
# worker is busy, with "context deadline exceeded" and no failing input
# (go.dev/issue/75804, fixed in Go 1.27; seen here in FuzzGatewayFrames).
# FUZZTIME overrides the counts (a count like 1000000x, or a duration).
stage fuzz
fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-$3}" -fuzzminimizetime 5s -timeout 5m "$2"; }
fuzz FuzzParseRequest ./internal/chat/ 30000x
fuzz FuzzOnMessageReplies ./internal/chat/ 30000x
fuzz FuzzOnMessage ./internal/chat/ 30000x
fuzz FuzzGatewayFrames ./internal/gateway/ 10000x
stage done
