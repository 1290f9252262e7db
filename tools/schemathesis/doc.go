// Package schemathesis holds the OpenAPI conformance run: its test starts
// the local stack on a free port, uploads a ready dataset, and runs
// Schemathesis (PyPI, pinned in requirements.txt, installed into
// .cache/schemathesis by tools/setup.sh) against the document the stack
// serves at /openapi.json, with a fixed seed and budget: examples, boundary
// coverage, fuzzing, and the stateful phase that follows the document's
// links (create a dataset, complete it, get it; create a job, get it,
// cancel it). Every check is on, and the test fails on any failure: the
// document and the server must agree exactly.
//
// schemathesis.toml is the configuration; hooks.py teaches the run the
// rules the document states in prose because JSON Schema cannot (cursors
// only the server makes, the live catalog, fitting a GPU, a budget not
// below the estimate), and drops a failure only when one of those rules
// explains the server's answer.
//
// The test skips when Schemathesis is not installed, and fails instead
// when BRIGHTRUN_REQUIRE_TOOLS=1 (as .ci/run sets). It also fails when the
// stateful phase did not follow the links of those two chains.
// BRIGHTRUN_SCHEMATHESIS_SEED runs it with another seed:
//
//	BRIGHTRUN_SCHEMATHESIS_SEED=7 go test -v -run TheDocument ./tools/schemathesis
package schemathesis
