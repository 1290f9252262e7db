package dataset

// Report is the outcome of Validate: the Summary and the issues themselves.
type Report struct {
	Summary
	// Issues lists the first Options.MaxIssues errors and the first
	// Options.MaxIssues warnings in file order, after the dataset-level
	// ones (line 0), which are always listed.
	Issues []Issue `json:"issues"`
}

// Summary is a Report without its issue list: small and of fixed size,
// for storing on a dataset record.
type Summary struct {
	// Valid is true when the dataset has no error at all, which includes
	// having at least MinExamples examples.
	Valid bool `json:"valid"`
	// Lines counts every line, blank and too long ones included; a final
	// line without a line end counts, an empty one after the last line end
	// does not.
	Lines      int64 `json:"lines"`
	BlankLines int64 `json:"blank_lines"`
	// Examples counts the valid examples: lines with no error.
	Examples int64 `json:"examples"`
	// Bytes is the size of the input.
	Bytes  int64  `json:"bytes"`
	Tokens Tokens `json:"tokens"`
	// ErrorCounts and WarningCounts count every issue per code, including
	// those past the list's cap. Codes that did not occur are absent.
	ErrorCounts   map[Code]int64 `json:"error_counts"`
	WarningCounts map[Code]int64 `json:"warning_counts"`
	Truncated     Truncated      `json:"truncated"`
	Stats         Stats          `json:"stats"`
	// Split is what the validation split (package holdout) needs to
	// count the tokens of a job's training and evaluation parts.
	Split SplitTokens `json:"split"`
}

// SplitTokens holds the token counts of the valid examples that a job
// evaluates on, each as [total, trained], for at most holdout.MaxExamples
// examples: enough for any share, since the worker holds out no more.
type SplitTokens struct {
	// HeldOut is in split-key order (seed 0), smallest key first: a share
	// s holds out the first holdout.Count(Examples, s, holdout.MaxExamples)
	// of them (exact for a valid dataset, whose lines are all examples).
	HeldOut [][2]int64 `json:"held_out"`
	// First is in file order: what a job evaluates of this dataset when it
	// is the job's second, validation dataset.
	First [][2]int64 `json:"first"`
}

// Tokens sums the token counts of the valid examples.
type Tokens struct {
	// Total is every token of the rendered conversations.
	Total int64 `json:"total"`
	// Trained is the tokens the trainer computes loss on.
	Trained int64 `json:"trained"`
}

// Truncated says which parts of a report stopped short.
type Truncated struct {
	// Errors and Warnings are set when Report.Issues leaves some out.
	Errors   bool `json:"errors"`
	Warnings bool `json:"warnings"`
	// Duplicates is set when the duplicate detector reached
	// Options.MaxUniqueExamples: later examples were compared only with
	// the ones remembered, so some duplicates may have gone unreported.
	Duplicates bool `json:"duplicates"`
}

// Stats describes the valid examples.
type Stats struct {
	MessagesPerExample Distribution `json:"messages_per_example"`
	TokensPerExample   Distribution `json:"tokens_per_example"`
	// ExamplesOverMaxSeqLength counts the examples the trainer truncates.
	ExamplesOverMaxSeqLength int64 `json:"examples_over_max_seq_length"`
	// MaxSeqLength is the sequence length the examples were checked
	// against.
	MaxSeqLength int `json:"max_seq_length"`
}

// Distribution summarises a count per example; all zero when there is no
// example. Min, Max and Mean are exact. P50 and P95 are nearest-rank
// percentiles from a constant-memory histogram: exact for values below
// 1024, and within 0.4% of the true percentile above.
type Distribution struct {
	Min  int64   `json:"min"`
	Mean float64 `json:"mean"`
	P50  int64   `json:"p50"`
	P95  int64   `json:"p95"`
	Max  int64   `json:"max"`
}

// Issue is one problem, on one line and maybe one message.
type Issue struct {
	Code     Code     `json:"code"`
	Severity Severity `json:"severity"`
	// Line is the 1-based line number; 0 for dataset-level issues.
	Line int64 `json:"line"`
	// MessageIndex is the 0-based index in "messages" (a ShareGPT line's
	// "conversations") of the message at fault; nil when the issue is
	// about the line as a whole, and for every issue of an Alpaca line,
	// whose message names the key at fault.
	MessageIndex *int `json:"message_index,omitempty"`
	// Message says what is wrong and where, in plain words, e.g.
	// `messages[2].role is "bot": must be system, user or assistant`.
	Message string `json:"message"`
}
