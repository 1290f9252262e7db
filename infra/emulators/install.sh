#!/usr/bin/env bash
# Installs the AWS emulators the adapter tests start (see shared/awstest):
# moto server (DynamoDB, SQS) from PyPI and versitygw (S3) from the Go module
# proxy, at the versions pinned beside this script. Safe to run again: what
# is installed is kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if ! python3 -c 'import moto.server, flask, flask_cors' 2>/dev/null ||
	[ "$(python3 -c 'import moto; print(moto.__version__)')" != "$(sed -n 's/^moto\[server\]==//p' "$here/requirements.txt")" ]; then
	python3 -m pip install --quiet -r "$here/requirements.txt"
fi

gobin=$(go env GOBIN)
gobin=${gobin:-$(go env GOPATH | cut -d: -f1)/bin}
grep -v '^#' "$here/go-tools.txt" | while read -r tool; do
	[ -n "$tool" ] || continue
	name=$(basename "${tool%@*}")
	version=${tool##*@}
	if [ -x "$gobin/$name" ] && go version -m "$gobin/$name" | grep -q "[[:space:]]mod[[:space:]].*[[:space:]]$version[[:space:]]"; then
		continue
	fi
	echo "installing $tool (a first build downloads its modules: minutes)" >&2
	GOFLAGS=-mod=mod go install "$tool"
done
