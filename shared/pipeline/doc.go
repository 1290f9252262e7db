// Package pipeline is the domain: datasets, jobs and their state machine,
// presets and hyperparameters, errors, the ports its adapters implement
// (ports.go), the names of things — blob keys, callback URLs, webhook
// tokens, idempotent ids (names.go) — and a job's whole life once stored
// (Lifecycle: claim, run record, callbacks, finish, cancel, reconciliation's
// decisions).
//
// It depends on no adapter, validator or service, only on the contract
// package (the worker's callbacks are part of a job's life): services and
// the HTTP layer call it, never the reverse. Every change of a stored job
// goes through Lifecycle, TransitionJob or UpdateJob: a conditional write
// on the job as read, retried when another writer got in first.
package pipeline
