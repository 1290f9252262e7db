package catalog

import (
	"fmt"
	"math"

	"github.com/brightrun/brightrun/shared/pipeline"
)

const gib = 1 << 30

// Memory model constants; each term of Memory documents its use.
const (
	// AdapterBytesPerParameter: LoRA weights are kept in fp32 (peft casts
	// adapters to fp32 under 4-bit), with an fp32 gradient and two fp32
	// Adam moments: 4 + 4 + 8. The worker's paged 8-bit AdamW needs 10;
	// the difference is left as margin.
	AdapterBytesPerParameter = 16
	// LogitsBytesPerVocabEntry: transformers' causal-LM loss keeps the BF16
	// logits (2 bytes per token per vocabulary entry), upcasts them to fp32
	// (4) and keeps fp32 log-softmax for the backward (4).
	LogitsBytesPerVocabEntry = 10
	// OverheadFixedGiB is the CUDA context, cuBLAS workspaces and the
	// kernels' scratch memory.
	OverheadFixedGiB = 1.0
	// OverheadFraction is the caching allocator's fragmentation and other
	// slack, as a share of every other term.
	OverheadFraction = 0.08
)

// Micro-batch sizing. The worker cuts each optimizer step into
// micro-batches of length-sorted examples whose padded size (rows × longest
// row) stays within the job spec's micro_batch_tokens; the estimator
// chooses that budget per job and GPU (PlanMicroBatch).
const (
	// HeadroomFraction is the share of a GPU's usable memory a planned
	// run leaves free: a job fits "with headroom" when it needs at most
	// (1 − HeadroomFraction) × the usable memory. The memory model's terms
	// are estimates (none measured on a GPU for the grouped MoE), and the
	// caching allocator's peak varies from step to step.
	HeadroomFraction = 0.10
	// MaxPlannedMicroBatchTokens is the top of the budget ladder: past it
	// the fixed cost per micro-batch is already a small share of its time.
	// (The job spec allows up to contract.MaxMicroBatchTokens.)
	MaxPlannedMicroBatchTokens = 16384
)

// MemoryInput is what a training run's peak GPU memory depends on besides
// the model.
type MemoryInput struct {
	GPU      GPU
	LoRARank int
	// MicroBatchTokens is the most padded tokens (rows × longest row) one
	// micro-batch holds: the job spec's micro_batch_tokens, the tokens in
	// flight at the peak.
	MicroBatchTokens int
	// FusedCrossEntropy is true when the trainer computes the loss without
	// materializing the logits (e.g. Cut Cross Entropy, as axolotl does).
	// The worker uses the stock loss: false.
	FusedCrossEntropy bool
}

// Memory is the peak GPU memory of a training run, term by term, in GiB.
// Terms are rounded to 0.01 GiB, RequiredGiB up to the next 0.1 GiB; Fits
// and FitsWithHeadroom compare the unrounded total.
type Memory struct {
	Quantization     Quantization `json:"quantization"`
	MicroBatchTokens int          `json:"micro_batch_tokens"`
	// WeightsGiB: quantized parameters × bits per weight (NF4 4.127, BF16
	// 16) + unquantized parameters × 2 bytes.
	WeightsGiB float64 `json:"weights_gib"`
	// AdapterGiB: LoRA parameters (rank × per-rank count) × 16 bytes
	// (fp32 weight, gradient, two Adam moments).
	AdapterGiB float64 `json:"adapter_gib"`
	// CheckpointsGiB: with gradient checkpointing each layer keeps only
	// its input: tokens × layers × hidden × 2 bytes.
	CheckpointsGiB float64 `json:"checkpoints_gib"`
	// LayerActivationsGiB: the one layer being recomputed and
	// back-propagated at a time: tokens × the model's per-token figure.
	LayerActivationsGiB float64 `json:"layer_activations_gib"`
	// ExpertStackGiB: the grouped MoE's transient under NF4, one layer's
	// gate+up expert stack dequantized to BF16 (the model's
	// ExpertStackBytes; 0 for a dense model or BF16 weights).
	ExpertStackGiB float64 `json:"expert_stack_gib"`
	// LogitsGiB: tokens × vocabulary × 10 bytes for the loss (0 with a
	// fused cross-entropy).
	LogitsGiB float64 `json:"logits_gib"`
	// OverheadGiB: 1 GiB CUDA context and workspaces + 8 % of the other
	// terms for allocator fragmentation.
	OverheadGiB  float64 `json:"overhead_gib"`
	RequiredGiB  float64 `json:"required_gib"`
	AvailableGiB float64 `json:"available_gib"`
	// HeadroomLimitGiB is (1 − HeadroomFraction) × AvailableGiB, rounded
	// down to 0.01 GiB.
	HeadroomLimitGiB float64 `json:"headroom_limit_gib"`
	Fits             bool    `json:"fits"`
	// FitsWithHeadroom: the total is within HeadroomLimitGiB.
	FitsWithHeadroom bool `json:"fits_with_headroom"`
}

// Memory estimates the peak GPU memory of training m with in. Checked
// against published measurements in catalog_test.go: NF4 Qwen3-Next weights
// ≈ 42 GB (WORKER.md: 41–43 GB) and, in axolotl's configuration (fla
// kernels, the per-expert loop, Cut Cross Entropy), ≈ 46 GiB at 2 × 2048
// tokens (axolotl measured 45.62 GiB with its examples/qwen3-next QLoRA
// config).
func (m Model) Memory(in MemoryInput) Memory {
	q := m.QuantizationFor(in.GPU)
	t := float64(in.MicroBatchTokens)

	quantized := float64(m.Parameters)
	unquantized := 0.0
	if q == NF4 {
		quantized -= float64(m.UnquantizedParameters)
		unquantized = float64(m.UnquantizedParameters)
	}
	weights := quantized*q.BitsPerWeight()/8 + unquantized*2
	adapter := float64(m.LoRAParameters(in.LoRARank)) * AdapterBytesPerParameter
	checkpoints := t * float64(m.Layers) * float64(m.HiddenSize) * 2
	layer := t * float64(m.LayerActivationBytesPerToken)
	stack := 0.0
	if q == NF4 {
		stack = float64(m.ExpertStackBytes)
	}
	logits := 0.0
	if !in.FusedCrossEntropy {
		logits = t * float64(m.VocabSize) * LogitsBytesPerVocabEntry
	}
	sum := (weights + adapter + checkpoints + layer + stack + logits) / gib
	overhead := OverheadFixedGiB + OverheadFraction*sum
	total := sum + overhead
	limit := (1 - HeadroomFraction) * in.GPU.UsableMemoryGiB
	return Memory{
		Quantization:        q,
		MicroBatchTokens:    in.MicroBatchTokens,
		WeightsGiB:          round2(weights / gib),
		AdapterGiB:          round2(adapter / gib),
		CheckpointsGiB:      round2(checkpoints / gib),
		LayerActivationsGiB: round2(layer / gib),
		ExpertStackGiB:      round2(stack / gib),
		LogitsGiB:           round2(logits / gib),
		OverheadGiB:         round2(overhead),
		RequiredGiB:         math.Ceil(total*10) / 10,
		AvailableGiB:        in.GPU.UsableMemoryGiB,
		HeadroomLimitGiB:    math.Floor(limit*100) / 100,
		Fits:                total <= in.GPU.UsableMemoryGiB,
		FitsWithHeadroom:    total <= limit,
	}
}

// MicroBatchLadder lists the budgets PlanMicroBatch chooses from, smallest
// first: maxSeqLength × 1, 2, 4, … while within MaxPlannedMicroBatchTokens
// and stepExamples × maxSeqLength (a step of stepExamples examples never
// fills a larger micro-batch). The first rung is always maxSeqLength, so
// that the longest example fits a micro-batch alone.
func MicroBatchLadder(maxSeqLength, stepExamples int) []int {
	limit := min(MaxPlannedMicroBatchTokens, max(stepExamples, 1)*maxSeqLength)
	ladder := []int{maxSeqLength}
	for b := 2 * maxSeqLength; b <= limit; b *= 2 {
		ladder = append(ladder, b)
	}
	return ladder
}

// PlanMicroBatch chooses a job's micro_batch_tokens on g: the largest rung
// of MicroBatchLadder on which training fits with HeadroomFraction of the
// memory left free, or the smallest rung (maxSeqLength) when none does.
// It returns the memory at the chosen budget; its Fits and
// FitsWithHeadroom say how well that is.
func (m Model) PlanMicroBatch(g GPU, loraRank, maxSeqLength, stepExamples int) Memory {
	ladder := MicroBatchLadder(maxSeqLength, stepExamples)
	best := m.Memory(MemoryInput{GPU: g, LoRARank: loraRank, MicroBatchTokens: ladder[0]})
	for _, b := range ladder[1:] {
		mem := m.Memory(MemoryInput{GPU: g, LoRARank: loraRank, MicroBatchTokens: b})
		if !mem.FitsWithHeadroom {
			break
		}
		best = mem
	}
	return best
}

// NotFit describes a model that does not fit a GPU: the error details of
// CheckFit, and an entry of an estimate comparison's GPUs left out.
type NotFit struct {
	Model        string  `json:"model"`
	GPU          string  `json:"gpu"`
	GPUName      string  `json:"gpu_name"`
	RequiredGiB  float64 `json:"required_gib"`
	AvailableGiB float64 `json:"available_gib"`
	Memory       Memory  `json:"memory"`
}

// CheckFit returns m.Memory(in) and, when the model does not fit, the
// error of NotFitError.
func (m Model) CheckFit(in MemoryInput) (Memory, error) {
	mem := m.Memory(in)
	if mem.Fits {
		return mem, nil
	}
	return mem, m.NotFitError(in.GPU, mem)
}

// NotFitError is a *pipeline.Error with code EInvalid whose message says
// how much memory training m needs on g (as mem, which does not fit) and
// whose details are a NotFit.
func (m Model) NotFitError(g GPU, mem Memory) error {
	e := pipeline.Errorf(pipeline.EInvalid,
		"%s does not fit on %s: training it needs about %.1f GiB (weights %.1f GiB in %s, LoRA state %.1f, activations %.1f, expert stack %.1f, logits %.1f, overhead %.1f) at %d tokens per micro-batch (at least max_seq_length), and the GPU has %.1f GiB; lower max_seq_length or lora_rank, or choose a GPU with more memory",
		m.ID, g.Name, mem.RequiredGiB, mem.WeightsGiB, mem.Quantization, mem.AdapterGiB,
		mem.CheckpointsGiB+mem.LayerActivationsGiB, mem.ExpertStackGiB, mem.LogitsGiB, mem.OverheadGiB,
		mem.MicroBatchTokens, mem.AvailableGiB)
	e.Details = NotFit{
		Model: m.ID, GPU: g.ID, GPUName: g.Name,
		RequiredGiB: mem.RequiredGiB, AvailableGiB: mem.AvailableGiB, Memory: mem,
	}
	return e
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// String is for logs and test failures.
func (m Memory) String() string {
	return fmt.Sprintf("%.1f/%.1f GiB at %d tokens (%s: weights %.2f, adapter %.2f, checkpoints %.2f, layer %.2f, expert stack %.2f, logits %.2f, overhead %.2f)",
		m.RequiredGiB, m.AvailableGiB, m.MicroBatchTokens, m.Quantization, m.WeightsGiB, m.AdapterGiB, m.CheckpointsGiB, m.LayerActivationsGiB, m.ExpertStackGiB, m.LogitsGiB, m.OverheadGiB)
}
