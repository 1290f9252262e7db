package pipeline

import "github.com/brightrun/brightrun/shared/holdout"

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
	// Split is what the validation split needs: nil for a dataset
	// validated before it was recorded.
	Split *SplitTokens `json:"split,omitempty"`
}

// SplitTokens holds the token counts of the examples a job evaluates on,
// each as [total, trained], for at most holdout.MaxExamples examples.
type SplitTokens struct {
	// HeldOut is in split-key order (seed 0), smallest key first: a share
	// s holds out the first holdout.Count(Examples, s, holdout.MaxExamples).
	HeldOut [][2]int64 `json:"held_out"`
	// First is in file order: what a job evaluates of this dataset when it
	// is the job's second, validation dataset.
	First [][2]int64 `json:"first"`
}

// SplitPart is one part of a dataset split for evaluation.
type SplitPart struct {
	Examples int64       `json:"examples"`
	Tokens   TokenCounts `json:"tokens"`
}

// DatasetSplit is how a share of held-out examples splits a dataset.
type DatasetSplit struct {
	Split    float64   `json:"split"`
	HeldOut  SplitPart `json:"held_out"`
	Training SplitPart `json:"training"`
}

// SplitOf returns how a job with the held-out share split (nil: the
// worker's default for the dataset's size) splits the dataset: exact token
// counts of both parts. It returns false when the summary lacks the counts
// it needs: a dataset validated before they were recorded, or an invalid
// one (whose lines are not all examples).
func (s *ValidationSummary) SplitOf(split *float64) (DatasetSplit, bool) {
	if s == nil || !s.Valid || s.Split == nil {
		return DatasetSplit{}, false
	}
	share := holdout.DefaultSplit(s.Examples)
	if split != nil {
		share = *split
	}
	k := holdout.Count(s.Examples, share, holdout.MaxExamples)
	if k > int64(len(s.Split.HeldOut)) {
		return DatasetSplit{}, false
	}
	held := SumTokens(s.Split.HeldOut[:k])
	return DatasetSplit{
		Split:    share,
		HeldOut:  SplitPart{Examples: k, Tokens: held},
		Training: SplitPart{Examples: s.Examples - k, Tokens: TokenCounts{Total: s.Tokens.Total - held.Total, Trained: s.Tokens.Trained - held.Trained}},
	}, true
}

// SumTokens adds up per-example [total, trained] counts.
func SumTokens(examples [][2]int64) TokenCounts {
	var t TokenCounts
	for _, e := range examples {
		t.Total += e[0]
		t.Trained += e[1]
	}
	return t
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
	// Source is "held_out" (a share of the job's dataset, Split) or
	// "dataset" (a second dataset, DatasetID).
	Source    string   `json:"source"`
	Split     *float64 `json:"split,omitempty"`
	DatasetID string   `json:"dataset_id,omitempty"`
	// Examples and Tokens* are what is evaluated: held out of the dataset
	// or taken of the second one (the worker evaluates at most 200).
	Examples      int64 `json:"examples"`
	TokensTotal   int64 `json:"tokens_total"`
	TokensTrained int64 `json:"tokens_trained"`
	// TrainingExamples is what the job trains on: its dataset's examples
	// less those held out.
	TrainingExamples int64 `json:"training_examples"`
	// Evaluations is how many times the worker evaluates: every
	// EverySteps steps and at the last step.
	Evaluations int64 `json:"evaluations"`
	EverySteps  int64 `json:"every_steps"`
	// MicroBatches and PaddedTokens are one evaluation's forward passes.
	MicroBatches int64 `json:"micro_batches"`
	PaddedTokens int64 `json:"padded_tokens"`
	// Seconds is the expected time of all evaluations; SecondsRange its
	// range (whole seconds, like the estimate's stages).
	Seconds      float64 `json:"seconds"`
	SecondsRange Range   `json:"seconds_range"`
}
