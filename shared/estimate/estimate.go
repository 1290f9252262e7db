// Package estimate answers, before a job runs, how many optimizer steps it
// takes and how long and how much a LoRA / QLoRA fine-tune costs on RunPod
// Serverless: a range (low, expected, high) with its breakdown and every
// assumption named. Estimate and Compare are pure functions of the dataset
// statistics, the hyperparameters, the model, the GPU and the catalog's
// price and throughput table.
//
// Rounding: step counts are exact (ceilings); token counts are integers
// rounded up; each stage's seconds are rounded up to whole seconds (RunPod
// bills per second) and the totals are sums of the rounded stages; money
// is in USD rounded to the nearest cent, each stage on its own and the
// total from the total billed seconds, so stage costs may not add up to the
// total to the cent. Memory is in GiB (see catalog.Memory).
package estimate

import (
	"fmt"
	"math"
	"strings"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Dataset is what the estimator needs of a validated dataset's statistics.
// Token counts are over the base model's rendered chat template.
type Dataset struct {
	Examples      int64 `json:"examples"`
	TokensTotal   int64 `json:"tokens_total"`
	TokensTrained int64 `json:"tokens_trained"`
	// Optional (0: unknown). The longest example bounds the padded length
	// of a micro-batch (the memory check) and the truncation.
	TokensPerExampleMax int64 `json:"tokens_per_example_max,omitempty"`
	TokensPerExampleP95 int64 `json:"tokens_per_example_p95,omitempty"`
}

// Input is one estimate's question. Model "" means
// catalog.DefaultModelID; GPU is a catalog GPU id (Compare ignores it).
type Input struct {
	Dataset         Dataset                  `json:"dataset"`
	Hyperparameters pipeline.Hyperparameters `json:"hyperparameters"`
	Model           string                   `json:"model"`
	GPU             string                   `json:"gpu"`
}

// SecondsRange is a duration range in whole seconds.
type SecondsRange struct {
	Low      int64 `json:"low"`
	Expected int64 `json:"expected"`
	High     int64 `json:"high"`
}

// USDRange is a money range in US dollars, rounded to cents.
type USDRange struct {
	Low      float64 `json:"low"`
	Expected float64 `json:"expected"`
	High     float64 `json:"high"`
}

// CountRange is a range of counts.
type CountRange struct {
	Low      int64 `json:"low"`
	Expected int64 `json:"expected"`
	High     int64 `json:"high"`
}

// RateRange is a rate range; Low is the slow end.
type RateRange struct {
	Low      float64 `json:"low"`
	Expected float64 `json:"expected"`
	High     float64 `json:"high"`
}

// Steps counts the optimizer steps: per epoch
// ceil(examples / (batch_size × gradient_accumulation)), the ceiling
// transformers' Trainer takes (it steps on a short last accumulation).
type Steps struct {
	Epochs               int   `json:"epochs"`
	EffectiveBatchSize   int   `json:"effective_batch_size"`
	PerEpoch             int64 `json:"per_epoch"`
	Total                int64 `json:"total"`
	MicroBatchesPerEpoch int64 `json:"micro_batches_per_epoch"`
	MicroBatchesTotal    int64 `json:"micro_batches_total"`
}

// Tokens counts what one epoch processes.
type Tokens struct {
	// PerEpoch is the tokens after truncation at max_seq_length: exact
	// when no example is longer, else an upper bound
	// (min(tokens_total − (longest − max_seq_length),
	// examples × max_seq_length)).
	PerEpoch int64 `json:"per_epoch"`
	// TruncatedPerEpoch is how many tokens truncation cuts at least.
	TruncatedPerEpoch int64 `json:"truncated_per_epoch"`
	// TrainedPerEpoch is the tokens the loss is computed on, at most.
	TrainedPerEpoch int64 `json:"trained_per_epoch"`
	// PaddedPerEpoch adds the padding of length-grouped micro-batches.
	PaddedPerEpoch CountRange `json:"padded_per_epoch"`
	Total          int64      `json:"total"` // PerEpoch × epochs
	// MicroBatchSeqLen is the padded length of the longest micro-batch:
	// min(max_seq_length, longest example).
	MicroBatchSeqLen int `json:"micro_batch_seq_len"`
}

// Throughput is the figure the training time rests on.
type Throughput struct {
	TokensPerSecond   float64 `json:"tokens_per_second"`
	MicroBatchSeconds float64 `json:"micro_batch_seconds"`
	Uncertainty       float64 `json:"uncertainty"`
	Source            string  `json:"source"`
	// EffectiveTokensPerSecond is Tokens.Total / training seconds at each
	// end (Low is the slow end).
	EffectiveTokensPerSecond RateRange `json:"effective_tokens_per_second"`
}

// Stage is one part of a job's time. Billed stages run on a worker and are
// paid per second; stages InDuration make the user wait (the idle tail is
// billed but the adapter is ready before it).
type Stage struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Billed      bool         `json:"billed"`
	InDuration  bool         `json:"in_duration"`
	Seconds     SecondsRange `json:"seconds"`
	CostUSD     USDRange     `json:"cost_usd"`
}

// Assumption is one named input of the estimate other than the request.
type Assumption struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source,omitempty"`
}

// Result is an estimate, ready to serve as JSON.
type Result struct {
	Model             string                   `json:"model"`
	GPU               string                   `json:"gpu"`
	GPUName           string                   `json:"gpu_name"`
	PriceUSDPerSecond float64                  `json:"price_usd_per_second"`
	Quantization      catalog.Quantization     `json:"quantization"`
	Hyperparameters   pipeline.Hyperparameters `json:"hyperparameters"`
	Steps             Steps                    `json:"steps"`
	Tokens            Tokens                   `json:"tokens"`
	Memory            catalog.Memory           `json:"memory"`
	Throughput        Throughput               `json:"throughput"`
	// DurationSeconds is from submission until the adapter is uploaded.
	DurationSeconds SecondsRange `json:"duration_seconds"`
	// BilledSeconds is from worker start until the worker stops.
	BilledSeconds SecondsRange `json:"billed_seconds"`
	CostUSD       USDRange     `json:"cost_usd"`
	// ExecutionTimeoutSeconds is a policy.executionTimeout that covers the
	// slow end with a margin (× 1.25, at least 600 s, at most RunPod's
	// 7 days).
	ExecutionTimeoutSeconds int64        `json:"execution_timeout_seconds"`
	Breakdown               []Stage      `json:"breakdown"`
	Assumptions             []Assumption `json:"assumptions"`
	Warnings                []string     `json:"warnings"`
	PricesDate              string       `json:"prices_date"`
	EstimatorVersion        string       `json:"estimator_version"`
}

// Estimate returns the estimate for one GPU. Errors are *pipeline.Error
// with code EInvalid for anything the caller can fix: hyperparameters out
// of bounds, inconsistent dataset statistics, an unknown model or GPU, a
// model that does not fit the GPU (details: catalog.NotFit).
func Estimate(c *catalog.Catalog, in Input) (Result, error) {
	m, err := checkInput(c, in)
	if err != nil {
		return Result{}, err
	}
	g, err := c.GPU(in.GPU)
	if err != nil {
		return Result{}, err
	}
	tp, err := c.Throughput(m.ID, g.ID)
	if err != nil {
		return Result{}, err
	}
	mem, err := m.CheckFit(memoryInput(in, g))
	if err != nil {
		return Result{}, err
	}
	return estimate(c.PricesDate(), m, g, tp, mem, in), nil
}

func checkInput(c *catalog.Catalog, in Input) (catalog.Model, error) {
	if err := in.Hyperparameters.Validate(); err != nil {
		return catalog.Model{}, err
	}
	if err := in.Dataset.Validate(); err != nil {
		return catalog.Model{}, err
	}
	m, err := c.Model(in.Model)
	if err != nil {
		return catalog.Model{}, err
	}
	if in.Hyperparameters.MaxSeqLength > m.ContextLength {
		return catalog.Model{}, pipeline.Errorf(pipeline.EInvalid,
			"max_seq_length %d is longer than %s's context length %d", in.Hyperparameters.MaxSeqLength, m.ID, m.ContextLength)
	}
	return m, nil
}

// Validate checks that the statistics are consistent: at least one
// example, at least one token per example, trained tokens within the
// total, and the optional per-example figures within what the totals
// allow.
func (d Dataset) Validate() error {
	var bad []string
	if d.Examples < 1 || d.Examples > maxExamples {
		bad = append(bad, fmt.Sprintf("examples must be between 1 and %d, got %d", int64(maxExamples), d.Examples))
	}
	if d.TokensTotal > maxTokens {
		bad = append(bad, fmt.Sprintf("tokens_total must be at most %d, got %d", int64(maxTokens), d.TokensTotal))
	}
	if d.TokensTotal < d.Examples {
		bad = append(bad, fmt.Sprintf("tokens_total (%d) must be at least examples (%d)", d.TokensTotal, d.Examples))
	}
	if d.TokensTrained < 0 || d.TokensTrained > d.TokensTotal {
		bad = append(bad, fmt.Sprintf("tokens_trained (%d) must be between 0 and tokens_total (%d)", d.TokensTrained, d.TokensTotal))
	}
	if d.TokensPerExampleMax < 0 || d.TokensPerExampleP95 < 0 {
		bad = append(bad, "tokens_per_example_max and tokens_per_example_p95 must not be negative")
	}
	if mx := d.TokensPerExampleMax; mx > 0 && d.Examples > 0 {
		// The mean cannot exceed the maximum, nor one example the total.
		if mx > d.TokensTotal || float64(mx)*float64(d.Examples) < float64(d.TokensTotal) {
			bad = append(bad, fmt.Sprintf("tokens_per_example_max (%d) does not fit tokens_total (%d) over %d examples", mx, d.TokensTotal, d.Examples))
		}
		if d.TokensPerExampleP95 > mx {
			bad = append(bad, fmt.Sprintf("tokens_per_example_p95 (%d) must not exceed tokens_per_example_max (%d)", d.TokensPerExampleP95, mx))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return pipeline.Errorf(pipeline.EInvalid, "dataset statistics are inconsistent: %s", strings.Join(bad, "; "))
}

// Limits that keep the arithmetic far from overflow; a 500 MB dataset has
// a few hundred million tokens.
const (
	maxExamples = 1e10
	maxTokens   = 1e13
)

// microBatchSeqLen is the padded length of the longest micro-batch.
func microBatchSeqLen(d Dataset, h pipeline.Hyperparameters) int {
	if d.TokensPerExampleMax > 0 && d.TokensPerExampleMax < int64(h.MaxSeqLength) {
		return int(d.TokensPerExampleMax)
	}
	return h.MaxSeqLength
}

func memoryInput(in Input, g catalog.GPU) catalog.MemoryInput {
	return catalog.MemoryInput{
		GPU:        g,
		LoRARank:   in.Hyperparameters.LoRARank,
		MicroBatch: in.Hyperparameters.BatchSize,
		SeqLen:     microBatchSeqLen(in.Dataset, in.Hyperparameters),
	}
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// ceilSeconds and ceilCount round up, forgiving float error just above a
// whole number (51200 × 1.225 is 62720.000000000007).
func ceilSeconds(s float64) int64 { return int64(math.Ceil(s - 1e-9)) }

func ceilCount(x float64) float64 { return math.Ceil(x - 1e-6) }

// cents rounds to the nearest cent. Rounding is monotone, so more billed
// seconds never cost less.
func cents(usd float64) float64 { return math.Round(usd*100) / 100 }

// estimate does the arithmetic; inputs are already checked.
func estimate(pricesDate string, m catalog.Model, g catalog.GPU, tp catalog.Throughput, mem catalog.Memory, in Input) Result {
	h, d := in.Hyperparameters, in.Dataset
	epochs := int64(h.Epochs)
	b := int64(h.BatchSize)
	seqCap := int64(h.MaxSeqLength)

	steps := Steps{
		Epochs:               h.Epochs,
		EffectiveBatchSize:   h.BatchSize * h.GradientAccumulation,
		PerEpoch:             ceilDiv(d.Examples, b*int64(h.GradientAccumulation)),
		MicroBatchesPerEpoch: ceilDiv(d.Examples, b),
	}
	steps.Total = steps.PerEpoch * epochs
	steps.MicroBatchesTotal = steps.MicroBatchesPerEpoch * epochs

	// Truncation: the longest example loses (longest − max_seq_length)
	// tokens, and no example keeps more than max_seq_length.
	processed := d.TokensTotal
	if d.TokensPerExampleMax > seqCap {
		processed -= d.TokensPerExampleMax - seqCap
	}
	processed = min(processed, d.Examples*seqCap)
	tok := Tokens{
		PerEpoch:          processed,
		TruncatedPerEpoch: d.TokensTotal - processed,
		TrainedPerEpoch:   min(d.TokensTrained, processed),
		Total:             processed * epochs,
		MicroBatchSeqLen:  microBatchSeqLen(d, h),
	}
	padShare := float64(b-1) / float64(b)
	var padded [3]float64
	for _, e := range ends {
		padded[e] = ceilCount(float64(processed) * (1 + paddingFraction.at(e)*padShare))
	}
	tok.PaddedPerEpoch = CountRange{int64(padded[low]), int64(padded[expected]), int64(padded[high])}

	// Stage seconds at each end.
	speed := [3]float64{1 + tp.Uncertainty, 1, 1 - tp.Uncertainty}
	load := m.LoadTime(mem.Quantization)
	loadSec := [3]float64{load.LowSeconds, load.ExpectedSeconds, load.HighSeconds}
	adapterBytes := float64(m.LoRAParameters(h.LoRARank)) * adapterFileBytesPerParameter
	var train, overheadShare [3]float64
	var stages []Stage
	type stageDef struct {
		name, desc         string
		billed, inDuration bool
		sec                func(e end) float64
	}
	defs := []stageDef{
		{"queue", "waiting in the endpoint queue for a worker (not billed)", false, true,
			func(e end) float64 { return queueSeconds.at(e) }},
		{"cold_start", "worker start: container start, image cached or pulled", true, true,
			func(e end) float64 { return coldStartSeconds.at(e) }},
		{"startup", "imports, CUDA initialisation, dataset download and tokenization, first-step kernel compilation", true, true,
			func(e end) float64 {
				return startupSeconds.at(e) + float64(d.TokensTotal)/tokenizeTokensPerSecond.at(e)
			}},
		{"model_load", fmt.Sprintf("reading the %s weights (%.1f GB) from the network volume", load.Weights.Quantization, float64(load.Weights.Bytes)/1e9), true, true,
			func(e end) float64 { return loadSec[e] }},
		{"training", "forward, recompute and backward of every micro-batch, every epoch", true, true,
			func(e end) float64 {
				fixed := float64(steps.MicroBatchesTotal) * tp.MicroBatchSeconds
				compute := padded[e] * float64(epochs) / tp.TokensPerSecond
				train[e] = (fixed + compute) / speed[e]
				if fixed+compute > 0 {
					overheadShare[e] = fixed / (fixed + compute)
				}
				return train[e]
			}},
		{"save_upload", fmt.Sprintf("saving the adapter (%.0f MB) and uploading it", adapterBytes/1e6), true, true,
			func(e end) float64 { return saveSeconds.at(e) + adapterBytes/uploadBytesPerSecond.at(e) }},
		{"idle_timeout", "the endpoint's idle timeout after the job: billed, not waited for", true, false,
			func(end) float64 { return idleTimeoutSeconds }},
	}
	var dur, billed, exec [3]int64
	for _, sd := range defs {
		var s [3]int64
		for _, e := range ends {
			s[e] = ceilSeconds(sd.sec(e))
			if sd.inDuration {
				dur[e] += s[e]
			}
			if sd.billed {
				billed[e] += s[e]
				if sd.name != "cold_start" && sd.name != "idle_timeout" {
					exec[e] += s[e]
				}
			}
		}
		st := Stage{
			Name: sd.name, Description: sd.desc, Billed: sd.billed, InDuration: sd.inDuration,
			Seconds: SecondsRange{s[low], s[expected], s[high]},
		}
		if sd.billed {
			p := g.PriceUSDPerSecond
			st.CostUSD = USDRange{cents(float64(s[low]) * p), cents(float64(s[expected]) * p), cents(float64(s[high]) * p)}
		}
		stages = append(stages, st)
	}
	p := g.PriceUSDPerSecond
	timeout := int64(math.Ceil(float64(exec[high]) * executionTimeoutFactor))
	timeout = min(max(timeout, minExecutionSeconds), maxExecutionSeconds)

	var eff RateRange
	if train[high] > 0 {
		eff.Low = float64(tok.Total) / train[high]
	}
	if train[expected] > 0 {
		eff.Expected = float64(tok.Total) / train[expected]
	}
	if train[low] > 0 {
		eff.High = float64(tok.Total) / train[low]
	}
	eff = RateRange{math.Round(eff.Low), math.Round(eff.Expected), math.Round(eff.High)}

	r := Result{
		Model:             m.ID,
		GPU:               g.ID,
		GPUName:           g.Name,
		PriceUSDPerSecond: p,
		Quantization:      mem.Quantization,
		Hyperparameters:   h,
		Steps:             steps,
		Tokens:            tok,
		Memory:            mem,
		Throughput: Throughput{
			TokensPerSecond:          tp.TokensPerSecond,
			MicroBatchSeconds:        tp.MicroBatchSeconds,
			Uncertainty:              tp.Uncertainty,
			Source:                   tp.Source,
			EffectiveTokensPerSecond: eff,
		},
		DurationSeconds:         SecondsRange{dur[low], dur[expected], dur[high]},
		BilledSeconds:           SecondsRange{billed[low], billed[expected], billed[high]},
		CostUSD:                 USDRange{cents(float64(billed[low]) * p), cents(float64(billed[expected]) * p), cents(float64(billed[high]) * p)},
		ExecutionTimeoutSeconds: timeout,
		Breakdown:               stages,
		PricesDate:              pricesDate,
		EstimatorVersion:        Version,
	}
	r.Assumptions = assumptions(m, g, tp, load, in, pricesDate)
	r.Warnings = warnings(m, tp, in, tok, steps, overheadShare[expected], exec[high])
	return r
}

func assumptions(m catalog.Model, g catalog.GPU, tp catalog.Throughput, load catalog.LoadTime, in Input, pricesDate string) []Assumption {
	pct := func(f float64) int { return int(math.Round(f * 100)) }
	return []Assumption{
		{
			Name: "throughput",
			Value: fmt.Sprintf("%s on %s: a micro-batch of T padded tokens takes %.2f s + T / %.0f tokens/s; the range divides training time by %.2f (fast) and %.2f (slow)",
				m.ID, g.Name, tp.MicroBatchSeconds, tp.TokensPerSecond, 1+tp.Uncertainty, 1-tp.Uncertainty),
			Source: tp.Source,
		},
		{
			Name: "padding",
			Value: fmt.Sprintf("micro-batches are padded to their longest sequence, grouped by length, without packing: +%d%% / +%d%% / +%d%% tokens (low / expected / high) × (batch_size − 1) / batch_size",
				pct(paddingFraction.low), pct(paddingFraction.expected), pct(paddingFraction.high)),
			Source: "WORKER.md: no packing for Qwen3-Next (sequence boundaries leak); length-grouped batches as transformers' group_by_length",
		},
		{
			Name:  "truncation",
			Value: fmt.Sprintf("examples are cut at max_seq_length %d; without the longest example's length, every token is assumed kept up to examples × max_seq_length (an overestimate when few examples are long)", in.Hyperparameters.MaxSeqLength),
		},
		{
			Name: "model_load",
			Value: fmt.Sprintf("%s weights at %s (%.1f GB) read from the network volume at %.0f / %.0f / %.0f MB/s",
				load.Weights.Quantization, load.Weights.Path, float64(load.Weights.Bytes)/1e9,
				catalog.VolumeReadFastBytesPerSecond/1e6, catalog.VolumeReadExpectedBytesPerSecond/1e6, catalog.VolumeReadSlowBytesPerSecond/1e6),
			Source: "RunPod network volumes: 200–400 MB/s typical",
		},
		{
			Name:  "queue",
			Value: fmt.Sprintf("%.0f / %.0f / %.0f s waiting for a free worker, not billed; a busy endpoint queues longer", queueSeconds.low, queueSeconds.expected, queueSeconds.high),
		},
		{
			Name:  "cold_start",
			Value: fmt.Sprintf("%.0f / %.0f / %.0f s from worker start to the handler (FlashBoot, image cached … image pulled)", coldStartSeconds.low, coldStartSeconds.expected, coldStartSeconds.high),
		},
		{
			Name: "startup",
			Value: fmt.Sprintf("%.0f / %.0f / %.0f s of imports, CUDA initialisation, dataset download and kernel compilation, plus tokenization at %.0f / %.0f / %.0f k tokens/s",
				startupSeconds.low, startupSeconds.expected, startupSeconds.high,
				tokenizeTokensPerSecond.low/1e3, tokenizeTokensPerSecond.expected/1e3, tokenizeTokensPerSecond.high/1e3),
		},
		{
			Name: "save_upload",
			Value: fmt.Sprintf("%.0f / %.0f / %.0f s to save, plus the fp32 adapter (rank × %d parameters × 4 bytes) uploaded at %.0f / %.0f / %.0f MB/s; no intermediate checkpoints",
				saveSeconds.low, saveSeconds.expected, saveSeconds.high, m.LoRAParametersPerRank,
				uploadBytesPerSecond.low/1e6, uploadBytesPerSecond.expected/1e6, uploadBytesPerSecond.high/1e6),
		},
		{
			Name: "billing",
			Value: fmt.Sprintf("RunPod bills per second from worker start to worker stop (cold start through the %d s idle timeout) at %g USD/s for %s; queue time is not billed",
				idleTimeoutSeconds, g.PriceUSDPerSecond, g.Name),
			Source: fmt.Sprintf("price table of %s", pricesDate),
		},
		{
			Name:  "memory",
			Value: fmt.Sprintf("peak = weights (%s) + LoRA state (16 B/parameter) + checkpointed layer inputs + one layer's activations + logits (10 B per token per vocabulary entry) + 1 GiB + 8 %%, at batch_size × min(max_seq_length, longest example) tokens", load.Weights.Quantization),
		},
		{
			Name:  "rounding",
			Value: "stage seconds rounded up to whole seconds, totals are their sums; USD rounded to the nearest cent; the range adds every stage's low (high) end",
		},
	}
}

func warnings(m catalog.Model, tp catalog.Throughput, in Input, tok Tokens, steps Steps, overheadShare float64, execHigh int64) []string {
	h, d := in.Hyperparameters, in.Dataset
	w := []string{}
	switch {
	case d.TokensPerExampleMax > int64(h.MaxSeqLength):
		w = append(w, fmt.Sprintf("the longest example has %d tokens: examples longer than max_seq_length %d are truncated (at least %d tokens per epoch cut, often from the assistant's answer)",
			d.TokensPerExampleMax, h.MaxSeqLength, tok.TruncatedPerEpoch))
	case d.TokensPerExampleMax == 0 && d.TokensTotal > d.Examples*int64(h.MaxSeqLength):
		w = append(w, fmt.Sprintf("the mean example (%d tokens) is longer than max_seq_length %d: most examples are truncated",
			d.TokensTotal/d.Examples, h.MaxSeqLength))
	}
	if d.TokensPerExampleP95 > int64(h.MaxSeqLength) {
		w = append(w, fmt.Sprintf("more than 5%% of examples are longer than max_seq_length %d (p95 %d tokens)", h.MaxSeqLength, d.TokensPerExampleP95))
	}
	if d.TokensTrained == 0 {
		w = append(w, "no token is trained on (no assistant message carries loss): the job would learn nothing")
	}
	if d.Examples < int64(steps.EffectiveBatchSize) {
		w = append(w, fmt.Sprintf("fewer examples (%d) than one effective batch (batch_size × gradient_accumulation = %d): each epoch is a single optimizer step",
			d.Examples, steps.EffectiveBatchSize))
	}
	if overheadShare > 0.5 && !m.Dense() {
		w = append(w, fmt.Sprintf("%d%% of the training time is the fixed cost of each micro-batch in the mixture-of-experts loop (%.1f s): a larger batch_size with a proportionally smaller gradient_accumulation keeps the optimizer steps and runs fewer micro-batches, if memory allows",
			int(math.Round(overheadShare*100)), tp.MicroBatchSeconds))
	}
	if execHigh > maxExecutionSeconds {
		w = append(w, "at its slow end the job runs past RunPod's 7-day execution limit, where it would be stopped: train on fewer tokens or epochs")
	}
	return w
}
