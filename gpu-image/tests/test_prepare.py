"""The 4-bit copy of a base model (brightrun_worker.prepare), on the tiny
Qwen3-Next: what it writes, that it happens once and atomically under
concurrent preparers and crashes, the handler's prepare_model job, and a
QLoRA run on the prepared copy whose adapter peft loads on the BF16 base."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from conftest import FIXTURES, GPU_IMAGE, REPO, tiny_spec

from brightrun_worker import errors, handler, prepare
from brightrun_worker.registry import QLORA_SKIP_MODULES

FAST = prepare.LockSettings(heartbeat_seconds=0.05, stale_seconds=30.0, poll_seconds=0.05)
HUB_ID = "Qwen/Qwen3-Next-80B-A3B-Instruct"


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def siblings(out: Path) -> list[str]:
    """What lies beside the copy other than the source: the leftovers."""
    return sorted(n for n in os.listdir(out.parent) if n not in (out.name, "Tiny-Next"))


def new_source(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """A models root laid out as on the volume: <root>/Qwen/Tiny-Next and its -bnb-nf4 copy."""
    src = tmp_path / "models" / "Qwen" / "Tiny-Next"
    shutil.copytree(tiny_model_dir, src)
    return src, src.with_name("Tiny-Next-bnb-nf4")


@pytest.fixture(scope="module")
def prepared(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    src, out = new_source(tmp_path_factory.mktemp("prepared"), tiny_model_dir)
    events: list[dict[str, Any]] = []
    summary = prepare.prepare(src, out, progress=events.append, lock=FAST)
    return dict(source=src, out=out, summary=summary, events=events)


# -- what the copy holds --------------------------------------------------------


def test_the_copy_has_weights_config_tokenizer_and_manifest(prepared: dict[str, Any]) -> None:
    src, out, summary = prepared["source"], prepared["out"], prepared["summary"]
    assert summary["status"] == "prepared" and summary["out"] == str(out)
    names = set(os.listdir(out))
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", prepare.MANIFEST} <= names
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / name).read_bytes() == (src / name).read_bytes(), name
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "bitsandbytes" and q["load_in_4bit"] is True
    assert q["bnb_4bit_quant_type"] == "nf4" and q["bnb_4bit_use_double_quant"] is True
    assert q["bnb_4bit_compute_dtype"] == "bfloat16"
    assert q["llm_int8_skip_modules"] == list(QLORA_SKIP_MODULES)
    assert siblings(out) == [], "the temporary directory or the lock was left behind"


def test_experts_are_saved_in_4_bits_and_router_gates_lm_head_in_bf16(prepared: dict[str, Any]) -> None:
    from safetensors import safe_open

    with safe_open(str(prepared["out"] / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    for layer in range(4):
        p = f"model.layers.{layer}.mlp."
        for e in range(4):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                k = f"{p}experts.{e}.{proj}.weight"
                assert dtypes[k] == "U8" and f"{k}.quant_state.bitsandbytes__nf4" in dtypes, k
                assert f"{k}.nested_absmax" in dtypes, f"{k}: no double quantization"
        assert dtypes[f"{p}shared_expert.up_proj.weight"] == "U8"
        assert dtypes[f"{p}gate.weight"] == "BF16"
        assert dtypes[f"{p}shared_expert_gate.weight"] == "BF16"
    assert dtypes["lm_head.weight"] == "BF16"
    assert not any(k.startswith(("lm_head.", "model.embed_tokens.")) and "quant_state" in k for k in dtypes)


def test_the_manifest_records_source_settings_versions_and_files(prepared: dict[str, Any]) -> None:
    src, out = prepared["source"], prepared["out"]
    m = json.loads((out / prepare.MANIFEST).read_text())
    assert tuple(m) == prepare.MANIFEST_FIELDS
    assert m["format"] == "brightrun-prepared" and m["format_version"] == 1 and m["kind"] == "bnb-nf4"
    assert m["source"]["hub_id"] == "Qwen/Tiny-Next" and m["source"]["path"] == str(src)
    want_src = sorted(p.name for p in src.iterdir() if p.is_file())
    assert [f["name"] for f in m["source"]["files"]] == want_src
    for f in m["source"]["files"]:
        assert f["size_bytes"] == (src / f["name"]).stat().st_size and f["sha256"] == sha256(src / f["name"])
    assert m["quantization"]["llm_int8_skip_modules"] == list(QLORA_SKIP_MODULES)
    assert m["quantization"]["bnb_4bit_quant_type"] == "nf4" and m["quantization"]["bnb_4bit_use_double_quant"] is True
    assert {"torch", "transformers", "bitsandbytes", "peft", "brightrun_worker"} <= set(m["versions"])
    assert all(m["versions"][k] for k in ("torch", "transformers", "bitsandbytes", "peft", "brightrun_worker"))
    assert sorted(f["name"] for f in m["files"]) == sorted(set(os.listdir(out)) - {prepare.MANIFEST})
    for f in m["files"]:
        assert f["size_bytes"] == (out / f["name"]).stat().st_size and f["sha256"] == sha256(out / f["name"])
    assert m["bytes"] == sum(f["size_bytes"] for f in m["files"])
    assert {"quantize_seconds", "save_seconds", "hash_output_seconds", "total_seconds"} <= set(m["timings"])
    assert m["created_at"].endswith("+00:00") and m["device"] == "cpu"


def test_progress_goes_through_the_stages_with_files_and_bytes(prepared: dict[str, Any]) -> None:
    events = prepared["events"]
    stages = [e["stage"] for e in events]
    order = list(dict.fromkeys(stages))
    assert order == ["check", "quantize", "save", "hash_output", "publish", "done"], order
    quantize = [e for e in events if e["stage"] == "quantize"]
    assert quantize[-1]["bytes_done"] == quantize[-1]["bytes_total"] > 0
    assert quantize[-1]["files_done"] == quantize[-1]["files_total"] == 5
    hashed = [e for e in events if e["stage"] == "hash_output"][-1]
    assert hashed["files_done"] == hashed["files_total"] and hashed["bytes_done"] == hashed["bytes_total"]
    assert all(set(e) >= {"files_done", "files_total", "bytes_done", "bytes_total", "elapsed_seconds"} for e in events)


def test_the_copy_loads_back_as_linear4bit(prepared: dict[str, Any]) -> None:
    import torch
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(prepared["out"]), dtype=torch.bfloat16, device_map={"": "cpu"}, local_files_only=True
    )
    mlp = model.model.layers[0].mlp
    assert isinstance(mlp.experts[0].down_proj, Linear4bit) and isinstance(mlp.shared_expert.gate_proj, Linear4bit)
    assert not isinstance(mlp.gate, Linear4bit) and mlp.gate.weight.dtype == torch.bfloat16
    assert not isinstance(model.lm_head, Linear4bit) and model.lm_head.weight.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(logits).all()


def test_verify_passes_on_the_fresh_copy(prepared: dict[str, Any]) -> None:
    res = prepare.verify(prepared["out"], sha256=True)
    assert res["status"] == "verified" and res["sha256_checked"] is True and res["files"] == 5


# -- once, and atomically --------------------------------------------------------


def test_a_second_prepare_is_a_no_op_that_says_so(prepared: dict[str, Any]) -> None:
    out = prepared["out"]
    before = {n: (out / n).stat().st_mtime_ns for n in os.listdir(out)}
    res = prepare.prepare(prepared["source"], out, lock=FAST)
    assert res["status"] == "exists" and "already prepared" in res["message"] and "nothing to do" in res["message"]
    assert {n: (out / n).stat().st_mtime_ns for n in os.listdir(out)} == before
    assert siblings(out) == []


def test_two_concurrent_preparers_make_one_complete_copy(tiny_model_dir: Path, tmp_path: Path) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)
    start = threading.Barrier(2)
    results: list[Any] = [None, None]

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = prepare.prepare(src, out, lock=FAST)
        except BaseException as e:  # noqa: BLE001 - asserted below
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(r, dict) for r in results), results
    assert sorted(r["status"] for r in results) == ["exists", "prepared"]
    assert siblings(out) == []
    prepare.verify(out, sha256=True)


def test_a_second_process_waits_for_the_first_and_finds_the_copy_done(tiny_model_dir: Path, tmp_path: Path) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)
    # The first preparer, another live process on this host, is slow to save.
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from brightrun_worker import prepare\n"
        "def slow(e):\n"
        "    if e['stage'] == 'save':\n"
        "        print('building', flush=True)\n"
        "        time.sleep(1.5)\n"
        "s = prepare.prepare(Path(sys.argv[1]), Path(sys.argv[2]), progress=slow,\n"
        "    lock=prepare.LockSettings(heartbeat_seconds=0.05, stale_seconds=30, poll_seconds=0.05))\n"
        "print(s['status'], flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(GPU_IMAGE), OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-c", code, str(src), str(out)], cwd=GPU_IMAGE, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "building"
        waited: list[dict[str, Any]] = []
        res = prepare.prepare(src, out, progress=waited.append, lock=FAST)
        assert first.wait(120) == 0 and first.stdout.read().strip() == "prepared"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert res["status"] == "exists" and "by another preparer while this one waited" in res["message"]
    assert res["lock"]["waited_seconds"] > 0.5 and res["lock"]["took_over_from"] is None
    assert any(e["stage"] == "waiting" for e in waited)
    assert siblings(out) == []
    prepare.verify(out, sha256=True)


@pytest.mark.parametrize(
    "when",
    [
        pytest.param(lambda e: e["stage"] == "quantize" and e["bytes_done"] > 0, id="while-reading-the-source"),
        pytest.param(lambda e: e["stage"] == "save", id="before-saving"),
        pytest.param(lambda e: e["stage"] == "hash_output" and e["files_done"] >= 1, id="after-saving"),
        pytest.param(lambda e: e["stage"] == "publish", id="before-publishing"),
    ],
)
def test_a_crash_mid_way_leaves_no_copy_and_a_rerun_succeeds(tiny_model_dir: Path, tmp_path: Path, when: Any) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)

    def crash(e: dict[str, Any]) -> None:
        if when(e):
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare.prepare(src, out, progress=crash, lock=FAST)
    assert not out.exists()
    assert siblings(out) == []
    assert prepare.prepare(src, out, lock=FAST)["status"] == "prepared"
    prepare.verify(out, sha256=True)


def test_a_killed_preparer_leaves_leftovers_that_the_next_run_removes(tiny_model_dir: Path, tmp_path: Path) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)
    # The process dies without any clean-up (as under kill -9) once the
    # weights are written: its temporary copy and its lock stay behind.
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from brightrun_worker import prepare\n"
        "def die(e):\n"
        "    if e['stage'] == 'hash_output':\n"
        "        os._exit(3)\n"
        "prepare.prepare(Path(sys.argv[1]), Path(sys.argv[2]), progress=die)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(GPU_IMAGE), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", code, str(src), str(out)], cwd=GPU_IMAGE, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 3, p.stderr
    left = siblings(out)
    assert not out.exists()
    assert any(n.startswith(".Tiny-Next-bnb-nf4.tmp-") for n in left) and ".Tiny-Next-bnb-nf4.lock" in left, left

    res = prepare.prepare(src, out, lock=FAST)
    assert res["status"] == "prepared"
    assert res["lock"]["took_over_from"].startswith(prepare._host() + " pid "), res["lock"]
    assert siblings(out) == []
    prepare.verify(out, sha256=True)


def write_lock(out: Path, owner: dict[str, Any]) -> Path:
    lock = out.parent / f".{out.name}.lock"
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text(json.dumps(owner))
    return lock


def test_a_stale_lock_of_another_host_is_taken_over(tiny_model_dir: Path, tmp_path: Path) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)
    write_lock(out, {"token": "t0", "host": "worker-elsewhere", "pid": 7, "heartbeat": 3})
    t0 = time.monotonic()
    res = prepare.prepare(src, out, lock=prepare.LockSettings(heartbeat_seconds=0.05, stale_seconds=0.3, poll_seconds=0.05))
    assert res["status"] == "prepared" and res["lock"]["took_over_from"] == "worker-elsewhere pid 7"
    assert time.monotonic() - t0 >= 0.3
    assert siblings(out) == []


def test_a_live_lock_is_waited_for_not_taken(tiny_model_dir: Path, tmp_path: Path) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)
    lock = write_lock(out, {"token": "t0", "host": "worker-elsewhere", "pid": 7, "heartbeat": 0})
    stop = threading.Event()

    def beat() -> None:
        n = 0
        while not stop.wait(0.05):
            n += 1
            (lock / "owner.json").write_text(json.dumps({"token": "t0", "host": "worker-elsewhere", "pid": 7, "heartbeat": n}))

    t = threading.Thread(target=beat)
    t.start()
    waiting: list[dict[str, Any]] = []
    try:
        with pytest.raises(errors.WorkerError) as ei:
            prepare.prepare(
                src,
                out,
                progress=waiting.append,
                lock=prepare.LockSettings(heartbeat_seconds=0.05, stale_seconds=0.3, poll_seconds=0.05, wait_seconds=1.0),
            )
    finally:
        stop.set()
        t.join()
    assert "worker-elsewhere pid 7" in ei.value.message
    assert any(e["stage"] == "waiting" for e in waiting)
    assert json.loads((lock / "owner.json").read_text())["token"] == "t0", "a live lock was taken over"
    assert not out.exists()


# -- verify and errors --------------------------------------------------------


def test_verify_catches_a_truncated_file_and_a_changed_byte(prepared: dict[str, Any], tmp_path: Path) -> None:
    copy = tmp_path / "models" / "Qwen" / "Tiny-Next-bnb-nf4"
    shutil.copytree(prepared["out"], copy)
    weights = copy / "model.safetensors"
    data = weights.read_bytes()

    weights.write_bytes(data[:-10])
    with pytest.raises(errors.WorkerError) as ei:
        prepare.verify(copy)
    assert ei.value.code == errors.MODEL_LOAD
    assert f"model.safetensors has {len(data) - 10} bytes, the manifest says {len(data)}" in ei.value.message
    assert "--force" in ei.value.advice
    assert not prepare.is_complete(copy)
    with pytest.raises(errors.WorkerError) as ei:
        prepare.prepare(prepared["source"], copy, lock=FAST)
    assert "exists but is not a complete prepared copy" in ei.value.message

    weights.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    prepare.verify(copy)  # sizes agree
    with pytest.raises(errors.WorkerError) as ei:
        prepare.verify(copy, sha256=True)
    assert "model.safetensors has sha256" in ei.value.message

    res = prepare.prepare(prepared["source"], copy, force=True, lock=FAST)
    assert res["status"] == "prepared"
    prepare.verify(copy, sha256=True)
    assert sorted(os.listdir(copy.parent)) == ["Tiny-Next-bnb-nf4"]


def _no_config(src: Path) -> None:
    (src / "config.json").unlink()


def _no_weights(src: Path) -> None:
    (src / "model.safetensors").unlink()


def _missing_shard(src: Path) -> None:
    (src / "model.safetensors").rename(src / "model-00001-of-00002.safetensors")
    weight_map = {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _no_tokenizer(src: Path) -> None:
    (src / "tokenizer.json").unlink()


def _already_quantized(src: Path) -> None:
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (src / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "damage, message, advice",
    [
        (lambda src: shutil.rmtree(src), "does not exist", "docs/deploy.md"),
        (_no_config, "has no config.json", "docs/deploy.md"),
        (_no_weights, "no weights", "docs/deploy.md"),
        (_missing_shard, "incomplete: 1 of 2 weight files are missing (model-00002-of-00002.safetensors)", "download again"),
        (_no_tokenizer, "has no tokenizer.json", "docs/deploy.md"),
        (_already_quantized, "already quantized", "unquantized checkpoint"),
    ],
    ids=["missing", "no-config", "no-weights", "missing-shard", "no-tokenizer", "already-quantized"],
)
def test_a_bad_source_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path, damage: Any, message: str, advice: str) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)
    damage(src)
    with pytest.raises(errors.WorkerError) as ei:
        prepare.prepare(src, out, lock=FAST)
    assert ei.value.code == errors.MODEL_LOAD
    assert message in ei.value.message and advice in ei.value.advice, (ei.value.message, ei.value.advice)
    assert not out.exists() and siblings(out) == []


def test_too_little_space_fails_before_any_work(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(prepare.shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 1000, 1000))
    with pytest.raises(errors.WorkerError) as ei:
        prepare.prepare(src, out, lock=FAST)
    assert ei.value.code == errors.MODEL_LOAD and "Not enough space" in ei.value.message
    assert "Enlarge the network volume" in ei.value.advice
    assert not out.exists() and siblings(out) == []


def test_without_bitsandbytes_it_says_what_to_install(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = new_source(tmp_path, tiny_model_dir)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(errors.WorkerError) as ei:
        prepare.prepare(src, out, lock=FAST)
    assert ei.value.code == errors.MODEL_LOAD and "needs bitsandbytes" in ei.value.message
    assert "requirements" in ei.value.advice and "prepare-model" in ei.value.advice
    assert not out.exists() and siblings(out) == []


def test_the_command_line_prints_json_on_stdout_and_progress_on_stderr(prepared: dict[str, Any], tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(GPU_IMAGE))
    cmd = [sys.executable, "-m", "brightrun_worker.prepare"]
    ok = subprocess.run(cmd + ["--out", str(prepared["out"]), "--verify", "--sha256"], cwd=GPU_IMAGE, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "verified" and "prepare: verify" in ok.stderr
    bad = subprocess.run(
        cmd + ["--source", str(tmp_path / "nothing"), "--out", str(tmp_path / "nothing-bnb-nf4")],
        cwd=GPU_IMAGE, env=env, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)
    assert doc["code"] == "model_load" and "does not exist" in doc["error"] and doc["advice"]


def test_missing_model_advice_names_the_command_and_the_guide_section() -> None:
    nf4 = prepare.missing_model_advice(f"/runpod-volume/models/{HUB_ID}-bnb-nf4", HUB_ID)
    assert f"go run ./infra/provision prepare-model --endpoint ENDPOINT_ID --model {HUB_ID}" in nf4
    bf16 = prepare.missing_model_advice(f"/runpod-volume/models/{HUB_ID}", HUB_ID)
    assert f"huggingface-cli download {HUB_ID} --local-dir /workspace/models/{HUB_ID}" in bf16
    guide = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    for advice in (nf4, bf16):
        section = advice.split('"')[1]
        assert f"## {section}\n" in guide, f"docs/deploy.md has no section {section!r}"
    assert f"go run ./infra/provision prepare-model --endpoint ENDPOINT_ID --model {HUB_ID}" in guide


# -- the RunPod job --------------------------------------------------------------


def run_handler(job_input: Any) -> dict[str, Any]:
    return asyncio.run(handler.handler({"id": "rp-prepare-1", "input": job_input}))


@pytest.fixture
def models_root(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    src, _ = new_source(tmp_path, tiny_model_dir)
    root = src.parent.parent
    monkeypatch.setenv(handler.MODELS_ROOT_ENV, str(root))
    return root


def test_the_handler_prepares_the_copy_and_reports_progress(models_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(handler, "_runpod_progress", lambda rp_job: sent.append)
    src, out = models_root / "Qwen" / "Tiny-Next", models_root / "Qwen" / "Tiny-Next-bnb-nf4"
    res = run_handler({"action": "prepare_model", "source": str(src), "out": str(out), "hub_id": "Qwen/Tiny-Next"})
    assert res["status"] == "prepared" and "error" not in res
    assert prepare.is_complete(out)
    stages = list(dict.fromkeys(e["stage"] for e in sent))
    assert stages == ["check", "quantize", "save", "hash_output", "publish", "done"], stages
    assert all(set(e) == {"stage", "files_done", "files_total", "bytes_done", "bytes_total", "elapsed_seconds"} for e in sent)
    again = run_handler({"action": "prepare_model", "source": str(src), "out": str(out)})
    assert again["status"] == "exists"


@pytest.mark.parametrize(
    "source, out, message",
    [
        ("/etc", "{root}/Qwen/x-bnb-nf4", "is not below the models root"),
        ("{root}/Qwen/Tiny-Next", "{root}/../x-bnb-nf4", "must not contain '..'"),
        ("{root}/Qwen/Tiny-Next", "{root}/Qwen/../../x", "must not contain '..'"),
        ("Qwen/Tiny-Next", "{root}/Qwen/x", "must be an absolute path"),
        ("{root}", "{root}/Qwen/x", "is not below the models root"),
        ("{root}/Qwen/Tiny-Next", "{root}/escape/x-bnb-nf4", "through a symbolic link"),
        ("{root}/Qwen/Tiny-Next", 42, "must be a directory path"),
        ("{root}/Qwen/Tiny-Next", None, "must be a directory path"),
    ],
)
def test_the_handler_refuses_paths_outside_the_models_root(models_root: Path, tmp_path: Path, source: str, out: Any, message: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (models_root / "escape").symlink_to(outside)
    fill = lambda v: v.format(root=models_root) if isinstance(v, str) else v  # noqa: E731
    res = run_handler({"action": "prepare_model", "source": fill(source), "out": fill(out)})
    assert res["code"] == errors.SPEC_INVALID and message in res["error"], res
    assert list(outside.iterdir()) == [] and not (models_root / "x-bnb-nf4").exists()


def test_the_handler_refuses_unknown_fields_and_a_non_boolean_force(models_root: Path) -> None:
    src, out = str(models_root / "Qwen" / "Tiny-Next"), str(models_root / "Qwen" / "Tiny-Next-bnb-nf4")
    res = run_handler({"action": "prepare_model", "source": src, "out": out, "dry_run": True})
    assert res["code"] == errors.SPEC_INVALID and "dry_run" in res["error"]
    res = run_handler({"action": "prepare_model", "source": src, "out": out, "force": "yes"})
    assert res["code"] == errors.SPEC_INVALID and "force" in res["error"]


def test_the_default_models_root_is_the_serverless_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(handler.MODELS_ROOT_ENV, raising=False)
    assert handler._models_root() == Path("/runpod-volume/models")
    res = run_handler({"action": "prepare_model", "source": "/workspace/models/Qwen/X", "out": "/runpod-volume/models/Qwen/X-bnb-nf4"})
    assert res["code"] == errors.SPEC_INVALID and "/runpod-volume/models" in res["error"]


def test_a_cancelled_preparation_publishes_nothing(models_root: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    out = models_root / "Qwen" / "Tiny-Next-bnb-nf4"
    res = handler.prepare_job({"action": "prepare_model", "source": str(models_root / "Qwen" / "Tiny-Next"), "out": str(out)}, cancel)
    assert res["code"] == errors.CANCELLED and "nothing was published" in res["error"]
    assert not out.exists()


def test_other_input_still_goes_to_the_training_job(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(handler.job, "run", lambda job_input, opts: seen.append((job_input, opts)) or {"status": "completed"})
    assert run_handler({"job_id": "job_1"}) == {"status": "completed"}
    assert seen[0][0] == {"job_id": "job_1"} and seen[0][1].runpod_job_id == "rp-prepare-1"
    assert seen[0][1].cancel is not None


# -- end to end: prepare → load → train → adapter on the BF16 base ----------------


class Hooks:
    def __init__(self) -> None:
        self.losses: list[float] = []

    def progress(self, p: Any) -> None:
        self.losses.append(p.loss)

    def stop_error(self) -> Optional[errors.WorkerError]:
        return None


def test_prepare_then_qlora_train_on_the_copy_and_the_adapter_loads_on_the_bf16_base(
    prepared: dict[str, Any], toy_dataset: bytes, tmp_path: Path
) -> None:
    import torch
    from bitsandbytes.nn import Linear4bit
    from peft import PeftModel
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from brightrun_worker import spec as spec_mod, train
    from brightrun_worker.data import build, read_jsonl

    src, out = prepared["source"], prepared["out"]
    d = tiny_spec("http://127.0.0.1:9", out, toy_dataset, epochs=3, lora_rank=16, lora_alpha=128, learning_rate=1e-3)
    d["base_model"]["quantization"] = "nf4"
    spec = spec_mod.parse(d)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    examples, _ = build(tok, read_jsonl(FIXTURES / "toy_chat.jsonl"), max_seq_length=256, rule_name="chatml-no-think")

    session = train.load_model(spec)
    try:
        assert session.quantization == "nf4"
        assert any(isinstance(m, Linear4bit) for m in session.model.modules()), "the prepared copy loaded without 4-bit layers"
        hooks = Hooks()
        result = train.fit(session, examples, spec, hooks, tmp_path, pad_id=tok.token_to_id("<|endoftext|>"))
        files = train.save_adapter(session, tmp_path / "adapter", spec.base_model.id)
    finally:
        train.release(session)
    assert result.steps == 12 and all(map(lambda x: x == x, hooks.losses))
    assert result.final_loss < result.initial_loss, (result.initial_loss, result.final_loss)
    assert json.loads(files["adapter_config.json"].read_text())["base_model_name_or_path"] == HUB_ID

    ex = examples[0]
    ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
    base = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.bfloat16, local_files_only=True)
    base.eval()
    with torch.no_grad():
        before = base(input_ids=ids, labels=labels)
    tuned = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    tuned.eval()
    with torch.no_grad():
        after = tuned(input_ids=ids, labels=labels)
    assert not torch.allclose(before.logits.float(), after.logits.float(), atol=1e-3)
    assert after.loss < before.loss, (before.loss, after.loss)
