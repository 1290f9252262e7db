"""The job end to end against the fake server with the urls route: a run that
crashes after step N resumes in a new process from its last stored
checkpoint and ends with the adapter of an uninterrupted run; URLs are asked
for, expired ones replaced; a server without the route gets today's
behaviour; an adapter that cannot be uploaded is kept; evaluation losses
reach the callbacks; cancel reaches the load and asks for a fresh worker."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_spec
from fakeserver import FakeServer
from safetensors.torch import load as load_safetensors
from test_checkpoints import TOLERANCE
from test_handler_e2e import JOB, assert_well_formed, env, run_sdk_job, state, types

from brightrun_worker import handler, job

FAST = {"sleep": lambda s: None, "backoff": 0.0}


def run_inprocess(spec: dict[str, Any], tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return job.run(spec, job.Options(workdir=tmp_path / "work", transfer_kwargs=FAST, **kw))


def run_local(spec: dict[str, Any], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"spec-{spec['attempt']}.json"
    path.write_text(json.dumps(spec))
    return subprocess.run(
        [sys.executable, "-m", "brightrun_worker.local", "--spec", str(path), "--workdir", str(tmp_path / "work"), *args],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300,
    )


def adapter(body: bytes) -> dict[str, torch.Tensor]:
    return load_safetensors(body)


def progress_steps(srv: FakeServer, attempt: int) -> list[int]:
    return [d["data"]["step"] for d in srv.docs("progress") if d["attempt"] == attempt]


def test_a_crashed_run_resumes_from_its_last_checkpoint_in_a_new_process(
    tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path
) -> None:
    hp = dict(epochs=3, lora_dropout=0.1, warmup_ratio=0.1)
    bf16 = {"quantization": "bf16"}  # loads in a second (NF4 resume: test_checkpoints)
    with FakeServer(state(toy_dataset)) as ref_srv:
        ref = tiny_spec(ref_srv.base, tiny_model_dir, toy_dataset, job_id=JOB, **hp)
        ref["base_model"].update(bf16)
        assert run_inprocess(ref, tmp_path / "ref")["status"] == "completed"
    uninterrupted = adapter(ref_srv.state.uploads["adapter_model.safetensors"])

    st = state(toy_dataset)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, **hp)
        spec["base_model"].update(bf16)
        spec["callback"]["progress_every_steps"] = 1
        # 1: crash after step 6; checkpoints at the epoch ends (steps 4, 8, 12), so step 4's is the last stored
        p = run_local(spec, tmp_path, "--crash-after-step", "6")
        assert p.returncode == job.CRASH_EXIT_CODE, p.stderr[-3000:]
        assert progress_steps(srv, 1) == [1, 2, 3, 4, 5, 6]
        assert [c["step"] for c in st.checkpoints] == [4] and st.checkpoints[0]["ok"]
        assert "completed" not in types(srv) and "failed" not in types(srv)
        # 2: the re-dispatched attempt, told the last checkpoint, in a new process
        again = copy.deepcopy(spec)
        again["attempt"] = 2
        again["resume"] = {"step": 4, "checkpoint_id": "ck-4"}
        p = run_local(again, tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
    assert progress_steps(srv, 2) == list(range(5, 13))  # never back to step 1
    assert_well_formed_attempt(srv, 2)
    ask = [d["data"] for d in srv.docs("urls") if d["attempt"] == 2 and d["data"]["purpose"] == "checkpoint_download"]
    assert ask == [{"purpose": "checkpoint_download", "step": 4, "checkpoint_id": "ck-4"}]
    done = [d["data"] for d in srv.docs("completed") if d["attempt"] == 2][0]
    assert done["steps"] == 12 and done["metrics"]["resumed_from_step"] == 4
    resumed = adapter(st.uploads["adapter_model.safetensors"])
    scale = max(float(t.abs().max()) for t in uninterrupted.values())
    worst = max(float((uninterrupted[k] - resumed[k]).abs().max()) for k in uninterrupted)
    assert worst <= TOLERANCE * scale, (worst, scale)


def assert_well_formed_attempt(srv: FakeServer, attempt: int) -> None:
    import jsonschema
    from conftest import load_contract

    v = jsonschema.Draft202012Validator(load_contract("callback.v1.schema.json"))
    cbs = [c for c in srv.state.callbacks if c.doc["attempt"] == attempt]
    assert [c.doc["seq"] for c in cbs] == list(range(1, len(cbs) + 1))
    for c in cbs:
        assert c.verified
        v.validate(c.doc)


def test_a_retry_of_the_same_attempt_finds_the_latest_checkpoint(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    """RunPod re-runs the same input after a crash: no resume in the spec,
    so the worker asks for the job's latest checkpoint, and one at the last
    step means the adapter is uploaded without training again."""
    st = state(toy_dataset)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=1)
        assert run_inprocess(spec, tmp_path / "a")["status"] == "completed"
        first = st.uploads.pop("adapter_model.safetensors")
        n = len(srv.state.callbacks)
        out = run_inprocess(spec, tmp_path / "b")
    assert out["status"] == "completed" and out["steps"] == 4
    later = [c.doc for c in srv.state.callbacks[n:]]
    assert [d["data"] for d in later if d["type"] == "urls" and d["data"]["purpose"] == "checkpoint_download"] == [{"purpose": "checkpoint_download"}]
    assert not [d for d in later if d["type"] == "progress"]  # nothing left to train
    done = [d["data"] for d in later if d["type"] == "completed"][0]
    assert done["metrics"]["resumed_from_step"] == 4 and done["steps"] == 4
    assert st.uploads["adapter_model.safetensors"] == first


def test_urls_are_asked_for_and_expired_ones_replaced(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    st = state(
        toy_dataset,
        expire_first={"dataset:dataset.jsonl": 1, "checkpoint:training_state.safetensors": 1, "artifact:adapter_model.safetensors": 2},
    )
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=2)
        out = run_inprocess(spec, tmp_path)
    assert out["status"] == "completed", out
    assert_well_formed(srv)
    assert st.refused_uses == [
        "dataset:dataset.jsonl",
        "checkpoint:training_state.safetensors",
        "artifact:adapter_model.safetensors",
        "artifact:adapter_model.safetensors",
    ]
    asked = [(d["data"]["purpose"], d["data"].get("retry", 0), d["data"].get("step")) for d in srv.docs("urls")]
    assert asked == [
        ("dataset", 0, None), ("dataset", 1, None), ("checkpoint_download", 0, None),
        ("checkpoint", 0, 4), ("checkpoint", 1, 4), ("checkpoint", 0, 8),
        ("artifact", 0, None), ("artifact", 1, None), ("artifact", 2, None),
    ]
    # a fresh set is asked for the files not yet uploaded only
    assert [f["name"] for f in srv.docs("urls")[4]["data"]["files"]] == ["training_state.safetensors", "trainer_state.json"]
    assert [c["step"] for c in st.checkpoints] == [4, 8] and all(c["ok"] for c in st.checkpoints)
    assert [c["data"]["partial"] for c in st.checkpoints] == [True, False]
    arts = {d["data"]["name"]: d["data"] for d in srv.docs("artifact")}
    assert arts["adapter_model.safetensors"]["size_bytes"] == len(st.uploads["adapter_model.safetensors"])
    t = types(srv, everything=True)
    assert t[-8:] == ["stage:save", "stage:upload", "urls", "urls", "urls", "artifact", "artifact", "completed"]
    done = srv.docs("completed")[0]["data"]["metrics"]
    assert done["checkpoints"] == 2 and done["checkpoint_bytes"] > 0


@pytest.mark.parametrize("status", [400, 404, 501])
def test_a_server_without_the_urls_route_gets_the_spec_urls_and_no_checkpoints(
    status: int, tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st = state(toy_dataset, urls_refused_with=status)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=2)
        out = run_inprocess(spec, tmp_path)
    assert out["status"] == "completed", out
    assert_well_formed(srv)
    assert [d["data"]["purpose"] for d in srv.docs("urls")] == ["dataset"]  # asked once, then never again
    assert not srv.docs("checkpoint") and not st.blobs and not (tmp_path / "work" / f"brightrun-{JOB}-1").exists()
    assert set(st.uploads) == {"adapter_config.json", "adapter_model.safetensors"}  # to the spec's URLs
    assert sum("does not hand out URLs" in r.getMessage() for r in caplog.records) == 1


def test_an_adapter_that_cannot_be_uploaded_is_kept_and_the_failure_says_where(
    tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path
) -> None:
    st = state(toy_dataset, expire_first={"artifact:adapter_model.safetensors": 99})
    kept = tmp_path / "kept"
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=1)
        spec["checkpoint_every_seconds"] = 600_000
        out = job.run(spec, job.Options(workdir=tmp_path / "work", kept_dir=kept, transfer_kwargs=FAST))
    assert out["code"] == "upload", out
    f = srv.docs("failed")[0]["data"]
    where = kept / f"{JOB}-1" / "adapter"
    assert f["stage"] == "upload" and "after 3 rounds of fresh URLs" in f["message"]
    assert f"The trained adapter is kept at {where}." in f["message"] and "resumes from its last checkpoint" in f["advice"]
    assert sorted(p.name for p in where.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    note = json.loads((kept / f"{JOB}-1" / "kept.json").read_text())
    assert note["job_id"] == JOB and {x["name"] for x in note["files"]} == {"adapter_config.json", "adapter_model.safetensors"}
    assert [d["data"].get("retry", 0) for d in srv.docs("urls") if d["data"]["purpose"] == "artifact"] == [0, 1, 2], srv.docs("urls")
    assert not (tmp_path / "work" / f"brightrun-{JOB}-1").exists()  # the rest of the work directory is gone


def test_the_spec_urls_refused_without_the_route_keep_the_adapter(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    st = state(toy_dataset, urls_refused_with=404, refuse_spec_puts=True)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=1)
        out = job.run(spec, job.Options(workdir=tmp_path / "work", kept_dir=tmp_path / "kept", transfer_kwargs=FAST))
    assert out["code"] == "upload"
    assert "HTTP 403" in out["error"] and "kept at" in out["error"]
    assert (tmp_path / "kept" / f"{JOB}-1" / "adapter" / "adapter_model.safetensors").is_file()


def test_eval_losses_reach_the_progress_and_completed_callbacks(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    st = state(toy_dataset)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=2)
        spec["validation"] = {"split": 0.25, "every_steps": 2}
        spec["callback"]["progress_every_steps"] = 100
        out = run_inprocess(spec, tmp_path)
    assert out["status"] == "completed"
    assert_well_formed(srv)
    progress = [d["data"] for d in srv.docs("progress")]
    evals = [(p["step"], p["eval_loss"]) for p in progress if "eval_loss" in p]
    assert [s for s, _ in evals] == [2, 4, 6]  # 6 training examples / batch 2 x 2 epochs; throttled progress still carries them
    m = srv.docs("completed")[0]["data"]["metrics"]
    assert m["eval_loss"] == evals[-1][1] and m["eval_examples"] == 2 and m["evaluations"] == 3
    assert m["train_examples"] == 6 and m["examples"] == 8 and m["dataset_tokens_trained"] == spec["dataset"]["tokens_trained"]
    assert "dataset_tokens_trained_expected" not in m  # the whole file's counts still match the validator's
    assert srv.docs("completed")[0]["data"]["tokens_trained"] < 2 * spec["dataset"]["tokens_trained"]


def test_cancel_during_model_load(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel that arrives while the base model loads stops the load at
    its next phase: the job reports cancelled in the load stage, nothing trains."""
    from transformers import modeling_utils as mu

    cancel = threading.Event()
    real = mu.load_shard_file

    def load_shard_file(args: Any) -> Any:
        cancel.set()  # RunPod's stop signal, in the middle of the load
        return real(args)

    monkeypatch.setattr(mu, "load_shard_file", load_shard_file)
    st = state(toy_dataset)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB)
        out = run_inprocess(spec, tmp_path, cancel=cancel)
    assert out["code"] == "cancelled", out
    f = srv.docs("failed")[0]["data"]
    assert f["stage"] == "load" and f["message"] == "The job was cancelled during load (RunPod stop signal)."
    assert "stage:train" not in types(srv) and not srv.docs("progress")
    assert mu.load_shard_file is load_shard_file  # the worker's shard hook is gone again
    assert handler.with_refresh(out)["refresh_worker"] is True


def test_a_cancelled_or_oom_job_asks_runpod_for_a_fresh_worker(tiny_model_dir: Path, toy_dataset: bytes) -> None:
    def answer(doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if doc["type"] == "progress" and doc["data"]["step"] >= 2:
            return 200, {"action": "stop", "reason": "cancelled by the user"}
        return 200, {"action": "continue"}

    with FakeServer(state(toy_dataset, answer=answer)) as srv:
        out = run_sdk_job(tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=10), keep_stop_pod=True)
    assert out["code"] == "cancelled" and out["stopPod"] is True and "refresh_worker" not in out
    assert handler.with_refresh({"code": "oom"})["refresh_worker"] is True
    assert "refresh_worker" not in handler.with_refresh({"code": "dataset_invalid"})
    assert "refresh_worker" not in handler.with_refresh({"status": "completed"})


def test_the_grace_period_waits_for_one_micro_batch() -> None:
    assert handler.grace_seconds(None) == handler.CANCEL_GRACE_MIN_SECONDS
    assert handler.grace_seconds(job.Pace(max_micro_batch_seconds=2.0)) == handler.CANCEL_GRACE_MIN_SECONDS
    assert handler.grace_seconds(job.Pace(max_micro_batch_seconds=100.0)) == 180.0
    assert handler.grace_seconds(job.Pace(max_micro_batch_seconds=10_000.0)) == handler.CANCEL_GRACE_MAX_SECONDS


def test_a_checkpoint_that_cannot_be_used_is_skipped_and_the_run_trains_from_step_one(
    tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path
) -> None:
    st = state(toy_dataset)
    with FakeServer(st) as srv:
        spec = tiny_spec(srv.base, tiny_model_dir, toy_dataset, job_id=JOB, epochs=1)
        assert run_inprocess(spec, tmp_path / "a")["status"] == "completed"
        assert [c["step"] for c in st.checkpoints] == [4]
        # other settings: the fingerprint differs
        other = copy.deepcopy(spec)
        other.update(attempt=2, resume={"step": 4})
        other["hyperparameters"]["learning_rate"] = 5e-4
        assert run_inprocess(other, tmp_path / "b")["status"] == "completed"
        # the stored files were damaged: the sha256 check refuses them
        st.blobs["checkpoints/step-4/training_state.safetensors"] = b"garbage"
        again = copy.deepcopy(spec)
        again.update(attempt=3, resume={"step": 4})
        assert run_inprocess(again, tmp_path / "c")["status"] == "completed"
    for attempt, why in ((2, "it belongs to a run with other settings or data"), (3, "does not match its checksum")):
        assert progress_steps(srv, attempt)[0] == 1
        m = [d["data"]["metrics"] for d in srv.docs("completed") if d["attempt"] == attempt][0]
        assert "resumed_from_step" not in m and why in m["resume_skipped"], m["resume_skipped"]
