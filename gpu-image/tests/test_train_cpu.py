"""Real training on the CPU: a tiny random Qwen3-Next (same architecture and
module names as the 80B model) learns a toy chat set through the worker's own
load / fit / save code, in 4-bit NF4 (bitsandbytes runs it on the CPU) as the
default job does, and in BF16."""

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


def make_spec_q(model_dir: Path, dataset: bytes, quantization: str, **hp: Any) -> spec_mod.JobSpec:
    d = tiny_spec("http://127.0.0.1:9", model_dir, dataset, **{**HP, **hp})
    d["base_model"]["quantization"] = quantization
    return spec_mod.parse(d)


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, toy_dataset: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    spec = make_spec_q(tiny_model_dir, toy_dataset, "nf4")
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


def test_nf4_train_loss_falls_by_a_clear_margin(run: dict[str, Any]) -> None:
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
    assert run["session"].quantization == "nf4" and run["session"].device == "cpu"
    assert run["session"].grouped_moe_blocks == 4  # every layer's MoE block runs grouped experts


def test_nf4_train_quantizes_the_experts_and_keeps_router_and_gates_in_bf16(run: dict[str, Any]) -> None:
    from bitsandbytes.nn import Linear4bit

    model = run["session"].model.base_model.model
    four_bit = {n for n, m in model.named_modules() if isinstance(m, Linear4bit)}
    experts = {n for n in four_bit if ".experts." in n}
    # 4 layers x 4 experts x 3 projections, each in 4 bits with double quant and bf16 compute
    assert len(experts) == 4 * 4 * 3
    for n in experts:
        m = model.get_submodule(n)
        assert m.weight.quant_state.quant_type == "nf4" and m.weight.quant_state.nested, n
        assert m.compute_dtype == torch.bfloat16, n
    for n, m in model.named_modules():
        if n.endswith("mlp.gate") or n.endswith("shared_expert_gate") or n == "lm_head":
            assert not isinstance(m, Linear4bit) and m.weight.dtype == torch.bfloat16, n


def test_adapter_files(run: dict[str, Any]) -> None:
    cfg = json.loads(run["files"]["adapter_config.json"].read_text())
    assert cfg["base_model_name_or_path"] == "Qwen/Qwen3-Next-80B-A3B-Instruct"
    assert cfg["r"] == 16 and cfg["lora_alpha"] == 128 and cfg["peft_type"] == "LORA"
    assert set(cfg["target_modules"]) == set(QWEN3_NEXT_LORA_TARGETS)
    tensors = load_file(str(run["files"]["adapter_model.safetensors"]))
    assert len(tensors) == 2 * 25
    assert all(".lora_A." in k or ".lora_B." in k for k in tensors)
    assert not any(".experts." in k or "mlp.gate." in k or "shared_expert_gate" in k for k in tensors)


def test_nf4_trained_adapter_loads_with_peft_on_the_bf16_base(run: dict[str, Any], tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    examples, _ = examples_for(tiny_model_dir)
    ex = examples[0]
    ids = torch.tensor([ex.input_ids])
    labels = torch.tensor([ex.labels])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16, local_files_only=True)
    base.eval()
    with torch.no_grad():
        before = base(input_ids=ids, labels=labels)
    tuned = PeftModel.from_pretrained(base, str(run["adapter"]))
    tuned.eval()
    with torch.no_grad():
        after = tuned(input_ids=ids, labels=labels)
    assert not torch.allclose(before.logits.float(), after.logits.float(), atol=1e-3)
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


def test_a_stop_is_honoured_before_the_next_micro_batch(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    """A step of several micro-batches: a stop asked for during the step's
    first micro-batch ends training before its second (not at the step's
    end)."""
    spec = make_spec(tiny_model_dir, toy_dataset, epochs=2, batch_size=4, gradient_accumulation=2, micro_batch_tokens=64)
    examples, pad_id = examples_for(tiny_model_dir)
    session = train.load_model(spec)
    forwards: dict[str, Optional[int]] = {"n": 0, "after_step_1": None, "at_stop": None}

    class StopMidStep(Recorder):
        def stop_error(self) -> Optional[errors.WorkerError]:
            n = forwards["n"]
            if self.steps and forwards["after_step_1"] is None:
                forwards["after_step_1"] = n
            # Asked for once the first micro-batch of step 2 has run.
            if forwards["at_stop"] is None and forwards["after_step_1"] is not None and n > forwards["after_step_1"]:
                forwards["at_stop"] = n
            if forwards["at_stop"] is not None:
                return errors.WorkerError(errors.CANCELLED, "stop requested by the test")
            return None

    def count(module: Any, inputs: Any, output: Any) -> Any:
        forwards["n"] = (forwards["n"] or 0) + 1
        return output

    session.model.base_model.model.lm_head.register_forward_hook(count)
    rec = StopMidStep()
    try:
        with pytest.raises(errors.WorkerError) as ei:
            train.fit(session, examples, spec, rec, tmp_path, pad_id=pad_id)
    finally:
        train.release(session)
    assert ei.value.code == errors.CANCELLED
    assert len(rec.steps) == 1, "step 2 was not finished"
    assert forwards["at_stop"] is not None and forwards["n"] == forwards["at_stop"], "no micro-batch ran after the stop"


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


def test_bf16_train_loss_falls(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    spec = make_spec_q(tiny_model_dir, toy_dataset, "bf16", epochs=5)
    examples, pad_id = examples_for(tiny_model_dir)
    session = train.load_model(spec)
    try:
        assert session.quantization == "bf16" and session.dtype == "bfloat16"
        from bitsandbytes.nn import Linear4bit

        assert not any(isinstance(m, Linear4bit) for m in session.model.modules())
        result = train.fit(session, examples, spec, Recorder(), tmp_path, pad_id=pad_id)
    finally:
        train.release(session)
    assert result.steps == 20
    assert result.final_loss < 0.8 * result.initial_loss, (result.initial_loss, result.final_loss)


def test_only_assistant_tokens_are_trained(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    """The labels the model is trained on, read at the model's input: every
    labelled token is an assistant reply (weight absent or 1) or the
    <|im_end|> closing it; no system or user text, no weight-0 reply, no
    padding. Fails if the labels were not masked."""
    spec = make_spec_q(tiny_model_dir, toy_dataset, "nf4", epochs=1)
    examples, pad_id = examples_for(tiny_model_dir)
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    replies = []
    for line in toy_dataset.decode().splitlines():
        msgs = json.loads(line)["messages"]
        replies.append("".join(m["content"] + "<|im_end|>" for m in msgs if m["role"] == "assistant" and m.get("weight", 1) != 0))
    session = train.load_model(spec)
    seen: list[str] = []
    counted = {"labels": 0}

    def spy(module, args, kwargs):
        labels, ids = kwargs["labels"], kwargs["input_ids"]
        for row in range(labels.shape[0]):
            keep = labels[row] != -100
            assert torch.equal(labels[row][keep], ids[row][keep])
            seen.append(tok.decode(labels[row][keep].tolist(), skip_special_tokens=False))
            counted["labels"] += int(keep[1:].sum())

    session.model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        train.fit(session, examples, spec, Recorder(), tmp_path, pad_id=pad_id)
    finally:
        train.release(session)
    # A token is trained when it overlaps the reply (the trained-token rule),
    # so a reply may start with the template's newline merged into its first token.
    assert sorted(x.lstrip("\n") for x in seen) == sorted(r.lstrip("\n") for r in replies)
    assert counted["labels"] == sum(ex.trained_kept for ex in examples)


@pytest.fixture(scope="module")
def fp32_lora(tiny_model_dir: Path):
    """The tiny model in fp32 with LoRA: gradients comparable to 1e-6."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from brightrun_worker.moe import apply_grouped_moe

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32, local_files_only=True)
    apply_grouped_moe(model)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=list(QWEN3_NEXT_LORA_TARGETS), init_lora_weights=False)
    model = get_peft_model(model, cfg)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    return model


def _step_grads(model: Any, examples, rows_split, pad_id: int) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    n = sum(train.trained_after_shift(examples[i].labels) for rows in rows_split for i in rows)
    batches = [train.collate(examples, rows, pad_id) for rows in rows_split]
    train.step_backward(model, batches, n, "cpu")
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}


def test_a_step_has_the_same_gradients_however_it_is_split(fp32_lora: Any, tiny_model_dir: Path) -> None:
    examples, pad_id = examples_for(tiny_model_dir)
    lengths = [len(ex.input_ids) for ex in examples]
    rows = list(range(len(examples)))
    one = train.split_by_tokens(rows, lengths, budget=10_000)
    each = train.split_by_tokens(rows, lengths, budget=1)
    assert len(one) == 1 and len(each) == len(examples)
    ga = [tuple(rows[k : k + 2]) for k in range(0, len(rows), 2)]  # batch_size 2 x accumulation 4
    ref = _step_grads(fp32_lora, examples, one, pad_id)
    assert all(g.abs().sum() > 0 for g in ref.values())
    for split in (each, ga):
        got = _step_grads(fp32_lora, examples, split, pad_id)
        for k, g in ref.items():
            scale = float(g.abs().max())
            assert torch.allclose(got[k], g, rtol=1e-4, atol=1e-5 * scale), (k, (got[k] - g).abs().max())


@pytest.mark.parametrize(
    "n,batch,accum,budget",
    [(8, 2, 1, 512), (37, 2, 8, 600), (100, 4, 4, 100), (5, 64, 1, 10_000), (33, 3, 2, 1)],
)
def test_plan_epoch_covers_every_example_once_in_steps_of_the_step_size(n: int, batch: int, accum: int, budget: int) -> None:
    from brightrun_worker.data import Example

    g = torch.Generator().manual_seed(n)
    lens = (torch.randint(5, 300, (n,), generator=g)).tolist()
    examples = [Example(input_ids=[1] * k, labels=[-100] + [1] * (k - 1), total=k, trained=k - 1, truncated=False) for k in lens]
    step = batch * accum
    plans = train.plan_epoch(examples, step_examples=step, budget=budget, epoch=0)
    assert len(plans) == -(-n // step)
    flat = [i for p in plans for mb in p.micro_batches for i in mb]
    assert sorted(flat) == list(range(n))
    for p in plans:
        rows = [i for mb in p.micro_batches for i in mb]
        assert len(rows) <= step
        assert p.trained_tokens == sum(lens[i] - 1 for i in rows)
        for mb in p.micro_batches:
            assert len(mb) == 1 or len(mb) * max(lens[i] for i in mb) <= budget
    # seeded: the same plan again, another one for the next epoch
    again = train.plan_epoch(examples, step_examples=step, budget=budget, epoch=0)
    assert again == plans
    if n > step:
        assert train.plan_epoch(examples, step_examples=step, budget=budget, epoch=1) != plans


def test_short_chats_share_micro_batches(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    """With a token budget of the whole step, batch_size 2 x accumulation 4
    runs one micro-batch per step instead of four."""
    spec = make_spec_q(tiny_model_dir, toy_dataset, "nf4", epochs=1, batch_size=2, gradient_accumulation=4, micro_batch_tokens=4096)
    examples, pad_id = examples_for(tiny_model_dir)
    session = train.load_model(spec)
    try:
        result = train.fit(session, examples, spec, Recorder(), tmp_path, pad_id=pad_id)
    finally:
        train.release(session)
    assert result.steps == 1 and result.micro_batches == 1
    assert result.padded_tokens_seen >= result.tokens_seen > 0


def test_a_4bit_request_without_bitsandbytes_fails_clearly(
    tiny_model_dir: Path, toy_dataset: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes" or name.startswith("bitsandbytes."):
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(errors.WorkerError) as ei:
        train.load_model(make_spec_q(tiny_model_dir, toy_dataset, "nf4"))
    assert ei.value.code == errors.MODEL_LOAD
    assert "needs bitsandbytes" in ei.value.message and "bf16" in ei.value.advice


def test_a_bf16_request_on_a_4bit_copy_fails_clearly(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(errors.WorkerError) as ei:
        train.load_model(make_spec_q(copy, toy_dataset, "bf16"))
    assert ei.value.code == errors.MODEL_LOAD and "pre-quantized copy" in ei.value.message


def test_missing_weights_fail_with_the_command_that_fixes_them(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    d = tmp_path / "Qwen3-Next-80B-A3B-Instruct-bnb-nf4"
    d.mkdir()
    (d / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(errors.WorkerError) as ei:
        train.load_model(make_spec_q(d, toy_dataset, "nf4"))
    e = ei.value
    assert e.code == errors.MODEL_LOAD and "no weights" in e.message
    assert "prepare" in e.advice
