package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// counter is the Qwen3 token counter, loaded once.
var counter = sync.OnceValues(func() (chat.Counter, error) { return chat.Qwen3Counter() })

// issuesShown is how many issues a summary lists.
const issuesShown = 20

func (a *app) validateCommand() *cobra.Command {
	var (
		maxSeq    int
		format    string
		converted string
	)
	c := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a chat JSONL dataset on this machine, as the server will",
		Long: `Validate a chat JSONL dataset locally with the server's validator and exact
Qwen3 token counts: every bad line with its line number, a stable code and a
plain message, token totals and per-example statistics. Nothing is sent.

--format reads ShareGPT ({"conversations": [{"from", "value"}]}) or Alpaca
({"instruction", "input", "output", "system"}) lines: each is converted to the
conversation the trainer sees, then checked and counted as that conversation,
as the server does for a dataset uploaded with the same --format.
--converted FILE writes that conversion (one messages line per line).

Exit status 0 when the dataset is valid, 1 when it is not, 2 when the file
cannot be read.`,
		Example: "  brightrun validate chats.jsonl\n  brightrun validate chats.jsonl --json | jq .error_counts\n  brightrun validate --format sharegpt sharegpt.jsonl",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxSeq != 0 && (maxSeq < dataset.MinSeqLength || maxSeq > dataset.MaxSeqLength) {
				return usagef(cmd, "--max-seq-length must be within %d..%d, got %d", dataset.MinSeqLength, dataset.MaxSeqLength, maxSeq)
			}
			f, err := dataset.ParseFormat(format)
			if err != nil {
				return usagef(cmd, "--%v", err)
			}
			opts := dataset.Options{MaxSeqLength: maxSeq, Format: f}
			var out *os.File
			if converted != "" {
				if out, err = os.Create(converted); err != nil {
					return err
				}
				defer out.Close()
				opts.Converted = out
			}
			v, err := a.validateFile(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			if out != nil {
				if err := out.Close(); err != nil {
					return err
				}
			}
			if a.jsonOut {
				if err := a.printJSON(v.report); err != nil {
					return err
				}
			} else {
				printReport(a.stdout, args[0], v.report, issuesShown, "run with --json for every issue")
			}
			if !v.report.Valid {
				return silentFailure(args[0] + " is invalid")
			}
			return nil
		},
	}
	c.Flags().IntVar(&maxSeq, "max-seq-length", 0, fmt.Sprintf("the trainer's sequence length in tokens: longer examples are warned about (default %d)", dataset.DefaultMaxSeqLength))
	c.Flags().StringVar(&format, "format", string(dataset.FormatMessages), "the shape of the lines: messages, sharegpt or alpaca")
	c.Flags().StringVar(&converted, "converted", "", "write the conversion to the messages form (what jobs train on) to this file")
	return c
}

// validated is a local file after validation.
type validated struct {
	report *dataset.Report
	sha256 string
	info   os.FileInfo
}

// validateFile validates path with a progress bar on a terminal stderr,
// and hashes it in the same pass.
func (a *app) validateFile(ctx context.Context, path string, opts dataset.Options) (*validated, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return nil, fmt.Errorf("%s is a folder, not a JSONL file", path)
	}
	c, err := counter()
	if err != nil {
		return nil, err
	}
	var bar *progress
	if isTerminal(a.stderr) && info.Size() >= 1<<20 {
		bar = newProgress(a.stderr, true, "validate", info.Size(), 0)
		var last int64
		opts.Progress = func(n int64) {
			bar.Add(n - last)
			last = n
		}
	}
	h := sha256.New()
	var report *dataset.Report
	if info.Mode().IsRegular() {
		// A file is read in parts on every core, hashed in order.
		opts.Tee = h
		report, err = dataset.ValidateAt(ctx, f, info.Size(), c, opts, 0)
	} else {
		report, err = dataset.Validate(ctx, io.TeeReader(f, h), c, opts)
	}
	bar.Finish()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &validated{report: report, sha256: hex.EncodeToString(h.Sum(nil)), info: info}, nil
}

// printReport writes a summary, the counts per code and the first max
// issues. hint says where to find the rest.
func printReport(w io.Writer, what string, r *dataset.Report, max int, hint string) {
	verdict := "valid"
	if !r.Valid {
		verdict = "INVALID"
	}
	fmt.Fprintf(w, "%s: %s\n", what, verdict)
	sum := summaryOf(&r.Summary)
	printSummary(w, sum)
	printIssues(w, r.Issues, countIssues(sum), max, hint)
}

// summaryOf is a local report's summary as the API shows a dataset's: the
// same document, field for field.
func summaryOf(s *dataset.Summary) *pipeline.ValidationSummary {
	var out pipeline.ValidationSummary
	data, err := json.Marshal(s)
	if err == nil {
		err = json.Unmarshal(data, &out)
	}
	if err != nil {
		panic(fmt.Sprintf("the validator's summary is not the API's: %v", err))
	}
	return &out
}

func countIssues(s *pipeline.ValidationSummary) int64 {
	var n int64
	for _, c := range s.ErrorCounts {
		n += c
	}
	for _, c := range s.WarningCounts {
		n += c
	}
	return n
}

// printSummary writes the counts, tokens and statistics of a summary.
func printSummary(w io.Writer, s *pipeline.ValidationSummary) {
	tw := newTable(w)
	fmt.Fprintf(tw, "  lines\t%s (%s blank)\n", formatCount(s.Lines), formatCount(s.BlankLines))
	fmt.Fprintf(tw, "  examples\t%s valid\n", formatCount(s.Examples))
	fmt.Fprintf(tw, "  tokens\t%s total, %s trained\n", formatCount(s.Tokens.Total), formatCount(s.Tokens.Trained))
	fmt.Fprintf(tw, "  size\t%s\n", formatBytes(s.Bytes))
	if s.Examples > 0 {
		d := s.Stats.TokensPerExample
		fmt.Fprintf(tw, "  tokens/example\tmin %s · p50 %s · p95 %s · max %s · mean %.1f\n",
			formatCount(d.Min), formatCount(d.P50), formatCount(d.P95), formatCount(d.Max), d.Mean)
		m := s.Stats.MessagesPerExample
		fmt.Fprintf(tw, "  messages/example\tmin %d · p50 %d · p95 %d · max %d · mean %.1f\n", m.Min, m.P50, m.P95, m.Max, m.Mean)
		fmt.Fprintf(tw, "  over max_seq_length\t%s examples longer than %s tokens (the trainer truncates them)\n",
			formatCount(s.Stats.ExamplesOverMaxSeqLength), formatCount(int64(s.Stats.MaxSeqLength)))
	}
	tw.Flush()
	printCounts(w, "errors", s.ErrorCounts)
	printCounts(w, "warnings", s.WarningCounts)
	if s.Truncated.Duplicates {
		fmt.Fprintln(w, "  note: the file has too many distinct examples for duplicate detection to be complete")
	}
}

func printCounts(w io.Writer, title string, counts map[string]int64) {
	if len(counts) == 0 {
		return
	}
	var total int64
	codes := make([]string, 0, len(counts))
	for c, n := range counts {
		codes = append(codes, c)
		total += n
	}
	// Most frequent first, then by name.
	slices.SortFunc(codes, func(x, y string) int {
		if counts[x] != counts[y] {
			return int(counts[y] - counts[x])
		}
		return strings.Compare(x, y)
	})
	fmt.Fprintf(w, "%s: %s\n", title, formatCount(total))
	tw := newTable(w)
	for _, c := range codes {
		fmt.Fprintf(tw, "  %s\t%s\n", c, formatCount(counts[c]))
	}
	tw.Flush()
}

// printIssues lists the first max issues (max < 0: all), and says how
// many more there are of total.
func printIssues(w io.Writer, issues []dataset.Issue, total int64, max int, hint string) {
	if len(issues) == 0 {
		return
	}
	shown := issues
	if max >= 0 && len(shown) > max {
		shown = shown[:max]
	}
	if int64(len(shown)) < total {
		fmt.Fprintf(w, "issues (first %d of %s):\n", len(shown), formatCount(total))
	} else {
		fmt.Fprintln(w, "issues:")
	}
	tw := newTable(w)
	for _, is := range shown {
		where := "file"
		if is.Line > 0 {
			where = "line " + formatCount(is.Line)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", where, is.Severity, is.Code, oneLine(is.Message))
	}
	tw.Flush()
	if more := total - int64(len(shown)); more > 0 && hint != "" {
		fmt.Fprintf(w, "  … and %s more: %s\n", formatCount(more), hint)
	}
}
