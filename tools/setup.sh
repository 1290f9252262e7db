#!/usr/bin/env bash
# Installs what the tests need, from the package registries only (PyPI, npm,
# the Go module proxy), into ignored folders of this checkout; `make test`
# runs it first, so the README's two commands are the whole set-up:
#
#   .cache/venv   Python: the worker's test pins (gpu-image/requirements-dev.txt,
#                 torch with its CUDA libraries: several GB the first time),
#                 the reference tokenizer (tools/tokref) and moto's server
#                 (infra/emulators/requirements.txt)
#   .cache/sam    aws-sam-cli and cfn-lint (infra/requirements.txt), apart:
#                 their pins would move boto3 and click under moto and the worker
#   .cache/schemathesis   Schemathesis (tools/schemathesis/requirements.txt),
#                 apart too: its hypothesis and jsonschema would move the worker's
#   .cache/bin    sam, cfn-lint and schemathesis (links), and the Go-built
#                 emulators of infra/emulators/go-tools.txt (versitygw)
#   tools/tokref/node_modules   `npm ci` of tools/tokref/package-lock.json
#   tools/iamsim/node_modules   `npm ci` of tools/iamsim/package-lock.json (the
#                 IAM simulator that cross-checks infra/iamproof)
#   tools/console/node_modules  `npm ci` of tools/console/package-lock.json
#                 (uPlot, checked against console/vendor, and axe-core)
#   chromium      Debian's browser for the console's browser test, installed
#                 with apt-get when it is missing (a browser download by
#                 Playwright or Puppeteer cannot work here); elsewhere,
#                 install Chromium or set BRIGHTRUN_CHROME to a Chrome binary
#
# Each part records a hash of its pins (and of the interpreter or Node
# version) beside what it installed, and is redone only when that changes
# or the install is gone: with nothing to do this takes a few milliseconds.
# A changed pin is installed over the environment; `rm -rf .cache` starts
# afresh. Concurrent runs wait for one another (flock on .cache/setup.lock).
#
#   tools/setup.sh [python|sam|schemathesis|node|emulators|browser]...
#                 (default: all six; emulators = python + Go tools)
# Environment: PYTHON, the interpreter the environments are made from
# (default python3, found on PATH without this script's own folders).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=$root/.cache

# The pins of the project environment, in install order.
py_requirements=(gpu-image/requirements-dev.txt tools/tokref/requirements.txt infra/emulators/requirements.txt)
sam_requirements=infra/requirements.txt
schemathesis_requirements=tools/schemathesis/requirements.txt
go_tools=infra/emulators/go-tools.txt
tokref=tools/tokref
# The npm folders, each installed by `npm ci` of its package-lock.json.
node_dirs=("$tokref" tools/iamsim tools/console)

# Our own folders never provide the base interpreter.
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF -e "$cache/venv/bin" -e "$cache/bin" -e "$cache/sam/bin" -e "$cache/schemathesis/bin" | paste -sd: -)
python=${PYTHON:-python3}

say() { echo "setup: $*" >&2; }

# sha FILE...: sha256sum, or shasum where that is missing (macOS).
sha() {
	if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi
}

# key LINE FILE...: a hash of LINE and the files' contents.
key() {
	local line=$1
	shift
	{ printf '%s\n' "$line"; sha "$@"; } | sha | cut -d' ' -f1
}

# fresh STAMP KEY: whether STAMP records KEY.
fresh() { [ -f "$1" ] && [ "$(<"$1")" = "$2" ]; }

# The base interpreter's version, asked once (a pyenv shim takes 0.1 s).
version=
python_version() {
	[ -n "$version" ] || version=$("$python" -c 'import sys; print(sys.version.split()[0])') ||
		{ say "no Python interpreter ($python): install Python 3.11 or set PYTHON"; exit 1; }
}

# venv DIR REQUIREMENTS...: a virtual environment at DIR with the pins.
venv() {
	local dir=$1 stamp=$1/.brightrun-setup k
	shift
	python_version
	k=$(key "python $version" "$@")
	fresh "$stamp" "$k" && return
	if [ "$("$dir/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)" != "$version" ]; then
		say "creating ${dir#"$root"/} with $python $version"
		rm -rf "$dir"
		"$python" -m venv "$dir"
	fi
	say "installing $* into ${dir#"$root"/} (the first time: minutes)"
	local args=()
	for r in "$@"; do args+=(-r "$r"); done
	"$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
	printf '%s\n' "$k" >"$stamp"
}

python_done=
setup_python() {
	[ -n "$python_done" ] || venv "$cache/venv" "${py_requirements[@]}"
	python_done=1
}

# link ENV CMD...: .cache/bin/CMD -> ../ENV/bin/CMD.
link() {
	local env=$1 cmd
	shift
	mkdir -p "$cache/bin"
	for cmd in "$@"; do
		[ "$(readlink "$cache/bin/$cmd" 2>/dev/null)" = "../$env/bin/$cmd" ] || ln -sfn "../$env/bin/$cmd" "$cache/bin/$cmd"
	done
}

setup_sam() {
	venv "$cache/sam" "$sam_requirements"
	link sam sam cfn-lint
}

setup_schemathesis() {
	venv "$cache/schemathesis" "$schemathesis_requirements"
	link schemathesis schemathesis
}

setup_node() {
	local dir stamp node k
	command -v node >/dev/null && command -v npm >/dev/null || { say "node and npm are needed (Node 20)"; exit 1; }
	node=$(node --version)
	for dir in "${node_dirs[@]}"; do
		stamp=$dir/node_modules/.brightrun-setup
		k=$(key "node ${node%%.*}" "$dir/package-lock.json")
		fresh "$stamp" "$k" && continue
		say "npm ci --prefix $dir"
		npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
		printf '%s\n' "$k" >"$stamp"
	done
}

# The Go-built emulators, by `go install` into .cache/bin.
setup_go_tools() {
	local stamp=$cache/bin/.brightrun-go-tools k tools=() tool
	while read -r tool; do
		case $tool in '' | '#'*) continue ;; esac
		tools+=("$tool")
	done <"$go_tools"
	k=$(key "" "$go_tools")
	if fresh "$stamp" "$k"; then
		local ok=1
		for tool in "${tools[@]}"; do
			tool=${tool%@*}
			[ -x "$cache/bin/${tool##*/}" ] || ok=
		done
		[ -n "$ok" ] && return
	fi
	mkdir -p "$cache/bin"
	for tool in "${tools[@]}"; do
		say "go install $tool (a first build downloads its modules: minutes)"
		GOBIN=$cache/bin GOFLAGS=-mod=mod go install "$tool"
	done
	printf '%s\n' "$k" >"$stamp"
}

# The browser the console's test drives: Chromium, from the system's
# packages when it is missing (Debian: apt-get, as root or with sudo).
setup_browser() {
	[ -n "${BRIGHTRUN_CHROME:-}" ] && return
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null && return
	if command -v apt-get >/dev/null; then
		local sudo=
		[ "$(id -u)" = 0 ] || sudo=sudo
		say "apt-get install chromium (the console's browser test)"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
	else
		say "no Chromium: install it (the console's browser test drives it) or set BRIGHTRUN_CHROME"
	fi
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(python sam schemathesis node emulators browser)

mkdir -p "$cache"
if command -v flock >/dev/null; then
	exec 9>"$cache/setup.lock"
	flock 9
fi

for part in "${parts[@]}"; do
	case $part in
	python) setup_python ;;
	sam) setup_sam ;;
	schemathesis) setup_schemathesis ;;
	node) setup_node ;;
	emulators) setup_python && setup_go_tools ;;
	browser) setup_browser ;;
	*)
		say "unknown part $part (want python, sam, schemathesis, node, emulators or browser)"
		exit 2
		;;
	esac
done
