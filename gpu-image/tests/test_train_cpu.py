"""Real training on the CPU: a tiny random Qwen3-Next (same architecture and
module names as the 80B model) learns a toy chat set through the worker's own
load / fit / save code."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from conftest import FIXTURES, tiny_spec
from safetensors.torch import load_file
from tokenizers import Tokenizer

from brightrun_worker import errors, spec as spec_mod, train
from brightrun_worker.data import build, read_jsonl
from brightrun_worker.registry import QWEN3_NEXT_LORA_TARGETS

HP = dict(epochs=10, lora_rank=16, lora_alpha=128, learning_rate=1e-3, batch_size=2, gradient_accumulation=1)


@dataclass
class Recorder:
    stop_after: Optional[int] = None
    steps: list[Any] = field(default_factory=list)

    def progress(self, p: Any) -> None:
        self.steps.append(p)

    def stop_error(self) -> Optional[errors.WorkerError]:
        if self.stop_after is not None and len(self.steps) >= self.stop_after:
            return errors.WorkerError(errors.CANCELLED, "stop requested by the test")
        return None


def make_spec(model_dir: Path, dataset: bytes, **hp: Any) -> spec_mod.JobSpec:
    return spec_mod.parse(tiny_spec("http://127.0.0.1:9", model_dir, dataset, **{**HP, **hp}))


def examples_for(model_dir: Path):
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    examples, stats = build(tok, read_jsonl(FIXTURES / "toy_chat.jsonl"), max_seq_length=256, rule_name="chatml-no-think")
    return examples, tok.token_to_id("<|endoftext|>")


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, toy_dataset: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    spec = make_spec(tiny_model_dir, toy_dataset)
    examples, pad_id = examples_for(tiny_model_dir)
    t0 = time.monotonic()
    session = train.load_model(spec)
    rec = Recorder()
    work = tmp_path_factory.mktemp("train")
    result = train.fit(session, examples, spec, rec, work, pad_id=pad_id)
    files = train.save_adapter(session, work / "adapter", spec.base_model.id)
    elapsed = time.monotonic() - t0
    print(
        f"\nCPU training: {result.steps} steps, loss {result.initial_loss:.3f} -> {result.final_loss:.3f}, "
        f"train {result.train_seconds:.1f}s, total {elapsed:.1f}s, {result.tokens_seen} tokens"
    )
    out = dict(spec=spec, session=session, result=result, rec=rec, files=files, adapter=work / "adapter")
    yield out
    train.release(session)


def test_loss_falls_by_a_clear_margin(run: dict[str, Any]) -> None:
    r, rec = run["result"], run["rec"]
    assert r.steps == r.total_steps == 40  # 8 examples / batch 2 x 10 epochs
    assert [p.step for p in rec.steps] == list(range(1, 41))
    first = sum(p.loss for p in rec.steps[:4]) / 4
    last = sum(p.loss for p in rec.steps[-4:]) / 4
    assert last < 0.6 * first, (first, last)
    assert r.final_loss < 0.6 * r.initial_loss
    assert r.tokens_seen > 0 and r.peak_gpu_memory_bytes == 0


def test_lora_sits_on_exactly_the_intended_modules(run: dict[str, Any]) -> None:
    names = run["session"].lora_modules
    targets = set(QWEN3_NEXT_LORA_TARGETS)
    assert set(run["spec"].base_model.lora_targets) == targets
    for n in names:
        matches = [t for t in targets if n == t or n.endswith("." + t)]
        assert len(matches) == 1, n
        assert ".experts." not in n and not n.endswith("mlp.gate") and "shared_expert_gate" not in n
    # 1 full-attention layer x 4 + 3 linear-attention layers x 3 + 4 shared experts x 3
    assert len(names) == 4 + 9 + 12
    assert {t for n in names for t in targets if n.endswith("." + t)} == targets
    trainable = {n for n, p in run["session"].model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_training_settings(run: dict[str, Any]) -> None:
    model = run["session"].model
    assert model.config.use_cache is False
    assert model.base_model.model.model.gradient_checkpointing is True
    assert run["session"].quantization == "none (cpu)" and run["session"].device == "cpu"


def test_adapter_files(run: dict[str, Any]) -> None:
    cfg = json.loads(run["files"]["adapter_config.json"].read_text())
    assert cfg["base_model_name_or_path"] == "Qwen/Qwen3-Next-80B-A3B-Instruct"
    assert cfg["r"] == 16 and cfg["lora_alpha"] == 128 and cfg["peft_type"] == "LORA"
    assert set(cfg["target_modules"]) == set(QWEN3_NEXT_LORA_TARGETS)
    tensors = load_file(str(run["files"]["adapter_model.safetensors"]))
    assert len(tensors) == 2 * 25
    assert all(".lora_A." in k or ".lora_B." in k for k in tensors)
    assert not any(".experts." in k or "mlp.gate." in k or "shared_expert_gate" in k for k in tensors)


def test_adapter_loads_with_peft_and_changes_the_output(run: dict[str, Any], tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    examples, _ = examples_for(tiny_model_dir)
    ex = examples[0]
    ids = torch.tensor([ex.input_ids])
    labels = torch.tensor([ex.labels])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32, local_files_only=True)
    base.eval()
    with torch.no_grad():
        before = base(input_ids=ids, labels=labels)
    tuned = PeftModel.from_pretrained(base, str(run["adapter"]))
    tuned.eval()
    with torch.no_grad():
        after = tuned(input_ids=ids, labels=labels)
    assert not torch.allclose(before.logits, after.logits, atol=1e-3)
    assert after.loss < 0.6 * before.loss, (before.loss, after.loss)


def test_stop_request_ends_training_at_the_next_step(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, toy_dataset, epochs=5)
    examples, pad_id = examples_for(tiny_model_dir)
    session = train.load_model(spec)
    rec = Recorder(stop_after=3)
    try:
        with pytest.raises(errors.WorkerError) as ei:
            train.fit(session, examples, spec, rec, tmp_path, pad_id=pad_id)
    finally:
        train.release(session)
    assert ei.value.code == errors.CANCELLED
    assert len(rec.steps) in (3, 4)


def test_nan_loss_is_detected(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, toy_dataset, epochs=5, learning_rate=4e-4)
    examples, pad_id = examples_for(tiny_model_dir)
    session = train.load_model(spec)
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 2 else output

    session.model.base_model.model.lm_head.register_forward_hook(poison)
    rec = Recorder()
    try:
        with pytest.raises(errors.WorkerError) as ei:
            train.fit(session, examples, spec, rec, tmp_path, pad_id=pad_id)
    finally:
        train.release(session)
    e = ei.value
    assert e.code == errors.NAN_LOSS
    assert e.message == "The training loss became nan at step 3; the run diverged."
    assert e.advice == "Lower learning_rate from 0.0004 to 0.0001 and retry."
    assert len(rec.steps) == 2


def test_missing_model_is_a_model_load_error(tmp_path: Path, toy_dataset: bytes) -> None:
    spec = make_spec(tmp_path, toy_dataset)
    with pytest.raises(errors.WorkerError) as ei:
        train.load_model(spec)
    assert ei.value.code == errors.MODEL_LOAD and "config.json is missing" in ei.value.message


def test_unmatched_target_is_a_model_load_error(tiny_model_dir: Path, toy_dataset: bytes) -> None:
    d = tiny_spec("http://127.0.0.1:9", tiny_model_dir, toy_dataset, **HP)
    d["base_model"]["lora_targets"] = ["q_proj", "no_such_proj"]
    with pytest.raises(errors.WorkerError) as ei:
        train.load_model(spec_mod.parse(d))
    assert ei.value.code == errors.MODEL_LOAD and "no_such_proj" in ei.value.message
