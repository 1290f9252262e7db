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
	"slices"
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
	// Optional (0: unknown): the length distribution of the examples.
	// The longest bounds the truncation; together they set the padding
	// of length-sorted micro-batches (packEpoch).
	TokensPerExampleMax int64 `json:"tokens_per_example_max,omitempty"`
	TokensPerExampleP95 int64 `json:"tokens_per_example_p95,omitempty"`
	TokensPerExampleP50 int64 `json:"tokens_per_example_p50,omitempty"`
	TokensPerExampleMin int64 `json:"tokens_per_example_min,omitempty"`
}

// Input is one estimate's question. Model "" means
// catalog.DefaultModelID; GPU is a catalog GPU id (Compare ignores it).
type Input struct {
	Dataset         Dataset                  `json:"dataset"`
	Hyperparameters pipeline.Hyperparameters `json:"hyperparameters"`
	Model           string                   `json:"model"`
	GPU             string                   `json:"gpu"`
	// Measured are what finished jobs measured, newest first, of any
	// model and GPU: the estimate of a pair with MinMeasuredJobs of them
	// rests on them (calibrate).
	Measured []pipeline.Measurement `json:"measured,omitempty"`
	// Evaluation is how the job evaluates; nil evaluates nothing and
	// trains on the whole dataset (a job whose split is 0). With it, steps
	// and tokens count the training part only.
	Evaluation *Evaluation `json:"evaluation,omitempty"`
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
// ceil(examples / (batch_size × gradient_accumulation)), a short last step
// included. The micro-batches are those of packEpoch: each step's examples
// cut by the token budget, at least one per step.
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
	// PaddedPerEpoch adds the padding of length-sorted micro-batches.
	PaddedPerEpoch CountRange `json:"padded_per_epoch"`
	Total          int64      `json:"total"` // PerEpoch × epochs
	// MicroBatchSeqLen is the padded width of the widest micro-batch:
	// min(max_seq_length, longest example).
	MicroBatchSeqLen int `json:"micro_batch_seq_len"`
}

// Throughput is the figure the training time rests on.
type Throughput struct {
	TokensPerSecond   float64 `json:"tokens_per_second"`
	MicroBatchSeconds float64 `json:"micro_batch_seconds"`
	Uncertainty       float64 `json:"uncertainty"`
	Source            string  `json:"source"`
	// Basis is "table" (the catalog's figure, not measured on a GPU by
	// this service) or "measured" (calibrated on MeasuredJobs finished
	// jobs of the model on the GPU; the figures above are then the
	// table's scaled by their median).
	Basis        string `json:"basis"`
	MeasuredJobs int    `json:"measured_jobs"`
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
	// MicroBatchTokens is the job spec's micro_batch_tokens on this GPU:
	// the most padded tokens one micro-batch holds (PlanMicroBatch).
	MicroBatchTokens int            `json:"micro_batch_tokens"`
	Steps            Steps          `json:"steps"`
	Tokens           Tokens         `json:"tokens"`
	Memory           catalog.Memory `json:"memory"`
	Throughput       Throughput     `json:"throughput"`
	// DurationSeconds is from submission until the adapter is uploaded.
	DurationSeconds SecondsRange `json:"duration_seconds"`
	// BilledSeconds is from worker start until the worker stops.
	BilledSeconds SecondsRange `json:"billed_seconds"`
	CostUSD       USDRange     `json:"cost_usd"`
	// ExecutionTimeoutSeconds is a policy.executionTimeout that covers the
	// slow end with a margin (× 1.25, at least 600 s, at most RunPod's
	// 7 days).
	ExecutionTimeoutSeconds int64 `json:"execution_timeout_seconds"`
	// Evaluation is the job's evaluation and the time it adds (the
	// "evaluation" stage of Breakdown); nil when the job evaluates
	// nothing.
	Evaluation       *pipeline.EvaluationEstimate `json:"evaluation,omitempty"`
	Breakdown        []Stage                      `json:"breakdown"`
	Assumptions      []Assumption                 `json:"assumptions"`
	Warnings         []string                     `json:"warnings"`
	PricesDate       string                       `json:"prices_date"`
	EstimatorVersion string                       `json:"estimator_version"`
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
	mem := planMemory(m, g, in.Hyperparameters)
	if !mem.Fits {
		return Result{}, m.NotFitError(g, mem)
	}
	return estimate(c.PricesDate(), m, g, tp, mem, in), nil
}

// MicroBatchTokens is the micro_batch_tokens the estimator chooses for a
// job of h on model on gpu: what Estimate puts in Result.MicroBatchTokens,
// for a job whose estimate did not record it. Errors are as Estimate's.
func MicroBatchTokens(c *catalog.Catalog, model, gpu string, h pipeline.Hyperparameters) (int, error) {
	if err := h.Validate(); err != nil {
		return 0, err
	}
	m, err := c.Model(model)
	if err != nil {
		return 0, err
	}
	g, err := c.GPU(gpu)
	if err != nil {
		return 0, err
	}
	mem := planMemory(m, g, h)
	if !mem.Fits {
		return 0, m.NotFitError(g, mem)
	}
	return mem.MicroBatchTokens, nil
}

// planMemory chooses the token budget of h's micro-batches on g and
// returns the memory at it.
func planMemory(m catalog.Model, g catalog.GPU, h pipeline.Hyperparameters) catalog.Memory {
	return m.PlanMicroBatch(g, h.LoRARank, h.MaxSeqLength, h.BatchSize*h.GradientAccumulation)
}

func checkInput(c *catalog.Catalog, in Input) (catalog.Model, error) {
	if err := in.Hyperparameters.Validate(); err != nil {
		return catalog.Model{}, err
	}
	if err := in.Dataset.Validate(); err != nil {
		return catalog.Model{}, err
	}
	if err := in.Evaluation.Validate(); err != nil {
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
	if d.TokensPerExampleMax < 0 || d.TokensPerExampleP95 < 0 || d.TokensPerExampleP50 < 0 || d.TokensPerExampleMin < 0 {
		bad = append(bad, "tokens_per_example_max, _p95, _p50 and _min must not be negative")
	}
	if mx := d.TokensPerExampleMax; mx > 0 && d.Examples > 0 {
		// The mean cannot exceed the maximum, nor one example the total.
		if mx > d.TokensTotal || float64(mx)*float64(d.Examples) < float64(d.TokensTotal) {
			bad = append(bad, fmt.Sprintf("tokens_per_example_max (%d) does not fit tokens_total (%d) over %d examples", mx, d.TokensTotal, d.Examples))
		}
		if d.TokensPerExampleP95 > mx {
			bad = append(bad, fmt.Sprintf("tokens_per_example_p95 (%d) must not exceed tokens_per_example_max (%d)", d.TokensPerExampleP95, mx))
		}
		if d.TokensPerExampleP50 > mx || (d.TokensPerExampleP95 > 0 && d.TokensPerExampleP50 > d.TokensPerExampleP95) {
			bad = append(bad, fmt.Sprintf("tokens_per_example_p50 (%d) must not exceed tokens_per_example_p95 or _max", d.TokensPerExampleP50))
		}
		if mn := d.TokensPerExampleMin; mn > 0 && (mn > mx || float64(mn)*float64(d.Examples) > float64(d.TokensTotal) ||
			(d.TokensPerExampleP50 > 0 && mn > d.TokensPerExampleP50)) {
			bad = append(bad, fmt.Sprintf("tokens_per_example_min (%d) must not exceed the mean, tokens_per_example_p50 or _max", mn))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return pipeline.Errorf(pipeline.EInvalid, "dataset statistics are inconsistent: %s", strings.Join(bad, "; "))
}

// Limits that keep the arithmetic far from overflow; a dataset at the
// 5 GiB cap has a few billion tokens.
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

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// ceilSeconds and ceilCount round up, forgiving float error just above a
// whole number (51200 × 1.225 is 62720.000000000007).
func ceilSeconds(s float64) int64 { return int64(math.Ceil(s - 1e-9)) }

func ceilCount(x float64) float64 { return math.Ceil(x - 1e-6) }

// cents rounds to the nearest cent. Rounding is monotone, so more billed
// seconds never cost less.
func cents(usd float64) float64 { return math.Round(usd*100) / 100 }

// estimate does the arithmetic; inputs are already checked and mem fits.
func estimate(pricesDate string, m catalog.Model, g catalog.GPU, tp catalog.Throughput, mem catalog.Memory, in Input) Result {
	var ev *evalPlan
	whole := in.Dataset
	in.Dataset, ev = planEvaluation(in.Dataset, in.Evaluation)
	h, d := in.Hyperparameters, in.Dataset
	epochs := int64(h.Epochs)
	seqCap := int64(h.MaxSeqLength)
	pk := packEpoch(d, h, mem.MicroBatchTokens)

	steps := Steps{
		Epochs:               h.Epochs,
		EffectiveBatchSize:   h.BatchSize * h.GradientAccumulation,
		PerEpoch:             ceilDiv(d.Examples, int64(h.BatchSize)*int64(h.GradientAccumulation)),
		MicroBatchesPerEpoch: pk.microBatches,
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
	// No row is wider than max_seq_length rounded up to the padding
	// multiple: where truncation binds, the processed tokens are an upper
	// bound already, and padding cannot add past that width.
	widest := float64(d.Examples) * math.Ceil(float64(seqCap)/padMultiple) * padMultiple
	var padded [3]float64
	for _, e := range ends {
		padded[e] = ceilCount(min(float64(processed)*(1+padFraction(pk, e)), widest))
	}
	tok.PaddedPerEpoch = CountRange{int64(padded[low]), int64(padded[expected]), int64(padded[high])}

	cal := calibrate(in.Measured, m, g, mem.Quantization, tp)
	// scale[e] multiplies the table's training time at end e.
	scale := [3]float64{1 / (1 + tp.Uncertainty), 1, 1 / (1 - tp.Uncertainty)}
	if cal.measuredTraining() {
		scale = cal.trainFactor
	}
	load := m.LoadTime(mem.Quantization)
	loadSec := [3]float64{load.LowSeconds, load.ExpectedSeconds, load.HighSeconds}
	if cal.measuredLoad() {
		loadSec = cal.loadSeconds
	}
	adapterBytes := float64(m.LoRAParameters(h.LoRARank)) * adapterFileBytesPerParameter
	// The worker tokenizes the whole dataset and a second dataset's
	// evaluated examples.
	tokenized := float64(whole.TokensTotal)
	var pass evalPass
	var evalCount, evalEvery int64
	var evalSec [3]float64
	if ev != nil {
		if ev.source == SourceDataset {
			tokenized += float64(ev.tokens.Total)
		}
		pass = passOf(ev.each, seqCap, mem.MicroBatchTokens)
		evalCount, evalEvery = evaluations(steps.Total)
		if pass.examples == 0 {
			evalCount = 0
		}
		for _, e := range ends {
			one := float64(pass.microBatches)*tp.MicroBatchSeconds + float64(pass.padded)/tp.TokensPerSecond
			evalSec[e] = one * evalForwardShare.at(e) * scale[e] * float64(evalCount)
		}
	}
	var train, fixedShare [3]float64
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
				return startupSeconds.at(e) + tokenized/tokenizeTokensPerSecond.at(e)
			}},
		{"model_load", fmt.Sprintf("reading the %s weights (%.1f GB) from the network volume", load.Weights.Quantization, float64(load.Weights.Bytes)/1e9), true, true,
			func(e end) float64 { return loadSec[e] }},
		{"training", "forward, recompute and backward of every micro-batch, every epoch", true, true,
			func(e end) float64 {
				fixed := float64(steps.MicroBatchesTotal) * tp.MicroBatchSeconds
				compute := padded[e] * float64(epochs) / tp.TokensPerSecond
				train[e] = (fixed + compute) * scale[e]
				if fixed+compute > 0 {
					fixedShare[e] = fixed / (fixed + compute)
				}
				return train[e]
			}},
		{"evaluation", "forward-only passes over the evaluation examples, every few steps and at the last", true, true,
			func(e end) float64 { return evalSec[e] }},
		{"save_upload", fmt.Sprintf("saving the adapter (%.0f MB) and uploading it", adapterBytes/1e6), true, true,
			func(e end) float64 { return saveSeconds.at(e) + adapterBytes/uploadBytesPerSecond.at(e) }},
		{"idle_timeout", "the endpoint's idle timeout after the job: billed, not waited for", true, false,
			func(end) float64 { return idleTimeoutSeconds }},
	}
	if ev == nil {
		defs = slices.DeleteFunc(defs, func(sd stageDef) bool { return sd.name == "evaluation" })
	}
	var dur, billed, exec [3]int64
	var evalStage [3]int64
	for _, sd := range defs {
		var s [3]int64
		for _, e := range ends {
			s[e] = ceilSeconds(sd.sec(e))
			if sd.name == "evaluation" {
				evalStage[e] = s[e]
			}
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

	thr := Throughput{
		TokensPerSecond:          tp.TokensPerSecond,
		MicroBatchSeconds:        tp.MicroBatchSeconds,
		Uncertainty:              tp.Uncertainty,
		Source:                   tp.Source,
		Basis:                    BasisTable,
		MeasuredJobs:             cal.trainJobs,
		EffectiveTokensPerSecond: eff,
	}
	if cal.measuredTraining() {
		f := cal.trainFactor
		thr.TokensPerSecond = math.Round(tp.TokensPerSecond / f[expected])
		thr.MicroBatchSeconds = math.Round(tp.MicroBatchSeconds*f[expected]*1000) / 1000
		thr.Uncertainty = math.Round(max(1-f[low]/f[expected], f[high]/f[expected]-1)*1000) / 1000
		thr.Basis = BasisMeasured
		thr.Source = fmt.Sprintf("measured on %d finished jobs of %s on %s (the latest %d at most); the table's figure was %.2f s + T / %.0f tokens/s: %s",
			cal.trainJobs, m.ID, g.Name, MaxMeasuredJobs, tp.MicroBatchSeconds, tp.TokensPerSecond, tp.Source)
	}

	r := Result{
		Model:             m.ID,
		GPU:               g.ID,
		GPUName:           g.Name,
		PriceUSDPerSecond: p,
		Quantization:      mem.Quantization,
		Hyperparameters:   h,
		MicroBatchTokens:  mem.MicroBatchTokens,
		Steps:             steps,
		Tokens:            tok,
		Memory:            mem,
		Throughput:        thr,
		DurationSeconds:   SecondsRange{dur[low], dur[expected], dur[high]},
		BilledSeconds:     SecondsRange{billed[low], billed[expected], billed[high]},
		CostUSD:           USDRange{cents(float64(billed[low]) * p), cents(float64(billed[expected]) * p), cents(float64(billed[high]) * p)},

		ExecutionTimeoutSeconds: timeout,
		Breakdown:               stages,
		PricesDate:              pricesDate,
		EstimatorVersion:        Version,
	}
	r.Assumptions = assumptions(m, g, tp, mem, pk, cal, load, in, pricesDate)
	if ev != nil {
		r.Evaluation = &pipeline.EvaluationEstimate{
			Source: ev.source, Split: ev.split, Examples: ev.examples,
			TokensTotal: ev.tokens.Total, TokensTrained: ev.tokens.Trained, TrainingExamples: d.Examples,
			Evaluations: evalCount, EverySteps: evalEvery, MicroBatches: pass.microBatches, PaddedTokens: pass.padded,
			Seconds:      float64(evalStage[expected]),
			SecondsRange: pipeline.Range{Low: float64(evalStage[low]), Expected: float64(evalStage[expected]), High: float64(evalStage[high])},
		}
		r.Assumptions = append(r.Assumptions, evaluationAssumption(ev, pass, evalEvery, evalCount, mem.MicroBatchTokens))
	}
	fixedSeconds := float64(steps.MicroBatchesTotal) * tp.MicroBatchSeconds * scale[expected]
	r.Warnings = warnings(m, tp, mem, in, tok, steps, fixedShare[expected], fixedSeconds, exec[high])
	if ev != nil && pass.examples == 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("none of the %d evaluation examples has a trained token: the worker evaluates nothing", ev.examples))
	}
	return r
}

// Throughput bases.
const (
	BasisTable    = "table"
	BasisMeasured = "measured"
)

// padFraction is the padding over the processed tokens at end e: the
// simulated padding, halved at the low end and × 1.5 at the high end; or,
// without the dataset's length distribution, the rounding of widths plus
// paddingFraction × (1 − 1 / rows per micro-batch).
func padFraction(pk packing, e end) float64 {
	if pk.spread {
		return pk.padFraction * [3]float64{0.5, 1, 1.5}[e]
	}
	share := 0.0
	if pk.rowsPerMicroBatch > 1 {
		share = 1 - 1/pk.rowsPerMicroBatch
	}
	return pk.padFraction + paddingFraction.at(e)*share
}

func assumptions(m catalog.Model, g catalog.GPU, tp catalog.Throughput, mem catalog.Memory, pk packing, cal calibration, load catalog.LoadTime, in Input, pricesDate string) []Assumption {
	h := in.Hyperparameters
	pct := func(f float64) int { return int(math.Round(f * 100)) }
	throughput := Assumption{
		Name: "throughput",
		Value: fmt.Sprintf("%s on %s: a micro-batch of T padded tokens takes %.2f s + T / %.0f tokens/s; the range divides training time by %.2f (fast) and %.2f (slow). A table figure, NOT measured on a GPU by this service: %s on %s has %d finished jobs with measurements, %d are needed",
			m.ID, g.Name, tp.MicroBatchSeconds, tp.TokensPerSecond, 1+tp.Uncertainty, 1-tp.Uncertainty, m.ID, g.Name, cal.trainJobs, MinMeasuredJobs),
		Source: tp.Source,
	}
	if cal.measuredTraining() {
		f := cal.trainFactor
		throughput.Value = fmt.Sprintf("measured on %d finished jobs of %s on %s: training took %.2f× (%.2f× to %.2f×) the table's %.2f s + T / %.0f tokens/s per micro-batch of T padded tokens (median, smallest, largest; the range at least ±%d%%)",
			cal.trainJobs, m.ID, g.Name, f[expected], f[low], f[high], tp.MicroBatchSeconds, tp.TokensPerSecond, pct(measuredMinSpread))
		throughput.Source = "each job's measured train_seconds ÷ the table's time for its measured micro_batches and padded_tokens_seen (completed callbacks); table: " + tp.Source
	}
	budget := Assumption{
		Name: "micro_batch_tokens",
		Value: fmt.Sprintf("%d padded tokens per micro-batch (the job spec's micro_batch_tokens): the largest of max_seq_length × 1, 2, 4 … (at most %d, and at most one step's batch_size × gradient_accumulation × max_seq_length) with which training needs at most %d%% of the GPU's %.1f GiB",
			mem.MicroBatchTokens, catalog.MaxPlannedMicroBatchTokens, pct(1-catalog.HeadroomFraction), mem.AvailableGiB),
	}
	if !mem.FitsWithHeadroom {
		budget.Value = fmt.Sprintf("%d padded tokens per micro-batch (max_seq_length): even that leaves less than %d%% of the GPU's %.1f GiB free",
			mem.MicroBatchTokens, pct(catalog.HeadroomFraction), mem.AvailableGiB)
	}
	padding := Assumption{
		Name: "padding",
		Value: fmt.Sprintf("the worker sorts each %d steps' examples by length, cuts them into steps of batch_size × gradient_accumulation and each step, longest first, into micro-batches of at most %d padded tokens (rows × longest row, rounded up to %d), without packing: %d micro-batches per epoch. Replayed on the dataset's length distribution (min, p50, p95, max, linear between): +%.1f%% padding expected, half that / one and a half times that at the ends",
			megabatchSteps, mem.MicroBatchTokens, padMultiple, pk.microBatches, pk.padFraction*100),
		Source: "gpu-image/brightrun_worker/train.py (plan_epoch, split_by_tokens); WORKER.md: no packing for Qwen3-Next (sequence boundaries leak)",
	}
	if !pk.spread {
		padding.Value = fmt.Sprintf("the worker sorts each %d steps' examples by length and cuts each step into micro-batches of at most %d padded tokens, without packing: %d micro-batches per epoch of %.1f examples on average. Without the dataset's length distribution: +%d%% / +%d%% / +%d%% tokens (low / expected / high) × (1 − 1 / examples per micro-batch)",
			megabatchSteps, mem.MicroBatchTokens, pk.microBatches, pk.rowsPerMicroBatch, pct(paddingFraction.low), pct(paddingFraction.expected), pct(paddingFraction.high))
	}
	loadA := Assumption{
		Name: "model_load",
		Value: fmt.Sprintf("%s weights at %s (%.1f GB) read from the network volume at %.0f / %.0f / %.0f MB/s; NOT measured on a GPU by this service (%d finished jobs reported a load time, %d are needed)",
			load.Weights.Quantization, load.Weights.Path, float64(load.Weights.Bytes)/1e9,
			catalog.VolumeReadFastBytesPerSecond/1e6, catalog.VolumeReadExpectedBytesPerSecond/1e6, catalog.VolumeReadSlowBytesPerSecond/1e6,
			cal.loadJobs, MinMeasuredJobs),
		Source: "RunPod network volumes: 200–400 MB/s typical",
	}
	if cal.measuredLoad() {
		loadA.Value = fmt.Sprintf("measured on %d finished jobs of %s on %s: %.0f / %.0f / %.0f s (smallest, median, largest; at least ±%d%%)",
			cal.loadJobs, m.ID, g.Name, cal.loadSeconds[low], cal.loadSeconds[expected], cal.loadSeconds[high], pct(measuredMinSpread))
		loadA.Source = "load_seconds of the jobs' completed callbacks"
	}
	return []Assumption{
		throughput,
		budget,
		padding,
		{
			Name:  "truncation",
			Value: fmt.Sprintf("examples are cut at max_seq_length %d; without the longest example's length, every token is assumed kept up to examples × max_seq_length (an overestimate when few examples are long)", h.MaxSeqLength),
		},
		loadA,
		{
			Name:  "queue",
			Value: fmt.Sprintf("%.0f / %.0f / %.0f s waiting for a free worker, not billed; a busy endpoint queues longer (assumed, not measured)", queueSeconds.low, queueSeconds.expected, queueSeconds.high),
		},
		{
			Name:  "cold_start",
			Value: fmt.Sprintf("%.0f / %.0f / %.0f s from worker start to the handler (FlashBoot, image cached … image pulled; assumed, not measured)", coldStartSeconds.low, coldStartSeconds.expected, coldStartSeconds.high),
		},
		{
			Name: "startup",
			Value: fmt.Sprintf("%.0f / %.0f / %.0f s of imports, CUDA initialisation, dataset download and kernel compilation, plus tokenization at %.0f / %.0f / %.0f k tokens/s (assumed, not measured on a GPU)",
				startupSeconds.low, startupSeconds.expected, startupSeconds.high,
				tokenizeTokensPerSecond.low/1e3, tokenizeTokensPerSecond.expected/1e3, tokenizeTokensPerSecond.high/1e3),
		},
		{
			Name: "save_upload",
			Value: fmt.Sprintf("%.0f / %.0f / %.0f s to save, plus the fp32 adapter (rank × %d parameters × 4 bytes) uploaded at %.0f / %.0f / %.0f MB/s; no intermediate checkpoints (assumed, not measured)",
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
			Name: "memory",
			Value: fmt.Sprintf("peak = weights (%s) + LoRA state (16 B/parameter) + checkpointed layer inputs + one layer's activations (%d bytes per token) + one layer's expert stack in BF16 (%.1f GiB) + logits (10 B per token per vocabulary entry) + 1 GiB + 8 %%, at micro_batch_tokens %d tokens; NOT measured on a GPU for the worker's grouped MoE",
				mem.Quantization, m.LayerActivationBytesPerToken, mem.ExpertStackGiB, mem.MicroBatchTokens),
			Source: "layer activations: catalog model registry (the torch gated-delta-rule fallback's saved tensors measured on the CPU); weights and the axolotl Qwen3-Next QLoRA measurement (45.62 GiB) anchor the rest",
		},
		{
			Name:  "rounding",
			Value: "stage seconds rounded up to whole seconds, totals are their sums; USD rounded to the nearest cent; the range adds every stage's low (high) end",
		},
	}
}

// fixedCostWarnSeconds: the fixed cost per micro-batch is worth a warning
// when it is most of the training time and more than this in all.
const fixedCostWarnSeconds = 60

func warnings(m catalog.Model, tp catalog.Throughput, mem catalog.Memory, in Input, tok Tokens, steps Steps, fixedShare, fixedSeconds float64, execHigh int64) []string {
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
	if fixedShare > 0.5 && fixedSeconds > fixedCostWarnSeconds && !m.Dense() {
		w = append(w, fmt.Sprintf("%d%% of the training time is the fixed cost of each micro-batch (%.2f s, whatever its length: every layer's expert weights are read, and dequantized under NF4, for each one): a step's %d examples fill micro-batches of %d tokens poorly; a larger batch_size × gradient_accumulation runs fewer, fuller micro-batches per epoch",
			int(math.Round(fixedShare*100)), tp.MicroBatchSeconds, steps.EffectiveBatchSize, mem.MicroBatchTokens))
	}
	if !mem.FitsWithHeadroom {
		w = append(w, fmt.Sprintf("training needs about %.1f of the GPU's %.1f GiB, less than %d%% to spare: it may run out of memory; lower max_seq_length or lora_rank, or choose a GPU with more memory",
			mem.RequiredGiB, mem.AvailableGiB, int(math.Round(catalog.HeadroomFraction*100))))
	}
	if execHigh > maxExecutionSeconds {
		w = append(w, "at its slow end the job runs past RunPod's 7-day execution limit, where it would be stopped: train on fewer tokens or epochs")
	}
	return w
}
