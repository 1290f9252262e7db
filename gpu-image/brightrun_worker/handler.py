"""RunPod Serverless entry point.

    python -m brightrun_worker.handler                      # on RunPod
    python -m brightrun_worker.handler --test_input '{"input": {...}}'   # SDK local test mode

Two kinds of job: a training job (the job spec, job.run), and the one-off
preparation of a base model's 4-bit copy on the network volume,

    {"action": "prepare_model",
     "source": "/runpod-volume/models/<hub id>",
     "out": "/runpod-volume/models/<hub id>-bnb-nf4",
     "hub_id": "<hub id>",   # optional, recorded in the manifest
     "force": false}         # optional: rebuild even a complete copy

which ``go run ./infra/provision prepare-model`` submits. Both paths must lie
below the models root (/runpod-volume/models; BRIGHTRUN_MODELS_ROOT moves it,
for tests and Pods): no "..", no symlink out of it. Its output is
prepare.prepare's summary, or {"error": "<code>: <message>", "code",
"advice"}; its progress goes to RunPod's progress_update (stage, files,
bytes), which /status shows as the running job's output.

The handler is async and runs the job in a worker thread, so the SDK's event
loop stays free: when RunPod stops the job (cancel, timeout) the SDK cancels
the handler's task; the handler then sets a cancel event that the training
loop checks before every micro-batch (and the load before every checkpoint
shard; the preparation at its next progress event), waits for the job to
report ``failed: cancelled`` — as long as the longest micro-batch measured
so far takes, with a margin (``grace_seconds``) — and lets the cancellation
through.

A fresh worker after trouble: a job that ends with oom, cancelled, timeout,
superseded or internal returns ``"refresh_worker": true`` in its output,
which the SDK turns into RunPod's stopPod (the worker is replaced after this
job). A job stopped by RunPod returns no output, so after the grace the
handler asks the SDK to shut this worker down (SIGTERM to itself: the SDK
stops taking jobs and exits, and RunPod starts a new worker); if the job's
thread has still not stopped, the process exits hard 30 s later, so a stuck
thread never holds the GPU for the next job. The ``runpod`` package is
imported only in ``main()``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from . import errors, job

log = logging.getLogger(__name__)

# How long a stopped job may take to report: 1.5 x its longest micro-batch
# + 30 s, within these bounds (the lower one also covers a checkpoint shard
# of the load, a checkpoint write and the failed callback's delivery).
CANCEL_GRACE_MIN_SECONDS = 60.0
CANCEL_GRACE_MAX_SECONDS = 900.0
HARD_EXIT_AFTER_SECONDS = 30.0
# Failures after which the worker is replaced (the GPU may hold a stuck
# thread's memory, or a fragmented cache).
REFRESH_CODES = (errors.OOM, errors.CANCELLED, errors.TIMEOUT, errors.SUPERSEDED, errors.INTERNAL)

PREPARE_ACTION = "prepare_model"
MODELS_ROOT = "/runpod-volume/models"
MODELS_ROOT_ENV = "BRIGHTRUN_MODELS_ROOT"
PROGRESS_EVERY_SECONDS = 5.0  # progress_update starts a thread per call: throttle it


def _runpod_progress(rp_job: dict[str, Any]):
    """RunPod's progress_update as a second channel, only when running on RunPod."""
    if not os.environ.get("RUNPOD_WEBHOOK_GET_JOB"):
        return None

    def send(data: dict[str, Any]) -> None:
        import runpod

        runpod.serverless.progress_update(rp_job, data)

    return send


def _is_prepare(job_input: Any) -> bool:
    return isinstance(job_input, dict) and job_input.get("action") == PREPARE_ACTION


def _models_root() -> Path:
    return Path(os.path.normpath(os.environ.get(MODELS_ROOT_ENV) or MODELS_ROOT))


def _model_path(value: Any, field: str, root: Path) -> Path:
    """An absolute path strictly below root, without "..", whose existing
    part resolves below root too (no symlink out of the volume)."""
    where = f"{PREPARE_ACTION}: {field}"
    if not isinstance(value, str) or not value.strip():
        raise errors.WorkerError(errors.SPEC_INVALID, f"{where} must be a directory path below {root}.")
    if not value.startswith("/") or "\x00" in value:
        raise errors.WorkerError(errors.SPEC_INVALID, f"{where} must be an absolute path below {root}, got {value!r}.")
    if ".." in value.split("/"):
        raise errors.WorkerError(errors.SPEC_INVALID, f"{where} must not contain '..', got {value!r}.")
    p = Path(os.path.normpath(value))
    if root not in p.parents:
        raise errors.WorkerError(errors.SPEC_INVALID, f"{where} {value!r} is not below the models root {root}.")
    real, real_root = Path(os.path.realpath(p)), Path(os.path.realpath(root))
    if real_root not in real.parents:
        raise errors.WorkerError(
            errors.SPEC_INVALID, f"{where} {value!r} leads out of the models root {root} (through a symbolic link)."
        )
    return p


def _prepare_request(job_input: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(job_input) - {"action", "source", "out", "hub_id", "force"})
    if unknown:
        raise errors.WorkerError(errors.SPEC_INVALID, f"{PREPARE_ACTION}: unknown fields {unknown}.")
    root = _models_root()
    req: dict[str, Any] = {
        "source": _model_path(job_input.get("source"), "source", root),
        "out": _model_path(job_input.get("out"), "out", root),
        "force": job_input.get("force", False),
        "hub_id": job_input.get("hub_id"),
    }
    if not isinstance(req["force"], bool):
        raise errors.WorkerError(errors.SPEC_INVALID, f"{PREPARE_ACTION}: force must be true or false.")
    if req["hub_id"] is not None and not (isinstance(req["hub_id"], str) and req["hub_id"].strip()):
        raise errors.WorkerError(errors.SPEC_INVALID, f"{PREPARE_ACTION}: hub_id must be a non-empty string.")
    return req


def prepare_job(
    job_input: dict[str, Any],
    cancel: Optional[threading.Event] = None,
    on_progress: Optional[Callable[[dict[str, Any]], None]] = None,
) -> dict[str, Any]:
    """Run a prepare_model job; never raises. Returns the summary, or the
    error output {"error": "<code>: <message>", "code", "advice"}."""
    from . import prepare

    last = {"stage": None, "at": 0.0}

    def progress(event: dict[str, Any]) -> None:
        if cancel is not None and cancel.is_set():
            raise errors.WorkerError(
                errors.CANCELLED,
                f"The preparation was cancelled during {event.get('stage')} (RunPod stop signal); nothing was published.",
            )
        now = time.monotonic()
        if on_progress is None or (event.get("stage") == last["stage"] and now - last["at"] < PROGRESS_EVERY_SECONDS):
            return
        last["stage"], last["at"] = event.get("stage"), now
        data = {k: event[k] for k in ("stage", "files_done", "files_total", "bytes_done", "bytes_total", "elapsed_seconds") if k in event}
        try:
            on_progress(data)
        except Exception:  # noqa: BLE001 - a second channel must never break the work
            log.debug("runpod progress_update failed", exc_info=True)

    try:
        req = _prepare_request(job_input)
        log.info("preparing %s from %s", req["out"], req["source"])
        summary = prepare.prepare(req["source"], req["out"], progress=progress, hub_id=req["hub_id"], force=req["force"])
        log.info("%s", summary.get("message"))
        return summary
    except Exception as exc:  # noqa: BLE001 - every failure is classified and reported
        err = errors.classify(exc)
        if err.code == errors.INTERNAL:
            log.exception("prepare_model: internal error")
        else:
            log.error("prepare_model failed: %s", err)
        return {"error": f"{err.code}: {err.message}", "code": err.code, "advice": err.advice}


def grace_seconds(pace: Optional[job.Pace]) -> float:
    """How long to wait for a stopped job: one micro-batch (the longest
    measured) with a margin."""
    longest = pace.max_micro_batch_seconds if pace is not None else 0.0
    return min(CANCEL_GRACE_MAX_SECONDS, max(CANCEL_GRACE_MIN_SECONDS, 1.5 * longest + 30.0))


def with_refresh(out: dict[str, Any]) -> dict[str, Any]:
    """Ask RunPod for a fresh worker after a failure that may leave the GPU
    in a bad state."""
    if out.get("code") in REFRESH_CODES:
        out = dict(out, refresh_worker=True)
    return out


def _replace_worker(stuck: bool) -> None:
    """After RunPod stopped a job: shut this worker down so RunPod starts a
    fresh one (only when running under RunPod's job loop)."""
    if not os.environ.get("RUNPOD_WEBHOOK_GET_JOB"):
        return
    log.warning("replacing this worker after a stopped job%s", " whose thread did not stop" if stuck else "")
    if stuck:
        t = threading.Timer(HARD_EXIT_AFTER_SECONDS, os._exit, args=(1,))
        t.daemon = True
        t.start()
    os.kill(os.getpid(), signal.SIGTERM)  # the SDK's own shutdown: stop taking jobs, drain, exit


# Tests replace it to see the request without stopping the test process.
replace_worker: Callable[[bool], None] = _replace_worker


async def handler(rp_job: dict[str, Any]) -> dict[str, Any]:
    cancel = threading.Event()
    job_input = rp_job.get("input")
    pace: Optional[job.Pace] = None
    if _is_prepare(job_input):
        work = functools.partial(prepare_job, job_input, cancel, _runpod_progress(rp_job))
    else:
        opts = job.Options(
            runpod_job_id=str(rp_job.get("id", "")),
            cancel=cancel,
            on_progress=_runpod_progress(rp_job),
        )
        pace = opts.pace
        work = functools.partial(job.run, job_input, opts)
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, work)
    try:
        out = await asyncio.shield(fut)
    except asyncio.CancelledError:
        grace = grace_seconds(pace)
        log.warning("RunPod stopped job %s: stopping it (waiting up to %.0fs)", rp_job.get("id"), grace)
        cancel.set()
        stuck = False
        try:
            await asyncio.wait_for(asyncio.shield(fut), grace)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            stuck = not fut.done()
        if stuck:
            log.error("job %s did not stop within %.0fs", rp_job.get("id"), grace)
        replace_worker(stuck)
        raise
    return with_refresh(out) if isinstance(out, dict) else out


def main() -> None:
    logging.basicConfig(level=os.environ.get("BRIGHTRUN_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import runpod

    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
