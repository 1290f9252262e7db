package pipeline

// ValidationSummary is what validation found in a dataset, as its record
// keeps it: small and of fixed size (the full report, every issue, is a
// blob beside the dataset's file). Its JSON is the validator's summary,
// field for field (validation copies it across), so that the domain does
// not depend on the validator.
type ValidationSummary struct {
	// Valid is true when the dataset has no error at all.
	Valid bool `json:"valid"`
	// Lines counts every line; BlankLines the blank ones.
	Lines      int64 `json:"lines"`
	BlankLines int64 `json:"blank_lines"`
	// Examples counts the valid examples: lines with no error.
	Examples int64 `json:"examples"`
	// Bytes is the size of the file.
	Bytes  int64       `json:"bytes"`
	Tokens TokenCounts `json:"tokens"`
	// ErrorCounts and WarningCounts count every issue per code.
	ErrorCounts   map[string]int64    `json:"error_counts"`
	WarningCounts map[string]int64    `json:"warning_counts"`
	Truncated     ValidationTruncated `json:"truncated"`
	Stats         ExampleStats        `json:"stats"`
}

// TokenCounts sums the token counts of the valid examples.
type TokenCounts struct {
	// Total is every token of the rendered conversations.
	Total int64 `json:"total"`
	// Trained is the tokens the trainer computes loss on.
	Trained int64 `json:"trained"`
}

// ValidationTruncated says which parts of a report stopped short.
type ValidationTruncated struct {
	Errors     bool `json:"errors"`
	Warnings   bool `json:"warnings"`
	Duplicates bool `json:"duplicates"`
}

// ExampleStats describes the valid examples.
type ExampleStats struct {
	MessagesPerExample Distribution `json:"messages_per_example"`
	TokensPerExample   Distribution `json:"tokens_per_example"`
	// ExamplesOverMaxSeqLength counts the examples the trainer truncates.
	ExamplesOverMaxSeqLength int64 `json:"examples_over_max_seq_length"`
	// MaxSeqLength is the sequence length the examples were checked against.
	MaxSeqLength int `json:"max_seq_length"`
}

// Distribution summarises a count per example (all zero without examples).
type Distribution struct {
	Min  int64   `json:"min"`
	Mean float64 `json:"mean"`
	P50  int64   `json:"p50"`
	P95  int64   `json:"p95"`
	Max  int64   `json:"max"`
}

// EvaluationEstimate is the evaluation part of a job's estimate: what is
// evaluated (held out of the dataset, or a second dataset), how often,
// and the time it adds.
type EvaluationEstimate struct {
	Examples      int64   `json:"examples"`
	TokensTotal   int64   `json:"tokens_total"`
	TokensTrained int64   `json:"tokens_trained"`
	Evaluations   int64   `json:"evaluations"`
	Seconds       float64 `json:"seconds"`
}
