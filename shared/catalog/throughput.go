package catalog

// Throughput is how fast one model trains on one GPU with the worker's stack
// (transformers 4.57, peft, bitsandbytes, gradient checkpointing, no
// packing). A micro-batch of T padded tokens takes
//
//	MicroBatchSeconds + T / TokensPerSecond
//
// seconds (forward, checkpoint recompute and backward). The first term is a
// fixed cost per micro-batch: negligible for a dense model, dominant for a
// mixture of experts in transformers 4.57, whose MoE block loops over the
// experts a batch routes to (with a host sync per expert, from
// torch.where), so a micro-batch costs about layers × experts expert calls
// whatever its length. The second is the length-proportional compute.
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

// Sources of the figures below, in short form (URLs are those of the stored
// public pages):
//
//   - [qwen-profile] QwenLM/Qwen README, "Profiling of Memory and Speed":
//     single A100-SXM4-80G, batch 1, gradient accumulation 8, FlashAttention 2.
//     Qwen-7B LoRA at sequence 2048: 5.2 s/it = 16,384 tokens / 5.2 s
//     ≈ 3,150 tokens/s; Q-LoRA (int4) 7.0 s/it ≈ 2,340 tokens/s; Qwen-1.8B
//     Q-LoRA 2.0 s/it ≈ 8,190 tokens/s.
//   - [surogate] docs.surogate.ai/reference/benchmarks: Qwen3-8B with
//     Unsloth, H100 80GB HBM3: 8.9k tokens/s BF16, 8.2k NF4; H200: 9.1k BF16,
//     8.4k NF4; RTX 5090: 3.4k NF4. Qwen3-30B-A3B with Unsloth NF4 on an
//     RTX 5090: 16 tokens/s (the per-expert loop).
//   - [unsloth] docs.unsloth.ai/basics/unsloth-benchmarks: Unsloth is ≈ 2×
//     Hugging Face + FlashAttention 2 on 8B-class models, so the plain
//     transformers stack the worker runs gets about half the [surogate]
//     Unsloth figures.
//   - [exxact] exxactcorp.com LoRA fine-tuning benchmark (2026): Llama-3.1-8B
//     LoRA with transformers, 4,962 tokens/s on one RTX PRO 6000 (Blackwell),
//     consistent with ≈ 4.4k on an H100.
//   - [thurin] pe-report.pages.dev: Qwen3-Next-80B-A3B-Instruct QLoRA (NF4,
//     double quant), rank 16, A100 80GB (layers spread over 4 cards, run in
//     sequence), batch 1 × accumulation 8, sequences ≤ 2048: 3.3 min per
//     optimizer step (24,849 s for 119 steps), ≈ 26 s per micro-batch.
//     48 layers × 512 experts = 24,576 expert calls per micro-batch →
//     ≈ 1.0 ms per expert call (forward, recompute, backward) on an A100.
//   - [moe-slow] public reports of the same loop's cost: LlamaFactory #8038
//     (Qwen3-30B-A3B LoRA, "1 step takes 5+ min"), LlamaFactory #7921 (MoE
//     slower than dense Qwen3-32B), unsloth #2582 (Qwen3-30B-A3B on H800,
//     200–300 s per step, 10–20 % GPU use), QwenLM/Qwen3 #736.
//   - [specs] relative GPU speed where no measurement was found, from dense
//     BF16 tensor throughput and memory bandwidth: A100 312 TFLOPS / 2.0 TB/s,
//     L40S 362 / 0.86, RTX A6000 155 / 0.77, RTX 4090 165 / 1.0; taken as
//     L40S ≈ 0.85 × A100, A6000 ≈ 0.5 × A100, RTX 4090 ≈ 0.7 × RTX 5090.
//
// Per-expert-call cost by GPU (launch- and sync-bound, so it moves little
// with the card): A100 ≈ 1.02 ms [thurin]; H100, H200 0.83 ms (faster
// dequant and matmul kernels, same launch cost); L40S, RTX 4090 as A100;
// A6000 1.2 ms; BF16 experts (no dequantization) 0.7 ms.
//
// Compute rates for the MoE models treat them as a ≈ 3B dense QLoRA model
// ([qwen-profile] 1.8B → 7B Q-LoRA on an A100: 8.2k → 2.3k tokens/s;
// ≈ 5k at 3B), scaled by GPU as for the dense model.
func defaultThroughput() []Throughput {
	const (
		next  = "Qwen/Qwen3-Next-80B-A3B-Instruct"
		moe30 = "Qwen/Qwen3-30B-A3B-Instruct-2507"
		dense = "Qwen/Qwen3-8B"

		nextSrc  = "NF4. Fixed cost: 24,576 expert calls per micro-batch (48 layers × 512 experts) × per-call cost; A100 anchored on a published Qwen3-Next QLoRA run at ≈ 26 s per micro-batch (pe-report.pages.dev, Thurin AI); other GPUs scaled by kernel speed. Compute rate as a ≈ 3B dense QLoRA model (QwenLM/Qwen README profiling). Corroborated by public reports of slow MoE LoRA in transformers (LlamaFactory #8038, unsloth #2582)."
		moe30Src = "Fixed cost: 6,144 expert calls per micro-batch (48 layers × 128 experts) × the per-call cost measured on Qwen3-Next (pe-report.pages.dev); compute rate as a ≈ 3B dense model (QwenLM/Qwen README profiling). Public reports of the same loop: LlamaFactory #8038, unsloth #2582, Surogate benchmarks (16 tokens/s with Unsloth NF4 on an RTX 5090)."
		denseSrc = "Half the Unsloth figures for Qwen3-8B on H100/H200/RTX 5090 (docs.surogate.ai benchmarks; Unsloth ≈ 2× transformers + FA2, docs.unsloth.ai); A100 from Qwen-7B LoRA at 3,150 tokens/s scaled to 8.2B (QwenLM/Qwen README); L40S and A6000 by BF16 TFLOPS relative to A100; transformers LoRA on Llama-3.1-8B at 4,962 tokens/s on an RTX PRO 6000 (exxactcorp.com) as a cross-check."
	)
	return []Throughput{
		{next, "a100-80gb", 4000, 25.0, 0.5, nextSrc},
		{next, "h100-80gb", 7500, 20.5, 0.5, nextSrc},
		{next, "h200-141gb", 8000, 20.5, 0.5, nextSrc},
		{next, "l40s-48gb", 3400, 25.0, 0.5, nextSrc},
		{next, "a6000-48gb", 2000, 29.5, 0.5, nextSrc},
		{next, "rtx4090-24gb", 2400, 25.0, 0.5, nextSrc},

		{moe30, "a100-80gb", 5000, 6.3, 0.5, "NF4. " + moe30Src},
		{moe30, "h100-80gb", 9000, 5.1, 0.5, "NF4. " + moe30Src},
		{moe30, "h200-141gb", 10000, 4.3, 0.5, "BF16 (no dequantization: ≈ 0.7 ms per expert call). " + moe30Src},
		{moe30, "l40s-48gb", 4200, 6.3, 0.5, "NF4. " + moe30Src},
		{moe30, "a6000-48gb", 2500, 7.4, 0.5, "NF4. " + moe30Src},
		{moe30, "rtx4090-24gb", 3000, 6.3, 0.5, "NF4. " + moe30Src},

		{dense, "a100-80gb", 2900, 0.1, 0.3, "BF16. " + denseSrc},
		{dense, "h100-80gb", 4400, 0.1, 0.3, "BF16. " + denseSrc},
		{dense, "h200-141gb", 4500, 0.1, 0.3, "BF16. " + denseSrc},
		{dense, "l40s-48gb", 2450, 0.1, 0.3, "BF16. " + denseSrc},
		{dense, "a6000-48gb", 1450, 0.1, 0.3, "BF16. " + denseSrc},
		{dense, "rtx4090-24gb", 1200, 0.15, 0.3, "NF4 (≈ 1.7k with transformers on an RTX 5090, × 0.7 for a 4090). " + denseSrc},
	}
}
