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

// MemoryInput is what a training run's peak GPU memory depends on besides
// the model.
type MemoryInput struct {
	GPU      GPU
	LoRARank int
	// MicroBatch is the number of sequences in one forward pass
	// (hyperparameter batch_size).
	MicroBatch int
	// SeqLen is the padded length of a micro-batch: the longest sequence
	// it may hold, min(max_seq_length, longest example).
	SeqLen int
	// FusedCrossEntropy is true when the trainer computes the loss without
	// materializing the logits (e.g. Cut Cross Entropy, as axolotl does).
	// The worker uses the stock loss: false.
	FusedCrossEntropy bool
}

// Memory is the peak GPU memory of a training run, term by term, in GiB.
// Terms are rounded to 0.01 GiB, RequiredGiB up to the next 0.1 GiB; Fits
// compares the unrounded total.
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
	// LogitsGiB: tokens × vocabulary × 10 bytes for the loss (0 with a
	// fused cross-entropy).
	LogitsGiB float64 `json:"logits_gib"`
	// OverheadGiB: 1 GiB CUDA context and workspaces + 8 % of the other
	// terms for allocator fragmentation.
	OverheadGiB  float64 `json:"overhead_gib"`
	RequiredGiB  float64 `json:"required_gib"`
	AvailableGiB float64 `json:"available_gib"`
	Fits         bool    `json:"fits"`
}

// Memory estimates the peak GPU memory of training m with in. Checked
// against published measurements in memory_test.go: NF4 Qwen3-Next weights
// ≈ 42 GB (WORKER.md: 41–43 GB) and, with Cut Cross Entropy as axolotl
// uses, ≈ 46 GiB at sequence 2048 × micro-batch 2 (axolotl measured 45.62
// GiB with its examples/qwen3-next QLoRA config).
func (m Model) Memory(in MemoryInput) Memory {
	q := m.QuantizationFor(in.GPU)
	tokens := in.MicroBatch * in.SeqLen
	t := float64(tokens)

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
	logits := 0.0
	if !in.FusedCrossEntropy {
		logits = t * float64(m.VocabSize) * LogitsBytesPerVocabEntry
	}
	sum := (weights + adapter + checkpoints + layer + logits) / gib
	overhead := OverheadFixedGiB + OverheadFraction*sum
	total := sum + overhead
	return Memory{
		Quantization:        q,
		MicroBatchTokens:    tokens,
		WeightsGiB:          round2(weights / gib),
		AdapterGiB:          round2(adapter / gib),
		CheckpointsGiB:      round2(checkpoints / gib),
		LayerActivationsGiB: round2(layer / gib),
		LogitsGiB:           round2(logits / gib),
		OverheadGiB:         round2(overhead),
		RequiredGiB:         math.Ceil(total*10) / 10,
		AvailableGiB:        in.GPU.UsableMemoryGiB,
		Fits:                total <= in.GPU.UsableMemoryGiB,
	}
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

// CheckFit returns m.Memory(in) and, when the model does not fit, a
// *pipeline.Error with code EInvalid whose message says how much memory it
// needs and whose details are a NotFit.
func (m Model) CheckFit(in MemoryInput) (Memory, error) {
	mem := m.Memory(in)
	if mem.Fits {
		return mem, nil
	}
	e := pipeline.Errorf(pipeline.EInvalid,
		"%s does not fit on %s: training it needs about %.1f GiB (weights %.1f GiB in %s, LoRA state %.1f, activations %.1f, logits %.1f, overhead %.1f) at %d sequences × %d tokens per micro-batch, and the GPU has %.1f GiB; lower batch_size or max_seq_length, or choose a GPU with more memory",
		m.ID, in.GPU.Name, mem.RequiredGiB, mem.WeightsGiB, mem.Quantization, mem.AdapterGiB,
		mem.CheckpointsGiB+mem.LayerActivationsGiB, mem.LogitsGiB, mem.OverheadGiB,
		in.MicroBatch, in.SeqLen, mem.AvailableGiB)
	e.Details = NotFit{
		Model: m.ID, GPU: in.GPU.ID, GPUName: in.GPU.Name,
		RequiredGiB: mem.RequiredGiB, AvailableGiB: mem.AvailableGiB, Memory: mem,
	}
	return mem, e
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// String is for logs and test failures.
func (m Memory) String() string {
	return fmt.Sprintf("%.1f/%.1f GiB (%s: weights %.2f, adapter %.2f, checkpoints %.2f, layer %.2f, logits %.2f, overhead %.2f)",
		m.RequiredGiB, m.AvailableGiB, m.Quantization, m.WeightsGiB, m.AdapterGiB, m.CheckpointsGiB, m.LayerActivationsGiB, m.LogitsGiB, m.OverheadGiB)
}
