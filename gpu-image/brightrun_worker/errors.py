"""Failure codes, the worker's one error type, and classification of foreign
exceptions (CUDA OOM, NaN loss, ...) into codes with advice for the user.

The codes are part of the callback contract (testdata/contracts): the Go
server maps each to a job state and shows ``message`` and ``advice`` to the
user, so both must be plain sentences, never a traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

OOM = "oom"
NAN_LOSS = "nan_loss"
DATASET_DOWNLOAD = "dataset_download"
DATASET_INVALID = "dataset_invalid"
MODEL_LOAD = "model_load"
TIMEOUT = "timeout"
CANCELLED = "cancelled"
SUPERSEDED = "superseded"  # never sent as a callback: the server refused this attempt
SPEC_INVALID = "spec_invalid"
UPLOAD = "upload"
INTERNAL = "internal"

# Codes a `failed` callback may carry (superseded is not among them: a
# superseded attempt stops without telling a server that no longer listens).
FAILED_CODES = (
    OOM,
    NAN_LOSS,
    DATASET_DOWNLOAD,
    DATASET_INVALID,
    MODEL_LOAD,
    TIMEOUT,
    CANCELLED,
    SPEC_INVALID,
    UPLOAD,
    INTERNAL,
)

# Smallest values the server accepts (shared/pipeline.Bounds on the Go side).
MIN_LEARNING_RATE = 1e-5
MIN_LORA_RANK = 4
MIN_SEQ_LENGTH = 256

_MESSAGE_LIMIT = 600


class WorkerError(Exception):
    """A classified failure: a contract code, a plain message and advice."""

    def __init__(self, code: str, message: str, advice: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = _clip(message)
        self.advice = advice or default_advice(code)
        self.http_status = 0  # a URL's refusal (download, upload), when that was the cause
        self.url_expired = False  # that refusal means the URL expired: a fresh one may work


# The codes of a stop the job was asked for (not a failure of the work).
STOP_CODES = (CANCELLED, TIMEOUT, SUPERSEDED)


@dataclass(frozen=True)
class Knobs:
    """The hyperparameters that advice refers to."""

    learning_rate: float
    batch_size: int
    gradient_accumulation: int
    lora_rank: int
    max_seq_length: int


def default_advice(code: str) -> str:
    return {
        OOM: "Lower batch_size, lora_rank or max_seq_length, or choose a GPU with more memory.",
        NAN_LOSS: "Lower learning_rate and retry.",
        DATASET_DOWNLOAD: "Check that the dataset still exists and retry the job.",
        DATASET_INVALID: "Fix the listed lines, upload the dataset again and retry.",
        MODEL_LOAD: "Check that the base model is cached on the network volume at the configured path, then retry.",
        TIMEOUT: "Raise time_limit_seconds, or train fewer epochs or on fewer examples.",
        CANCELLED: "No action needed: the job was cancelled.",
        SUPERSEDED: "No action needed: a newer attempt of this job is running.",
        SPEC_INVALID: "Retry the job; if it fails again, report it with the job id.",
        UPLOAD: "Retry the job; the trained adapter could not be uploaded.",
        INTERNAL: "Retry the job; if it fails again, report it with the job id.",
    }.get(code, "Retry the job; if it fails again, report it with the job id.")


def fmt_number(v: float) -> str:
    """Format like the Go side's formatNumber: %.6g without trailing zeros."""
    s = f"{v:.6g}"
    if "e" not in s and "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def oom_advice(k: Knobs) -> str:
    options = []
    if k.batch_size > 1:
        nb = k.batch_size // 2
        factor = k.batch_size / nb
        ga = int(math.ceil(k.gradient_accumulation * factor))
        options.append(
            f"lower batch_size from {k.batch_size} to {nb} (and raise gradient_accumulation "
            f"from {k.gradient_accumulation} to {ga} to keep the same effective batch)"
        )
    if k.lora_rank > MIN_LORA_RANK:
        options.append(f"lora_rank from {k.lora_rank} to {max(MIN_LORA_RANK, k.lora_rank // 2)}")
    if k.max_seq_length > MIN_SEQ_LENGTH:
        options.append(
            f"max_seq_length from {k.max_seq_length} to {max(MIN_SEQ_LENGTH, k.max_seq_length // 2)}"
        )
    if not options:
        return "The run does not fit this GPU even at the smallest settings: choose a GPU with more memory."
    if options[0].startswith("lower"):
        first, rest = options[0], options[1:]
    else:
        first, rest = "lower " + options[0], options[1:]
    text = first
    if rest:
        text += ", or " + ", or ".join(rest)
    return text[0].upper() + text[1:] + "."


def nan_advice(k: Knobs) -> str:
    if k.learning_rate <= MIN_LEARNING_RATE * 1.0001:
        return (
            "learning_rate is already at its minimum: check the dataset for corrupt or "
            "extremely long examples, or lower lora_alpha."
        )
    new_lr = max(MIN_LEARNING_RATE, k.learning_rate / 4)
    return (
        f"Lower learning_rate from {fmt_number(k.learning_rate)} to "
        f"{fmt_number(float(f'{new_lr:.2g}'))} and retry."
    )


def oom(k: Optional[Knobs], detail: str = "") -> WorkerError:
    msg = "The GPU ran out of memory during training"
    if detail:
        msg += f" ({detail})"
    return WorkerError(OOM, msg + ".", oom_advice(k) if k else default_advice(OOM))


def nan_loss(k: Optional[Knobs], step: int, loss: float) -> WorkerError:
    return WorkerError(
        NAN_LOSS,
        f"The training loss became {loss} at step {step}; the run diverged.",
        nan_advice(k) if k else default_advice(NAN_LOSS),
    )


def is_oom(exc: BaseException) -> bool:
    """True for CUDA (and host) out-of-memory errors, without importing torch."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    if name == "OutOfMemoryError":  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError
        return True
    text = str(exc)
    return any(
        marker in text
        for marker in (
            "CUDA out of memory",
            "CUBLAS_STATUS_ALLOC_FAILED",
            "CUDA error: out of memory",
            "HIP out of memory",
        )
    )


def classify(exc: BaseException, knobs: Optional[Knobs] = None) -> WorkerError:
    """Turn any exception into a WorkerError fit for the user."""
    if isinstance(exc, WorkerError):
        return exc
    if is_oom(exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        detail = ""
        if "Tried to allocate" in first:
            detail = first[first.index("Tried to allocate") :].split(". ")[0].rstrip(".")
        return oom(knobs, detail)
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return WorkerError(
        INTERNAL,
        f"An unexpected error stopped the worker ({type(exc).__name__}: {first})."
        if first
        else f"An unexpected error stopped the worker ({type(exc).__name__}).",
    )


def _clip(s: str) -> str:
    s = s.strip()
    return s if len(s) <= _MESSAGE_LIMIT else s[: _MESSAGE_LIMIT - 1] + "…"
