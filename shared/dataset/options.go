package dataset

import (
	"fmt"
	"io"
)

// Limits and defaults of Options.
const (
	// DefaultMaxSeqLength is the trainer's default sequence length: the
	// common default of LoRA fine-tuning recipes, long enough for most
	// support conversations and cheap enough for one GPU.
	DefaultMaxSeqLength = 2048
	// MinSeqLength and MaxSeqLength bound Options.MaxSeqLength.
	MinSeqLength = 256
	MaxSeqLength = 32768

	// DefaultMaxLineBytes is the longest line the validator decodes: 8 MiB,
	// far above any conversation that fits MaxSeqLength tokens (32768 tokens
	// are about 130 KB of English). Longer lines are reported as
	// line_too_long and skipped in chunks, never held whole.
	DefaultMaxLineBytes = 8 << 20
	// MaxMaxLineBytes bounds Options.MaxLineBytes.
	MaxMaxLineBytes = 256 << 20

	// DefaultMaxIssues is how many errors, and separately how many
	// warnings, a report lists in full.
	DefaultMaxIssues = 1000

	// DefaultMaxUniqueExamples caps the duplicate detector: it remembers
	// this many distinct conversations, at 30 to 50 bytes each (a 16-byte
	// hash and a 4-byte line number in a Go map, whose tables double as
	// they fill), so about 48 MiB at the cap (measured with Go 1.26). Past
	// the cap, examples are still checked against the ones remembered, and
	// Report.Truncated.Duplicates is set.
	DefaultMaxUniqueExamples = 1_700_000

	// MinExamples is the fewest valid examples a dataset may have.
	MinExamples = 10
)

// Options tunes Validate. The zero value uses every default.
type Options struct {
	// MaxSeqLength is the trainer's sequence length in tokens: longer
	// examples get an example_too_long warning. 0 means
	// DefaultMaxSeqLength; otherwise it must be within
	// MinSeqLength..MaxSeqLength.
	MaxSeqLength int
	// MaxLineBytes is the longest line, in bytes without its line end, that
	// is decoded; longer lines are line_too_long errors. Validate holds at
	// most about this many bytes of one line in memory. 0 means
	// DefaultMaxLineBytes; otherwise 1..MaxMaxLineBytes.
	MaxLineBytes int
	// MaxIssues is how many errors, and separately how many warnings, the
	// report lists in full; every one is still counted. 0 means
	// DefaultMaxIssues; a negative value lists none.
	MaxIssues int
	// MaxUniqueExamples caps the conversations the duplicate detector
	// remembers. 0 means DefaultMaxUniqueExamples; a negative value turns
	// duplicate detection off.
	MaxUniqueExamples int
	// Format is the shape of the lines; "" means FormatMessages.
	Format Format
	// Converted, when set, receives the messages form of the input, one
	// line for each line read, in the same pass: an example's conversation
	// as {"messages": [...]} (the keys the trainer reads, nothing else),
	// and an empty line for a blank line or one with an error. Line
	// numbers, and so the validation split, are the input's. Validate
	// fails when writing to it fails.
	Converted io.Writer
	// Tee, when set, receives every byte of the input, in order, as it is
	// read (a hash of the file, say): ValidateAt reads the input in parts,
	// and this is how to see it whole without reading it twice.
	Tee io.Writer
	// Progress, when set, is called with the number of bytes read so far:
	// about once per MiB and once at the end (ValidateAt: once per part
	// merged, DefaultPartBytes). It runs on the calling goroutine, so it
	// should return quickly.
	Progress func(bytesRead int64)
}

// progressEvery is how many bytes Validate reads between Progress calls.
const progressEvery = 1 << 20

// withDefaults returns o with its zero fields set to the defaults, or an
// error when a field is out of range.
func (o Options) withDefaults() (Options, error) {
	f, err := ParseFormat(string(o.Format))
	if err != nil {
		return o, err
	}
	o.Format = f
	switch {
	case o.MaxSeqLength == 0:
		o.MaxSeqLength = DefaultMaxSeqLength
	case o.MaxSeqLength < MinSeqLength || o.MaxSeqLength > MaxSeqLength:
		return o, fmt.Errorf("max sequence length %d: must be within %d..%d", o.MaxSeqLength, MinSeqLength, MaxSeqLength)
	}
	switch {
	case o.MaxLineBytes == 0:
		o.MaxLineBytes = DefaultMaxLineBytes
	case o.MaxLineBytes < 0 || o.MaxLineBytes > MaxMaxLineBytes:
		return o, fmt.Errorf("max line bytes %d: must be within 1..%d", o.MaxLineBytes, MaxMaxLineBytes)
	}
	switch {
	case o.MaxIssues == 0:
		o.MaxIssues = DefaultMaxIssues
	case o.MaxIssues < 0:
		o.MaxIssues = 0
	}
	switch {
	case o.MaxUniqueExamples == 0:
		o.MaxUniqueExamples = DefaultMaxUniqueExamples
	case o.MaxUniqueExamples < 0:
		o.MaxUniqueExamples = 0
	}
	return o, nil
}
