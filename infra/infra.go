// Package infra is the deployment: template.yaml (AWS SAM) at the
// repository root, the build-<LogicalId> targets in sam.mk, and the RunPod
// provisioning command in provision/.
//
// Its tests hold the template to the code it deploys: a resource per
// function folder, an HttpApi event per route of httpapi.(*Server).Routes,
// exactly the environment variables each function's main.go and awsapp.Load
// read, exactly the IAM actions each function's code calls, the table of
// shared/dynamo, no circular dependency (SAM's implicit ones included). They
// also run cfn-lint, `sam validate --lint` and `sam build` when those are
// installed (make setup puts them in .cache/sam, linked from .cache/bin); with
// BRIGHTRUN_REQUIRE_TOOLS=1 a missing tool is a failure, not a skip.
//
// BenchmarkColdStart measures each function's start-up against a local
// Lambda Runtime API:
//
//	go test -run '^$' -bench ColdStart -benchtime 20x ./infra
package infra

// RequireToolsEnv, set to 1, turns a missing cfn-lint or sam into a test
// failure.
const RequireToolsEnv = "BRIGHTRUN_REQUIRE_TOOLS"
