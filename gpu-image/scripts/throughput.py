"""Throughput of the worker's training step on a real-width Qwen3-Next.

A Qwen3-Next-80B-A3B with its real widths (hidden 2048, 512 experts top-10,
expert width 512, the real attention and linear-attention heads, vocabulary
151,936) and a reduced depth (default 4 layers: 3 linear-attention + 1
full-attention), random weights, routed experts in NF4 (double quant, bf16
compute) when bitsandbytes is importable. LoRA on the registry's targets,
gradient checkpointing, and the worker's own micro-batch code
(train.collate, train.step_backward): forward + backward of one micro-batch,
the per-expert loop of transformers 4.57 against moe.apply_grouped_moe.

Figures per mode and micro-batch size: seconds per micro-batch, tokens/s,
peak GPU memory, model FLOPs utilisation (6 x active parameters per token,
attention scores excluded, so it slightly understates). Then the rows of the
catalog's throughput table: a fit of seconds = fixed + tokens / rate over the
micro-batch sizes, extrapolated to the full 48 layers by timing the
embedding + LM head + loss alone (the part that does not scale with depth).

Used by gpu_smoke.py; runs alone too:
    python gpu-image/scripts/throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FULL_LAYERS = 48
MODEL_ID = "Qwen/Qwen3-Next-80B-A3B-Instruct"

# Dense BF16 tensor-core peak (no sparsity), TFLOPS, by device-name fragment.
PEAK_TFLOPS = [
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("RTX A6000", 154.8),
    ("4090", 165.2),
]
# The catalog's GPU ids (shared/catalog/gpus.go), by device-name fragment.
CATALOG_GPU = [
    ("H200", "h200-141gb"),
    ("H100", "h100-80gb"),
    ("A100", "a100-80gb"),
    ("L40S", "l40s-48gb"),
    ("RTX A6000", "a6000-48gb"),
    ("4090", "rtx4090-24gb"),
]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--throughput-layers", type=int, default=4, help="a multiple of 4 (3 linear-attention + 1 full-attention)")
    ap.add_argument("--hidden", type=int, default=2048, help="hidden size (2048 is the real one; smaller for a dry run)")
    ap.add_argument("--experts", type=int, default=512)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--rows", default="1,4", help="rows per micro-batch, comma-separated (each row --width tokens)")
    ap.add_argument("--width", type=int, default=2048, help="tokens per row")
    ap.add_argument("--reps", type=int, default=3, help="timed micro-batches per size (after one warm-up)")
    ap.add_argument("--modes", default="loop,grouped", help="loop (transformers' per-expert loop), grouped, or both")
    ap.add_argument("--loop-reps", type=int, default=1, help="timed micro-batches per size for the slow loop")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="the device's dense BF16 peak (default: from its name)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")


def _lookup(table: list[tuple[str, Any]], name: str, default: Any) -> Any:
    for frag, v in table:
        if frag in name:
            return v
    return default


def build_model(args: argparse.Namespace, device: str) -> tuple[Any, str, Any]:
    """The reduced-depth model on the device, experts in NF4 when possible."""
    import torch
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    layers = args.throughput_layers
    if layers % 4:
        raise SystemExit("--throughput-layers must be a multiple of 4")
    kw: dict[str, Any] = dict(
        num_hidden_layers=layers,
        layer_types=(["linear_attention"] * 3 + ["full_attention"]) * (layers // 4),
        num_experts=args.experts,
        num_experts_per_tok=args.top_k,
        use_cache=False,
    )
    if args.hidden != 2048:  # dry runs: everything scaled down with the width
        scale = args.hidden / 2048
        kw.update(
            hidden_size=args.hidden,
            moe_intermediate_size=max(16, int(512 * scale)),
            shared_expert_intermediate_size=max(16, int(512 * scale)),
            intermediate_size=max(32, int(5120 * scale)),
            head_dim=max(16, int(256 * scale)),
            linear_key_head_dim=max(16, int(128 * scale)),
            linear_value_head_dim=max(16, int(128 * scale)),
            vocab_size=8192,
        )
    config = Qwen3NextConfig(**kw)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Qwen3NextForCausalLM(config)
    finally:
        torch.set_default_dtype(prev)
    model.config.use_cache = False
    quant = "bf16"
    try:
        import bitsandbytes as bnb  # noqa: F401

        _quantize_experts(model, device)
        quant = "nf4"
    except ImportError:
        print("bitsandbytes not importable: routed experts stay in BF16 (the default job runs them in NF4)")
    return model, quant, config


def _quantize_experts(model: Any, device: str) -> None:
    """Routed experts to bitsandbytes Linear4bit, as from_pretrained with the
    worker's BitsAndBytesConfig makes them (router and gates stay BF16)."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for expert in layer.mlp.experts:
            for name in ("gate_proj", "up_proj", "down_proj"):
                lin = getattr(expert, name)
                q = bnb.nn.Linear4bit(
                    lin.in_features,
                    lin.out_features,
                    bias=False,
                    compute_dtype=torch.bfloat16,
                    compress_statistics=True,
                    quant_type="nf4",
                    device="meta",
                )
                q.weight = bnb.nn.Params4bit(
                    lin.weight.data.to("cpu"), requires_grad=False, compress_statistics=True, quant_type="nf4"
                ).to(device)
                setattr(expert, name, q)
                del lin


def _attach_lora(model: Any, device: str, quant: str) -> Any:
    from brightrun_worker import spec as spec_mod, train

    doc = json.loads((HERE.parent.parent / "testdata" / "contracts" / "job_spec.example.json").read_text())
    doc["base_model"]["quantization"] = quant
    spec = spec_mod.parse(doc)
    session = train.Session(model=model, device=device, dtype="bfloat16", quantization=quant, load_seconds=0.0)
    train.attach_lora(session, spec)
    session.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    session.model.train()
    return session


def active_parameters(model: Any, config: Any) -> int:
    """Parameters one token multiplies with (routed experts: top_k of E),
    embedding lookup excluded, LM head included."""
    expert = 3 * config.moe_intermediate_size * config.hidden_size
    routed = config.num_hidden_layers * config.num_experts_per_tok * expert
    dense = 0
    for name, p in model.named_parameters():
        if ".experts." in name or "embed_tokens" in name or "lora_" in name:
            continue
        dense += p.numel()
    return dense + routed


def _batch(rows: int, width: int, vocab: int, seed: int) -> tuple[Any, int]:
    import torch

    from brightrun_worker import train
    from brightrun_worker.data import Example

    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(rows):
        ids = torch.randint(0, vocab, (width,), generator=g).tolist()
        examples.append(Example(input_ids=ids, labels=[-100] + ids[1:], total=width, trained=width - 1, truncated=False))
    trained = sum(train.trained_after_shift(e.labels) for e in examples)
    return train.collate(examples, list(range(rows)), pad_id=0), trained


def time_micro_batches(session: Any, rows: int, width: int, reps: int, vocab: int, device: str) -> dict[str, float]:
    import torch

    from brightrun_worker import train

    batch, trained = _batch(rows, width, vocab, seed=rows)
    train.step_backward(session.model, [batch], trained, device)  # warm-up (kernels, allocator)
    session.model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        train.step_backward(session.model, [batch], trained, device)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        session.model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return {"tokens": rows * width, "seconds": statistics.median(times), "peak_gib": peak / 2**30}


def time_head(config: Any, tokens: int, reps: int, device: str) -> float:
    """Embedding + final norm + LM head + loss, forward and backward: the
    part of a micro-batch that does not grow with depth."""
    import torch
    import torch.nn.functional as F

    emb = torch.nn.Embedding(config.vocab_size, config.hidden_size, device=device, dtype=torch.bfloat16)
    head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False, device=device, dtype=torch.bfloat16)
    for p in (*emb.parameters(), *head.parameters()):
        p.requires_grad_(False)
    ids = torch.randint(0, config.vocab_size, (1, tokens), device=device)

    def once() -> None:
        h = emb(ids).requires_grad_(True)
        logits = head(h).float()
        loss = F.cross_entropy(logits.view(-1, config.vocab_size)[:-1], ids.view(-1)[1:])
        loss.backward()

    once()
    if device == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        once()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fit_line(points: list[dict[str, float]]) -> tuple[float, float]:
    """seconds = fixed + tokens / rate, least squares; (fixed, rate)."""
    if len(points) < 2:
        p = points[0]
        return 0.0, p["tokens"] / p["seconds"]
    xs = [p["tokens"] for p in points]
    ys = [p["seconds"] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else my / mx
    fixed = max(0.0, my - slope * mx)
    return fixed, (1.0 / slope if slope > 0 else float("inf"))


def check_fla(device: str) -> Optional[bool]:
    """fla's chunked gated delta rule against transformers' torch version,
    outputs and gradients; None when fla is not installed."""
    if device != "cuda":
        return None
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except ImportError:
        print("fla not installed: the gated delta rule runs transformers' torch fallback")
        return None
    import torch
    from transformers.models.qwen3_next.modeling_qwen3_next import torch_chunk_gated_delta_rule

    torch.manual_seed(0)
    B, T, H, K, V = 1, 512, 4, 128, 128
    q = torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, K, device="cuda"), dim=-1).bfloat16()
    v = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16)
    g = -torch.rand(B, T, H, device="cuda").float()
    beta = torch.rand(B, T, H, device="cuda").bfloat16()
    outs = []
    for fn in (chunk_gated_delta_rule, torch_chunk_gated_delta_rule):
        xs = [t.detach().clone().requires_grad_(True) for t in (q, k, v, g, beta)]
        o, _ = fn(*xs, initial_state=None, output_final_state=False, use_qk_l2norm_in_kernel=True)
        o.float().square().sum().backward()
        outs.append((o.float(), [x.grad.float() for x in xs]))
    (o1, g1), (o2, g2) = outs
    rel = lambda a, b: float((a - b).norm() / b.norm().clamp_min(1e-6))  # noqa: E731
    errs = {"out": rel(o1, o2), **{n: rel(a, b) for n, a, b in zip(("dq", "dk", "dv", "dg", "dbeta"), g1, g2)}}
    ok = all(e < 0.05 for e in errs.values())
    print(f"fla chunk_gated_delta_rule vs torch (relative error): {json.dumps({k: round(v, 4) for k, v in errs.items()})} -> {'OK' if ok else 'FAIL'}")
    return ok


def run(args: argparse.Namespace) -> bool:
    import gc

    import torch

    from brightrun_worker.moe import apply_grouped_moe

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak_tflops = args.peak_tflops or _lookup(PEAK_TFLOPS, name, 0.0)
    rows_list = [int(r) for r in args.rows.split(",") if r.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    t0 = time.monotonic()
    model, quant, config = build_model(args, device)
    print(f"\n== throughput: {args.throughput_layers} layers at hidden {config.hidden_size}, {config.num_experts} experts "
          f"top-{config.num_experts_per_tok}, experts in {quant}, built in {time.monotonic() - t0:.0f}s on {name}")
    fla_ok = check_fla(device)
    session = _attach_lora(model, device, quant)
    active = active_parameters(session.model, config)
    results: dict[str, list[dict[str, float]]] = {}
    for mode in ("loop", "grouped"):  # the loop first: grouping restacks the experts
        if mode == "loop" and "loop" not in modes:
            continue
        if mode == "grouped":
            n = apply_grouped_moe(session.model)
            print(f"grouped experts in {n} MoE blocks")
        points = []
        for rows in rows_list:
            reps = args.loop_reps if mode == "loop" else args.reps
            p = time_micro_batches(session, rows, args.width, reps, config.vocab_size, device)
            p["tokens_per_second"] = p["tokens"] / p["seconds"]
            p["mfu"] = (6 * active * p["tokens_per_second"] / (peak_tflops * 1e12)) if peak_tflops else 0.0
            points.append(p)
            print(f"{mode:8s} {rows} x {args.width} tokens: {p['seconds']:.3f} s per micro-batch, "
                  f"{p['tokens_per_second']:,.0f} tokens/s, peak {p['peak_gib']:.1f} GiB, MFU {100 * p['mfu']:.1f} %")
            gc.collect()
        results[mode] = points
    head_s = {int(p["tokens"]): time_head(config, int(p["tokens"]), args.reps, device) for p in results["grouped"]}
    scale = FULL_LAYERS / args.throughput_layers
    summary: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        "layers": args.throughput_layers,
        "hidden": config.hidden_size,
        "experts": config.num_experts,
        "top_k": config.num_experts_per_tok,
        "quantization": quant,
        "active_parameters_reduced": active,
        "peak_tflops": peak_tflops,
        "fla_matches_torch": fla_ok,
        "modes": results,
    }
    gpu_id = _lookup(CATALOG_GPU, name, name)
    print(f"\nextrapolated to {FULL_LAYERS} layers (head = embedding + LM head + loss, timed alone):")
    rows_out = {}
    for mode, points in results.items():
        full = [
            {"tokens": p["tokens"], "seconds": head_s.get(int(p["tokens"]), 0.0) + scale * (p["seconds"] - head_s.get(int(p["tokens"]), 0.0))}
            for p in points
        ]
        fixed, rate = fit_line(full)
        rows_out[mode] = {"micro_batch_seconds": fixed, "tokens_per_second": rate, "points": full}
        for f in full:
            print(f"{mode:8s} {f['tokens']:>6.0f} tokens: {f['seconds']:.2f} s per micro-batch ({f['tokens'] / f['seconds']:,.0f} tokens/s)")
        if math.isfinite(rate):
            print(f"catalog row ({mode}): {{next, \"{gpu_id}\", {rate:.0f}, {fixed:.2f}, 0.25, "
                  f"\"{quant.upper()}, measured by gpu_smoke.py on {name} (torch {torch.__version__}), "
                  f"{args.throughput_layers} layers extrapolated to {FULL_LAYERS}\"}},")
    summary["full_model"] = rows_out
    if "loop" in results and results["loop"]:
        ratios = [lp["seconds"] / gp["seconds"] for lp, gp in zip(results["loop"], results["grouped"])]
        summary["speedup"] = ratios
        print("grouped vs loop, per micro-batch: " + ", ".join(f"{r:.1f}x" for r in ratios))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
        print(f"figures written to {args.json}")
    ok = fla_ok is not False
    if "loop" in results and results["loop"] and not all(r > 1.0 for r in summary["speedup"]):
        print("FAIL: grouped experts are not faster than the loop")
        ok = False
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    ap.add_argument("--allow-cpu", action="store_true")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("no CUDA device (use --allow-cpu for a dry run)")
        return 1
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
