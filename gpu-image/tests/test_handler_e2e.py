"""The handler end to end against a local server (dataset, signed callbacks,
artifact uploads): through the RunPod SDK's local test mode, the SDK's own
job runner, and the local worker mode."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import GPU_IMAGE, MASTER_SECRET, tiny_spec
from fakeserver import FakeServer, State

from brightrun_worker import handler, signing

JOB = "job_e2e"


def state(dataset: bytes, job_id: str = JOB, **kw: Any) -> State:
    return State(key=signing.derive_job_key(MASTER_SECRET, job_id), dataset=dataset, **kw)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(GPU_IMAGE) + os.pathsep + e.get("PYTHONPATH", ""),
    )
    e.pop("RUNPOD_WEBHOOK_GET_JOB", None)
    return e


def types(srv: FakeServer, everything: bool = False) -> list[str]:
    """The callbacks' types (stage:<name> for stages), without the urls
    requests and checkpoint notices unless ``everything``."""
    out = []
    for d in srv.docs():
        if not everything and d["type"] in ("urls", "checkpoint"):
            continue
        out.append(d["type"] + (":" + d["data"]["stage"] if d["type"] == "stage" else ""))
    return out


def assert_well_formed(srv: FakeServer, job_id: str = JOB, attempt: int = 1) -> None:
    cbs = srv.state.callbacks
    assert cbs, "no callback received"
    assert all(c.verified for c in cbs), "a callback failed signature verification"
    seqs = [c.doc["seq"] for c in cbs]
    assert seqs == list(range(1, len(cbs) + 1)), seqs
    for c in cbs:
        assert c.doc["job_id"] == job_id and c.doc["attempt"] == attempt and c.doc["version"] == 1
        assert c.headers["webhook-id"] == f"{job_id}.{attempt}.{c.doc['seq']}"
        assert c.headers["content-type"] == "application/json"
    import jsonschema
    from conftest import load_contract

    v = jsonschema.Draft202012Validator(load_contract("callback.v1.schema.json"))
    for c in cbs:
        v.validate(c.doc)


def run_sdk_job(spec: dict[str, Any], job_id: str = "rp-local-1", keep_stop_pod: bool = False) -> dict[str, Any]:
    """Run the handler the way the RunPod SDK does (its own run_job)."""
    from runpod.serverless.modules import rp_job

    result = asyncio.run(rp_job.run_job(handler.handler, {"id": job_id, "input": spec}))
    # The SDK moves "error" out of the handler's output: put it back for the asserts.
    out = dict(result.get("output") or {})
    if "error" in result:
        out["error"] = result["error"]
    if keep_stop_pod:
        out["stopPod"] = result.get("stopPod", False)  # what refresh_worker became
    return out


def test_success_through_the_runpod_sdk_test_mode(tiny_model_dir: Path, toy_dataset: bytes) -> None:
    # the first GET breaks halfway (resumed with Range), the first callback gets a 503 (retried)
    st = state(toy_dataset, drop_first_get_after=len(toy_dataset) // 2, fail_next_callbacks=1)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=2)
        t0 = time.monotonic()
        p = subprocess.run(
            [sys.executable, "-m", "brightrun_worker.handler", "--test_input", json.dumps({"id": "rp-123", "input": spec})],
            cwd=GPU_IMAGE,
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    print(f"\nSDK test mode run: {elapsed:.1f}s")
    assert_well_formed(srv)
    t = types(srv)
    assert t[:4] == ["started", "stage:download", "stage:load", "stage:train"]
    assert t[-5:] == ["stage:save", "stage:upload", "artifact", "artifact", "completed"]
    progress = srv.docs("progress")
    assert [d["data"]["step"] for d in progress] == [1, 3, 5, 7, 8]  # every 2 steps + the first and the last
    assert all(d["data"]["total_steps"] == 8 for d in progress)
    assert srv.docs("started")[0]["data"]["runpod_job_id"] == "rp-123"
    assert len(st.gets) == 2 and st.gets[1]["range"].startswith("bytes=")
    # artifacts: uploaded bytes match the artifact callbacks
    arts = {d["data"]["name"]: d["data"] for d in srv.docs("artifact")}
    assert set(arts) == set(st.uploads) == {"adapter_config.json", "adapter_model.safetensors"}
    for name, body in st.uploads.items():
        assert arts[name]["size_bytes"] == len(body)
        assert arts[name]["sha256"] == hashlib.sha256(body).hexdigest()
    assert st.upload_headers["adapter_model.safetensors"]["content-type"] == "application/octet-stream"
    done = srv.docs("completed")[0]["data"]
    assert done["steps"] == 8 and done["final_loss"] is not None
    assert done["metrics"]["dataset_tokens_trained"] == spec["dataset"]["tokens_trained"]
    assert "dataset_tokens_trained_expected" not in done["metrics"]
    assert done["tokens_trained"] == 2 * spec["dataset"]["tokens_trained"]


def test_cancelled_mid_way_by_the_callback_answer(tiny_model_dir: Path, toy_dataset: bytes) -> None:
    def answer(doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if doc["type"] == "progress" and doc["data"]["step"] >= 3:
            return 200, {"action": "stop", "reason": "cancelled by the user"}
        return 200, {"action": "continue"}

    st = state(toy_dataset, answer=answer)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=10)
        out = run_sdk_job(spec)
    assert out["error"].startswith("cancelled: The job was cancelled during train"), out
    assert_well_formed(srv)
    t = types(srv)
    assert t[-1] == "failed" and "completed" not in t and "artifact" not in t and not st.uploads
    failed = srv.docs("failed")[0]["data"]
    assert failed["code"] == "cancelled" and failed["stage"] == "train"
    assert "cancelled by the user" in failed["message"]
    last_step = srv.docs("progress")[-1]["data"]
    assert last_step["step"] < last_step["total_steps"] == 40


def test_runpod_cancellation_stops_the_training_thread(
    tiny_model_dir: Path, toy_dataset: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK cancels the handler's task (its stop channel): training stops
    before its next micro-batch, reports, and the worker asks to be replaced."""
    seen_progress = threading.Event()
    replaced: list[bool] = []
    monkeypatch.setattr(handler, "replace_worker", replaced.append)

    def answer(doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if doc["type"] == "progress":
            seen_progress.set()
        return 200, {"action": "continue"}

    st = state(toy_dataset, answer=answer)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=20)
        spec["callback"]["progress_every_steps"] = 1

        async def main() -> None:
            task = asyncio.ensure_future(handler.handler({"id": "rp-9", "input": spec}))
            while not seen_progress.is_set():
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
    failed = srv.docs("failed")
    assert failed and failed[0]["data"]["code"] == "cancelled" and "RunPod stop signal" in failed[0]["data"]["message"]
    assert srv.docs("progress")[-1]["data"]["step"] < 80
    assert replaced == [False]  # stopped within the grace: replaced, not stuck


def test_corrupted_dataset_through_the_local_worker_mode(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    corrupted = toy_dataset.replace(b"Paris", b"Lyon!")
    st = state(corrupted)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB)  # sha256 of the good file
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(spec))
        p = subprocess.run(
            [sys.executable, "-m", "brightrun_worker.local", "--spec", str(path)],
            cwd=tmp_path,
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert p.returncode == 1, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["code"] == "dataset_download" and "does not match its checksum" in out["error"]
    assert_well_formed(srv)
    assert types(srv) == ["started", "stage:download", "failed"]
    f = srv.docs("failed")[0]["data"]
    assert f["code"] == "dataset_download" and f["stage"] == "download" and f["advice"]


def test_local_worker_mode_succeeds(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    st = state(toy_dataset)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=1)
        p = subprocess.run(
            [sys.executable, "-m", "brightrun_worker.local", "--spec", "-"],
            input=json.dumps({"input": spec}),
            cwd=tmp_path,
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["status"] == "completed" and out["steps"] == 4 and len(out["artifacts"]) == 2
    assert types(srv)[-1] == "completed"


def test_invalid_dataset_lines(tiny_model_dir: Path) -> None:
    bad = b'{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}\n{"messages": "oops"}\n'
    st = state(bad)
    with FakeServer(st) as srv:
        out = run_sdk_job(tiny_spec(srv.base, tiny_model_dir, bad, job_id=JOB))
    assert out["code"] == "dataset_invalid"
    f = srv.docs("failed")[0]["data"]
    assert f["stage"] == "load" and 'line 2: "messages" must be a non-empty list' in f["message"]


def test_broken_spec_is_reported_to_the_callback(tiny_model_dir: Path, toy_dataset: bytes) -> None:
    st = state(toy_dataset)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB)
        spec["hyperparameters"]["learning_rate"] = 5
        out = run_sdk_job(spec)
    assert out["code"] == "spec_invalid"
    assert "hyperparameters.learning_rate must be between 1e-05 and 0.001, got 5" in out["error"]
    assert types(srv) == ["failed"]
    assert srv.state.callbacks[0].verified


def test_superseded_attempt_stops_silently(tiny_model_dir: Path, toy_dataset: bytes) -> None:
    def answer(doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if doc["type"] == "stage" and doc["data"]["stage"] == "train":
            return 409, {"error": {"code": "conflict", "message": "attempt 1 was superseded by attempt 2"}, "action": "stop"}
        return 200, {"action": "continue"}

    st = state(toy_dataset, answer=answer)
    with FakeServer(st) as srv:
        out = run_sdk_job(tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=10))
    assert out["code"] == "superseded"
    t = types(srv)
    assert "failed" not in t and "completed" not in t and not st.uploads
    assert t[-1] in ("stage:train", "progress")
    assert len(srv.docs("progress")) <= 2


def test_time_limit(tiny_model_dir: Path, toy_dataset: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from brightrun_worker import download as dl

    real = dl._fetch

    def slow_fetch(*a: Any, **kw: Any) -> None:
        time.sleep(1.2)
        return real(*a, **kw)

    monkeypatch.setattr(dl, "_fetch", slow_fetch)
    st = state(toy_dataset)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB)
        spec["time_limit_seconds"] = 1
        out = run_sdk_job(spec)
    assert out["code"] == "timeout", out
    f = srv.docs("failed")[0]["data"]
    assert f["code"] == "timeout" and f["stage"] == "download"
    assert f["message"] == "The job ran past its time limit of 1 seconds during download."
    assert f["advice"].startswith("Raise time_limit_seconds")
