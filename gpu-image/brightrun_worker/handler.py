"""RunPod Serverless entry point.

    python -m brightrun_worker.handler                      # on RunPod
    python -m brightrun_worker.handler --test_input '{"input": {...}}'   # SDK local test mode

The handler is async and runs the job in a worker thread, so the SDK's event
loop stays free: when RunPod stops the job (cancel, timeout) the SDK cancels
the handler's task; the handler then sets a cancel event that the training
loop checks at its next step, waits (bounded) for the job to report
``failed: cancelled``, and lets the cancellation through. The ``runpod``
package is imported only in ``main()``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from typing import Any

from . import job

log = logging.getLogger(__name__)

CANCEL_GRACE_SECONDS = 120.0


def _runpod_progress(rp_job: dict[str, Any]):
    """RunPod's progress_update as a second channel, only when running on RunPod."""
    if not os.environ.get("RUNPOD_WEBHOOK_GET_JOB"):
        return None

    def send(data: dict[str, Any]) -> None:
        import runpod

        runpod.serverless.progress_update(rp_job, data)

    return send


async def handler(rp_job: dict[str, Any]) -> dict[str, Any]:
    cancel = threading.Event()
    opts = job.Options(
        runpod_job_id=str(rp_job.get("id", "")),
        cancel=cancel,
        on_progress=_runpod_progress(rp_job),
    )
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, functools.partial(job.run, rp_job.get("input"), opts))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        log.warning("RunPod stopped job %s: stopping training", rp_job.get("id"))
        cancel.set()
        try:
            await asyncio.wait_for(asyncio.shield(fut), CANCEL_GRACE_SECONDS)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        raise


def main() -> None:
    logging.basicConfig(level=os.environ.get("BRIGHTRUN_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import runpod

    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
