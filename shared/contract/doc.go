// Package contract is the Go side of the versioned JSON contracts between
// the control plane and the Python GPU worker (gpu-image/). The schemas and
// example fixtures in testdata/contracts are the source of truth; the tests
// of this package decode and validate every fixture and check every signing
// test vector, so the two languages cannot drift apart.
//
// Three documents:
//
//   - JobSpec: the RunPod job `input` that functions/dispatch sends to
//     POST /run and the worker reads (job_spec.v1.schema.json).
//   - Callback: the envelope of a signed POST from the worker to
//     functions/webhook, with one typed payload per callback type
//     (callback.v1.schema.json).
//   - Callback signatures: Standard Webhooks signing with a per-job secret
//     derived from a master secret (signatures.json): DeriveSecret,
//     FormatSecret, ParseSecret, Sign, Verify.
//
// Parse functions (ParseJobSpec, ParseCallback) check the documents the way
// the schemas do: every required property present and not null, every value
// of the right type and in range, every problem reported at once. Unknown
// properties are ignored, as the schemas ask of receivers. Validate methods
// check the same ranges on values built in Go (they cannot tell a missing
// property from a zero value, so build documents with every field set).
package contract
