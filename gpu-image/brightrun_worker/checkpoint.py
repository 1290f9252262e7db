"""Training checkpoints: everything a later attempt needs to continue a run
exactly where it stopped.

A checkpoint is one directory of four files (spec.CHECKPOINT_FILE_NAMES):

- ``adapter_config.json``, ``adapter_model.safetensors``: the LoRA adapter as
  peft saves it (the same files as the final artifact), so a checkpoint is
  also a usable, partial adapter;
- ``training_state.safetensors``: the optimizer's tensors
  (``optimizer.<param index>.<name>``) and the torch RNG states
  (``rng.torch_cpu``, ``rng.cuda.<device>``);
- ``trainer_state.json``: the rest: format, fingerprint of the run, global
  step, position in the data order, scheduler state, the optimizer's param
  groups and scalar state, the python / numpy RNG states, the running
  figures (loss sum and count, tokens, micro-batches, train seconds) and
  the trainable parameters' names and shapes.

The position in the data order is (epoch, steps of that epoch done): an
epoch's plan is a pure function of the seed, the epoch and the training
examples (train.plan_epoch), so the position is all a resumed run needs to
take the same next step. No pickle anywhere: safetensors and JSON only, so a
checkpoint downloaded from storage is never executed.

torch is imported inside the functions that need it; fingerprint and
read_state are plain Python (job.py uses them before the model loads).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from . import __version__
from .spec import CHECKPOINT_FILE_NAMES, JobSpec

FORMAT = 1
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "trainer_state.json"
FILES = CHECKPOINT_FILE_NAMES
ADAPTER_KEY_NAME = "default"  # peft's adapter name in parameter names


class CheckpointError(Exception):
    """A checkpoint that cannot be used (the run starts from step 0 instead)."""


@dataclass(frozen=True)
class Written:
    """One checkpoint written to disk, as fit hands it to the job."""

    dir: Path
    step: int
    total_steps: int
    epoch: float  # progress in epochs, as in progress callbacks
    next_epoch: int  # position: the epoch to continue (0-based) ...
    next_step_in_epoch: int  # ... and its steps already done
    reason: str  # "interval" or "epoch_end"
    train_seconds: float
    tokens_seen: int
    loss: Optional[float]
    eval_loss: Optional[float]
    write_seconds: float

    @property
    def partial(self) -> bool:
        return self.step < self.total_steps

    def paths(self) -> dict[str, Path]:
        return {name: self.dir / name for name in FILES}


def fingerprint(spec: JobSpec, train_lengths: Sequence[tuple[int, int]], eval_count: int, seed: int) -> str:
    """What must be equal for a checkpoint to continue this run: the base
    model, the targets, the hyperparameters that shape the run, the data
    (the dataset's sha256 and each training example's length and trained
    tokens) and the split. micro_batch_tokens is left out: it changes only
    how a step is cut into micro-batches (another GPU type may get another
    budget), not the step's gradient."""
    hp = spec.hyperparameters
    v = spec.validation
    doc = {
        "format": FORMAT,
        "seed": seed,
        "base_model": [spec.base_model.id, spec.base_model.quantization, spec.base_model.chat_rule, list(spec.base_model.lora_targets)],
        "hyperparameters": [
            hp.learning_rate, hp.batch_size, hp.gradient_accumulation, hp.epochs, hp.lora_rank,
            hp.lora_alpha, hp.lora_dropout, hp.max_seq_length, hp.warmup_ratio,
        ],
        "dataset": spec.dataset.sha256,
        "validation": [v.split, v.max_examples, v.seed, v.dataset.sha256 if v.dataset else None, eval_count],
        "train": hashlib.sha256(json.dumps(list(train_lengths), separators=(",", ":")).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_state(d: Path) -> dict[str, Any]:
    """trainer_state.json of a checkpoint directory, checked for its format
    and its files (CheckpointError otherwise)."""
    missing = [n for n in FILES if not (d / n).is_file()]
    if missing:
        raise CheckpointError(f"the checkpoint lacks {', '.join(missing)}")
    try:
        state = json.loads((d / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{STATE_JSON} is unreadable ({e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{STATE_JSON} is not a format {FORMAT} checkpoint")
    for k in ("step", "next_epoch", "next_step_in_epoch", "fingerprint"):
        if k not in state:
            raise CheckpointError(f"{STATE_JSON} lacks {k}")
    return state


# -- writing (torch) ---------------------------------------------------------


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot store {type(v).__name__} in a checkpoint")


def load_optimizer(optimizer: Any, opt: dict[str, Any], tensors: dict[str, Any]) -> None:
    """The inverse of _optimizer_state: the tensors come back on the CPU and
    the optimizer moves them (torch's AdamW casts them to the parameter's
    device; bitsandbytes' 8-bit optimizers move them at their first step)."""
    st: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key.startswith("optimizer."):
            _, idx, k = key.split(".", 2)
            st.setdefault(int(idx), {})[k] = t
    for idx, d in opt.get("scalars", {}).items():
        st.setdefault(int(idx), {}).update(d)
    groups = []
    for g in opt["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": st, "param_groups": groups})


def _rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    py = random.getstate()
    js: dict[str, Any] = {"python": [py[0], list(py[1]), py[2]]}
    try:
        import numpy as np

        st = np.random.get_state()
        js["numpy"] = [st[0], st[1].tolist(), int(st[2]), int(st[3]), float(st[4])]
    except ImportError:  # pragma: no cover - numpy comes with torch
        pass
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return js, tensors


def _optimizer_state(optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    sd = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optimizer.{idx}.{k}"] = v.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[k] = _jsonable(v)
    groups = []
    for g in sd["param_groups"]:
        groups.append({k: _jsonable(v) for k, v in g.items()})
    return {"param_groups": groups, "scalars": scalars}, tensors


def trainable(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def write(
    d: Path,
    *,
    model: Any,
    base_model_id: str,
    optimizer: Any,
    optimizer_name: str,
    scheduler: Any,
    state: dict[str, Any],
) -> float:
    """Write a checkpoint to ``d`` atomically (a sibling temp dir renamed
    into place). ``state`` carries the run's figures and position; returns
    the seconds it took. Reads the RNG states, never advances them."""
    from safetensors.torch import save_file

    t0 = time.monotonic()
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_adapter_files(model, tmp, base_model_id)
    opt_json, tensors = _optimizer_state(optimizer)
    rng_json, rng_tensors = _rng_state()
    tensors.update(rng_tensors)
    save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": str(FORMAT)})
    doc = dict(state)
    doc.update(
        format=FORMAT,
        worker_version=__version__,
        written_at=time.time(),
        optimizer={"name": optimizer_name, **opt_json},
        scheduler=_jsonable(scheduler.state_dict()),
        rng=rng_json,
        params=[[n, list(p.shape)] for n, p in trainable(model)],
    )
    (tmp / STATE_JSON).write_text(json.dumps(doc, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmp, d)
    return time.monotonic() - t0


def save_adapter_files(model: Any, out_dir: Path, base_model_id: str) -> None:
    """adapter_config.json (naming the hub id) and adapter_model.safetensors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's model card: not part of the adapter
    cfg_path = out_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = base_model_id
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# -- restoring (torch) -------------------------------------------------------


@dataclass
class Loaded:
    state: dict[str, Any]
    adapter: dict[str, Any]  # parameter name (as in the model) -> tensor
    tensors: dict[str, Any]  # training_state.safetensors


def load(d: Path, model: Any) -> Loaded:
    """Read a checkpoint and check it against the model before anything is
    changed: every trainable parameter must be there with its shape."""
    from safetensors.torch import load_file

    state = read_state(d)
    try:
        saved = load_file(str(d / "adapter_model.safetensors"))
        tensors = load_file(str(d / STATE_TENSORS))
    except Exception as e:  # noqa: BLE001 - any unreadable file means: start over
        raise CheckpointError(f"the checkpoint's tensors are unreadable ({type(e).__name__}: {e})") from None
    adapter: dict[str, Any] = {}
    problems = []
    for name, p in trainable(model):
        key = name.replace(f".{ADAPTER_KEY_NAME}.", ".")
        t = saved.get(key)
        if t is None:
            problems.append(f"{key} is missing")
        elif tuple(t.shape) != tuple(p.shape):
            problems.append(f"{key} has shape {tuple(t.shape)}, the model {tuple(p.shape)}")
        else:
            adapter[name] = t
    want = [[n, list(p.shape)] for n, p in trainable(model)]
    if state.get("params") != want:
        problems.append("the trainable parameters differ from the model's")
    if problems:
        raise CheckpointError("the checkpoint does not fit the model: " + "; ".join(problems[:3]))
    return Loaded(state=state, adapter=adapter, tensors=tensors)


def restore(loaded: Loaded, *, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Put the optimizer, scheduler, adapter and RNG states back. What can
    refuse (the optimizer's and scheduler's states) goes first and raises
    CheckpointError before the model's weights change; the caller then
    starts over with a fresh optimizer."""
    import torch

    try:
        load_optimizer(optimizer, loaded.state["optimizer"], loaded.tensors)
        scheduler.load_state_dict(loaded.state["scheduler"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"the optimizer or scheduler state does not fit ({type(e).__name__}: {e})") from None
    with torch.no_grad():
        for name, p in trainable(model):
            p.copy_(loaded.adapter[name].to(dtype=p.dtype, device=p.device))
    _restore_rng(loaded.state.get("rng", {}), loaded.tensors)


def _restore_rng(js: dict[str, Any], tensors: dict[str, Any]) -> None:
    import torch

    py = js.get("python")
    if py:
        random.setstate((py[0], tuple(py[1]), py[2]))
    npst = js.get("numpy")
    if npst:
        import numpy as np

        np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), npst[2], npst[3], npst[4]))
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda = [tensors[k] for k in sorted((t for t in tensors if t.startswith("rng.cuda.")), key=lambda t: int(t.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
