package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// trainingFlags are the flags estimate and jobs create share.
type trainingFlags struct {
	preset            string
	gpu               string
	model             string
	set               []string
	validationSplit   float64
	validationDataset string
}

func (t *trainingFlags) add(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&t.preset, "preset", "", "hyperparameter preset: fast, balanced or quality (default balanced)")
	f.StringVar(&t.gpu, "gpu", "", "GPU type, e.g. h100-80gb (default: the cheapest that fits; see `brightrun gpus`)")
	f.StringVar(&t.model, "model", "", "base model id (default: the API's default model)")
	f.StringArrayVar(&t.set, "set", nil, "override a hyperparameter, key=value (repeatable): "+strings.Join(hyperparameterKeys(), ", "))
	f.Float64Var(&t.validationSplit, "validation-split", 0, "share of the dataset held out for evaluation, 0 to 0.5 (at most 200 examples; 0 evaluates nothing; default: none below 200 examples, else 0.1)")
	f.StringVar(&t.validationDataset, "validation-dataset", "", "a second ready dataset to evaluate on instead (its first 200 examples); the whole dataset trains")
	c.MarkFlagsMutuallyExclusive("validation-split", "validation-dataset")
}

// request builds the API request for datasetID.
func (t *trainingFlags) request(cmd *cobra.Command, datasetID string) (client.TrainingRequest, error) {
	req := client.TrainingRequest{DatasetID: datasetID, Preset: t.preset, GPUType: t.gpu, BaseModel: t.model, ValidationDatasetID: t.validationDataset}
	if cmd.Flags().Changed("validation-split") {
		split := t.validationSplit
		req.ValidationSplit = &split
	}
	if cmd.Flags().Changed("validation-dataset") && t.validationDataset == "" {
		return req, usagef(cmd, "--validation-dataset needs a dataset id")
	}
	if len(t.set) > 0 {
		o, err := parseSet(t.set)
		if err != nil {
			return req, usagef(cmd, "%v", err)
		}
		req.Hyperparameters = &o
	}
	return req, nil
}

func hyperparameterKeys() []string {
	keys := make([]string, len(pipeline.Bounds))
	for i, b := range pipeline.Bounds {
		keys[i] = b.Field
	}
	return keys
}

// parseSet reads key=value hyperparameter overrides. Keys are the API's
// names (learning_rate, lora_rank …; dashes work too); integer fields
// take integers.
func parseSet(pairs []string) (pipeline.HyperparameterOverrides, error) {
	var o pipeline.HyperparameterOverrides
	ints := map[string]**int{
		"batch_size": &o.BatchSize, "gradient_accumulation": &o.GradientAccumulation, "epochs": &o.Epochs,
		"lora_rank": &o.LoRARank, "lora_alpha": &o.LoRAAlpha, "max_seq_length": &o.MaxSeqLength,
	}
	floats := map[string]**float64{
		"learning_rate": &o.LearningRate, "lora_dropout": &o.LoRADropout, "warmup_ratio": &o.WarmupRatio,
	}
	for _, pair := range pairs {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(k)), "-", "_")
		v = strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return o, fmt.Errorf("--set %q: want key=value, e.g. --set lora_rank=32", pair)
		}
		if p, isInt := ints[k]; isInt {
			n, err := strconv.Atoi(v)
			if err != nil {
				return o, fmt.Errorf("--set %s=%s: %s takes an integer", k, v, k)
			}
			*p = &n
			continue
		}
		if p, isFloat := floats[k]; isFloat {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return o, fmt.Errorf("--set %s=%s: %s takes a number", k, v, k)
			}
			*p = &x
			continue
		}
		return o, fmt.Errorf("--set %s: unknown hyperparameter; known: %s", k, strings.Join(hyperparameterKeys(), ", "))
	}
	return o, nil
}

func (a *app) estimateCommand() *cobra.Command {
	var t trainingFlags
	c := &cobra.Command{
		Use:   "estimate DATASET",
		Short: "Estimate a training run's duration and cost on every GPU",
		Long: `Estimate how long a LoRA fine-tune of a ready dataset takes and what it
costs, on every GPU type: a range (low – expected – high) for each, the
cheapest and the fastest marked, and the GPUs the model does not fit on with
the memory it needs.`,
		Example: "  brightrun estimate ds_01J… --preset quality --set epochs=2",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := t.request(cmd, args[0])
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			est, err := cl.Estimate(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(est)
			}
			printEstimate(a.stdout, est, t.gpu)
			return nil
		},
	}
	t.add(c)
	return c
}

// printEstimate writes the comparison table of an estimate.
func printEstimate(w io.Writer, est *client.Estimate, selected string) {
	sel := est.Estimate
	hp := sel.Hyperparameters
	fmt.Fprintf(w, "Estimate for %s: preset %s, model %s\n", est.DatasetID, est.Preset, est.Comparison.Model)
	fmt.Fprintf(w, "  %s epochs · %s steps (%s per epoch, batch %d × %d) · %s tokens per epoch · LoRA rank %d · max_seq_length %s\n\n",
		formatCount(int64(sel.Steps.Epochs)), formatCount(sel.Steps.Total), formatCount(sel.Steps.PerEpoch),
		hp.BatchSize, hp.GradientAccumulation, formatCount(sel.Tokens.PerEpoch), hp.LoRARank, formatCount(int64(hp.MaxSeqLength)))
	fmt.Fprintf(w, "  evaluation: %s\n\n", evaluationLine(sel.Evaluation))
	tw := newTable(w)
	fmt.Fprintln(tw, "GPU\tID\tPRICE/H\tDURATION (LOW – EXPECTED – HIGH)\tCOST (LOW – EXPECTED – HIGH)\t")
	for _, r := range est.Comparison.Estimates {
		var marks []string
		if r.GPU == est.Comparison.CheapestGPU {
			marks = append(marks, "cheapest")
		}
		if r.GPU == est.Comparison.FastestGPU {
			marks = append(marks, "fastest")
		}
		if selected != "" && r.GPU == sel.GPU {
			marks = append(marks, "selected")
		}
		d, c := r.DurationSeconds, r.CostUSD
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s – %s – %s\t%s – %s – %s\t%s\n", r.GPUName, r.GPU, formatUSD(r.PriceUSDPerSecond*3600),
			formatSeconds(d.Low), formatSeconds(d.Expected), formatSeconds(d.High),
			formatUSD(c.Low), formatUSD(c.Expected), formatUSD(c.High), strings.Join(marks, ", "))
	}
	tw.Flush()
	if len(est.Comparison.DoesNotFit) > 0 {
		fmt.Fprintln(w, "\ndoes not fit:")
		for _, nf := range est.Comparison.DoesNotFit {
			fmt.Fprintf(w, "  %s (%s): needs %.1f GiB of GPU memory, has %.1f GiB\n", nf.GPUName, nf.GPU, nf.RequiredGiB, nf.AvailableGiB)
		}
	}
	for _, warn := range sel.Warnings {
		fmt.Fprintf(w, "warning: %s\n", oneLine(warn))
	}
	fmt.Fprintf(w, "\nprices as of %s · estimator %s · details with --json\n", est.Comparison.PricesDate, est.Comparison.EstimatorVersion)
}

// evaluationLine describes an estimate's evaluation in one line: what is
// evaluated, how often, and the time it adds on the estimate's GPU.
func evaluationLine(e *pipeline.EvaluationEstimate) string {
	if e == nil {
		return "none: nothing held out, every example trains"
	}
	what := fmt.Sprintf("the first %s examples of %s", formatCount(e.Examples), e.DatasetID)
	if e.Source != "dataset" {
		split := ""
		if e.Split != nil {
			split = fmt.Sprintf(" (split %g)", *e.Split)
		}
		what = fmt.Sprintf("%s held-out examples%s, %s train", formatCount(e.Examples), split, formatCount(e.TrainingExamples))
	}
	r := e.SecondsRange
	return fmt.Sprintf("%s · %s tokens · %s evaluations, every %s steps · adds %s – %s – %s",
		what, formatCount(e.TokensTotal), formatCount(e.Evaluations), formatCount(e.EverySteps),
		formatSeconds(r.Low), formatSeconds(r.Expected), formatSeconds(r.High))
}

func (a *app) presetsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "presets",
		Short: "List the hyperparameter presets and the bounds of each hyperparameter",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			list, err := cl.Presets(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(list)
			}
			for _, p := range list.Presets {
				def := ""
				if p.Name == list.Default {
					def = " (default)"
				}
				h := p.Hyperparameters
				fmt.Fprintf(a.stdout, "%s%s: %s\n", p.Name, def, p.Description)
				fmt.Fprintf(a.stdout, "  learning_rate=%g batch_size=%d gradient_accumulation=%d epochs=%d lora_rank=%d lora_alpha=%d lora_dropout=%g max_seq_length=%d warmup_ratio=%g\n",
					h.LearningRate, h.BatchSize, h.GradientAccumulation, h.Epochs, h.LoRARank, h.LoRAAlpha, h.LoRADropout, h.MaxSeqLength, h.WarmupRatio)
			}
			fmt.Fprintln(a.stdout, "\nbounds (--set key=value):")
			tw := newTable(a.stdout)
			for _, b := range list.Bounds {
				fmt.Fprintf(tw, "  %s\t%g – %g\n", b.Field, b.Min, b.Max)
			}
			return tw.Flush()
		},
	}
}

func (a *app) gpusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "gpus",
		Short: "List the GPU types with their memory and price",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			list, err := cl.GPUs(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(list)
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tNAME\tMEMORY\tPRICE/H")
			for _, g := range list.GPUs {
				fmt.Fprintf(tw, "%s\t%s\t%.0f GB\t%s\n", g.ID, g.Name, g.MemoryGiB, formatUSD(g.PriceUSDPerHour))
			}
			tw.Flush()
			fmt.Fprintf(a.stdout, "prices as of %s\n", list.PricesDate)
			return nil
		},
	}
}
