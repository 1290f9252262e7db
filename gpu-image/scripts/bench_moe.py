"""One Qwen3-Next MoE block, forward + backward: transformers' per-expert loop
vs brightrun_worker.moe's grouped experts, in one run.

Counts the aten operator calls of one forward + backward (a TorchDispatchMode;
on a GPU each is roughly one kernel launch, which is what the loop costs
there) and times it (median of --reps after a warm-up), then prints a table
and the ratios.

    python gpu-image/scripts/bench_moe.py                       # 512 experts, top-10, 256 tokens, CPU
    python gpu-image/scripts/bench_moe.py --nf4                 # experts as bitsandbytes NF4 (bf16 compute)
    python gpu-image/scripts/bench_moe.py --device cuda --nf4 --hidden 2048 --inter 512 --tokens 4096

Runs on one CPU thread unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.calls += 1
        return func(*args, **(kwargs or {}))


def build(args: argparse.Namespace) -> torch.nn.Module:
    from transformers import Qwen3NextConfig
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextSparseMoeBlock

    config = Qwen3NextConfig(
        hidden_size=args.hidden,
        moe_intermediate_size=args.inter,
        shared_expert_intermediate_size=args.inter,
        num_experts=args.experts,
        num_experts_per_tok=args.top_k,
        norm_topk_prob=True,
        hidden_act="silu",
    )
    torch.manual_seed(0)
    block = Qwen3NextSparseMoeBlock(config)
    dtype = torch.bfloat16 if args.nf4 else getattr(torch, args.dtype)
    block = block.to(dtype)
    if args.nf4:
        import bitsandbytes as bnb

        for expert in block.experts:
            for name in ("gate_proj", "up_proj", "down_proj"):
                dense = getattr(expert, name)
                q = bnb.nn.Linear4bit(
                    dense.in_features, dense.out_features, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4"
                )
                q.weight = bnb.nn.Params4bit(dense.weight.data, requires_grad=False, quant_type="nf4")
                setattr(expert, name, q.to(args.device))  # quantizes (double quant: compress_statistics)
    block = block.to(args.device)
    for p in block.experts.parameters():
        p.requires_grad_(False)  # frozen in training (LoRA never targets them): no weight gradients either way
    return block


def step(block: torch.nn.Module, x: torch.Tensor, probe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    out, _ = block(x)
    (out.float() * probe).sum().backward()
    return out.detach(), x.grad


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], reps: int, device: str) -> float:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experts", type=int, default=512)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--inter", type=int, default=128, help="moe_intermediate_size (and the shared expert's)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="ignored with --nf4 (bf16)")
    ap.add_argument("--nf4", action="store_true", help="routed experts as bitsandbytes NF4 Linear4bit")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from brightrun_worker.moe import apply_grouped_moe, grouped_mm_backend

    loop = build(args)
    grouped = copy.deepcopy(loop)
    assert apply_grouped_moe(grouped) == 1
    dtype = next(loop.gate.parameters()).dtype
    torch.manual_seed(1)
    x = torch.randn(1, args.tokens, args.hidden, dtype=dtype, device=args.device)
    probe = torch.randn(1, args.tokens, args.hidden, device=args.device)
    with torch.no_grad():
        hit = torch.topk(loop.gate(x[0]), args.top_k, dim=-1).indices.unique().numel()

    rows = []
    outs = {}
    for name, block in (("loop (transformers)", loop), ("grouped", grouped)):
        outs[name] = step(block, x, probe)
        with CountOps() as counter:
            step(block, x, probe)
        seconds = measure(lambda b=block: step(b, x, probe), args.reps, args.device)
        rows.append((name, counter.calls, seconds))
    compute = torch.bfloat16 if args.nf4 else dtype
    backend = grouped_mm_backend(
        torch.empty(args.tokens * args.top_k, args.hidden, dtype=compute, device=args.device),
        torch.empty(args.experts, 2 * args.inter, args.hidden, dtype=compute, device=args.device),
    )

    kind = "nf4 (bf16 compute)" if args.nf4 else args.dtype
    print(
        f"one MoE block, forward + backward: {args.experts} experts ({hit} hit), top-{args.top_k}, "
        f"{args.tokens} tokens, hidden {args.hidden}, moe_intermediate {args.inter}, {kind}, "
        f"{args.device}, {torch.get_num_threads()} thread(s), median of {args.reps}; grouped_mm: {backend}"
    )
    print(f"{'':22}{'aten ops':>10}{'seconds':>12}")
    for name, calls, seconds in rows:
        print(f"{name:22}{calls:>10}{seconds:>12.4f}")
    (_, loop_calls, loop_s), (_, grouped_calls, grouped_s) = rows
    print(f"ratio loop/grouped: {loop_calls / grouped_calls:.1f}x fewer operator calls, {loop_s / grouped_s:.1f}x faster")
    for i, what in enumerate(("output", "input gradient")):
        got, want = outs["grouped"][i].float(), outs["loop (transformers)"][i].float()
        print(f"{what}: max |grouped - loop| / max |loop| = {float((got - want).abs().max() / want.abs().max()):.2e}")


if __name__ == "__main__":
    main()
