# The build-<LogicalId> targets that `sam build` runs for template.yaml's
# functions (Metadata: BuildMethod: makefile, CodeUri: .). Each builds one
# static linux/arm64 bootstrap from the repository root's go.mod into
# $(ARTIFACTS_DIR), which sam build sets. The repository Makefile includes
# this file; infra/template_test.go checks there is one target per function.

GO ?= go

# The Makefile includes this file before its own first target: keep that
# target (run) the default goal.
sam_default_goal := $(.DEFAULT_GOAL)
SAM_GO_BUILD = GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' -o $(ARTIFACTS_DIR)/bootstrap

.PHONY: sam-artifacts-dir build-UploadsFunction build-ValidateFunction build-EstimateFunction \
	build-JobsFunction build-DispatchFunction build-WebhookFunction build-ReconcileFunction \
	build-ImportsFunction build-DeliverFunction

sam-artifacts-dir:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: sam build runs these targets" >&2; exit 1; }

build-UploadsFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/uploads

build-ValidateFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/validate

build-ImportsFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/imports

build-EstimateFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/estimate

build-JobsFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/jobs

build-DispatchFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/dispatch

build-WebhookFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/webhook

build-ReconcileFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/reconcile

build-DeliverFunction: sam-artifacts-dir
	$(SAM_GO_BUILD) ./functions/deliver

.DEFAULT_GOAL := $(sam_default_goal)
