package catalog

import (
	"fmt"
	"math"
)

// Throughput is how fast one model trains on one GPU with the worker's stack
// (transformers 4.57, peft, bitsandbytes, gradient checkpointing, no
// packing, micro-batches cut by a token budget). A micro-batch of T padded
// tokens takes
//
//	MicroBatchSeconds + T / TokensPerSecond
//
// seconds (forward, checkpoint recompute and backward). The first term is a
// fixed cost per micro-batch, whatever its length: for a mixture of
// experts with the worker's grouped MoE, dequantizing (or stacking) every
// layer's expert weights three times (forward, checkpoint recompute,
// backward) plus a few kernel launches per layer; negligible for a dense
// model. The second is the length-proportional compute.
//
// Uncertainty u widens the range: the fast end divides the time by 1 + u,
// the slow end by 1 − u.
type Throughput struct {
	Model             string  `json:"model"`
	GPU               string  `json:"gpu"`
	TokensPerSecond   float64 `json:"tokens_per_second"`
	MicroBatchSeconds float64 `json:"micro_batch_seconds"`
	Uncertainty       float64 `json:"uncertainty"`
	Source            string  `json:"source"`
}

type pairKey struct{ model, gpu string }

// Sources of the dense model's figures below, in short form (URLs are
// those of the stored public pages):
//
//   - [qwen-profile] QwenLM/Qwen README, "Profiling of Memory and Speed":
//     single A100-SXM4-80G, batch 1, gradient accumulation 8, FlashAttention 2.
//     Qwen-7B LoRA at sequence 2048: 5.2 s/it = 16,384 tokens / 5.2 s
//     ≈ 3,150 tokens/s; Q-LoRA (int4) 7.0 s/it ≈ 2,340 tokens/s; Qwen-1.8B
//     Q-LoRA 2.0 s/it ≈ 8,190 tokens/s.
//   - [surogate] docs.surogate.ai/reference/benchmarks: Qwen3-8B with
//     Unsloth, H100 80GB HBM3: 8.9k tokens/s BF16, 8.2k NF4; H200: 9.1k BF16,
//     8.4k NF4; RTX 5090: 3.4k NF4.
//   - [unsloth] docs.unsloth.ai/basics/unsloth-benchmarks: Unsloth is ≈ 2×
//     Hugging Face + FlashAttention 2 on 8B-class models, so the plain
//     transformers stack the worker runs gets about half the [surogate]
//     Unsloth figures.
//   - [exxact] exxactcorp.com LoRA fine-tuning benchmark (2026): Llama-3.1-8B
//     LoRA with transformers, 4,962 tokens/s on one RTX PRO 6000 (Blackwell),
//     consistent with ≈ 4.4k on an H100.
//
// The mixture-of-experts figures are derived by groupedMoE from the GPU's
// datasheet figures (gpuSpecs) and the assumptions below; none is measured
// on a GPU, because the worker's grouped MoE has not run on one yet. They
// replace figures of the per-expert loop of transformers 4.57 (20–30 s per
// micro-batch, anchored on a published Qwen3-Next QLoRA run,
// pe-report.pages.dev), which the worker no longer runs.

// gpuSpec is a GPU's datasheet figures: dense BF16 tensor throughput (no
// sparsity) and memory bandwidth; groupedMM is whether torch 2.8 has its
// grouped GEMM for the card (sm90 and sm100 builds only).
type gpuSpec struct {
	bf16TFLOPS float64
	memTBps    float64
	groupedMM  bool
}

// gpuSpecs are NVIDIA's datasheet figures for the card each catalog GPU's
// throughput refers to (its first RunPod GPU type).
var gpuSpecs = map[string]gpuSpec{
	"a100-80gb":    {312, 2.039, false}, // A100 SXM4 80GB, sm80
	"h100-80gb":    {989, 3.35, true},   // H100 SXM5 80GB HBM3, sm90
	"h200-141gb":   {989, 4.8, true},    // H200 SXM 141GB, sm90
	"l40s-48gb":    {362, 0.864, false}, // L40S, sm89
	"a6000-48gb":   {155, 0.768, false}, // RTX A6000, sm86
	"rtx4090-24gb": {165, 1.008, false}, // GeForce RTX 4090 (FP32 accumulate), sm89
}

// Assumptions of the grouped-MoE cost model (groupedMoE). None is measured.
const (
	// moeFLOPsPerActiveParameter: FLOPs per active parameter per token for
	// forward, checkpoint recompute and backward: 2 + 2 + 4 as in full
	// training (6) plus the recompute (2). A frozen base computes no
	// weight gradients (≈ 6 would do); the other 2 cover attention, the
	// gated delta rule, routing and LoRA's own matmuls.
	moeFLOPsPerActiveParameter = 8
	// moeMFU is the model FLOPs utilisation assumed at the expected end:
	// 25–40 % is what dense LoRA stacks reach; 30 % because the grouped
	// GEMMs of 512 small experts get few rows each (≈ tokens × 10 / 512).
	moeMFU = 0.30
	// moeUncertainty is the range around it: 30 % × 1.35 ≈ 40 % at the fast
	// end, 30 % × 0.65 ≈ 20 % at the slow end.
	moeUncertainty = 0.35
	// moeWeightPasses: the expert weights are dequantized (or stacked) for
	// the forward, again for the checkpoint's recompute, and again in the
	// backward (the grouped matmul's autograd function keeps no BF16 copy).
	moeWeightPasses = 3
	// moeBandwidthShare is the share of the datasheet bandwidth the
	// dequantize kernels and the grouped matmuls' weight reads reach.
	moeBandwidthShare = 0.75
	// moeLaunchSeconds: kernel launches per micro-batch, ≈ 48 layers × 30
	// operators × 4 (forward, recompute, a backward of about twice the
	// operators) ≈ 5,800 launches × ≈ 10 µs.
	moeLaunchSeconds = 0.06
	// moePaddedBMMWork: where torch has no grouped GEMM for the card, the
	// worker pads every expert's rows to the largest group and runs one
	// batched matmul: the routed experts' work × (largest ÷ mean group),
	// "about 2–3× under uneven routing" (gpu-image moe.py).
	moePaddedBMMWork = 2.5
)

// routedActiveParameters is the routed experts' parameters a token uses:
// layers × experts per token × 3 × expert width × hidden, the last two
// from the gate+up stack (experts × 2 × width × hidden × 2 bytes).
func (m Model) routedActiveParameters() float64 {
	if m.Experts == 0 {
		return 0
	}
	widthTimesHidden := float64(m.ExpertStackBytes) / 4 / float64(m.Experts)
	return float64(m.Layers) * float64(m.ExpertsPerToken) * 3 * widthTimesHidden
}

// groupedMoE derives an MoE model's figures on a GPU from gpuSpecs and the
// assumptions above:
//
//	tokens/s      = BF16 peak × moeMFU / (8 × active parameters)
//	micro-batch s = 3 passes × bytes per pass / (bandwidth × 0.75) + 0.06 s
//
// where, without a grouped GEMM, the routed share of the active parameters
// counts moePaddedBMMWork times; and a pass moves, for NF4, every
// quantized weight three times: read in NF4 (4.127 bits), written in BF16
// by the dequantize kernel, read in BF16 by the matmul; for BF16, every
// weight read once (the stacks are views of the weights). Tokens per
// second are rounded to 100, seconds to 0.01.
func groupedMoE(m Model, q Quantization, s gpuSpec) (tokensPerSecond, microBatchSeconds float64) {
	active := float64(m.ActiveParameters)
	if !s.groupedMM {
		active += (moePaddedBMMWork - 1) * m.routedActiveParameters()
	}
	tokensPerSecond = s.bf16TFLOPS * 1e12 * moeMFU / (moeFLOPsPerActiveParameter * active)
	var perPass float64
	switch q {
	case NF4:
		w := float64(m.Parameters - m.UnquantizedParameters)
		perPass = w*q.BitsPerWeight()/8 + 2*w + 2*w
	default:
		perPass = 2 * float64(m.Parameters)
	}
	microBatchSeconds = moeWeightPasses*perPass/(s.memTBps*1e12*moeBandwidthShare) + moeLaunchSeconds
	return math.Round(tokensPerSecond/100) * 100, math.Round(microBatchSeconds*100) / 100
}

// moeSource explains a derived figure in the estimate's assumptions.
func moeSource(m Model, q Quantization, gpuName string, s gpuSpec) string {
	matmul := "torch._grouped_mm (sm90)"
	if !s.groupedMM {
		matmul = fmt.Sprintf("the padded batched-matmul fallback (no grouped GEMM for this card in torch 2.8: the routed experts' %.1f B active parameters count %.1f×)",
			m.routedActiveParameters()/1e9, moePaddedBMMWork)
	}
	stack := fmt.Sprintf("every quantized weight (%.1f B parameters) read in NF4, written and read again in BF16", float64(m.Parameters-m.UnquantizedParameters)/1e9)
	if q == BF16 {
		stack = fmt.Sprintf("every weight (%.1f B parameters) read in BF16", float64(m.Parameters)/1e9)
	}
	return fmt.Sprintf("%s, grouped MoE (%d layers × %d experts) with %s. NOT MEASURED ON A GPU: derived from stated assumptions. "+
		"Per token: %d FLOPs per active parameter (%.1f B active: forward, checkpoint recompute, backward) at %.0f %% of the %s's %.0f TFLOPS dense BF16 peak (±%.0f %%); "+
		"the MFU also absorbs the gated delta rule (fla's kernel in the image; the worker falls back to torch's fp32 version without it). "+
		"Per micro-batch: %s, %d times (forward, recompute, backward) at %.0f %% of its %.2f TB/s, plus %.2f s of kernel launches.",
		q, m.Layers, m.Experts, matmul, moeFLOPsPerActiveParameter, float64(m.ActiveParameters)/1e9, moeMFU*100, gpuName, s.bf16TFLOPS, moeUncertainty*100,
		stack, moeWeightPasses, moeBandwidthShare*100, s.memTBps, moeLaunchSeconds)
}

// defaultThroughput is the built-in table: the dense model from published
// benchmarks, the mixture-of-experts models derived by groupedMoE in the
// quantization each trains in on each GPU.
func defaultThroughput() []Throughput {
	const (
		dense    = "Qwen/Qwen3-8B"
		denseSrc = "Half the Unsloth figures for Qwen3-8B on H100/H200/RTX 5090 (docs.surogate.ai benchmarks; Unsloth ≈ 2× transformers + FA2, docs.unsloth.ai); A100 from Qwen-7B LoRA at 3,150 tokens/s scaled to 8.2B (QwenLM/Qwen README); L40S and A6000 by BF16 TFLOPS relative to A100; transformers LoRA on Llama-3.1-8B at 4,962 tokens/s on an RTX PRO 6000 (exxactcorp.com) as a cross-check."
	)
	prices := defaultPrices()
	var out []Throughput
	for _, m := range defaultModels() {
		if m.Dense() {
			continue
		}
		for _, g := range prices.GPUs {
			spec, ok := gpuSpecs[g.ID]
			if !ok {
				panic("catalog: no datasheet figures for " + g.ID)
			}
			q := m.QuantizationFor(g)
			tps, fixed := groupedMoE(m, q, spec)
			out = append(out, Throughput{m.ID, g.ID, tps, fixed, moeUncertainty, moeSource(m, q, g.Name, spec)})
		}
	}
	return append(out,
		Throughput{dense, "a100-80gb", 2900, 0.1, 0.3, "BF16. " + denseSrc},
		Throughput{dense, "h100-80gb", 4400, 0.1, 0.3, "BF16. " + denseSrc},
		Throughput{dense, "h200-141gb", 4500, 0.1, 0.3, "BF16. " + denseSrc},
		Throughput{dense, "l40s-48gb", 2450, 0.1, 0.3, "BF16. " + denseSrc},
		Throughput{dense, "a6000-48gb", 1450, 0.1, 0.3, "BF16. " + denseSrc},
		Throughput{dense, "rtx4090-24gb", 1200, 0.15, 0.3, "NF4 (≈ 1.7k with transformers on an RTX 5090, × 0.7 for a 4090). " + denseSrc},
	)
}
