#!/usr/bin/env bash
# fuzz.sh [seconds-per-target] [packages...]: the fuzzing campaign. Runs
# every Go fuzz target of the packages (default ./...), one at a time, for
# a fixed time each (default 30 s), and prints a table: package, target,
# seconds fuzzed, executions, new interesting inputs, result.
#
# It exits non-zero when a target fails, and says where the crasher was
# written (the package's testdata/fuzz/<target>/): that file is the
# regression test once the bug is fixed; rerun it with the command shown.
#
# GO picks the go command; FUZZ_WORKERS sets -parallel (default: GOMAXPROCS).
set -euo pipefail

secs="${1:-30}"
case "$secs" in
'' | *[!0-9]* | 0)
	echo "usage: tools/fuzz.sh [seconds-per-target] [packages...]" >&2
	exit 2
	;;
esac
shift || true
[ $# -gt 0 ] || set -- ./...

cd "$(dirname "$0")/.."
root=$(pwd)
GO="${GO:-go}"
parallel=()
[ -z "${FUZZ_WORKERS:-}" ] || parallel=(-parallel "$FUZZ_WORKERS")
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Packages whose test files declare a fuzz target; `go test -list` then
# says which targets the test binary really has.
packages=$($GO list -f '{{.ImportPath}}|{{.Dir}}|{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' "$@" |
	while IFS='|' read -r pkg dir files; do
		for f in $files; do
			if grep -q '^func Fuzz' "$dir/$f"; then
				echo "$pkg|$dir"
				break
			fi
		done
	done)
if [ -z "$packages" ]; then
	echo "no fuzz targets in $*" >&2
	exit 2
fi

row() { printf '%-36s %-22s %7s %12s %5s  %s\n' "$@"; }
row package target seconds execs new result
failed=0
crashers=()
while IFS='|' read -r pkg dir; do
	for target in $($GO test -list '^Fuzz.*' "$pkg" | grep '^Fuzz' || true); do
		log="$logs/$target.log"
		result=ok
		start=$SECONDS
		if ! $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "${secs}s" "${parallel[@]}" "$pkg" >"$log" 2>&1; then
			result=FAIL
			failed=1
		fi
		# The last progress line: "fuzz: elapsed: 10s, execs: 12345 (1234/sec), new interesting: 3 (total: 40)".
		last=$(grep -E '^fuzz: elapsed: [0-9]+s, execs: ' "$log" | tail -n 1 || true)
		elapsed=$(sed -nE 's/^fuzz: elapsed: ([0-9]+)s.*/\1/p' <<<"$last")
		[ -n "$elapsed" ] || elapsed="<$((SECONDS - start))"
		execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
		new=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
		crasher=$(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$log" | tail -n 1)
		if [ "$result" = FAIL ]; then
			if [ -n "$crasher" ]; then
				rel="${dir#"$root"/}/$crasher"
				result="FAIL: crasher $rel"
				crashers+=("$pkg $target: $rel (rerun: $GO test -run '^${target}/$(basename "$crasher")\$' $pkg)")
			else
				result="FAIL (no crasher: see below)"
				crashers+=("$pkg $target: failed without a crasher:\n$(tail -n 20 "$log")")
			fi
		fi
		row "${pkg#github.com/brightrun/brightrun/}" "$target" "${elapsed:--}" "${execs:--}" "${new:--}" "$result"
	done
done <<<"$packages"

if [ "$failed" -ne 0 ]; then
	echo
	echo "fuzzing found failures:"
	for c in "${crashers[@]}"; do
		echo -e "  $c"
	done
	exit 1
fi
