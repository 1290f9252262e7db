package catalog

import (
	"math"
	"strings"
)

// DefaultModelID is the base model a request gets when it names none.
const DefaultModelID = "Qwen/Qwen3-Next-80B-A3B-Instruct"

// DefaultVolumeRoot is where RunPod Serverless workers see the network
// volume's model folder (Serverless mounts the volume at /runpod-volume;
// Pods mount it at /workspace). WithVolumeRoot moves every default path.
const DefaultVolumeRoot = "/runpod-volume/models"

// Quantization is how the frozen base weights are held on the GPU.
type Quantization string

const (
	// BF16 is plain LoRA over BF16 weights.
	BF16 Quantization = "bf16"
	// NF4 is QLoRA: bitsandbytes 4-bit NormalFloat with double
	// quantization and BF16 compute.
	NF4 Quantization = "nf4"
)

// BitsPerWeight is the storage cost of one quantized weight. NF4 stores 4
// bits per weight plus one scale per 64-weight block; double quantization
// keeps those scales in 8 bits with one fp32 scale per 256 blocks:
// 4 + 8/64 + 32/(64·256) ≈ 4.127 bits (Dettmers et al., "QLoRA", 2023, §3
// "Double Quantization").
func (q Quantization) BitsPerWeight() float64 {
	switch q {
	case NF4:
		return 4 + 8.0/64 + 32.0/(64*256)
	case BF16:
		return 16
	}
	return math.NaN()
}

// Valid reports whether q is a quantization the worker implements.
func (q Quantization) Valid() bool { return q == BF16 || q == NF4 }

// QuantizationRule says which quantization a model trains in on GPUs with at
// least MinGPUMemoryGiB of usable memory. A model's rules are sorted by
// MinGPUMemoryGiB, largest first; the first rule a GPU meets applies.
type QuantizationRule struct {
	MinGPUMemoryGiB float64      `json:"min_gpu_memory_gib"`
	Quantization    Quantization `json:"quantization"`
}

// WeightsCopy is one copy of a model's weights on the network volume.
// A BF16 copy is the checkpoint as published; an NF4 copy is pre-quantized
// (saved after bitsandbytes quantization) and loads ≈ 3.6× faster.
type WeightsCopy struct {
	Quantization Quantization `json:"quantization"`
	Path         string       `json:"path"`
	Bytes        int64        `json:"bytes"`
}

// Model is one base model the pipeline fine-tunes, with everything the
// estimator, the dispatcher and (through the job spec) the worker must agree
// on. Parameter counts are those the trainer loads; architecture figures are
// from the model's config.json.
type Model struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Architecture string `json:"architecture"` // transformers model_type
	Description  string `json:"description"`

	Parameters       int64 `json:"parameters"`        // total, as loaded for training
	ActiveParameters int64 `json:"active_parameters"` // used per token (MoE: the routed subset)
	// UnquantizedParameters stay in BF16 under 4-bit quantization:
	// embeddings, LM head, MoE routers and gates, norms.
	UnquantizedParameters int64 `json:"unquantized_parameters"`

	Layers          int `json:"layers"`
	HiddenSize      int `json:"hidden_size"`
	VocabSize       int `json:"vocab_size"`
	ContextLength   int `json:"context_length"`
	Experts         int `json:"experts"`           // routed experts per layer; 0 for a dense model
	ExpertsPerToken int `json:"experts_per_token"` // routed experts each token uses

	// Tokenizer names the tokenizer files (shared/tokenizer); ChatRule names
	// how a conversation is rendered before tokenizing (see TOKENIZER.md:
	// "chatml-no-think" renders <|im_start|>{role}\n{content}<|im_end|>\n;
	// "chatml-think-empty" also puts "<think>\n\n</think>\n\n" before the
	// last assistant turn, as hybrid-thinking Qwen3 templates do).
	Tokenizer string `json:"tokenizer"`
	ChatRule  string `json:"chat_rule"`

	// LoRATargetModules are the module-name suffixes peft wraps.
	LoRATargetModules []string `json:"lora_target_modules"`
	// LoRAParametersPerRank is Σ (in_features + out_features) over every
	// wrapped module: the adapter has rank × this many parameters.
	LoRAParametersPerRank int64 `json:"lora_parameters_per_rank"`

	Quantization []QuantizationRule `json:"quantization"`
	Weights      []WeightsCopy      `json:"weights"`

	// LayerActivationBytesPerToken is the peak memory of one decoder layer
	// while gradient checkpointing recomputes it and runs its backward,
	// per token of the micro-batch (BF16 activations and their gradients).
	LayerActivationBytesPerToken int64 `json:"layer_activation_bytes_per_token"`
	// ExpertStackBytes is the larger of one layer's two routed-expert
	// stacks in BF16, gate+up: experts × 2 × expert width × hidden × 2
	// bytes. Under NF4 the worker's grouped MoE (gpu-image
	// brightrun_worker/moe.py) dequantizes a layer's stacks right before
	// its grouped matmuls, one stack at a time, and again in the backward:
	// this is its peak transient. BF16 stacks are views of the weights: no
	// transient. 0 for a dense model.
	ExpertStackBytes int64 `json:"expert_stack_bytes"`
}

// Dense reports whether the model has no routed experts.
func (m Model) Dense() bool { return m.Experts == 0 }

// QuantizationFor returns the quantization the model trains in on g: the
// first rule whose minimum g's usable memory meets.
func (m Model) QuantizationFor(g GPU) Quantization {
	for _, r := range m.Quantization {
		if g.UsableMemoryGiB >= r.MinGPUMemoryGiB {
			return r.Quantization
		}
	}
	// validate makes the last rule's minimum 0, so this is unreachable for
	// a model from a Catalog.
	return m.Quantization[len(m.Quantization)-1].Quantization
}

// WeightsFor returns the copy the worker loads to train in q: the copy
// stored in q if there is one, else the BF16 copy (quantized while loading).
func (m Model) WeightsFor(q Quantization) WeightsCopy {
	var bf16 WeightsCopy
	for _, w := range m.Weights {
		if w.Quantization == q {
			return w
		}
		if w.Quantization == BF16 {
			bf16 = w
		}
	}
	return bf16
}

// LoRAParameters returns the adapter's parameter count at rank r.
func (m Model) LoRAParameters(rank int) int64 { return int64(rank) * m.LoRAParametersPerRank }

// Volume read throughput from the network volume, in bytes per second.
// RunPod quotes 200–400 MB/s typical for network volumes; the middle is the
// expected figure.
const (
	VolumeReadFastBytesPerSecond     = 400e6
	VolumeReadExpectedBytesPerSecond = 300e6
	VolumeReadSlowBytesPerSecond     = 200e6
)

// LoadTime is the time to read a model's weights from the network volume.
type LoadTime struct {
	Weights         WeightsCopy `json:"weights"`
	LowSeconds      float64     `json:"low_seconds"`      // at 400 MB/s
	ExpectedSeconds float64     `json:"expected_seconds"` // at 300 MB/s
	HighSeconds     float64     `json:"high_seconds"`     // at 200 MB/s
}

// LoadTime returns how long reading the copy for q takes. Quantizing a BF16
// copy on load happens on the GPU while the next shard is read and is not
// counted separately.
func (m Model) LoadTime(q Quantization) LoadTime {
	w := m.WeightsFor(q)
	b := float64(w.Bytes)
	return LoadTime{
		Weights:         w,
		LowSeconds:      b / VolumeReadFastBytesPerSecond,
		ExpectedSeconds: b / VolumeReadExpectedBytesPerSecond,
		HighSeconds:     b / VolumeReadSlowBytesPerSecond,
	}
}

func (m Model) clone() Model {
	m.LoRATargetModules = append([]string(nil), m.LoRATargetModules...)
	m.Quantization = append([]QuantizationRule(nil), m.Quantization...)
	m.Weights = append([]WeightsCopy(nil), m.Weights...)
	return m
}

// volumePath is the default location of a model copy on the volume:
// DefaultVolumeRoot/<hub id>, with a "-bnb-nf4" suffix for a pre-quantized
// copy.
func volumePath(id string, q Quantization) string {
	p := DefaultVolumeRoot + "/" + id
	if q == NF4 {
		p += "-bnb-nf4"
	}
	return p
}

// defaultModels is the registry. Sources for every figure are in the
// comments; module names are from transformers' modeling files.
func defaultModels() []Model {
	return []Model{
		{
			// Qwen/Qwen3-Next-80B-A3B-Instruct (config.json): 48 layers in a
			// 3 × Gated DeltaNet + 1 × gated full attention pattern, hidden
			// 2048, 512 routed experts (top 10) of width 512 plus a shared
			// expert of width 512, vocab 151,936, untied LM head.
			//
			// Parameters as loaded (the published 80B also counts the MTP
			// head, which transformers does not load):
			//   routed experts 48 × 512 × 3 × 2048 × 512   = 77,309 M
			//   shared experts 48 × 3 × 2048 × 512         =    151 M
			//   linear attention 36 × (in_proj_qkvz 2048×12288 + in_proj_ba
			//     2048×64 + out_proj 4096×2048 + conv1d)   =  1,214 M
			//   full attention 12 × (q 2048×8192 + k, v 2048×512 + o 4096×2048)
			//                                              =    327 M
			//   routers, gates 48 × (512 + 1) × 2048       =     50 M
			//   embeddings + LM head 2 × 151936 × 2048     =    622 M
			//   total ≈ 79.67 B; kept in BF16 under 4-bit ≈ 0.68 B.
			// NF4 weights: 78.99 B × 4.127 / 8 + 0.68 B × 2 ≈ 42.1 GB
			// (39.2 GiB), inside WORKER.md's 41–43 GB.
			//
			// LoRA parameters per rank, targets as axolotl's published
			// Qwen3-Next QLoRA config (examples/qwen3-next) less the router
			// and gate (WORKER.md keeps them out):
			//   full attention 12 × (10240 + 2560 + 2560 + 6144)   =   258,048
			//   linear attention 36 × (14336 + 2112 + 6144)        =   813,312
			//   shared expert 48 × 3 × 2560                        =   368,640
			//   total 1,440,000 (23.0 M at rank 16). Without the shared
			//   expert this is 17.1 M at rank 16, the "17M trainable"
			//   reported by the Thurin AI run (pe-report.pages.dev).
			//
			// Checkpoint sizes: BF16 ≈ 163 GB; pre-quantized NF4 ≈ 45 GB
			// (WORKER.md).
			ID:           "Qwen/Qwen3-Next-80B-A3B-Instruct",
			Name:         "Qwen3-Next 80B A3B Instruct",
			Architecture: "qwen3_next",
			Description:  "80B-parameter mixture of experts (3B active per token) with hybrid linear/full attention; non-thinking. QLoRA (NF4) on one 80 GB or larger GPU.",

			Parameters:            79_670_000_000,
			ActiveParameters:      3_000_000_000,
			UnquantizedParameters: 680_000_000,
			Layers:                48,
			HiddenSize:            2048,
			VocabSize:             151936,
			ContextLength:         262144,
			Experts:               512,
			ExpertsPerToken:       10,

			Tokenizer: "qwen3",
			ChatRule:  "chatml-no-think",
			LoRATargetModules: []string{
				"q_proj", "k_proj", "v_proj", "o_proj",
				"in_proj_qkvz", "in_proj_ba", "out_proj",
				"shared_expert.gate_proj", "shared_expert.up_proj", "shared_expert.down_proj",
			},
			LoRAParametersPerRank: 1_440_000,
			// BF16 (≈ 152 GiB of weights) fits no GPU in the table.
			Quantization: []QuantizationRule{{MinGPUMemoryGiB: 0, Quantization: NF4}},
			Weights: []WeightsCopy{
				{Quantization: BF16, Path: volumePath("Qwen/Qwen3-Next-80B-A3B-Instruct", BF16), Bytes: 163_000_000_000},
				{Quantization: NF4, Path: volumePath("Qwen/Qwen3-Next-80B-A3B-Instruct", NF4), Bytes: 45_000_000_000},
			},
			// One linear-attention layer recomputed and back-propagated (the
			// largest of the two kinds), per token:
			//   (a) projections and small tensors, BF16, each with its
			//       gradient: in_proj_qkvz 12288, in_proj_ba 64, conv1d
			//       output 8192, gated norm in and out 2 × 4096, shared
			//       expert (gate, up, product 3 × 512, output 2048), two
			//       RMSNorms 2 × 2048, router logits 512 (fp32): ≈ 36.9 k
			//       values × 2 bytes × 2                      ≈ 148 KB
			//   (b) the gated delta rule in transformers' torch fallback
			//       (torch_chunk_gated_delta_rule, computed in fp32): the
			//       worst case, kept until a GPU measures the image's fla
			//       0.5.2 kernel (the worker falls back to torch when fla
			//       is missing, or on Hopper with Triton < 3.7.1).
			//       Measured on the CPU: its saved tensors hold ≈ 427 KiB
			//       per token                                  ≈ 437 KB
			//   (c) the grouped routed experts, top 10: gathered inputs
			//       10 × 2048, gate and up 2 × 10 × 512, product 10 × 512,
			//       outputs 10 × 2048 in BF16 (113 KB) and their gradients
			//       while the block runs backward (113 KB), plus the fp32
			//       weighted outputs before index_add 10 × 2048 × 4 (82 KB)
			//                                                  ≈ 307 KB
			//   total ≈ 892 KB, taken as 900,000 bytes. It replaces 420 KB,
			//   which assumed fla's chunked kernel (≈ 32 KB of chunk states
			//   instead of (b)) and the per-expert loop (no fp32 copy). The
			//   full-attention layers keep less: sdpa saves no score matrix.
			// Not measured on a GPU: the worker's grouped MoE has not run on
			// one yet.
			LayerActivationBytesPerToken: 900_000,
			// gate+up: 512 experts × 2 × 512 × 2048 × 2 bytes = 2.15 GB
			// (2.0 GiB); the whole layer (with down) would be 3.2 GB, but
			// the worker frees gate+up before it dequantizes down.
			ExpertStackBytes: 512 * 2 * 512 * 2048 * 2,
		},
		{
			// Qwen/Qwen3-30B-A3B-Instruct-2507 (model card: 30.5 B total,
			// 3.3 B active, 48 layers, 32 query / 4 KV heads, 128 experts,
			// 8 active; non-thinking only). config.json: hidden 2048,
			// expert width 768, head_dim 128, vocab 151,936, untied head.
			//   experts 48 × 128 × 3 × 2048 × 768            = 28,991 M
			//   attention 48 × (2048×4096 + 2 × 2048×512 + 4096×2048)
			//                                                =    906 M
			//   routers 48 × 128 × 2048                      =     13 M
			//   embeddings + LM head                         =    622 M
			//   total ≈ 30.53 B; BF16 checkpoint 61.06 GB (56.87 GiB).
			// LoRA on attention only: routed experts are 18,432 modules
			// (≈ 0.8 B LoRA parameters at rank 16) and slow the expert loop
			// further. Per rank 48 × (6144 + 2560 + 2560 + 6144) = 835,584.
			ID:           "Qwen/Qwen3-30B-A3B-Instruct-2507",
			Name:         "Qwen3 30B A3B Instruct 2507",
			Architecture: "qwen3_moe",
			Description:  "30B-parameter mixture of experts (3.3B active per token); non-thinking. QLoRA (NF4) on 24–80 GB GPUs, BF16 LoRA on 141 GB.",

			Parameters:            30_530_000_000,
			ActiveParameters:      3_300_000_000,
			UnquantizedParameters: 640_000_000,
			Layers:                48,
			HiddenSize:            2048,
			VocabSize:             151936,
			ContextLength:         262144,
			Experts:               128,
			ExpertsPerToken:       8,

			Tokenizer:             "qwen3",
			ChatRule:              "chatml-no-think",
			LoRATargetModules:     []string{"q_proj", "k_proj", "v_proj", "o_proj"},
			LoRAParametersPerRank: 835_584,
			Quantization: []QuantizationRule{
				{MinGPUMemoryGiB: 120, Quantization: BF16},
				{MinGPUMemoryGiB: 0, Quantization: NF4},
			},
			Weights: []WeightsCopy{
				{Quantization: BF16, Path: volumePath("Qwen/Qwen3-30B-A3B-Instruct-2507", BF16), Bytes: 61_064_216_576},
			},
			// Attention (q 4096, k, v 2 × 512, output 4096, o 2048), norms,
			// 8 routed experts (gathered inputs and outputs 2 × 8 × 2048,
			// inner 8 × 4 × 768): ≈ 73 k BF16 values per token, doubled
			// for gradients (291 KB), plus the grouped MoE's fp32 weighted
			// outputs before index_add, 8 × 2048 × 4 (66 KB): ≈ 356 KB.
			LayerActivationBytesPerToken: 360_000,
			// gate+up: 128 experts × 2 × 768 × 2048 × 2 bytes = 0.81 GB.
			ExpertStackBytes: 128 * 2 * 768 * 2048 * 2,
		},
		{
			// Qwen/Qwen3-8B (config.json): dense, 36 layers, hidden 4096,
			// 32 query / 8 KV heads, head_dim 128, MLP width 12,288, vocab
			// 151,936, untied head; hybrid thinking (its template inserts an
			// empty think block for non-thinking turns).
			//   layers 36 × (q, o 4096×4096 ×2 + k, v 4096×1024 ×2
			//     + gate, up, down 4096×12288 ×3)            = 6,945 M
			//   embeddings + LM head 2 × 151936 × 4096       = 1,245 M
			//   total ≈ 8.19 B; BF16 checkpoint ≈ 16.4 GB.
			// LoRA on every linear layer (the usual dense recipe; Unsloth's
			// and axolotl's Qwen3 examples): per rank 36 × (8192 + 5120 +
			// 5120 + 8192 + 3 × 16384) = 2,727,936.
			ID:           "Qwen/Qwen3-8B",
			Name:         "Qwen3 8B",
			Architecture: "qwen3",
			Description:  "Dense 8B model with hybrid thinking, trained here in non-thinking form. BF16 LoRA on 48 GB or larger GPUs, QLoRA (NF4) on 24 GB.",

			Parameters:            8_190_000_000,
			ActiveParameters:      8_190_000_000,
			UnquantizedParameters: 1_250_000_000,
			Layers:                36,
			HiddenSize:            4096,
			VocabSize:             151936,
			ContextLength:         32768,

			Tokenizer:             "qwen3",
			ChatRule:              "chatml-think-empty",
			LoRATargetModules:     []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
			LoRAParametersPerRank: 2_727_936,
			Quantization: []QuantizationRule{
				{MinGPUMemoryGiB: 40, Quantization: BF16},
				{MinGPUMemoryGiB: 0, Quantization: NF4},
			},
			Weights: []WeightsCopy{
				{Quantization: BF16, Path: volumePath("Qwen/Qwen3-8B", BF16), Bytes: 16_380_000_000},
			},
			// Attention (q 4096, k, v 2 × 1024, output 4096, o 4096), norms,
			// MLP (gate, up, activation, product 4 × 12288, down 4096):
			// ≈ 75 k BF16 values per token, doubled for gradients.
			LayerActivationBytesPerToken: 300_000,
		},
	}
}

// rerootPath moves p from under DefaultVolumeRoot to under root; other
// paths are left alone.
func rerootPath(p, root string) string {
	if rest, ok := strings.CutPrefix(p, DefaultVolumeRoot+"/"); ok {
		return strings.TrimRight(root, "/") + "/" + rest
	}
	return p
}
