"""One training job from spec to adapter: the stages, the callbacks, the
failure reporting. Shared by the RunPod handler and the local worker mode.

Stages: download → load (tokenizer, dataset, model) → train → save → upload.
Every stage change is a signed ``stage`` callback; progress is throttled to
the spec's interval; a failure becomes one ``failed`` callback plus a RunPod
error output ({"error": "<code>: <message>", "code", "advice"}).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import __version__, errors
from . import spec as spec_mod
from .callbacks import CallbackClient, Transport, http_post
from .data import build, read_jsonl, special_id
from .download import download, sha256_file
from .modelfiles import missing_model_advice, model_files_problem
from .registry import CHAT_RULES
from .upload import put_file

log = logging.getLogger(__name__)


@dataclass
class Options:
    runpod_job_id: str = ""
    cancel: Optional[threading.Event] = None  # set by the RunPod handler on a stop signal
    on_progress: Optional[Callable[[dict[str, Any]], None]] = None  # e.g. runpod progress_update
    workdir: Optional[Path] = None  # default: $BRIGHTRUN_WORK_DIR or a temp dir
    keep_workdir: bool = False
    transport: Transport = http_post
    backend: str = "brightrun_worker.train"  # module with load_model / fit / save_adapter / release
    callback_kwargs: dict[str, Any] = field(default_factory=dict)


def run(job_input: Any, opts: Optional[Options] = None) -> dict[str, Any]:
    """Run one job; never raises. Returns the RunPod output (with "error" on failure)."""
    opts = opts or Options()
    started = time.monotonic()
    try:
        spec = spec_mod.parse(job_input)
    except spec_mod.SpecError as e:
        log.error("invalid job spec: %s", e.message)
        target = spec_mod.callback_target(job_input)
        if target is not None:
            client = CallbackClient(
                target.url, target.key, target.job_id, target.attempt, transport=opts.transport, **opts.callback_kwargs
            )
            client.send("failed", _failed_data(e, None), wait=True)
            client.close()
        return _error_output(e, None)

    client = CallbackClient(
        spec.callback.url,
        spec.callback.key,
        spec.job_id,
        spec.attempt,
        transport=opts.transport,
        **opts.callback_kwargs,
    )
    workdir = _workdir(opts, spec)
    job = _Job(spec, client, opts, workdir, started)
    try:
        return job.execute()
    except Exception as exc:  # noqa: BLE001 - every failure is classified and reported
        err = errors.classify(exc, spec.hyperparameters.knobs())
        if err.code == errors.INTERNAL:
            log.exception("job %s attempt %d: internal error", spec.job_id, spec.attempt)
        else:
            log.error("job %s attempt %d failed in %s: %s", spec.job_id, spec.attempt, job.stage_name, err)
        if err.code != errors.SUPERSEDED:
            client.send("failed", _failed_data(err, job.stage_name), wait=True)
        return _error_output(err, spec)
    finally:
        job.release()
        client.close()
        if not (opts.keep_workdir or os.environ.get("BRIGHTRUN_KEEP_WORKDIR") == "1"):
            shutil.rmtree(workdir, ignore_errors=True)


def _workdir(opts: Options, spec: spec_mod.JobSpec) -> Path:
    base = opts.workdir or Path(os.environ.get("BRIGHTRUN_WORK_DIR") or tempfile.gettempdir())
    d = Path(base) / f"brightrun-{spec.job_id}-{spec.attempt}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _failed_data(err: errors.WorkerError, stage: Optional[str]) -> dict[str, Any]:
    data: dict[str, Any] = {"code": err.code, "message": err.message, "advice": err.advice}
    if stage:
        data["stage"] = stage
    return data


def _error_output(err: errors.WorkerError, spec: Optional[spec_mod.JobSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {"error": f"{err.code}: {err.message}", "code": err.code, "advice": err.advice}
    if spec is not None:
        out.update(job_id=spec.job_id, attempt=spec.attempt)
    return out


def gpu_info() -> Optional[dict[str, Any]]:
    """GPU name and memory via nvidia-smi (no torch import); None without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [r.split(",") for r in out.strip().splitlines() if r.strip()]
    if not rows:
        return None
    try:
        mem = int(float(rows[0][1].strip())) * 1024 * 1024
    except (IndexError, ValueError):
        mem = 0
    return {"name": rows[0][0].strip(), "memory_bytes": mem, "count": len(rows)}


def _finite(x: Optional[float]) -> Optional[float]:
    return float(x) if x is not None and math.isfinite(x) else None


class _Job:
    def __init__(
        self, spec: spec_mod.JobSpec, client: CallbackClient, opts: Options, workdir: Path, started: float
    ) -> None:
        self.spec = spec
        self.client = client
        self.opts = opts
        self.workdir = workdir
        self.started = started
        self.deadline = started + spec.time_limit_seconds
        self.stage_name: Optional[str] = None
        self.stage_started = started
        self.stage_seconds: dict[str, float] = {}
        self.backend: Any = None
        self.session: Any = None
        self._last_step = 0
        self._last_time = 0.0
        self._last_tokens = 0
        self._last_train_s = 0.0
        self._step = 0
        self._total = 0

    # -- stop conditions ------------------------------------------------------

    def stop_error(self) -> Optional[errors.WorkerError]:
        where = f" during {self.stage_name}" if self.stage_name else ""
        if self.stage_name == "train" and self._total:
            where += f" (step {self._step} of {self._total})"
        if self.client.superseded:
            return errors.WorkerError(
                errors.SUPERSEDED, f"The server refused this attempt{where}: {self.client.stop_reason}."
            )
        if self.opts.cancel is not None and self.opts.cancel.is_set():
            return errors.WorkerError(errors.CANCELLED, f"The job was cancelled{where} (RunPod stop signal).")
        if self.client.stop.is_set():
            reason = self.client.stop_reason or "cancelled"
            return errors.WorkerError(errors.CANCELLED, f"The job was cancelled{where}: {reason}.")
        if time.monotonic() > self.deadline:
            return errors.WorkerError(
                errors.TIMEOUT,
                f"The job ran past its time limit of {self.spec.time_limit_seconds} seconds{where}.",
            )
        return None

    def check(self) -> None:
        err = self.stop_error()
        if err is not None:
            raise err

    # -- callbacks -------------------------------------------------------------

    def stage(self, name: str) -> None:
        now = time.monotonic()
        if self.stage_name:
            self.stage_seconds[self.stage_name] = round(now - self.stage_started, 3)
        self.stage_name, self.stage_started = name, now
        log.info("job %s: stage %s", self.spec.job_id, name)
        self.client.send("stage", {"stage": name})
        self._runpod_progress({"stage": name})

    def _runpod_progress(self, data: dict[str, Any]) -> None:
        if self.opts.on_progress is None:
            return
        try:
            self.opts.on_progress(data)
        except Exception:  # noqa: BLE001 - a second channel must never break training
            log.debug("runpod progress_update failed", exc_info=True)

    def progress(self, p: Any) -> None:
        """Trainer hook: called every step; sends at the spec's interval."""
        self._step, self._total = p.step, p.total_steps
        now = time.monotonic()
        cb = self.spec.callback
        due = (
            self._last_step == 0
            or p.step >= p.total_steps
            or p.step - self._last_step >= cb.progress_every_steps
            or now - self._last_time >= cb.progress_every_seconds
        )
        if not due:
            return
        dt = p.train_seconds - self._last_train_s
        tps = (p.tokens_seen - self._last_tokens) / dt if dt > 0 else 0.0
        rate = p.step / p.train_seconds if p.train_seconds > 0 else 0.0
        data = {
            "step": p.step,
            "total_steps": p.total_steps,
            "epoch": round(p.epoch, 4),
            "loss": p.loss,
            "learning_rate": p.learning_rate,
            "tokens_per_second": round(tps, 2),
            "gpu_memory_bytes": int(p.gpu_memory_bytes),
            "elapsed_seconds": round(now - self.started, 3),
            "eta_seconds": round((p.total_steps - p.step) / rate, 1) if rate > 0 else None,
        }
        if p.grad_norm is not None:
            data["grad_norm"] = p.grad_norm
        if data["eta_seconds"] is None:
            del data["eta_seconds"]
        log.info(
            "job %s: step %d/%d epoch %.2f loss %.4f lr %.3g %.0f tok/s",
            self.spec.job_id, p.step, p.total_steps, p.epoch, p.loss, p.learning_rate, tps,
        )
        self._last_step, self._last_time = p.step, now
        self._last_tokens, self._last_train_s = p.tokens_seen, p.train_seconds
        self.client.send("progress", data)
        self._runpod_progress({"stage": "train", "step": p.step, "total_steps": p.total_steps, "loss": p.loss})

    # -- the job ---------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        spec = self.spec
        self.client.send(
            "started",
            {
                "worker_id": os.environ.get("RUNPOD_POD_ID") or socket.gethostname(),
                "runpod_job_id": self.opts.runpod_job_id,
                "worker_version": __version__,
                "gpu": gpu_info(),
            },
        )

        self._check_model_dir()
        self.stage("download")
        dataset_path = download(
            spec.dataset.url,
            self.workdir / "dataset.jsonl",
            sha256=spec.dataset.sha256,
            size_bytes=spec.dataset.size_bytes,
            should_stop=self.check,
        )
        self.check()

        self.stage("load")
        tokenizer = self._tokenizer()
        rule = CHAT_RULES[spec.base_model.chat_rule]
        pad_id = tokenizer.token_to_id(rule.pad_token)
        if pad_id is None:
            pad_id = special_id(tokenizer, rule.im_end)
        conversations = read_jsonl(dataset_path)
        examples, stats = build(
            tokenizer,
            conversations,
            max_seq_length=spec.hyperparameters.max_seq_length,
            rule_name=spec.base_model.chat_rule,
        )
        if stats.tokens_trained != spec.dataset.tokens_trained or stats.tokens_total != spec.dataset.tokens_total:
            log.warning(
                "token counts differ from the validator's: total %d vs %d, trained %d vs %d",
                stats.tokens_total,
                spec.dataset.tokens_total,
                stats.tokens_trained,
                spec.dataset.tokens_trained,
            )
        self.check()
        self.backend = importlib.import_module(self.opts.backend)
        self.session = self.backend.load_model(spec)
        self.check()

        self.stage("train")
        result = self.backend.fit(self.session, examples, spec, self, self.workdir, pad_id=pad_id)
        self.check()

        self.stage("save")
        files = self.backend.save_adapter(self.session, self.workdir / "adapter", spec.base_model.id)
        session_info = self.session
        self.release()
        self.check()

        self.stage("upload")
        artifacts = []
        for name, path in files.items():
            self.check()
            target = spec.artifacts[name]
            put_file(target.url, path, target.headers)
            art = {"name": name, "size_bytes": path.stat().st_size, "sha256": sha256_file(path)}
            artifacts.append(art)
            self.client.send("artifact", art)
        self.stage_seconds["upload"] = round(time.monotonic() - self.stage_started, 3)

        tokens_trained = stats.tokens_trained_kept * spec.hyperparameters.epochs
        metrics = {
            "initial_loss": _finite(result.initial_loss),
            "train_loss_mean": _finite(result.train_loss_mean),
            "total_steps": result.total_steps,
            "epochs": spec.hyperparameters.epochs,
            "examples": stats.examples,
            "examples_used": stats.examples_used,
            "examples_truncated": stats.examples_truncated,
            "dataset_tokens_total": stats.tokens_total,
            "dataset_tokens_trained": stats.tokens_trained,
            "tokens_seen": result.tokens_seen,
            "padded_tokens_seen": result.padded_tokens_seen,
            "micro_batches": result.micro_batches,
            "seconds_per_micro_batch": round(result.seconds_per_micro_batch, 4),
            "micro_batch_tokens": spec.hyperparameters.token_budget(),
            "grouped_moe_blocks": getattr(session_info, "grouped_moe_blocks", 0),
            "tokens_per_second": round(result.tokens_seen / result.train_seconds, 2) if result.train_seconds > 0 else 0.0,
            "peak_gpu_memory_bytes": result.peak_gpu_memory_bytes,
            "load_seconds": round(session_info.load_seconds, 3),
            "stage_seconds": dict(self.stage_seconds),
            "total_seconds": round(time.monotonic() - self.started, 3),
            "device": session_info.device,
            "quantization": session_info.quantization,
            "trainable_parameters": session_info.trainable_parameters,
            "lora_modules": len(session_info.lora_modules),
        }
        if stats.tokens_trained != spec.dataset.tokens_trained:
            metrics["dataset_tokens_trained_expected"] = spec.dataset.tokens_trained
        completed = {
            "final_loss": _finite(result.final_loss),
            "steps": result.steps,
            "train_seconds": round(result.train_seconds, 3),
            "tokens_trained": tokens_trained,
            "metrics": metrics,
        }
        self.client.send("completed", completed, wait=True)
        return {
            "status": "completed",
            "job_id": spec.job_id,
            "attempt": spec.attempt,
            "final_loss": completed["final_loss"],
            "steps": result.steps,
            "artifacts": artifacts,
        }

    def _check_model_dir(self) -> None:
        """Fail at once, before the download, when the base model's files are
        not on the volume, with the command that puts them there."""
        bm = self.spec.base_model
        problem = model_files_problem(Path(bm.volume_path))
        if problem:
            raise errors.WorkerError(
                errors.MODEL_LOAD, problem, missing_model_advice(bm.volume_path, bm.id, bm.quantization)
            )

    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        path = Path(self.spec.base_model.volume_path) / "tokenizer.json"
        if not path.is_file():
            raise errors.WorkerError(
                errors.MODEL_LOAD,
                f"No tokenizer found at {path}.",
                "Check that the base model is cached on the network volume at that path, then retry.",
            )
        try:
            return Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise errors.WorkerError(errors.MODEL_LOAD, f"The tokenizer at {path} could not be read ({e}).") from e

    def release(self) -> None:
        if self.backend is not None and self.session is not None:
            try:
                self.backend.release(self.session)
            except Exception:  # noqa: BLE001
                log.debug("release failed", exc_info=True)
        self.session = None
