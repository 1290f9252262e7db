"""Model loading, LoRA attachment, training and saving: the only module of
the job path that imports torch, transformers and peft.

- QLoRA (quantization "nf4"): 4-bit NF4, double quant, BF16 compute; the
  router (mlp.gate), shared_expert_gate and lm_head stay in BF16
  (registry.QLORA_SKIP_MODULES explains the names).
- LoRA ("bf16"): plain BF16 weights.
- On a machine without CUDA (tests, the local worker mode) the model is
  loaded in float32 and a 4-bit request falls back to unquantized weights.
- Gradient checkpointing (non-reentrant), use_cache=False, no packing:
  batches are padded per batch and grouped by length.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import torch
from torch.utils.data import Dataset as TorchDataset
from transformers import (
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers import set_seed
from transformers.trainer_callback import PrinterCallback

from . import errors
from .data import IGNORE_INDEX, Example
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


class Hooks(Protocol):
    def progress(self, p: Progress) -> None:
        """Called after every optimizer step (the caller throttles)."""

    def stop_error(self) -> Optional[errors.WorkerError]:
        """Non-None when training must stop (cancelled, superseded, time limit)."""


@dataclass
class Session:
    model: Any
    device: str
    dtype: str
    quantization: str  # what was actually applied: nf4, bf16, or "none (cpu)"
    load_seconds: float
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


def cuda_available() -> bool:
    return torch.cuda.is_available()


def gpu_peak_bytes() -> int:
    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else 0


# -- loading ----------------------------------------------------------------


def load_model(spec: JobSpec) -> Session:
    t0 = time.monotonic()
    path = Path(spec.base_model.volume_path)
    if not (path / "config.json").is_file():
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"No model found at {path} (config.json is missing).",
            "Check that the base model is cached on the network volume at that path, then retry.",
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
    )
    quant = spec.base_model.quantization
    if cuda:
        dtype = torch.bfloat16
        kwargs["device_map"] = {"": 0}  # one GPU, never a silent CPU offload
    else:
        dtype = torch.float32
    applied = quant
    if quant == "nf4":
        if not cuda:
            log.warning("no CUDA device: loading without 4-bit quantization (CPU test / local mode)")
            applied = "none (cpu)"
        else:
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise errors.WorkerError(
                    errors.MODEL_LOAD,
                    "QLoRA needs bitsandbytes, which is not installed in this worker image.",
                    "Rebuild the worker image with the pinned requirements, or train with quantization bf16.",
                ) from None
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16,
                llm_int8_skip_modules=list(QLORA_SKIP_MODULES),
            )
    elif not cuda:
        applied = "none (cpu)"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kwargs)
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
    if cuda:
        _guard_fla_on_hopper(model)
    session = Session(
        model=model,
        device="cuda" if cuda else "cpu",
        dtype=str(dtype).replace("torch.", ""),
        quantization=applied,
        load_seconds=0.0,
    )
    attach_lora(session, spec)
    session.load_seconds = time.monotonic() - t0
    return session


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


class _Examples(TorchDataset):
    def __init__(self, examples: Sequence[Example]) -> None:
        self._ex = examples

    def __len__(self) -> int:
        return len(self._ex)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ex = self._ex[i]
        return {"input_ids": ex.input_ids, "labels": ex.labels}


class _Collator:
    """Right-pads one batch to its longest example (no packing)."""

    def __init__(self, pad_id: int, multiple_of: int = 1) -> None:
        self.pad_id = pad_id
        self.multiple_of = multiple_of

    def __call__(self, feats: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        n = max(len(f["input_ids"]) for f in feats)
        if self.multiple_of > 1:
            n = int(math.ceil(n / self.multiple_of) * self.multiple_of)
        ids = torch.full((len(feats), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(feats), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(feats), n), dtype=torch.long)
        for i, f in enumerate(feats):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[i, :k] = torch.tensor(f["labels"], dtype=torch.long)
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class _Reporter(TrainerCallback):
    def __init__(self, hooks: Hooks, spec: JobSpec) -> None:
        self.hooks = hooks
        self.knobs = spec.hyperparameters.knobs()
        self.error: Optional[errors.WorkerError] = None
        self.t0 = time.monotonic()
        self.initial_loss: Optional[float] = None
        self.final_loss: Optional[float] = None

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        self.t0 = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
        err = self.hooks.stop_error()
        if err is not None and self.error is None:
            self.error = err
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
        if not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            if self.error is None:
                self.error = errors.nan_loss(self.knobs, state.global_step, loss)
            control.should_training_stop = True
            return
        if self.initial_loss is None:
            self.initial_loss = loss
        self.final_loss = loss
        gn = logs.get("grad_norm")
        self.hooks.progress(
            Progress(
                step=int(state.global_step),
                total_steps=int(state.max_steps),
                epoch=float(state.epoch or 0.0),
                loss=loss,
                learning_rate=float(logs.get("learning_rate", 0.0)),
                grad_norm=float(gn) if gn is not None and math.isfinite(float(gn)) else None,
                tokens_seen=int(getattr(state, "num_input_tokens_seen", 0) or 0),
                train_seconds=time.monotonic() - self.t0,
                gpu_memory_bytes=gpu_peak_bytes(),
            )
        )


def _optimizer(cuda: bool) -> str:
    if cuda:
        try:
            import bitsandbytes  # noqa: F401

            return "paged_adamw_8bit"
        except ImportError:
            pass
    return "adamw_torch"


def fit(
    session: Session,
    examples: Sequence[Example],
    spec: JobSpec,
    hooks: Hooks,
    workdir: Path,
    *,
    pad_id: int,
) -> FitResult:
    hp = spec.hyperparameters
    cuda = session.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    args = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation,
        num_train_epochs=hp.epochs,
        learning_rate=hp.learning_rate,
        warmup_ratio=hp.warmup_ratio,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim=_optimizer(cuda),
        bf16=cuda,
        use_cpu=not cuda,
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        group_by_length=True,
        remove_unused_columns=False,
        label_names=["labels"],
        logging_strategy="steps",
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN must reach the NaN check, not be averaged away
        include_num_input_tokens_seen="non_padding",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=SEED,
        data_seed=SEED,
    )
    reporter = _Reporter(hooks, spec)
    trainer = Trainer(
        model=session.model,
        args=args,
        train_dataset=_Examples(examples),
        data_collator=_Collator(pad_id, multiple_of=8 if cuda else 1),
        callbacks=[reporter],
    )
    trainer.remove_callback(PrinterCallback)  # progress goes out as callbacks and log lines
    t0 = time.monotonic()
    try:
        out = trainer.train()
    finally:
        state = trainer.state
        # Drop the optimizer (and its GPU state) before anything else happens.
        trainer.optimizer = None
        trainer.lr_scheduler = None
        del trainer
        gc.collect()
    if reporter.error is not None:
        raise reporter.error
    train_seconds = time.monotonic() - t0
    return FitResult(
        steps=int(state.global_step),
        total_steps=int(state.max_steps),
        initial_loss=float(reporter.initial_loss if reporter.initial_loss is not None else float("nan")),
        final_loss=float(reporter.final_loss if reporter.final_loss is not None else float("nan")),
        train_loss_mean=float(out.training_loss),
        train_seconds=train_seconds,
        tokens_seen=int(getattr(state, "num_input_tokens_seen", 0) or 0),
        peak_gpu_memory_bytes=gpu_peak_bytes(),
    )


# -- saving -----------------------------------------------------------------


def save_adapter(session: Session, out_dir: Path, base_model_id: str) -> dict[str, Path]:
    """Write adapter_config.json and adapter_model.safetensors; return them by name.

    adapter_config.json names the hub id of the base model, not the volume
    path (rewritten after saving: setting it before makes peft look the id up
    on the hub).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    session.model.save_pretrained(str(out_dir), safe_serialization=True)
    files = {name: out_dir / name for name in ARTIFACT_NAMES}
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        raise errors.WorkerError(errors.INTERNAL, f"Saving the adapter did not produce {missing}.")
    cfg_path = files["adapter_config.json"]
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = base_model_id
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return files


def release(session: Optional[Session]) -> None:
    """Free the model (the worker process serves further jobs)."""
    if session is not None:
        session.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
