// Package dataset validates chat JSONL training datasets in one streaming
// pass.
//
// Each line of a dataset holds one conversation:
//
//	{"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}, {"role": "assistant", "content": "...", "weight": 0}]}
//
// [Validate] reads any [io.Reader] once, in constant memory, and never
// stops at the first problem: it reports every issue with a stable [Code],
// the 1-based line, the message index where one applies and a plain
// message, counts the tokens of the valid examples with a [chat.Counter],
// and summarises the dataset in a [Report]. A UTF-8 byte order mark, CRLF
// line ends and blank lines are accepted.
//
// # Formats
//
// [Options.Format] reads ShareGPT ({"conversations": [{"from", "value"}]})
// or Alpaca ({"instruction", "input", "output", "system"}) lines instead:
// each line is converted to its conversation in the same pass, then
// checked, counted and split exactly as a messages line with that
// conversation is. Problems only a format can have get codes of their
// own (sharegpt_*, alpaca_*); the others keep the common codes. With
// [Options.Converted] set, the conversion is written out: one messages
// line per input line, so line numbers (and the validation split) stay
// the input's.
//
// # In parallel
//
// [ValidateAt] validates a file it can read at any offset (an
// [io.ReaderAt]: a local file, ranged reads of an S3 object) in parts on
// every core and merges them into exactly the report one pass gives: the
// parts are cut at line boundaries, and what depends on the lines before
// (line numbers, duplicates, the validation split) is settled in file
// order by the merge.
//
// # Decoding
//
// Lines are decoded by a hand-written scanner that accepts exactly what
// encoding/json accepts (a fuzz test holds it to json.Valid and
// json.Unmarshal) at several times its speed. Keys match exactly ("Role"
// is an unknown key, not "role"); a repeated key keeps its last value, as
// in encoding/json. A weight must be a JSON number equal to 0 or 1 in any
// spelling (1, 1.0, 1e0); true, "1" and null are invalid_weight. Content
// must be a string: multimodal content arrays are invalid_content.
//
// # Memory
//
// Validate holds one line of at most [Options.MaxLineBytes] (8 MiB by
// default; longer lines are skipped in chunks), two 62 KiB histograms, at
// most [Options.MaxIssues] issues per severity, and the duplicate
// detector: 16-byte hashes with a line number, 30 to 50 bytes per
// distinct example, capped at [Options.MaxUniqueExamples] (1,700,000 by
// default: about 48 MiB), and the validation split's counts of at most
// 2 × [holdout.MaxExamples] examples ([SplitTokens]: a bounded heap of the
// smallest split keys, and the first examples).
package dataset
