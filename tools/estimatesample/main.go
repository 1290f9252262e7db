// Command estimatesample prints what the estimator says about the bundled
// sample dataset (testdata/datasets/sample.jsonl) on every GPU of the
// catalog: duration and cost ranges, the micro-batch, the memory it needs.
// It validates the file with the exact Qwen3 token counter first, as the
// validate function does after an upload.
//
// The job holds out its default validation share (none below 200
// examples), or the share -split names, as a job created by the API does.
//
//	go run ./tools/estimatesample [-file testdata/datasets/sample.jsonl] [-preset balanced] [-model Qwen/Qwen3-Next-80B-A3B-Instruct] [-batch N] [-accum N] [-split S]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/estimate"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "estimatesample:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("estimatesample", flag.ContinueOnError)
	file := fs.String("file", "testdata/datasets/sample.jsonl", "chat JSONL dataset to estimate")
	preset := fs.String("preset", pipeline.DefaultPreset, "hyperparameter preset: fast, balanced or quality")
	model := fs.String("model", catalog.DefaultModelID, "base model id")
	batch := fs.Int("batch", 0, "batch_size instead of the preset's (0: the preset's)")
	accum := fs.Int("accum", 0, "gradient_accumulation instead of the preset's (0: the preset's)")
	split := fs.Float64("split", -1, "share held out for evaluation, 0 to 0.5 (-1: the default for the dataset's size)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var o pipeline.HyperparameterOverrides
	if *batch > 0 {
		o.BatchSize = batch
	}
	if *accum > 0 {
		o.GradientAccumulation = accum
	}
	hp, err := pipeline.ResolveHyperparameters(*preset, o)
	if err != nil {
		return fmt.Errorf("preset %q: %w", *preset, err)
	}
	sum, err := validate(*file, hp.MaxSeqLength)
	if err != nil {
		return err
	}
	in := estimate.Input{
		Dataset: estimate.Dataset{
			Examples: sum.Examples, TokensTotal: sum.Tokens.Total, TokensTrained: sum.Tokens.Trained,
			TokensPerExampleMax: sum.Stats.TokensPerExample.Max, TokensPerExampleP95: sum.Stats.TokensPerExample.P95,
			TokensPerExampleP50: sum.Stats.TokensPerExample.P50, TokensPerExampleMin: sum.Stats.TokensPerExample.Min,
		},
		Hyperparameters: hp, Model: *model,
		Evaluation: &estimate.Evaluation{HeldOut: sum.Split.HeldOut},
	}
	if *split >= 0 {
		in.Evaluation.Split = split
	}
	cmp, err := estimate.Compare(catalog.Default(), in)
	if err != nil {
		return fmt.Errorf("estimate: %w", err)
	}
	fmt.Fprintf(out, "%s: %d examples, %d tokens (%d trained), longest %d; preset %s (batch %d × accumulation %d, %d epochs, max_seq_length %d); %s; estimator %s\n\n",
		*file, sum.Examples, sum.Tokens.Total, sum.Tokens.Trained, sum.Stats.TokensPerExample.Max,
		*preset, hp.BatchSize, hp.GradientAccumulation, hp.Epochs, hp.MaxSeqLength, cmp.Model, cmp.EstimatorVersion)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "gpu\tquant\tmicro-batch tokens\tmicro-batches\tmemory GiB (need / limit / has)\ttraining s\tevaluation s\tduration s (low / expected / high)\tcost USD (low / expected / high)\t")
	for _, r := range cmp.Estimates {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f / %.1f / %.1f\t%d\t%d\t%d / %d / %d\t%.2f / %.2f / %.2f\t\n",
			r.GPU, r.Quantization, r.MicroBatchTokens, r.Steps.MicroBatchesTotal, r.Memory.RequiredGiB, r.Memory.HeadroomLimitGiB, r.Memory.AvailableGiB, stage(r, "training"),
			stage(r, "evaluation"), r.DurationSeconds.Low, r.DurationSeconds.Expected, r.DurationSeconds.High,
			r.CostUSD.Low, r.CostUSD.Expected, r.CostUSD.High)
	}
	for _, nf := range cmp.DoesNotFit {
		fmt.Fprintf(tw, "%s\t%s\t%d\t-\t%.1f / %.1f / %.1f\t-\t-\tdoes not fit\t-\t\n",
			nf.GPU, nf.Memory.Quantization, nf.Memory.MicroBatchTokens, nf.RequiredGiB, nf.Memory.HeadroomLimitGiB, nf.AvailableGiB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if e := cmp.Estimates[0].Evaluation; e != nil {
		fmt.Fprintf(out, "\nevaluation: %d examples held out (split %g, %d tokens), %d train; %d evaluations, every %d steps\n",
			e.Examples, *e.Split, e.TokensTotal, e.TrainingExamples, e.Evaluations, e.EverySteps)
	} else {
		fmt.Fprintln(out, "\nevaluation: none (nothing held out)")
	}
	fmt.Fprintf(out, "cheapest %s (a job's default GPU), fastest %s\n", cmp.CheapestGPU, cmp.FastestGPU)
	return nil
}

// stage returns the expected seconds of the named stage of r's breakdown.
func stage(r estimate.Result, name string) int64 {
	for _, s := range r.Breakdown {
		if s.Name == name {
			return s.Seconds.Expected
		}
	}
	return 0
}

// validate checks the dataset as the validate function does and returns
// its summary; a dataset with errors is refused.
func validate(path string, maxSeqLength int) (dataset.Summary, error) {
	counter, err := chat.Qwen3Counter()
	if err != nil {
		return dataset.Summary{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return dataset.Summary{}, err
	}
	defer f.Close()
	rep, err := dataset.Validate(context.Background(), bufio.NewReader(f), counter, dataset.Options{MaxSeqLength: maxSeqLength})
	if err != nil {
		return dataset.Summary{}, fmt.Errorf("validate %s: %w", path, err)
	}
	if !rep.Valid {
		return dataset.Summary{}, fmt.Errorf("%s is not a valid dataset: %v", path, rep.ErrorCounts)
	}
	return rep.Summary, nil
}
