"""GPU smoke test: training checks and throughput figures on a CUDA device.

1. Training: builds the tiny random Qwen3-Next and trains it through the
   worker's own load / fit / save code with BF16 LoRA and, when bitsandbytes
   is importable, 4-bit NF4 QLoRA; checks that the loss falls, that LoRA sits
   only on the intended modules and (4-bit) that the router and
   shared_expert_gate stayed unquantized while the routed experts were
   quantized.
   Then checkpoint and resume on this device's optimizer (the paged 8-bit
   AdamW with bitsandbytes on CUDA): a run stopped after step 6 and resumed
   from its checkpoint in a fresh model must end with the adapter of an
   uninterrupted run, within 10 x the difference between two uninterrupted
   runs (GPU kernels with atomics are not bitwise repeatable) plus 1e-6 of
   the largest weight.
2. Throughput (scripts/throughput.py): a real-width, reduced-depth
   Qwen3-Next-80B-A3B (random weights, NF4 experts when bitsandbytes is
   there), the per-expert loop against grouped experts: tokens/s, seconds per
   micro-batch, peak memory and model FLOPs utilisation, and the rows for the
   catalog's throughput table (shared/catalog/throughput.go), extrapolated to
   48 layers. Also checks fla's gated-delta-rule gradients against the torch
   implementation when fla is installed (the Hopper + old Triton bug).

    python gpu-image/scripts/gpu_smoke.py                  # on a GPU machine, under five minutes
    python gpu-image/scripts/gpu_smoke.py --skip-train --json out.json
    python gpu-image/scripts/gpu_smoke.py --allow-cpu --throughput-layers 4 --hidden 256  # dry run on a CPU

Needs torch, transformers, peft, tokenizers and safetensors; bitsandbytes
(and fla) from wheels when they are not installed:
    pip install --no-deps bitsandbytes-0.48.2-*.whl

Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import throughput  # noqa: E402  (scripts/throughput.py)
from brightrun_worker import errors, spec as spec_mod, tiny  # noqa: E402
from brightrun_worker.data import Message, build, read_jsonl  # noqa: E402
from brightrun_worker.registry import QWEN3_NEXT_LORA_TARGETS, forbidden_module  # noqa: E402

TOY = HERE.parent / "tests" / "fixtures" / "toy_chat.jsonl"


class Recorder:
    def __init__(self, stop_after: Optional[int] = None, checkpoints: bool = False) -> None:
        self.steps: list[Any] = []
        self.stop_after = stop_after
        self.written: list[Any] = []
        if checkpoints:
            self.checkpoint = self.written.append

    def progress(self, p: Any) -> None:
        self.steps.append(p)

    def stop_error(self) -> Optional[errors.WorkerError]:
        if self.stop_after is not None and len(self.steps) >= self.stop_after:
            return errors.WorkerError(errors.CANCELLED, "stopped by the smoke test")
        return None


def resume_check(model_dir: Path, quantization: str, args: argparse.Namespace) -> bool:
    """Checkpoint after every step, stop after step 6, resume in a fresh
    model; compare with uninterrupted runs."""
    import torch
    from tokenizers import Tokenizer

    from brightrun_worker import train

    doc = json.loads((HERE.parent.parent / "testdata" / "contracts" / "job_spec.example.json").read_text())
    doc["base_model"].update(volume_path=str(model_dir), quantization=quantization)
    doc["hyperparameters"].update(learning_rate=1e-3, batch_size=2, gradient_accumulation=1, epochs=3, lora_rank=16,
                                  lora_alpha=32, lora_dropout=0.1, max_seq_length=256, warmup_ratio=0.1)
    doc["checkpoint_every_seconds"] = 1e-6
    spec = spec_mod.parse(doc)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    examples, _ = build(tok, read_jsonl(TOY), max_seq_length=256, rule_name="chatml-no-think")
    pad = tok.token_to_id("<|endoftext|>")

    def adapter(session: Any) -> dict[str, Any]:
        return {n: p.detach().float().cpu().clone() for n, p in session.model.named_parameters() if p.requires_grad}

    def one(work: Path, rec: Recorder, resume: Optional[Path] = None) -> Optional[dict[str, Any]]:
        session = train.load_model(spec)
        try:
            train.fit(session, examples, spec, rec, work, pad_id=pad, resume=resume)
            return adapter(session)
        except errors.WorkerError:
            return None
        finally:
            train.release(session)

    with tempfile.TemporaryDirectory() as d:
        t0 = time.monotonic()
        a = one(Path(d) / "a", Recorder())
        b = one(Path(d) / "b", Recorder())
        cut = Recorder(stop_after=6, checkpoints=True)
        one(Path(d) / "c", cut)
        ck = next(w for w in cut.written if w.step == 6)
        size = sum(f.stat().st_size for f in ck.dir.iterdir())
        rest = Recorder()
        c = one(Path(d) / "d", rest, ck.dir)
    assert a is not None and b is not None and c is not None
    scale = max(float(t.abs().max()) for t in a.values())
    noise = max(float((a[k] - b[k]).abs().max()) for k in a)
    diff = max(float((a[k] - c[k]).abs().max()) for k in a)
    steps = [p.step for p in rest.steps]
    ok = steps == list(range(7, 13)) and diff <= 10 * noise + 1e-6 * scale
    print(f"resume ({quantization}): checkpoint {size:,} bytes written in {ck.write_seconds:.3f}s; resumed steps {steps[0]}..{steps[-1]}; "
          f"adapter difference {diff:.3g} vs run-to-run {noise:.3g} (largest weight {scale:.3g}); {time.monotonic() - t0:.1f}s"
          + ("" if ok else "  FAIL"))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    return ok


def make_spec(model_dir: Path, quantization: str, args: argparse.Namespace) -> spec_mod.JobSpec:
    doc = json.loads((HERE.parent.parent / "testdata" / "contracts" / "job_spec.example.json").read_text())
    doc["base_model"].update(volume_path=str(model_dir), quantization=quantization)
    doc["hyperparameters"].update(
        learning_rate=1e-3,
        batch_size=args.batch_size,
        gradient_accumulation=1,
        epochs=args.epochs,
        lora_rank=16,
        lora_alpha=128,
        lora_dropout=0.0,
        max_seq_length=max(256, args.seq_len),
        warmup_ratio=0.0,
    )
    return spec_mod.parse(doc)


def synthetic(n: int, words: int, seed: int = 0) -> list[list[Message]]:
    rnd = random.Random(seed)
    vocab = "the capital of France is Paris Tokyo Rome Madrid Berlin hello world answer question".split()
    out = []
    for _ in range(n):
        q = " ".join(rnd.choice(vocab) for _ in range(words // 4))
        a = " ".join(rnd.choice(vocab) for _ in range(words - words // 4))
        out.append([Message("user", q), Message("assistant", a)])
    return out


def run(model_dir: Path, quantization: str, args: argparse.Namespace) -> bool:
    import torch
    from tokenizers import Tokenizer

    from brightrun_worker import train

    spec = make_spec(model_dir, quantization, args)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    convs = read_jsonl(TOY) if args.seq_len <= 256 else synthetic(args.examples, args.seq_len)
    examples, stats = build(tok, convs, max_seq_length=spec.hyperparameters.max_seq_length, rule_name="chatml-no-think")
    t0 = time.monotonic()
    session = train.load_model(spec)
    load_s = time.monotonic() - t0
    ok = True
    print(f"\n== {quantization}: loaded in {load_s:.1f}s on {session.device} ({session.quantization}), "
          f"{session.trainable_parameters:,} trainable parameters in {len(session.lora_modules)} LoRA modules")
    bad = [n for n in session.lora_modules if forbidden_module(n)]
    if bad:
        print(f"FAIL: LoRA on excluded modules: {bad[:5]}")
        ok = False
    missing = [t for t in QWEN3_NEXT_LORA_TARGETS if not any(n.endswith("." + t) for n in session.lora_modules)]
    if missing:
        print(f"FAIL: targets without a module: {missing}")
        ok = False
    if quantization == "nf4" and session.device == "cuda":
        kinds: dict[str, set[str]] = {"router": set(), "shared_expert_gate": set(), "experts": set()}
        for name, module in session.model.named_modules():
            if name.endswith("mlp.gate"):
                kinds["router"].add(type(module).__name__)
            elif name.endswith("shared_expert_gate"):
                kinds["shared_expert_gate"].add(type(module).__name__)
            elif ".experts." in name and name.endswith("proj"):
                kinds["experts"].add(type(module).__name__)
        print(f"module types: {kinds}")
        if "Linear4bit" in kinds["router"] | kinds["shared_expert_gate"]:
            print("FAIL: the router or shared_expert_gate was quantized")
            ok = False
        if kinds["experts"] != {"Linear4bit"}:
            print("FAIL: routed experts are not 4-bit")
            ok = False
    rec = Recorder()
    with tempfile.TemporaryDirectory() as work:
        result = train.fit(session, examples, spec, rec, Path(work), pad_id=tok.token_to_id("<|endoftext|>"))
        files = train.save_adapter(session, Path(work) / "adapter", spec.base_model.id)
        sizes = {n: p.stat().st_size for n, p in files.items()}
    tps = result.tokens_seen / result.train_seconds if result.train_seconds else 0.0
    print(
        f"{result.steps} steps, loss {result.initial_loss:.3f} -> {result.final_loss:.3f}, "
        f"train {result.train_seconds:.1f}s, {tps:,.0f} tokens/s, "
        f"peak GPU memory {result.peak_gpu_memory_bytes / 2**20:,.1f} MiB, adapter {sizes}"
    )
    if not result.final_loss < 0.8 * result.initial_loss:
        print("FAIL: the loss did not fall")
        ok = False
    train.release(session)
    if session.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow-cpu", action="store_true", help="run even without CUDA (checks the script only)")
    ap.add_argument("--skip-train", action="store_true", help="only the throughput part")
    ap.add_argument("--skip-throughput", action="store_true", help="only the tiny-model training part")
    ap.add_argument("--hidden-size", type=int, default=64, help="training part: model width")
    ap.add_argument("--layers", type=int, default=4, help="training part: a multiple of 4 (3 linear-attention + 1 full-attention)")
    ap.add_argument("--seq-len", type=int, default=256, help="> 256: synthetic conversations of about this many words")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    throughput.add_arguments(ap)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("no CUDA device (use --allow-cpu for a dry run)")
        return 1
    if torch.cuda.is_available():
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ok = True
    if not args.skip_train:
        with tempfile.TemporaryDirectory() as d:
            model_dir = Path(d) / "tiny"
            if args.hidden_size != 64 or args.layers != 4:
                _build_scaled(model_dir, args.hidden_size, args.layers)
            else:
                tiny.build(model_dir)
            quants = ["bf16"]
            try:
                import bitsandbytes  # noqa: F401

                quants.append("nf4")
            except ImportError:
                print("bitsandbytes not importable: skipping 4-bit training")
            ok = all([run(model_dir, q, args) for q in quants])
            ok = all([resume_check(model_dir, q, args) for q in quants]) and ok
    if not args.skip_throughput:
        ok = throughput.run(args) and ok
    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


def _build_scaled(out: Path, hidden: int, layers: int) -> None:
    """Like tiny.build, with a wider / deeper model for throughput figures."""
    import torch
    from tokenizers import Tokenizer
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    tiny.build(out)  # tokenizer files and the reference config
    tok = Tokenizer.from_file(str(tiny.TOKENIZER))
    kw = tiny.config_kwargs(tok.get_vocab_size(with_added_tokens=True))
    heads = max(4, hidden // 64)
    kw.update(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        layer_types=(["linear_attention"] * 3 + ["full_attention"]) * (layers // 4),
        num_attention_heads=heads,
        num_key_value_heads=max(2, heads // 4),
        head_dim=64 if hidden >= 256 else 16,
        linear_num_key_heads=max(2, heads // 2),
        linear_num_value_heads=heads,
        linear_key_head_dim=64 if hidden >= 256 else 16,
        linear_value_head_dim=64 if hidden >= 256 else 16,
        moe_intermediate_size=hidden // 2,
        shared_expert_intermediate_size=hidden // 2,
        num_experts=8,
        eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=tok.token_to_id("<|endoftext|>"),
    )
    torch.manual_seed(0)
    model = Qwen3NextForCausalLM(Qwen3NextConfig(**kw))
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.1)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    sys.exit(main())
