"""One training job from spec to adapter: the stages, the callbacks, the
failure reporting. Shared by the RunPod handler and the local worker mode.

Stages: download (dataset, validation dataset, the checkpoint to resume) →
load (tokenizer, dataset and its validation split, model) → train → save →
upload. Every stage change is a signed ``stage`` callback; progress is
throttled to the spec's interval; a failure becomes one ``failed`` callback
plus a RunPod error output ({"error": "<code>: <message>", "code",
"advice"}).

URLs are asked for when they are needed (urls.py); against a server that
does not hand them out the spec's URLs are used and checkpoints are skipped.
Checkpoints go up in the background (transfers.CheckpointUploader) and never
fail a job. A trained adapter that was not uploaded is never deleted: it is
kept (kept_dir) and the failure says where.
"""

from __future__ import annotations

import importlib
import json
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
from . import checkpoint as ckpt
from . import spec as spec_mod
from .callbacks import CallbackClient, Transport, http_post
from .data import build, read_jsonl_lines, special_id, validation_lines
from .modelfiles import missing_model_advice, model_files_problem
from .registry import CHAT_RULES
from .transfers import CheckpointUploader, fetch, upload
from .urls import DATASET_FILE, VALIDATION_FILE, UrlBroker

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 137  # what a SIGKILL'd process reports: the crash knob looks like one
KEPT_DIR_ENV = "BRIGHTRUN_KEPT_DIR"
RUNPOD_VOLUME = Path("/runpod-volume")
CHECKPOINT_DRAIN_SECONDS = 600.0  # the most the end of training waits for a checkpoint upload


def _hard_exit(step: int) -> None:
    logging.getLogger(__name__).error("crash knob: exiting hard after step %d", step)
    logging.shutdown()
    os._exit(CRASH_EXIT_CODE)


@dataclass
class Pace:
    """What the job has measured that a stop must wait for (handler.py)."""

    max_micro_batch_seconds: float = 0.0
    stage: Optional[str] = None


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
    # Where an adapter that could not be uploaded is kept: $BRIGHTRUN_KEPT_DIR,
    # else /runpod-volume/brightrun/kept when the volume is mounted, else
    # brightrun-kept next to the work directory.
    kept_dir: Optional[Path] = None
    # Crash knob (local stack, tests): after this step (and its checkpoint's
    # upload) call crash(step), by default a hard exit with code 137.
    crash_after_step: Optional[int] = None
    crash: Callable[[int], None] = _hard_exit
    pace: Pace = field(default_factory=Pace)
    transfer_kwargs: dict[str, Any] = field(default_factory=dict)  # tests: sleep, backoff


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
        kept = job.keep_unsent()
        if kept is not None:
            err = errors.WorkerError(err.code, f"{err.message} The trained adapter is kept at {kept}.", err.advice)
        if err.code == errors.INTERNAL:
            log.exception("job %s attempt %d: internal error", spec.job_id, spec.attempt)
        else:
            log.error("job %s attempt %d failed in %s: %s", spec.job_id, spec.attempt, job.stage_name, err)
        if err.code != errors.SUPERSEDED:
            client.send("failed", _failed_data(err, job.stage_name), wait=True)
        return _error_output(err, spec)
    finally:
        job.release()
        job.uploader.close()
        client.close()
        if not (opts.keep_workdir or os.environ.get("BRIGHTRUN_KEEP_WORKDIR") == "1"):
            shutil.rmtree(workdir, ignore_errors=True)


def _workdir(opts: Options, spec: spec_mod.JobSpec) -> Path:
    base = opts.workdir or Path(os.environ.get("BRIGHTRUN_WORK_DIR") or tempfile.gettempdir())
    d = Path(base) / f"brightrun-{spec.job_id}-{spec.attempt}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    return d


def kept_root(opts: Options, workdir: Path) -> Path:
    if opts.kept_dir is not None:
        return Path(opts.kept_dir)
    env = os.environ.get(KEPT_DIR_ENV)
    if env:
        return Path(env)
    if RUNPOD_VOLUME.is_dir():
        return RUNPOD_VOLUME / "brightrun" / "kept"
    return workdir.parent / "brightrun-kept"


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
        self.broker = UrlBroker(client)
        self.uploader = CheckpointUploader(self.broker, client.send, self.check, **opts.transfer_kwargs)
        self.unsent: Optional[Path] = None  # the saved adapter until it is uploaded
        self.resume_note: Optional[str] = None  # why a checkpoint was not resumed from
        self._first_progress = True
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
        self.opts.pace.stage = name
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

    # -- trainer hooks ---------------------------------------------------------

    def resumed(self, step: int, tokens_seen: int, train_seconds: float) -> None:
        """fit continues a checkpoint: the rates start from its figures."""
        self._step = self._last_step = step
        self._last_tokens, self._last_train_s = tokens_seen, train_seconds

    def checkpoints_wanted(self) -> bool:
        return self.uploader.wanted()

    def checkpoint(self, written: ckpt.Written) -> None:
        self.uploader.submit(written)

    def after_step(self, step: int) -> None:
        n = self.opts.crash_after_step
        if n is not None and step >= n:
            self.uploader.wait_idle(120.0)
            self.client.flush(30.0)
            self.opts.crash(step)

    def progress(self, p: Any) -> None:
        """Trainer hook: called every step; sends at the spec's interval, and
        always on a step that evaluated."""
        self._step, self._total = p.step, p.total_steps
        self.opts.pace.max_micro_batch_seconds = max(self.opts.pace.max_micro_batch_seconds, getattr(p, "max_micro_batch_seconds", 0.0))
        now = time.monotonic()
        cb = self.spec.callback
        eval_loss = getattr(p, "eval_loss", None)
        due = (
            self._first_progress
            or p.step >= p.total_steps
            or eval_loss is not None
            or p.step - self._last_step >= cb.progress_every_steps
            or now - self._last_time >= cb.progress_every_seconds
        )
        if not due:
            return
        self._first_progress = False
        dt = p.train_seconds - self._last_train_s
        tps = (p.tokens_seen - self._last_tokens) / dt if dt > 0 else 0.0
        rate = p.step / p.train_seconds if p.train_seconds > 0 else 0.0
        data = {
            "step": p.step,
            "total_steps": p.total_steps,
            "epoch": round(p.epoch, 4),
            "loss": p.loss,
            "learning_rate": p.learning_rate,
            "tokens_per_second": round(max(tps, 0.0), 2),
            "gpu_memory_bytes": int(p.gpu_memory_bytes),
            "elapsed_seconds": round(now - self.started, 3),
            "eta_seconds": round((p.total_steps - p.step) / rate, 1) if rate > 0 else None,
        }
        if p.grad_norm is not None:
            data["grad_norm"] = p.grad_norm
        if eval_loss is not None and math.isfinite(eval_loss):
            data["eval_loss"] = eval_loss
        if data["eta_seconds"] is None:
            del data["eta_seconds"]
        log.info(
            "job %s: step %d/%d epoch %.2f loss %.4f lr %.3g %.0f tok/s%s",
            self.spec.job_id, p.step, p.total_steps, p.epoch, p.loss, p.learning_rate, tps,
            f" eval loss {eval_loss:.4f}" if eval_loss is not None else "",
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
        dataset_path, validation_path = self._download_datasets()
        resume_dir = self._download_checkpoint()
        self.check()

        self.stage("load")
        tokenizer = self._tokenizer()
        rule = CHAT_RULES[spec.base_model.chat_rule]
        pad_id = tokenizer.token_to_id(rule.pad_token)
        if pad_id is None:
            pad_id = special_id(tokenizer, rule.im_end)
        data = self._examples(tokenizer, dataset_path, validation_path)
        examples, stats, eval_examples = data["train"], data["stats"], data["eval"]
        self.check()
        fingerprint = ckpt.fingerprint(
            spec, [(len(ex.input_ids), ex.trained_kept) for ex in examples], len(eval_examples), _seed(self.opts.backend)
        )
        resume_dir = self._check_resume(resume_dir, fingerprint)
        self.backend = importlib.import_module(self.opts.backend)
        self.session = self.backend.load_model(spec, should_stop=self.check)
        self.check()

        self.stage("train")
        try:
            result = self.backend.fit(
                self.session, examples, spec, self, self.workdir, pad_id=pad_id,
                eval_examples=eval_examples, resume=resume_dir, fingerprint=fingerprint,
            )
        except ckpt.CheckpointError as e:  # refused before the model changed: train from step 0
            self._skip_resume(None, str(e))
            result = self.backend.fit(
                self.session, examples, spec, self, self.workdir, pad_id=pad_id,
                eval_examples=eval_examples, fingerprint=fingerprint,
            )
        self.check()
        # The last checkpoints go up before the adapter does (bounded).
        if not self.uploader.wait_idle(min(CHECKPOINT_DRAIN_SECONDS, max(0.0, self.deadline - time.monotonic()))):
            log.warning("a checkpoint upload is still running; going on with the adapter")
        self.check()

        self.stage("save")
        adapter_dir = self.workdir / "adapter"
        files = self.backend.save_adapter(self.session, adapter_dir, spec.base_model.id)
        self.unsent = adapter_dir
        session_info = self.session
        self.release()
        self.check()

        self.stage("upload")
        fallback = {n: spec_mod.Transfer(a.url, a.method, a.headers) for n, a in spec.artifacts.items()}
        try:
            infos = upload(
                self.broker, "artifact", files, fallback=fallback, should_stop=self.check, **self.opts.transfer_kwargs
            )
        except errors.WorkerError as e:
            if e.code != errors.UPLOAD:
                raise
            raise errors.WorkerError(
                errors.UPLOAD,
                e.message,
                "Retry the job: it resumes from its last checkpoint instead of training again; "
                "the trained adapter is also kept on the worker's volume.",
            ) from e
        self.unsent = None
        artifacts = []
        for info in infos:
            art = {"name": info.name, "size_bytes": info.size_bytes, "sha256": info.sha256}
            artifacts.append(art)
            self.client.send("artifact", art)
        self.stage_seconds["upload"] = round(time.monotonic() - self.stage_started, 3)

        tokens_trained = stats["train_tokens_trained_kept"] * spec.hyperparameters.epochs
        metrics = {
            "initial_loss": _finite(result.initial_loss),
            "train_loss_mean": _finite(result.train_loss_mean),
            "total_steps": result.total_steps,
            "epochs": spec.hyperparameters.epochs,
            "examples": stats["examples"],
            "examples_used": stats["examples_used"],
            "examples_truncated": stats["examples_truncated"],
            "dataset_tokens_total": stats["tokens_total"],
            "dataset_tokens_trained": stats["tokens_trained"],
            "train_examples": len(examples),
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
            "checkpoints": len(self.uploader.uploaded),
            "checkpoint_bytes": self.uploader.bytes_uploaded,
            "checkpoint_seconds": round(getattr(result, "checkpoint_seconds", 0.0) + self.uploader.upload_seconds, 3),
        }
        if result.eval_examples:
            metrics.update(
                eval_loss=_finite(result.eval_loss),
                eval_examples=result.eval_examples,
                eval_tokens=result.eval_tokens,
                evaluations=result.evaluations,
                eval_seconds=round(result.eval_seconds, 3),
            )
        if result.resumed_from_step is not None:
            metrics.update(
                resumed_from_step=result.resumed_from_step,
                run_train_seconds=round(result.run_train_seconds, 3),
                run_micro_batches=result.run_micro_batches,
            )
        if self.resume_note:
            metrics["resume_skipped"] = self.resume_note
        if stats["tokens_trained"] != spec.dataset.tokens_trained:
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

    # -- download stage --------------------------------------------------------

    def _download_datasets(self) -> tuple[Path, Optional[Path]]:
        spec = self.spec
        vds = spec.validation.dataset
        names = [DATASET_FILE] + ([VALIDATION_FILE] if vds else [])
        grant = self.broker.ask("dataset", [{"name": n} for n in names])
        ds = spec.dataset
        dataset_path = fetch(
            self.broker, "dataset", spec_mod.FileInfo(DATASET_FILE, ds.size_bytes, ds.sha256), self.workdir / DATASET_FILE,
            fallback=spec_mod.Transfer(ds.url, "GET", {}), grant=grant, should_stop=self.check,
        )
        self.check()
        validation_path = None
        if vds is not None:
            validation_path = fetch(
                self.broker, "dataset", spec_mod.FileInfo(VALIDATION_FILE, vds.size_bytes, vds.sha256),
                self.workdir / VALIDATION_FILE, fallback=spec_mod.Transfer(vds.url, "GET", {}), grant=grant,
                should_stop=self.check, what="validation dataset",
            )
        return dataset_path, validation_path

    def _download_checkpoint(self) -> Optional[Path]:
        """The checkpoint to continue from, downloaded and checked, or None.
        Asks for the spec's resume checkpoint, or (no resume in the spec: a
        RunPod retry of a run that stored checkpoints) for the job's latest.
        Any failure but a stop means: train from step 0."""
        r = self.spec.resume
        if r is None and self.broker.supported is False:
            return None
        grant = self.broker.ask(
            "checkpoint_download",
            [{"name": f.name} for f in r.files] if r is not None and r.files else (),
            step=r.step if r is not None else None,
            checkpoint_id=r.checkpoint_id if r is not None else None,
        )
        if grant is not None and grant.checkpoint is not None:
            step, files, cid = grant.checkpoint.step, grant.checkpoint.files, grant.checkpoint.checkpoint_id
        elif r is not None:
            step, files, cid = r.step, r.files, r.checkpoint_id
        else:
            return None  # no checkpoint stored for this job
        urls = dict(r.urls) if r is not None and (grant is None or grant.checkpoint is None) else {}
        if grant is not None:
            urls.update(grant.urls)
        missing = [n for n in ckpt.FILES if n not in {f.name for f in files}]
        if missing or any(f.name not in urls for f in files):
            self._skip_resume(step, "its files or their URLs could not be had" + (f" (missing {', '.join(missing)})" if missing else ""))
            return None
        d = self.workdir / "resume" / f"step-{step:08d}"
        try:
            for f in files:
                if f.name not in ckpt.FILES:
                    continue
                fetch(
                    self.broker, "checkpoint_download", f, d / f.name, fallback=urls[f.name],
                    grant=grant if grant is not None and f.name in grant.urls else None,
                    step=step, checkpoint_id=cid, should_stop=self.check, what=f"checkpoint file {f.name}",
                )
            ckpt.read_state(d)
        except errors.WorkerError as e:
            if e.code in errors.STOP_CODES:
                raise
            self._skip_resume(step, e.message)
            shutil.rmtree(d, ignore_errors=True)
            return None
        except ckpt.CheckpointError as e:
            self._skip_resume(step, str(e))
            shutil.rmtree(d, ignore_errors=True)
            return None
        log.info("job %s: checkpoint at step %d downloaded", self.spec.job_id, step)
        return d

    def _skip_resume(self, step: Optional[int], why: str) -> None:
        at = f" at step {step}" if step else ""
        self.resume_note = f"the checkpoint{at} was not used: {why}"
        log.warning("job %s: %s; training from step 0", self.spec.job_id, self.resume_note)

    def _check_resume(self, d: Optional[Path], fingerprint: str) -> Optional[Path]:
        if d is None:
            return None
        try:
            state = ckpt.read_state(d)
        except ckpt.CheckpointError as e:
            self._skip_resume(None, str(e))
            return None
        if state["fingerprint"] != fingerprint:
            self._skip_resume(int(state["step"]), "it belongs to a run with other settings or data")
            return None
        return d

    # -- load stage ------------------------------------------------------------

    def _examples(self, tokenizer: Any, dataset_path: Path, validation_path: Optional[Path]) -> dict[str, Any]:
        """Training and held-out examples, and the counts of the whole file
        (what the validator counted) next to those of the training part."""
        spec = self.spec
        v = spec.validation
        lines = read_jsonl_lines(dataset_path)
        held: set[int] = set()
        if validation_path is None:
            held = validation_lines([ln for ln, _ in lines], v.split, v.max_examples, v.seed)
        train_convs = [m for ln, m in lines if ln not in held]
        eval_convs = [m for ln, m in lines if ln in held]
        if validation_path is not None:
            eval_convs = [m for _, m in read_jsonl_lines(validation_path)][: v.max_examples]
        hp = spec.hyperparameters
        examples, tstats = build(tokenizer, train_convs, max_seq_length=hp.max_seq_length, rule_name=spec.base_model.chat_rule)
        eval_examples: list[Any] = []
        etotal = etrained = etrunc = 0
        if eval_convs:
            try:
                eval_examples, estats = build(tokenizer, eval_convs, max_seq_length=hp.max_seq_length, rule_name=spec.base_model.chat_rule)
                etotal, etrained, etrunc = estats.tokens_total, estats.tokens_trained, estats.examples_truncated
            except errors.WorkerError as e:
                if e.code != errors.DATASET_INVALID:
                    raise
                log.warning("no held-out example has a trained token: no evaluation")
        whole_file = validation_path is None
        stats = {
            "examples": len(lines),
            "examples_used": tstats.examples_used + (len(eval_examples) if whole_file else 0),
            "examples_truncated": tstats.examples_truncated + (etrunc if whole_file else 0),
            "tokens_total": tstats.tokens_total + (etotal if whole_file else 0),
            "tokens_trained": tstats.tokens_trained + (etrained if whole_file else 0),
            "train_tokens_trained_kept": tstats.tokens_trained_kept,
        }
        if stats["tokens_trained"] != spec.dataset.tokens_trained or stats["tokens_total"] != spec.dataset.tokens_total:
            log.warning(
                "token counts differ from the validator's: total %d vs %d, trained %d vs %d",
                stats["tokens_total"],
                spec.dataset.tokens_total,
                stats["tokens_trained"],
                spec.dataset.tokens_trained,
            )
        if eval_examples:
            log.info("validation: %d held-out examples (%s)", len(eval_examples), "second dataset" if not whole_file else f"{len(held)} lines of the dataset")
        return {"train": examples, "eval": eval_examples, "stats": stats}

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

    # -- the end -----------------------------------------------------------------

    def keep_unsent(self) -> Optional[Path]:
        """Move a saved adapter that was not uploaded out of the work
        directory (which is deleted), with a note of what it is; its path."""
        if self.unsent is None or not self.unsent.is_dir():
            return None
        dest = kept_root(self.opts, self.workdir) / f"{self.spec.job_id}-{self.spec.attempt}"
        try:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True, exist_ok=True)
            target = dest / "adapter"
            shutil.move(str(self.unsent), str(target))
            from .download import sha256_file

            note = {
                "job_id": self.spec.job_id,
                "attempt": self.spec.attempt,
                "base_model": self.spec.base_model.id,
                "steps": self._step,
                "files": [
                    {"name": f.name, "size_bytes": f.stat().st_size, "sha256": sha256_file(f)}
                    for f in sorted(target.iterdir())
                ],
                "kept_at": time.time(),
            }
            (dest / "kept.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
        except OSError as e:
            log.error("the adapter could not be moved out of the work directory (%s): keeping the work directory", e)
            self.opts.keep_workdir = True
            return self.unsent
        self.unsent = None
        log.warning("job %s: the trained adapter was not uploaded; it is kept at %s", self.spec.job_id, target)
        return target

    def release(self) -> None:
        if self.backend is not None and self.session is not None:
            try:
                self.backend.release(self.session)
            except Exception:  # noqa: BLE001
                log.debug("release failed", exc_info=True)
        self.session = None


def _seed(backend: str) -> int:
    try:
        return int(getattr(importlib.import_module(backend), "SEED", 0))
    except ImportError:
        return 0
