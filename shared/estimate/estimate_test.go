package estimate

import (
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func preset(t testing.TB, name string) pipeline.Hyperparameters {
	t.Helper()
	p, err := pipeline.LookupPreset(name)
	if err != nil {
		t.Fatal(err)
	}
	return p.Hyperparameters
}

// example is the reference dataset: 1,000 examples, 1.2 M tokens,
// 0.6 M trained.
var example = Dataset{Examples: 1000, TokensTotal: 1_200_000, TokensTrained: 600_000}

func TestSteps(t *testing.T) {
	c := catalog.Default()
	// Qwen3-Next on an H100 with max_seq_length 4096 gets micro-batches of
	// 8192 tokens (TestPlanMicroBatch): 16 rows of 500 tokens (504 wide),
	// or 2 rows of 3000.
	tests := []struct {
		name                string
		examples, perEx     int64
		batch, accum, epoch int
		wantPerEpoch        int64
		wantMicro           int64
	}{
		{"an exact multiple of the effective batch", 1600, 500, 2, 8, 3, 100, 100},
		{"a short last step counts as a step", 1000, 500, 2, 8, 3, 63, 63},
		{"fewer examples than one effective batch make one step", 5, 500, 4, 16, 2, 1, 1},
		{"batch 1 without accumulation steps on every example", 37, 500, 1, 1, 1, 37, 37},
		{"a step of long examples is cut into several micro-batches", 160, 3000, 2, 8, 1, 10, 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := preset(t, "balanced")
			h.BatchSize, h.GradientAccumulation, h.Epochs = tt.batch, tt.accum, tt.epoch
			d := Dataset{Examples: tt.examples, TokensTotal: tt.examples * tt.perEx, TokensTrained: tt.examples * 200}
			r, err := Estimate(c, Input{Dataset: d, Hyperparameters: h, GPU: "h100-80gb"})
			if err != nil {
				t.Fatal(err)
			}
			want := Steps{
				Epochs: tt.epoch, EffectiveBatchSize: tt.batch * tt.accum,
				PerEpoch: tt.wantPerEpoch, Total: tt.wantPerEpoch * int64(tt.epoch),
				MicroBatchesPerEpoch: tt.wantMicro, MicroBatchesTotal: tt.wantMicro * int64(tt.epoch),
			}
			if r.Steps != want {
				t.Errorf("Estimate(%d examples of %d tokens).Steps = %+v, want %+v", tt.examples, tt.perEx, r.Steps, want)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	c := catalog.Default()
	tests := []struct {
		name                 string
		d                    Dataset
		batch, accum, maxSeq int
		want                 Tokens
	}{
		{
			// The mean example (1000) is cut to 512: every row is 512 wide,
			// so no padding, whatever the spread.
			name:  "no example keeps more than max_seq_length, and truncated rows are not padded",
			d:     Dataset{Examples: 100, TokensTotal: 100_000, TokensTrained: 90_000},
			batch: 4, accum: 8, maxSeq: 512,
			want: Tokens{PerEpoch: 51_200, TruncatedPerEpoch: 48_800, TrainedPerEpoch: 51_200,
				PaddedPerEpoch: CountRange{51_200, 51_200, 51_200}, Total: 153_600, MicroBatchSeqLen: 512},
		},
		{
			// Steps of 32 examples of 500 tokens (504 wide) in micro-batches
			// of 16384 tokens: 32 rows each, one per step, 4 steps (the
			// last of 4 examples): 25 rows per micro-batch on average. The
			// padding is the rounding to 504 (+0.8 %) and, without the
			// length distribution, 0 / 10 / 30 % × (1 − 1/25).
			name:  "without the length distribution the padding is a share of the rows",
			d:     Dataset{Examples: 100, TokensTotal: 50_000, TokensTrained: 40_000},
			batch: 4, accum: 8, maxSeq: 1024,
			want: Tokens{PerEpoch: 50_000, TrainedPerEpoch: 40_000,
				PaddedPerEpoch: CountRange{50_400, 55_200, 64_800}, Total: 150_000, MicroBatchSeqLen: 1024},
		},
		{
			name: "a micro-batch of one example has no padding",
			d:    example, batch: 1, accum: 1, maxSeq: 4096,
			want: Tokens{PerEpoch: 1_200_000, TrainedPerEpoch: 600_000, PaddedPerEpoch: CountRange{1_200_000, 1_200_000, 1_200_000},
				Total: 3_600_000, MicroBatchSeqLen: 4096},
		},
		{
			// One step of 4 examples in one micro-batch. The sorted
			// examples sit at quantiles 0.8, 0.6, 0.4, 0.2 of the length
			// distribution through (0, 100), (0.5, 500), (0.95, 900),
			// (1, 1000): 766.7, 588.9, 420, 260 tokens (2035.6), padded to
			// 4 × 768 = 3072: +50.9 %, half and 1.5 × that at the ends.
			name:  "the padding is simulated on the length distribution",
			d:     Dataset{Examples: 4, TokensTotal: 2036, TokensTrained: 1000, TokensPerExampleMax: 1000, TokensPerExampleP95: 900, TokensPerExampleP50: 500, TokensPerExampleMin: 100},
			batch: 4, accum: 1, maxSeq: 2048,
			want: Tokens{PerEpoch: 2036, TrainedPerEpoch: 1000, PaddedPerEpoch: CountRange{2555, 3073, 3592}, Total: 6108, MicroBatchSeqLen: 1000},
		},
		{
			name:  "the longest example's excess is cut",
			d:     Dataset{Examples: 1000, TokensTotal: 1_200_000, TokensTrained: 600_000, TokensPerExampleMax: 6000},
			batch: 2, accum: 8, maxSeq: 4096,
			want: Tokens{PerEpoch: 1_198_096, TruncatedPerEpoch: 1904, TrainedPerEpoch: 600_000,
				PaddedPerEpoch: CountRange{1_211_349, 1_224_601, 1_237_853}, Total: 3_594_288, MicroBatchSeqLen: 4096},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := preset(t, "balanced")
			h.BatchSize, h.GradientAccumulation, h.MaxSeqLength = tt.batch, tt.accum, tt.maxSeq
			r, err := Estimate(c, Input{Dataset: tt.d, Hyperparameters: h, Model: "Qwen/Qwen3-8B", GPU: "h100-80gb"})
			if err != nil {
				t.Fatal(err)
			}
			if r.Tokens != tt.want {
				t.Errorf("Estimate(%+v).Tokens = %+v, want %+v", tt.d, r.Tokens, tt.want)
			}
		})
	}
}

// TestEstimate pins whole estimates: the reference dataset with the
// balanced preset (1000 examples of 1200 tokens, steps of 16, 3 epochs),
// on the default model and on the others. For Qwen3-Next on an H100:
// micro-batches of 8192 tokens hold 6 rows of 1200, so a step of 16 is 3
// micro-batches (a last step of 8 is 2): 188 per epoch, 564 in all; the
// padding is 0 / 8.1 / 24.4 % (5.3 rows per micro-batch); training takes
// 564 × 0.49 s + 3.89 M padded tokens / 12,400 tokens/s = 591 s, ÷ 1.35
// and ÷ 0.65 at the ends; loading 45 GB at 300 MB/s, 150 s. Before the
// grouped MoE the same job was estimated at 8.8 hours (1,500 micro-batches
// × 20.5 s of expert loop).
func TestEstimate(t *testing.T) {
	c := catalog.Default()
	tests := []struct {
		name         string
		model, gpu   string
		wantQuant    catalog.Quantization
		wantTokens   int
		wantTraining SecondsRange
		wantDuration SecondsRange
		wantCost     USDRange
	}{
		{"Qwen3-Next on an H100 takes about a quarter of an hour, at about $1", catalog.DefaultModelID, "h100-80gb", catalog.NF4, 8192,
			SecondsRange{420, 591, 981}, SecondsRange{571, 866, 1997}, USDRange{0.67, 0.99, 1.97}},
		// No grouped GEMM on an A100: 2,200 tokens/s (catalog
		// TestGroupedMoEFigures) and 0.76 s per micro-batch.
		{"Qwen3-Next on an A100 is slower and costs more", catalog.DefaultModelID, "a100-80gb", catalog.NF4, 8192,
			SecondsRange{1530, 2198, 3791}, SecondsRange{1681, 2473, 4807}, USDRange{1.28, 1.87, 3.43}},
		{"Qwen3-8B on an H100 takes about twenty minutes", "Qwen/Qwen3-8B", "h100-80gb", catalog.BF16, 16384,
			SecondsRange{659, 928, 1530}, SecondsRange{739, 1110, 2407}, USDRange{0.86, 1.28, 2.45}},
		{"Qwen3-30B-A3B trains in BF16 on an H200", "Qwen/Qwen3-30B-A3B-Instruct-2507", "h200-141gb", catalog.BF16, 16384,
			SecondsRange{269, 391, 688}, SecondsRange{460, 720, 1783}, USDRange{0.72, 1.1, 2.31}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Estimate(c, Input{Dataset: example, Hyperparameters: preset(t, "balanced"), Model: tt.model, GPU: tt.gpu})
			if err != nil {
				t.Fatal(err)
			}
			if r.Quantization != tt.wantQuant || r.MicroBatchTokens != tt.wantTokens || r.Memory.MicroBatchTokens != tt.wantTokens ||
				stageSeconds(r, "training") != tt.wantTraining || r.DurationSeconds != tt.wantDuration || r.CostUSD != tt.wantCost {
				t.Errorf("Estimate(%s on %s) = %s, %d tokens per micro-batch, training %+v s, %+v s, $%+v; want %s, %d, %+v s, %+v s, $%+v",
					tt.model, tt.gpu, r.Quantization, r.MicroBatchTokens, stageSeconds(r, "training"), r.DurationSeconds, r.CostUSD,
					tt.wantQuant, tt.wantTokens, tt.wantTraining, tt.wantDuration, tt.wantCost)
			}
			if r.Throughput.Basis != BasisTable || !strings.Contains(assumption(r, "throughput"), "NOT measured on a GPU") {
				t.Errorf("Estimate() throughput basis %q, assumption %q: want the table, said not to be measured", r.Throughput.Basis, assumption(r, "throughput"))
			}
			checkConsistent(t, r)
		})
	}
}

func stageSeconds(r Result, name string) SecondsRange {
	for _, s := range r.Breakdown {
		if s.Name == name {
			return s.Seconds
		}
	}
	return SecondsRange{}
}

func assumption(r Result, name string) string {
	for _, a := range r.Assumptions {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// checkConsistent asserts what holds for every estimate: ordered ranges, a
// breakdown that adds up, cents, and the stamps.
func checkConsistent(t *testing.T, r Result) {
	t.Helper()
	ordered := func(name string, lo, ex, hi float64) {
		if !(lo <= ex && ex <= hi) {
			t.Errorf("%s = %v / %v / %v, want low ≤ expected ≤ high", name, lo, ex, hi)
		}
	}
	ordered("duration", float64(r.DurationSeconds.Low), float64(r.DurationSeconds.Expected), float64(r.DurationSeconds.High))
	ordered("cost", r.CostUSD.Low, r.CostUSD.Expected, r.CostUSD.High)
	ordered("effective tokens/s", r.Throughput.EffectiveTokensPerSecond.Low, r.Throughput.EffectiveTokensPerSecond.Expected, r.Throughput.EffectiveTokensPerSecond.High)
	var dur, billed SecondsRange
	for _, s := range r.Breakdown {
		ordered(s.Name, float64(s.Seconds.Low), float64(s.Seconds.Expected), float64(s.Seconds.High))
		if s.InDuration {
			dur.Low, dur.Expected, dur.High = dur.Low+s.Seconds.Low, dur.Expected+s.Seconds.Expected, dur.High+s.Seconds.High
		}
		if s.Billed {
			billed.Low, billed.Expected, billed.High = billed.Low+s.Seconds.Low, billed.Expected+s.Seconds.Expected, billed.High+s.Seconds.High
		} else if s.CostUSD != (USDRange{}) {
			t.Errorf("unbilled stage %s costs %+v", s.Name, s.CostUSD)
		}
	}
	if dur != r.DurationSeconds || billed != r.BilledSeconds {
		t.Errorf("breakdown sums to %+v s waited, %+v s billed; want %+v, %+v", dur, billed, r.DurationSeconds, r.BilledSeconds)
	}
	for i, s := range []int64{r.BilledSeconds.Low, r.BilledSeconds.Expected, r.BilledSeconds.High} {
		got := []float64{r.CostUSD.Low, r.CostUSD.Expected, r.CostUSD.High}[i]
		if want := math.Round(float64(s)*r.PriceUSDPerSecond*100) / 100; got != want {
			t.Errorf("cost = %v for %d billed seconds at %g $/s, want %v", got, s, r.PriceUSDPerSecond, want)
		}
	}
	if r.PricesDate == "" || r.EstimatorVersion != Version {
		t.Errorf("stamps = %q, %q, want the prices date and %q", r.PricesDate, r.EstimatorVersion, Version)
	}
	names := map[string]bool{}
	for _, a := range r.Assumptions {
		names[a.Name] = a.Value != ""
	}
	for _, n := range []string{"throughput", "micro_batch_tokens", "padding", "truncation", "model_load", "queue", "cold_start", "billing", "memory", "rounding"} {
		if !names[n] {
			t.Errorf("assumption %q is missing", n)
		}
	}
	if r.ExecutionTimeoutSeconds < r.BilledSeconds.High-int64(coldStartSeconds.high)-idleTimeoutSeconds {
		// Only when capped at RunPod's 7 days, with a warning.
		if r.ExecutionTimeoutSeconds != maxExecutionSeconds || !strings.Contains(strings.Join(r.Warnings, "\n"), "7-day") {
			t.Errorf("execution timeout %d s is shorter than the slow end's execution and not capped with a warning", r.ExecutionTimeoutSeconds)
		}
	}
}

func TestEstimateWarnings(t *testing.T) {
	c := catalog.Default()
	tests := []struct {
		name  string
		d     Dataset
		model string
		want  string
	}{
		{"long examples are reported as truncated", Dataset{Examples: 1000, TokensTotal: 1_200_000, TokensTrained: 600_000, TokensPerExampleMax: 9000, TokensPerExampleP95: 5000},
			"Qwen/Qwen3-8B", "examples longer than max_seq_length 4096 are truncated"},
		{"a p95 over max_seq_length is reported", Dataset{Examples: 1000, TokensTotal: 1_200_000, TokensTrained: 600_000, TokensPerExampleMax: 9000, TokensPerExampleP95: 5000},
			"Qwen/Qwen3-8B", "more than 5% of examples"},
		{"a dataset with nothing to train on is reported", Dataset{Examples: 100, TokensTotal: 10_000},
			"Qwen/Qwen3-8B", "no token is trained on"},
		{"a dataset smaller than one batch is reported", Dataset{Examples: 10, TokensTotal: 10_000, TokensTrained: 5000},
			"Qwen/Qwen3-8B", "each epoch is a single optimizer step"},
		// 20,000 examples of 100 tokens in steps of 16: 1,250 micro-batches
		// per epoch × 0.49 s is 75 % of the training time.
		{"a fixed cost that dominates small micro-batches is reported", Dataset{Examples: 20_000, TokensTotal: 2_000_000, TokensTrained: 1_000_000},
			catalog.DefaultModelID, "of the training time is the fixed cost of each micro-batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Estimate(c, Input{Dataset: tt.d, Hyperparameters: preset(t, "balanced"), Model: tt.model, GPU: "h100-80gb"})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(r.Warnings, "\n"), tt.want) {
				t.Errorf("Estimate().Warnings = %q, want one containing %q", r.Warnings, tt.want)
			}
		})
	}

	t.Run("a job that fits without headroom is warned", func(t *testing.T) {
		h := preset(t, "balanced")
		h.MaxSeqLength = 10240 // 72.9 of 79.1 GiB on an H100 (catalog TestPlanMicroBatch)
		r, err := Estimate(c, Input{Dataset: example, Hyperparameters: h, GPU: "h100-80gb"})
		if err != nil {
			t.Fatal(err)
		}
		if want := "less than 10% to spare"; !strings.Contains(strings.Join(r.Warnings, "\n"), want) || r.Memory.FitsWithHeadroom {
			t.Errorf("Estimate().Warnings = %q (memory %v), want one containing %q", r.Warnings, r.Memory, want)
		}
	})

	t.Run("a plain dense estimate has no warning", func(t *testing.T) {
		r, err := Estimate(c, Input{Dataset: example, Hyperparameters: preset(t, "balanced"), Model: "Qwen/Qwen3-8B", GPU: "h100-80gb"})
		if err != nil || len(r.Warnings) != 0 {
			t.Errorf("Estimate().Warnings = %q, %v, want none", r.Warnings, err)
		}
	})
}

func TestEstimateErrors(t *testing.T) {
	c := catalog.Default()
	balanced := preset(t, "balanced")
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{"hyperparameters out of bounds are refused", Input{Dataset: example, Hyperparameters: func() pipeline.Hyperparameters {
			h := balanced
			h.Epochs = 0
			return h
		}(), GPU: "h100-80gb"}, "epochs must be between 1 and 20"},
		{"an unknown model is refused", Input{Dataset: example, Hyperparameters: balanced, Model: "meta/llama", GPU: "h100-80gb"}, `unknown base model "meta/llama"`},
		{"an unknown GPU is refused", Input{Dataset: example, Hyperparameters: balanced, GPU: "tpu"}, `unknown GPU type "tpu"`},
		{"a missing GPU is refused", Input{Dataset: example, Hyperparameters: balanced}, `unknown GPU type ""`},
		{"a model that does not fit is refused with the memory it needs", Input{Dataset: example, Hyperparameters: balanced, GPU: "l40s-48gb"},
			"does not fit on L40S 48GB: training it needs about 56.7 GiB"},
		{"an empty dataset is refused", Input{Dataset: Dataset{}, Hyperparameters: balanced, GPU: "h100-80gb"}, "examples must be between 1 and 10000000000, got 0"},
		{"an absurd token count is refused", Input{Dataset: Dataset{Examples: 10, TokensTotal: 1 << 62}, Hyperparameters: balanced, GPU: "h100-80gb"}, "tokens_total must be at most"},
		{"more trained than total tokens is refused", Input{Dataset: Dataset{Examples: 10, TokensTotal: 100, TokensTrained: 101}, Hyperparameters: balanced, GPU: "h100-80gb"},
			"tokens_trained (101) must be between 0 and tokens_total (100)"},
		{"a longest example shorter than the mean is refused", Input{Dataset: Dataset{Examples: 10, TokensTotal: 1000, TokensTrained: 10, TokensPerExampleMax: 50}, Hyperparameters: balanced, GPU: "h100-80gb"},
			"tokens_per_example_max (50) does not fit tokens_total (1000) over 10 examples"},
		{"a median above p95 is refused", Input{Dataset: Dataset{Examples: 10, TokensTotal: 1000, TokensTrained: 10, TokensPerExampleMax: 300, TokensPerExampleP95: 200, TokensPerExampleP50: 250}, Hyperparameters: balanced, GPU: "h100-80gb"},
			"tokens_per_example_p50 (250) must not exceed tokens_per_example_p95 or _max"},
		{"a shortest example longer than the mean is refused", Input{Dataset: Dataset{Examples: 10, TokensTotal: 1000, TokensTrained: 10, TokensPerExampleMax: 300, TokensPerExampleMin: 150}, Hyperparameters: balanced, GPU: "h100-80gb"},
			"tokens_per_example_min (150) must not exceed the mean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Estimate(c, tt.in)
			var pe *pipeline.Error
			if !errors.As(err, &pe) || pe.Code != pipeline.EInvalid || !strings.Contains(pe.Message, tt.want) {
				t.Errorf("Estimate() error = %v, want an %s error containing %q", err, pipeline.EInvalid, tt.want)
			}
		})
	}
}

func TestEstimateRefusesSequencesPastTheContext(t *testing.T) {
	base := catalog.Default()
	ms := base.Models()
	for i := range ms {
		ms[i].ContextLength = 2048
	}
	c, err := catalog.New(ms, base.Prices(), base.Throughputs())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Estimate(c, Input{Dataset: example, Hyperparameters: preset(t, "balanced"), GPU: "h100-80gb"})
	if want := "max_seq_length 4096 is longer than Qwen/Qwen3-Next-80B-A3B-Instruct's context length 2048"; pipeline.ErrorCode(err) != pipeline.EInvalid || !strings.Contains(err.Error(), want) {
		t.Errorf("Estimate() error = %v, want an %s error containing %q", err, pipeline.EInvalid, want)
	}
}

func TestCompare(t *testing.T) {
	c := catalog.Default()

	// Without the per-expert loop the H100's speed outweighs its price:
	// $0.99 against the A100's $1.87 (TestEstimate).
	t.Run("the default model is cheapest on H100, fastest on H200, and fits no 48 GB card", func(t *testing.T) {
		cmp, err := Compare(c, Input{Dataset: example, Hyperparameters: preset(t, "balanced")})
		if err != nil {
			t.Fatal(err)
		}
		if cmp.CheapestGPU != "h100-80gb" || cmp.FastestGPU != "h200-141gb" {
			t.Errorf("Compare() cheapest, fastest = %s, %s, want h100-80gb, h200-141gb", cmp.CheapestGPU, cmp.FastestGPU)
		}
		var fits, not []string
		for _, r := range cmp.Estimates {
			fits = append(fits, r.GPU)
			checkConsistent(t, r)
		}
		for _, n := range cmp.DoesNotFit {
			not = append(not, n.GPU)
			if n.RequiredGiB <= n.AvailableGiB || n.Memory.RequiredGiB != n.RequiredGiB {
				t.Errorf("DoesNotFit %s = %+v, want required > available", n.GPU, n)
			}
		}
		if strings.Join(fits, ",") != "a100-80gb,h100-80gb,h200-141gb" || strings.Join(not, ",") != "l40s-48gb,a6000-48gb,rtx4090-24gb" {
			t.Errorf("Compare() fits %q, does not fit %q", fits, not)
		}
		if cmp.PricesDate != catalog.DefaultPricesDate || cmp.EstimatorVersion != Version {
			t.Errorf("Compare() stamps = %q, %q", cmp.PricesDate, cmp.EstimatorVersion)
		}
	})

	t.Run("the cheapest has the lowest expected cost and the fastest the shortest expected duration", func(t *testing.T) {
		for _, m := range c.Models() {
			cmp, err := Compare(c, Input{Dataset: example, Hyperparameters: preset(t, "fast"), Model: m.ID})
			if err != nil {
				t.Fatal(err)
			}
			var cheap, fast Result
			for _, r := range cmp.Estimates {
				if r.GPU == cmp.CheapestGPU {
					cheap = r
				}
				if r.GPU == cmp.FastestGPU {
					fast = r
				}
			}
			for _, r := range cmp.Estimates {
				if r.CostUSD.Expected < cheap.CostUSD.Expected || r.DurationSeconds.Expected < fast.DurationSeconds.Expected {
					t.Errorf("%s: %s ($%v, %d s) beats cheapest %s ($%v) or fastest %s (%d s)", m.ID, r.GPU,
						r.CostUSD.Expected, r.DurationSeconds.Expected, cheap.GPU, cheap.CostUSD.Expected, fast.GPU, fast.DurationSeconds.Expected)
				}
			}
		}
	})

	// The H100 and A100 fit 10240 tokens with less than 10 % to spare
	// (72.9 of 79.1 GiB): the job's default goes to the H200, though for
	// examples this long (one per micro-batch on every card) the H100,
	// as fast per token and cheaper per second, costs less.
	t.Run("the cheapest GPU is one with headroom when there is one", func(t *testing.T) {
		h := preset(t, "balanced")
		h.MaxSeqLength = 10240
		long := Dataset{Examples: 1000, TokensTotal: 10_000_000, TokensTrained: 5_000_000, TokensPerExampleMax: 10_240}
		cmp, err := Compare(c, Input{Dataset: long, Hyperparameters: h})
		if err != nil {
			t.Fatal(err)
		}
		byGPU := map[string]Result{}
		for _, r := range cmp.Estimates {
			byGPU[r.GPU] = r
		}
		h100, h200 := byGPU["h100-80gb"], byGPU["h200-141gb"]
		if cmp.CheapestGPU != "h200-141gb" || h100.Memory.FitsWithHeadroom || !h200.Memory.FitsWithHeadroom || h100.CostUSD.Expected >= h200.CostUSD.Expected {
			t.Errorf("Compare(max_seq_length 10240) cheapest = %s; H100 $%v with headroom %v, H200 $%v with headroom %v; want the H200, the only one with headroom, though dearer",
				cmp.CheapestGPU, h100.CostUSD.Expected, h100.Memory.FitsWithHeadroom, h200.CostUSD.Expected, h200.Memory.FitsWithHeadroom)
		}
	})

	t.Run("the cheapest GPU may lack headroom when none has it", func(t *testing.T) {
		small := withGPUs(t, c, "a100-80gb", "h100-80gb")
		h := preset(t, "balanced")
		h.MaxSeqLength = 10240
		cmp, err := Compare(small, Input{Dataset: example, Hyperparameters: h})
		if err != nil || cmp.CheapestGPU != "h100-80gb" || len(cmp.Estimates) != 2 {
			t.Errorf("Compare(A100 and H100 only) = %d estimates, cheapest %q, %v; want both, the H100 cheapest", len(cmp.Estimates), cmp.CheapestGPU, err)
		}
	})

	// Every model fits the H200 at every max_seq_length the bounds allow,
	// so this catalog keeps only the 48 GB and 24 GB cards.
	t.Run("a model that fits no GPU is refused with every GPU's need", func(t *testing.T) {
		small := withGPUs(t, c, "l40s-48gb", "a6000-48gb", "rtx4090-24gb")
		h := preset(t, "balanced")
		h.MaxSeqLength = 32768
		_, err := Compare(small, Input{Dataset: Dataset{Examples: 100, TokensTotal: 3_000_000, TokensTrained: 10}, Hyperparameters: h})
		var pe *pipeline.Error
		if !errors.As(err, &pe) || pe.Code != pipeline.EInvalid || !strings.Contains(pe.Message, "fits on no GPU at 32768 tokens per micro-batch") {
			t.Fatalf("Compare() error = %v, want an %s error saying it fits on no GPU", err, pipeline.EInvalid)
		}
		if nf, ok := pe.Details.([]catalog.NotFit); !ok || len(nf) != 3 {
			t.Errorf("Compare() error details = %#v, want 3 NotFit", pe.Details)
		}
	})

	t.Run("invalid input is refused before any GPU", func(t *testing.T) {
		_, err := Compare(c, Input{Dataset: Dataset{Examples: -1}, Hyperparameters: preset(t, "balanced")})
		if pipeline.ErrorCode(err) != pipeline.EInvalid {
			t.Errorf("Compare() error = %v, want %s", err, pipeline.EInvalid)
		}
	})
}

// withGPUs is c with only the given GPUs.
func withGPUs(t *testing.T, c *catalog.Catalog, ids ...string) *catalog.Catalog {
	t.Helper()
	p := c.Prices()
	p.GPUs = slices.DeleteFunc(p.GPUs, func(g catalog.GPU) bool { return !slices.Contains(ids, g.ID) })
	tps := slices.DeleteFunc(c.Throughputs(), func(tp catalog.Throughput) bool { return !slices.Contains(ids, tp.GPU) })
	out, err := catalog.New(c.Models(), p, tps)
	if err != nil || len(p.GPUs) != len(ids) {
		t.Fatalf("withGPUs(%q) = %d GPUs, %v", ids, len(p.GPUs), err)
	}
	return out
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

func checkKeys(t *testing.T, path string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !snakeCase.MatchString(k) {
				t.Errorf("JSON key %s.%s is not snake_case", path, k)
			}
			checkKeys(t, path+"."+k, x)
		}
	case []any:
		for _, x := range v {
			checkKeys(t, path+"[]", x)
		}
	}
}

func TestJSON(t *testing.T) {
	cmp, err := Compare(catalog.Default(), Input{Dataset: example, Hyperparameters: preset(t, "balanced")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cmp)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}

	t.Run("every key is snake_case", func(t *testing.T) {
		checkKeys(t, "comparison", decoded)
	})

	t.Run("durations are whole seconds and money is in cents", func(t *testing.T) {
		r := decoded["estimates"].([]any)[0].(map[string]any)
		for _, k := range []string{"low", "expected", "high"} {
			s := r["duration_seconds"].(map[string]any)[k].(float64)
			usd := r["cost_usd"].(map[string]any)[k].(float64)
			if s != math.Trunc(s) || math.Abs(usd*100-math.Round(usd*100)) > 1e-9 {
				t.Errorf("%s: %v s, $%v, want whole seconds and cents", k, s, usd)
			}
		}
	})

	t.Run("the warnings list is an array even when empty", func(t *testing.T) {
		r, _ := Estimate(catalog.Default(), Input{Dataset: example, Hyperparameters: preset(t, "balanced"), Model: "Qwen/Qwen3-8B", GPU: "a100-80gb"})
		b, _ := json.Marshal(r)
		if !strings.Contains(string(b), `"warnings":[]`) {
			t.Errorf("json.Marshal(Result) has no empty warnings array: %.200s…", b)
		}
	})
}
