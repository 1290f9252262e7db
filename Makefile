# Bright Run LoRA pipeline. `make run` runs the whole pipeline on this
# machine; `make test` runs every test. See README.md.

GO        ?= go
FUNCTIONS := $(notdir $(wildcard functions/*))
BIN       := bin
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -ldflags='-s -w'

# The build-<LogicalId> targets `sam build` calls (BuildMethod: makefile).
-include infra/sam.mk

# What the tests run besides Go, installed under .cache/ by tools/setup.sh:
# the project's Python environment, then the emulators and template tools,
# come first on PATH, so the python3, moto, versitygw, sam and cfn-lint that
# the tests (and the local worker) start are these.
VENV        := $(CURDIR)/.cache/venv
export PATH := $(VENV)/bin:$(CURDIR)/.cache/bin:$(PATH)

.PHONY: run test test-go test-python test-console setup setup-python setup-node lint build build-cli bench bench-load fuzz clean

## run: the local stack (API on 127.0.0.1:8080, state in .local/);
## BRIGHTRUN_GPU=local-worker trains with the real worker in .cache/venv
run: $(if $(filter local-worker,$(BRIGHTRUN_GPU)),setup-python)
	$(GO) run ./cmd/localstack

## test: set-up, lint, then every Go and Python test
test: setup lint test-go test-python

test-go: setup
	$(GO) test -count=1 ./...

test-python: setup-python
	$(VENV)/bin/python -m pytest -q gpu-image/tests

## setup: what the tests need, from the package registries, into .cache/ and
## tools/*/node_modules, and Debian's chromium when no Chromium is installed;
## redone only when a pin changes (tools/setup.sh)
setup:
	@tools/setup.sh

setup-python:
	@tools/setup.sh python

setup-node:
	@tools/setup.sh node

## test-console: the web console's tests alone, the browser journey included
## (screenshots in console/screenshots/)
test-console:
	@tools/setup.sh node browser
	$(GO) test -count=1 -v ./console

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## build: every function as a static linux/arm64 bootstrap, and the CLI
build: build-cli
	@for fn in $(FUNCTIONS); do \
		GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(BIN)/lambda/$$fn/bootstrap ./functions/$$fn || exit 1; \
		printf '%-12s %s bytes\n' $$fn $$(stat -c %s $(BIN)/lambda/$$fn/bootstrap); \
	done

build-cli:
	@if [ -d cmd/brightrun ]; then $(GO) build -o $(BIN)/brightrun ./cmd/brightrun; fi
	$(GO) build -o $(BIN)/localstack ./cmd/localstack

## bench: Go benchmarks (validator, tokenizer, estimator), then validation
## with exact token counts on a generated 500 MB file (MB/s on one core and
## on two, in parts, peak RSS) against the JavaScript reference tokenizer
bench: setup-node
	$(GO) test -run '^$$' -bench . -benchmem ./shared/...
	$(GO) run ./tools/benchvalidate -mb $(or $(BENCH_MB),500) -parallel 1,2 -runs 3

## bench-load: the read API at 1000 req/s, job creation at 100 req/s, worker
## callbacks at 2000/s against a local stack (vegeta), with counts afterwards
bench-load:
	$(GO) run ./tools/benchload

## fuzz: every go test -fuzz target in turn, FUZZTIME seconds each (not in make test)
fuzz:
	tools/fuzz.sh $(or $(FUZZTIME),30)

clean:
	rm -rf $(BIN)
