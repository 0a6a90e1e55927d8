#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
# installs the services the tests start themselves (redis-server), checks
# that the generated protobuf code is fresh, gofmt, go vet, then every test
# with -race. Tests start their own Redis servers on free loopback ports and
# stop them; with CI set, a missing service fails the run instead of
# skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
	echo "== installing redis-server"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq redis-server >/dev/null
	# The package starts a system Redis; the tests start their own.
	(service redis-server stop || systemctl stop redis-server || true) >/dev/null 2>&1
fi

echo "== generated code is fresh (go generate ./proto)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd proto && go tool -modfile=../tools/go.mod buf lint && go tool -modfile=../tools/go.mod buf generate -o "$scratch")
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

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
CI=${CI:-true} go test -race -count=1 -timeout 10m ./...
