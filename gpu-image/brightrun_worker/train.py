"""Model loading, LoRA attachment, training and saving: the only module of
the job path that imports torch, transformers and peft.

- QLoRA (quantization "nf4"): 4-bit NF4, double quant, BF16 compute; the
  router (mlp.gate), shared_expert_gate and lm_head stay in BF16
  (registry.QLORA_SKIP_MODULES explains the names).
- LoRA ("bf16"): plain BF16 weights.
- The same on a machine without CUDA (tests, the local worker mode):
  bitsandbytes runs NF4 on the CPU; a request that cannot be honoured fails.
- Every Qwen3-Next MoE block runs its routed experts grouped (moe.py).
- Gradient checkpointing (non-reentrant), use_cache=False, no packing:
  micro-batches of length-sorted examples cut by a token budget, padded per
  micro-batch; the loss is normalised over each optimizer step's trained
  tokens.
- Checkpoints (checkpoint.py) every spec.checkpoint_every_seconds of training
  and at each epoch's end, handed to the job for upload; a run resumes from
  one at the same step, data position, schedule and RNG state.
- Evaluation loss on held-out examples, normalised like the training loss,
  at a fixed step interval and at the end.
- A stop is honoured before every micro-batch (training and evaluation) and
  between the phases of loading (before every checkpoint shard).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, set_seed

from . import checkpoint as ckpt
from . import errors
from .data import IGNORE_INDEX, Example
from .modelfiles import missing_model_advice, model_files_problem, prequantized
from .registry import QLORA_SKIP_MODULES, forbidden_module
from .spec import ARTIFACT_NAMES, JobSpec

log = logging.getLogger(__name__)

SEED = 42


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    grad_norm: Optional[float]
    tokens_seen: int  # non-padding input tokens so far
    train_seconds: float
    gpu_memory_bytes: int  # peak allocated, 0 on CPU
    micro_batches: int = 0  # forward/backward passes so far
    padded_tokens_seen: int = 0  # rows x padded width so far
    eval_loss: Optional[float] = None  # set on the steps that evaluated
    max_micro_batch_seconds: float = 0.0  # the longest micro-batch so far (how long a stop may wait)


class Hooks(Protocol):
    def progress(self, p: Progress) -> None:
        """Called after every optimizer step (the caller throttles)."""

    def stop_error(self) -> Optional[errors.WorkerError]:
        """Non-None when training must stop (cancelled, superseded, time limit)."""

    # Optional (looked up with getattr; a hooks object without them gets no
    # checkpoints and no resume notice):
    #   checkpoints_wanted() -> bool: False once checkpoints cannot be stored
    #   checkpoint(w: checkpoint.Written) -> None: a checkpoint was written
    #   resumed(step, tokens_seen, train_seconds) -> None: fit continues a checkpoint
    #   after_step(step) -> None: the step is done, its checkpoint handed over


@dataclass
class Session:
    model: Any
    device: str
    dtype: str
    quantization: str  # nf4 or bf16: what the spec asked for (never silently another)
    load_seconds: float
    grouped_moe_blocks: int = 0  # MoE blocks running grouped experts (moe.apply_grouped_moe)
    lora_modules: list[str] = field(default_factory=list)
    trainable_parameters: int = 0


@dataclass(frozen=True)
class FitResult:
    steps: int
    total_steps: int
    initial_loss: float
    final_loss: float
    train_loss_mean: float
    train_seconds: float
    tokens_seen: int
    peak_gpu_memory_bytes: int
    micro_batches: int = 0
    padded_tokens_seen: int = 0
    # Evaluation (None / 0 without held-out examples).
    eval_loss: Optional[float] = None
    eval_examples: int = 0
    eval_tokens: int = 0  # trained tokens of the held-out examples (one evaluation)
    evaluations: int = 0
    eval_seconds: float = 0.0
    # Checkpoints and resume. steps, micro_batches, tokens and train_seconds
    # count the whole run, the resumed-from part included; run_* this process.
    resumed_from_step: Optional[int] = None
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0
    run_train_seconds: float = 0.0
    run_micro_batches: int = 0

    @property
    def seconds_per_micro_batch(self) -> float:
        if self.run_micro_batches:
            return self.run_train_seconds / self.run_micro_batches
        return self.train_seconds / self.micro_batches if self.micro_batches else 0.0


def gpu_peak_bytes() -> int:
    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else 0


# -- loading ----------------------------------------------------------------


def _nf4_config() -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            "QLoRA (quantization nf4) needs bitsandbytes, which is not installed in this worker.",
            "Install the pinned requirements (gpu-image/requirements.txt), or train with quantization bf16.",
        ) from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=list(QLORA_SKIP_MODULES),
    )


def _check_prequantized(path: Path, q: dict[str, Any], quant: str) -> None:
    is_nf4 = q.get("quant_method") == "bitsandbytes" and q.get("load_in_4bit") and q.get("bnb_4bit_quant_type") == "nf4"
    if quant != "nf4":
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The model at {path} is a pre-quantized copy ({q.get('quant_method')}); a {quant} job needs the BF16 checkpoint.",
            "Point the model registry's volume path for bf16 jobs at the unquantized checkpoint.",
        )
    if not is_nf4:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The model at {path} is quantized but not as 4-bit NF4 (quantization_config {json.dumps(q, sort_keys=True)[:200]}).",
            "Prepare the copy again with python -m brightrun_worker.prepare.",
        )
    skipped = set(q.get("llm_int8_skip_modules") or [])
    if not set(QLORA_SKIP_MODULES) <= skipped:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The 4-bit copy at {path} quantized modules that must stay in BF16 "
            f"(its skip list {sorted(skipped)} lacks {sorted(set(QLORA_SKIP_MODULES) - skipped)}).",
            "Prepare the copy again with python -m brightrun_worker.prepare.",
        )


_SHARD_HOOK_LOCK = threading.Lock()


@contextlib.contextmanager
def _stop_between_shards(should_stop: Optional[Callable[[], None]]) -> Iterator[None]:
    """Call ``should_stop`` before transformers loads each checkpoint shard
    (4.57 looks ``load_shard_file`` up as a module global on every shard), so
    a cancel reaches a load of many shards within one shard's time."""
    if should_stop is None:
        yield
        return
    from transformers import modeling_utils as mu

    with _SHARD_HOOK_LOCK:
        real = getattr(mu, "load_shard_file", None)
        if real is None:  # another transformers: the phases between still check
            yield
            return

        def load_shard_file(args: Any) -> Any:
            should_stop()
            return real(args)

        mu.load_shard_file = load_shard_file
        try:
            yield
        finally:
            mu.load_shard_file = real


def load_model(spec: JobSpec, should_stop: Optional[Callable[[], None]] = None) -> Session:
    """Load the base model as the spec asks, on the GPU when there is one and
    on the CPU otherwise, and attach LoRA. A request that cannot be honoured
    (4-bit without bitsandbytes, a copy quantized otherwise) fails: no
    silent fallback to other weights.

    ``should_stop`` (it raises to stop) is called between the phases of the
    load and before every checkpoint shard; what was loaded is dropped."""
    t0 = time.monotonic()
    check = should_stop or (lambda: None)
    path = Path(spec.base_model.volume_path)
    problem = model_files_problem(path)
    if problem:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            problem,
            missing_model_advice(str(path), spec.base_model.id, spec.base_model.quantization),
        )
    cuda = torch.cuda.is_available()
    if not cuda:
        # Few threads: on a small shared CPU, OpenMP oversubscription makes
        # each step 100x slower (measured: 0.07 s with 1 thread, 10+ s with 2
        # threads under load).
        torch.set_num_threads(max(1, int(os.environ.get("BRIGHTRUN_CPU_THREADS", "1"))))
    kwargs: dict[str, Any] = dict(
        local_files_only=True,
        low_cpu_mem_usage=True,
        use_cache=False,
        output_router_logits=False,
        # One device, never a silent CPU offload of part of the model.
        device_map={"": 0} if cuda else {"": "cpu"},
    )
    quant = spec.base_model.quantization
    q = prequantized(path)
    if q is not None:
        _check_prequantized(path, q, quant)
        _nf4_config()  # bitsandbytes must be there to run the copy
    elif quant == "nf4":
        log.info("quantizing %s to NF4 while loading (a prepared copy loads faster)", path)
        kwargs["quantization_config"] = _nf4_config()
    dtype = torch.bfloat16
    check()
    try:
        with _stop_between_shards(should_stop):
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kwargs)
    except errors.WorkerError:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        raise
    except Exception as e:  # noqa: BLE001 - classified below
        if errors.is_oom(e):
            raise errors.WorkerError(
                errors.OOM,
                "The base model does not fit in this GPU's memory.",
                "Train with quantization nf4 (QLoRA), or choose a GPU with more memory.",
            ) from e
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The base model could not be loaded from {path} ({type(e).__name__}: {first}).",
        ) from e
    model.config.use_cache = False
    try:
        session = _finish_load(spec, model, path, quant, dtype, cuda, check)
    except BaseException:
        del model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        raise
    session.load_seconds = time.monotonic() - t0
    return session


def _finish_load(spec: JobSpec, model: Any, path: Path, quant: str, dtype: Any, cuda: bool, check: Callable[[], None]) -> Session:
    check()
    if quant == "nf4" and not _has_4bit_experts(model):
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The model at {path} was asked for in 4-bit NF4 but loaded without 4-bit layers.",
            "Check the bitsandbytes install and the model's quantization_config.",
        )
    if cuda:
        _guard_fla_on_hopper(model)
    from .moe import apply_grouped_moe

    grouped = apply_grouped_moe(model)
    check()
    session = Session(
        model=model,
        device="cuda" if cuda else "cpu",
        dtype=str(dtype).replace("torch.", ""),
        quantization=quant,
        load_seconds=0.0,
        grouped_moe_blocks=grouped,
    )
    attach_lora(session, spec)
    check()
    return session


def _has_4bit_experts(model: Any) -> bool:
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return False
    return any(isinstance(m, Linear4bit) for m in model.modules())


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _guard_fla_on_hopper(model: Any) -> None:
    """fla's gated-delta-rule backward returns wrong gradients on Hopper
    (H100/H200) with Triton 3.4-3.7.0 (fixed in 3.7.1): fall back to
    transformers' torch implementation there, unless
    BRIGHTRUN_ALLOW_FLA_ON_HOPPER=1."""
    try:
        import fla  # noqa: F401
        import triton
    except ImportError:
        return
    if torch.cuda.get_device_capability(0)[0] != 9 or _version_tuple(triton.__version__) >= (3, 7, 1):
        return
    if os.environ.get("BRIGHTRUN_ALLOW_FLA_ON_HOPPER") == "1":
        log.warning("fla on Hopper with Triton %s: gradients may be wrong (allowed by env)", triton.__version__)
        return
    from transformers.models.qwen3_next import modeling_qwen3_next as m

    n = 0
    for module in model.modules():
        if hasattr(module, "chunk_gated_delta_rule"):
            module.chunk_gated_delta_rule = m.torch_chunk_gated_delta_rule
            n += 1
    log.warning(
        "Hopper GPU with Triton %s: fla's chunked gated-delta-rule has a wrong backward here; "
        "using the torch implementation in %d layers (slower)",
        triton.__version__,
        n,
    )


def attach_lora(session: Session, spec: JobSpec) -> None:
    from peft import LoraConfig, get_peft_model

    hp = spec.hyperparameters
    targets = list(spec.base_model.lora_targets)
    set_seed(SEED)
    model = session.model
    model.enable_input_require_grads()
    cfg = LoraConfig(
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, cfg)
    except ValueError as e:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The LoRA targets {targets} match no module of the base model ({str(e).splitlines()[0][:200]}).",
            "Check the model registry's LoRA targets for this base model.",
        ) from e
    wrapped = lora_module_names(model)
    unmatched = [t for t in targets if not any(n == t or n.endswith("." + t) for n in wrapped)]
    if unmatched:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The LoRA targets {unmatched} match no module of the base model.",
            "Check the model registry's LoRA targets for this base model.",
        )
    bad = [n for n in wrapped if forbidden_module(n)]
    if bad:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The LoRA targets would wrap excluded modules ({bad[:3]}...).",
            "Check the model registry's LoRA targets for this base model.",
        )
    session.model = model
    session.lora_modules = wrapped
    session.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_module_names(model: Any) -> list[str]:
    """Names (without peft's prefix) of the modules that carry a LoRA adapter."""
    from peft.tuners.lora import LoraLayer

    out = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            for prefix in ("base_model.model.",):
                if name.startswith(prefix):
                    name = name[len(prefix) :]
            out.append(name)
    return out


# -- training ---------------------------------------------------------------
#
# One optimizer step covers batch_size x gradient_accumulation examples (the
# last step of an epoch may hold fewer), whatever the micro-batches: the step
# is cut into micro-batches by a token budget (rows x longest row <= the
# spec's micro_batch_tokens), its examples sorted by length so that short
# chats share a micro-batch instead of paying one each. No cross-example
# packing: transformers 4.57's gated delta net takes no sequence boundaries,
# so every example is its own right-padded row. The loss is the sum of the
# step's per-token cross-entropies over its trained tokens divided by their
# number, so the gradient does not depend on how the step is split.

MEGABATCH_STEPS = 16  # steps whose examples are length-sorted together


@dataclass(frozen=True)
class StepPlan:
    micro_batches: tuple[tuple[int, ...], ...]  # example indices, longest first
    trained_tokens: int  # labels the loss is computed on (after the causal shift)


def trained_after_shift(labels: Sequence[int]) -> int:
    """Labels a causal-LM loss counts: the first position predicts nothing."""
    return sum(1 for x in labels[1:] if x != IGNORE_INDEX)


def split_by_tokens(order: Sequence[int], lengths: Sequence[int], budget: int, multiple_of: int = 1) -> list[tuple[int, ...]]:
    """Cut examples, longest first, into micro-batches of at most ``budget``
    padded tokens; an example longer than the budget is a micro-batch alone."""
    ranked = sorted(order, key=lambda i: (-lengths[i], i))
    out: list[tuple[int, ...]] = []
    cur: list[int] = []
    width = 0
    for i in ranked:
        w = _round_up(lengths[i], multiple_of)
        if cur and (len(cur) + 1) * max(width, w) > budget:
            out.append(tuple(cur))
            cur, width = [], 0
        cur.append(i)
        width = max(width, w)
    if cur:
        out.append(tuple(cur))
    return out


def plan_epoch(
    examples: Sequence[Example], *, step_examples: int, budget: int, epoch: int, seed: int = SEED, multiple_of: int = 1
) -> list[StepPlan]:
    """The epoch's optimizer steps: a seeded shuffle, length-sorted within
    groups of MEGABATCH_STEPS steps (less padding), cut into steps of
    ``step_examples``, the steps shuffled again, each cut by the token budget."""
    n = len(examples)
    lengths = [len(ex.input_ids) for ex in examples]
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    mega = step_examples * MEGABATCH_STEPS
    steps: list[list[int]] = []
    for lo in range(0, n, mega):
        chunk = sorted(perm[lo : lo + mega], key=lambda i: -lengths[i])
        steps.extend(chunk[k : k + step_examples] for k in range(0, len(chunk), step_examples))
    order = torch.randperm(len(steps), generator=g).tolist()
    plans = []
    for k in order:
        idx = steps[k]
        plans.append(
            StepPlan(
                micro_batches=tuple(split_by_tokens(idx, lengths, budget, multiple_of)),
                trained_tokens=sum(trained_after_shift(examples[i].labels) for i in idx),
            )
        )
    return plans


def _round_up(n: int, multiple: int) -> int:
    return n if multiple <= 1 else int(math.ceil(n / multiple) * multiple)


def collate(examples: Sequence[Example], rows: Sequence[int], pad_id: int, multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Right-pads one micro-batch to its longest example (no packing)."""
    n = _round_up(max(len(examples[i].input_ids) for i in rows), multiple_of)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for r, i in enumerate(rows):
        ex = examples[i]
        k = len(ex.input_ids)
        ids[r, :k] = torch.tensor(ex.input_ids, dtype=torch.long)
        labels[r, :k] = torch.tensor(ex.labels, dtype=torch.long)
        mask[r, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def step_backward(model: Any, batches: Sequence[dict[str, torch.Tensor]], trained_tokens: int, device: str) -> float:
    """Forward and backward every micro-batch of one optimizer step; the
    gradients accumulate to those of the step's mean per-token loss. Returns
    that loss."""
    denom = max(1, trained_tokens)
    total = torch.zeros((), dtype=torch.float32, device=device)
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with _autocast(device):
            out = model(**batch, num_items_in_batch=denom)
        out.loss.backward()
        total += out.loss.detach().float()
    return float(total)


def _autocast(device: str):
    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _optimizer(params: list[torch.nn.Parameter], lr: float, cuda: bool) -> tuple[torch.optim.Optimizer, str]:
    if cuda:
        try:
            import bitsandbytes as bnb

            return bnb.optim.PagedAdamW8bit(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0), "paged_adamw_8bit"
        except ImportError:
            return torch.optim.AdamW(params, lr=lr, eps=1e-8, weight_decay=0.0, fused=True), "adamw_torch_fused"
    return torch.optim.AdamW(params, lr=lr, eps=1e-8, weight_decay=0.0), "adamw_torch"


def eval_interval(spec: JobSpec, total_steps: int) -> int:
    """Steps between evaluations: the spec's, else about ten per run."""
    every = spec.validation.every_steps
    return every if every else max(1, math.ceil(total_steps / 10))


def evaluate(
    model: Any,
    examples: Sequence[Example],
    batches: Sequence[tuple[int, ...]],
    *,
    pad_id: int,
    device: str,
    multiple_of: int,
    check: Callable[[], None],
) -> tuple[float, int]:
    """Mean per-token loss over every held-out trained token (the training
    loss's normalisation), dropout off, no gradients; a stop is honoured
    between micro-batches. Returns (loss, trained tokens)."""
    total = 0.0
    tokens = 0
    model.eval()
    try:
        with torch.no_grad():
            for rows in batches:
                check()
                n = sum(trained_after_shift(examples[i].labels) for i in rows)
                if n == 0:
                    continue
                b = {k: v.to(device, non_blocking=True) for k, v in collate(examples, rows, pad_id, multiple_of).items()}
                with _autocast(device):
                    out = model(**b, num_items_in_batch=n)
                total += float(out.loss.detach().float()) * n  # the loss is the sum over n tokens / n
                tokens += n
    finally:
        model.train()
    return (total / tokens if tokens else float("nan")), tokens


def fit(
    session: Session,
    examples: Sequence[Example],
    spec: JobSpec,
    hooks: Hooks,
    workdir: Path,
    *,
    pad_id: int,
    eval_examples: Sequence[Example] = (),
    resume: Optional[Path] = None,
    fingerprint: str = "",
) -> FitResult:
    """Train; with ``resume`` (a checkpoint directory whose fingerprint the
    caller checked) continue that run from its step. Checkpoints are written
    to ``workdir/checkpoints/step-N`` and handed to ``hooks.checkpoint``."""
    from transformers import get_cosine_schedule_with_warmup

    hp = spec.hyperparameters
    cuda = session.device == "cuda"
    device = session.device
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if not examples:
        raise errors.WorkerError(errors.DATASET_INVALID, "The dataset has no example with a trained token.")
    model = session.model
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, opt_name = _optimizer(params, hp.learning_rate, cuda)
    step_examples = hp.batch_size * hp.gradient_accumulation
    steps_per_epoch = math.ceil(len(examples) / step_examples)
    total_steps = steps_per_epoch * hp.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(hp.warmup_ratio * total_steps), total_steps)
    multiple_of = 8 if cuda else 1
    budget = hp.token_budget()
    knobs = hp.knobs()
    every_eval = eval_interval(spec, total_steps)
    eval_batches = split_by_tokens(range(len(eval_examples)), [len(ex.input_ids) for ex in eval_examples], budget, multiple_of)
    want_checkpoints = getattr(hooks, "checkpoint", None) is not None
    log.info(
        "training: %d examples, %d steps of %d examples, token budget %d per micro-batch, optimizer %s; %s",
        len(examples), total_steps, step_examples, budget, opt_name,
        f"{len(eval_examples)} held-out examples evaluated every {every_eval} steps" if eval_examples else "no evaluation",
    )

    def check() -> None:
        err = hooks.stop_error()
        if err is not None:
            raise err

    set_seed(SEED)
    step = 0
    start_epoch = start_in_epoch = 0
    micro_batches = tokens_seen = padded_seen = 0
    loss_sum, loss_count = 0.0, 0
    initial_loss: Optional[float] = None
    last_loss: Optional[float] = None
    prior_train_s = 0.0
    eval_loss: Optional[float] = None
    evaluations, eval_seconds, eval_tokens = 0, 0.0, 0
    resumed_from: Optional[int] = None
    if resume is not None:
        loaded = ckpt.load(resume, model)  # checked before anything changes
        ckpt.restore(loaded, model=model, optimizer=optimizer, scheduler=scheduler)
        st = loaded.state
        step = resumed_from = int(st["step"])
        start_epoch, start_in_epoch = int(st["next_epoch"]), int(st["next_step_in_epoch"])
        micro_batches, tokens_seen, padded_seen = int(st["micro_batches"]), int(st["tokens_seen"]), int(st["padded_tokens_seen"])
        loss_sum, loss_count = float(st["loss_sum"]), int(st["loss_count"])
        initial_loss, last_loss = st.get("initial_loss"), st.get("last_loss")
        prior_train_s = float(st["train_seconds"])
        eval_loss = st.get("eval_loss")
        evaluations, eval_seconds = int(st.get("evaluations", 0)), float(st.get("eval_seconds", 0.0))
        log.info("resuming at step %d of %d (epoch %d, its step %d)", step, total_steps, start_epoch, start_in_epoch)
        resumed = getattr(hooks, "resumed", None)
        if resumed is not None:
            resumed(step, tokens_seen, prior_train_s)
    run_micro_batches = 0
    max_mb_seconds = 0.0
    checkpoints, checkpoint_seconds = 0, 0.0
    t0 = time.monotonic()
    last_checkpoint = t0
    ckpt_root = workdir / "checkpoints"

    def train_seconds() -> float:
        return prior_train_s + time.monotonic() - t0

    def write_checkpoint(epoch: int, i: int, n_plans: int, reason: str) -> None:
        nonlocal checkpoints, checkpoint_seconds, last_checkpoint
        wanted = getattr(hooks, "checkpoints_wanted", None)
        if wanted is not None and not wanted():
            return
        nxt = (epoch + 1, 0) if i + 1 >= n_plans else (epoch, i + 1)
        ts = train_seconds()
        state = dict(
            fingerprint=fingerprint,
            step=step,
            total_steps=total_steps,
            epoch=epoch + (i + 1) / n_plans,
            next_epoch=nxt[0],
            next_step_in_epoch=nxt[1],
            reason=reason,
            train_seconds=ts,
            tokens_seen=tokens_seen,
            padded_tokens_seen=padded_seen,
            micro_batches=micro_batches,
            loss_sum=loss_sum,
            loss_count=loss_count,
            initial_loss=initial_loss,
            last_loss=last_loss,
            eval_loss=eval_loss,
            evaluations=evaluations,
            eval_seconds=eval_seconds,
        )
        d = ckpt_root / f"step-{step:08d}"
        secs = ckpt.write(
            d, model=model, base_model_id=spec.base_model.id, optimizer=optimizer, optimizer_name=opt_name,
            scheduler=scheduler, state=state,
        )
        checkpoints += 1
        checkpoint_seconds += secs
        last_checkpoint = time.monotonic()
        log.info("checkpoint at step %d (%s) written in %.2fs", step, reason, secs)
        hooks.checkpoint(  # type: ignore[attr-defined]
            ckpt.Written(
                dir=d, step=step, total_steps=total_steps, epoch=state["epoch"], next_epoch=nxt[0],
                next_step_in_epoch=nxt[1], reason=reason, train_seconds=ts, tokens_seen=tokens_seen,
                loss=last_loss, eval_loss=eval_loss, write_seconds=secs,
            )
        )

    try:
        for epoch in range(start_epoch, hp.epochs):
            plans = plan_epoch(examples, step_examples=step_examples, budget=budget, epoch=epoch, multiple_of=multiple_of)
            first = start_in_epoch if epoch == start_epoch else 0
            for i in range(first, len(plans)):
                plan = plans[i]
                batches = []
                for rows in plan.micro_batches:
                    b = collate(examples, rows, pad_id, multiple_of)
                    tokens_seen += int(b["attention_mask"].sum())
                    padded_seen += b["input_ids"].numel()
                    batches.append(b)
                # One micro-batch at a time, so a stop is honoured between them.
                loss = 0.0
                for b in batches:
                    check()
                    tm = time.monotonic()
                    loss += step_backward(model, [b], plan.trained_tokens, device)
                    max_mb_seconds = max(max_mb_seconds, time.monotonic() - tm)
                    micro_batches += 1
                    run_micro_batches += 1
                step += 1
                if not math.isfinite(loss):
                    raise errors.nan_loss(knobs, step, loss)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
                lr = float(scheduler.get_last_lr()[0])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if initial_loss is None:
                    initial_loss = loss
                last_loss = loss
                loss_sum += loss
                loss_count += 1
                this_eval: Optional[float] = None
                if eval_batches and (step % every_eval == 0 or step == total_steps):
                    te = time.monotonic()
                    this_eval, eval_tokens = evaluate(
                        model, eval_examples, eval_batches, pad_id=pad_id, device=device, multiple_of=multiple_of, check=check
                    )
                    eval_seconds += time.monotonic() - te
                    evaluations += 1
                    eval_loss = this_eval
                    log.info("step %d: eval loss %.4f over %d tokens (%.2fs)", step, this_eval, eval_tokens, time.monotonic() - te)
                hooks.progress(
                    Progress(
                        step=step,
                        total_steps=total_steps,
                        epoch=epoch + (i + 1) / len(plans),
                        loss=loss,
                        learning_rate=lr,
                        grad_norm=grad_norm if math.isfinite(grad_norm) else None,
                        tokens_seen=tokens_seen,
                        train_seconds=train_seconds(),
                        gpu_memory_bytes=gpu_peak_bytes(),
                        micro_batches=micro_batches,
                        padded_tokens_seen=padded_seen,
                        eval_loss=this_eval,
                        max_micro_batch_seconds=max_mb_seconds,
                    )
                )
                if want_checkpoints:
                    if i + 1 == len(plans):
                        write_checkpoint(epoch, i, len(plans), "epoch_end")
                    elif time.monotonic() - last_checkpoint >= spec.checkpoint_every_seconds:
                        write_checkpoint(epoch, i, len(plans), "interval")
                after = getattr(hooks, "after_step", None)
                if after is not None:
                    after(step)
        check()
    finally:
        # Drop the optimizer (and its GPU state) before anything else happens.
        optimizer.zero_grad(set_to_none=True)
        del optimizer, scheduler
        gc.collect()
    run_train_seconds = time.monotonic() - t0
    if eval_batches and not eval_tokens:
        eval_tokens = sum(trained_after_shift(ex.labels) for ex in eval_examples)
    return FitResult(
        steps=step,
        total_steps=total_steps,
        initial_loss=initial_loss if initial_loss is not None else float("nan"),
        final_loss=last_loss if last_loss is not None else float("nan"),
        train_loss_mean=loss_sum / loss_count if loss_count else float("nan"),
        train_seconds=prior_train_s + run_train_seconds,
        tokens_seen=tokens_seen,
        peak_gpu_memory_bytes=gpu_peak_bytes(),
        micro_batches=micro_batches,
        padded_tokens_seen=padded_seen,
        eval_loss=eval_loss,
        eval_examples=len(eval_examples),
        eval_tokens=eval_tokens,
        evaluations=evaluations,
        eval_seconds=eval_seconds,
        resumed_from_step=resumed_from,
        checkpoints=checkpoints,
        checkpoint_seconds=checkpoint_seconds,
        run_train_seconds=run_train_seconds,
        run_micro_batches=run_micro_batches,
    )


# -- saving -----------------------------------------------------------------


def save_adapter(session: Session, out_dir: Path, base_model_id: str) -> dict[str, Path]:
    """Write adapter_config.json and adapter_model.safetensors; return them by name.

    adapter_config.json names the hub id of the base model, not the volume
    path (rewritten after saving: setting it before makes peft look the id up
    on the hub).
    """
    ckpt.save_adapter_files(session.model, out_dir, base_model_id)
    files = {name: out_dir / name for name in ARTIFACT_NAMES}
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        raise errors.WorkerError(errors.INTERNAL, f"Saving the adapter did not produce {missing}.")
    return files


def release(session: Optional[Session]) -> None:
    """Free the model (the worker process serves further jobs)."""
    if session is not None:
        session.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
