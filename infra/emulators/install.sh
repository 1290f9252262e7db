#!/usr/bin/env bash
# Installs the AWS emulators the adapter tests start (see shared/awstest), at
# the versions pinned beside this script: moto server (DynamoDB, SQS) from
# PyPI into the project's Python environment (.cache/venv), and versitygw (S3)
# from the Go module proxy into .cache/bin. `make test` does this itself (and
# puts both folders first on PATH); this is for running `go test` by hand:
#   bash infra/emulators/install.sh
#   PATH=$PWD/.cache/venv/bin:$PWD/.cache/bin:$PATH go test ./shared/...
# Safe to run again: nothing is redone unless a pin changed.
set -euo pipefail
exec "$(dirname "$0")/../../tools/setup.sh" emulators
