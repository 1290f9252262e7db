"""Local worker mode: run one job from a spec file with the same code path as
on RunPod (CPU and a tiny model are fine), for the Go local stack.

    python -m brightrun_worker.local --spec spec.json [--runpod-job-id ID]

``--spec -`` reads the spec from stdin; the spec may also be wrapped as
{"input": {...}} like a RunPod job. Prints the RunPod output as one JSON line
on stdout; exits 0 when the job completed, 1 when it failed, 2 on bad usage.
A SIGTERM or SIGINT cancels the job: it stops before the next micro-batch
and reports ``failed: cancelled``.

``--crash-after-step N`` (or BRIGHTRUN_CRASH_AFTER_STEP=N) is the crash
knob of the local stack: after step N — and after the upload of the
checkpoint that step wrote, if any — the process exits at once with code 137,
as if killed, sending nothing more. Run the same job again without it and it
resumes from its last stored checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from . import job


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m brightrun_worker.local", description="Run one training job locally.")
    ap.add_argument("--spec", required=True, help="job spec JSON file, or - for stdin")
    ap.add_argument("--runpod-job-id", default="local", help="id reported as runpod_job_id in the started callback")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: $BRIGHTRUN_WORK_DIR or /tmp)")
    ap.add_argument("--keep-workdir", action="store_true", help="keep the downloaded dataset and adapter files")
    crash_env = os.environ.get("BRIGHTRUN_CRASH_AFTER_STEP")
    ap.add_argument(
        "--crash-after-step",
        type=int,
        default=int(crash_env) if crash_env else None,
        help="exit hard (code 137) after this training step, as a crash would (default: $BRIGHTRUN_CRASH_AFTER_STEP)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("BRIGHTRUN_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text(encoding="utf-8")
        doc: Any = json.loads(text)
    except (OSError, ValueError) as e:
        print(f"cannot read the spec: {e}", file=sys.stderr)
        return 2
    if isinstance(doc, dict) and "input" in doc and "job_id" not in doc:
        doc = doc["input"]
    cancel = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        logging.getLogger(__name__).warning("signal %d: cancelling the job", signum)
        cancel.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    opts = job.Options(
        runpod_job_id=args.runpod_job_id,
        cancel=cancel,
        workdir=args.workdir,
        keep_workdir=args.keep_workdir,
        crash_after_step=args.crash_after_step,
    )
    out = job.run(doc, opts)
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 1 if out.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
