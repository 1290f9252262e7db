"""Checkpoints and resume, through the worker's own load / fit code on the
tiny Qwen3-Next: a run interrupted after step K and resumed from its
checkpoint in a fresh model (fresh load_model, RNGs scrambled) ends with the
same adapter as an uninterrupted run, its metric series continues at K + 1,
and checkpoints come at the interval and at every epoch's end.

Tolerance: the LoRA weights are fp32 (peft keeps adapters in fp32 on a BF16
base), the optimizer state, scheduler, RNG states and data position are
restored exactly, and on one CPU thread every operation runs in the same
order, so the adapters agree to the bit; the test allows 1e-6 of the
largest weight (absolute), which is what fp32 rounding noise could reach if
an operation's order changed (another torch build, several threads), and
far below a single training step's change (~1e-3 of the weights here)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from conftest import tiny_spec
from safetensors.torch import load_file

from brightrun_worker import checkpoint as ckpt
from brightrun_worker import errors, spec as spec_mod, train
from test_train_cpu import examples_for

HP = dict(epochs=3, lora_rank=8, lora_alpha=16, learning_rate=1e-3, batch_size=2, gradient_accumulation=1, lora_dropout=0.1, warmup_ratio=0.1)
STOP_AT = 6  # epoch 1 (0-based), its step 2 of 4: mid-epoch on purpose
TOLERANCE = 1e-6  # of the largest weight, absolute (see the module doc)


@dataclass
class Hooks:
    stop_after: Optional[int] = None
    steps: list[Any] = field(default_factory=list)
    written: list[ckpt.Written] = field(default_factory=list)
    resumed_at: Optional[tuple[int, int, float]] = None

    def progress(self, p: Any) -> None:
        self.steps.append(p)

    def stop_error(self) -> Optional[errors.WorkerError]:
        if self.stop_after is not None and len(self.steps) >= self.stop_after:
            return errors.WorkerError(errors.CANCELLED, "stop requested by the test")
        return None

    def checkpoint(self, w: ckpt.Written) -> None:
        self.written.append(w)

    def resumed(self, step: int, tokens: int, seconds: float) -> None:
        self.resumed_at = (step, tokens, seconds)


def make_spec(model_dir: Path, dataset: bytes, *, every: float, **hp: Any) -> spec_mod.JobSpec:
    d = tiny_spec("http://127.0.0.1:9", model_dir, dataset, **{**HP, **hp})
    d["base_model"]["quantization"] = "bf16"
    d["checkpoint_every_seconds"] = every
    return spec_mod.parse(d)


def adapter_of(session: train.Session) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in session.model.named_parameters() if p.requires_grad}


def scramble_rngs() -> None:
    """What a new process would have: other RNG states than the crashed one's."""
    torch.manual_seed(987654321)
    random.seed(1234)
    import numpy as np

    np.random.seed(4321)


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, toy_dataset: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    examples, pad_id = examples_for(tiny_model_dir)
    fp = "fingerprint-of-the-test"
    out: dict[str, Any] = {}

    # Uninterrupted, checkpoints only at epoch ends.
    spec = make_spec(tiny_model_dir, toy_dataset, every=600_000)
    session = train.load_model(spec)
    whole = Hooks()
    try:
        out["whole_result"] = train.fit(session, examples, spec, whole, tmp_path_factory.mktemp("whole"), pad_id=pad_id, fingerprint=fp)
        out["whole"] = adapter_of(session)
    finally:
        train.release(session)
    out["whole_hooks"] = whole

    # Interrupted after STOP_AT steps, a checkpoint after every step.
    spec_every = make_spec(tiny_model_dir, toy_dataset, every=1e-6)
    session = train.load_model(spec_every)
    cut = Hooks(stop_after=STOP_AT)
    work = tmp_path_factory.mktemp("cut")
    try:
        with pytest.raises(errors.WorkerError) as ei:
            train.fit(session, examples, spec_every, cut, work, pad_id=pad_id, fingerprint=fp)
        assert ei.value.code == errors.CANCELLED
    finally:
        train.release(session)
    out["cut_hooks"] = cut

    # A fresh model, other RNG states, the checkpoint of step STOP_AT.
    scramble_rngs()
    d = next(w.dir for w in cut.written if w.step == STOP_AT)
    session = train.load_model(spec_every)
    rest = Hooks()
    try:
        out["rest_result"] = train.fit(
            session, examples, spec_every, rest, tmp_path_factory.mktemp("rest"), pad_id=pad_id, resume=d, fingerprint=fp
        )
        out["rest"] = adapter_of(session)
    finally:
        train.release(session)
    out["rest_hooks"] = rest
    out["checkpoint_dir"] = d
    return out


def test_a_resumed_run_ends_with_the_same_adapter_as_an_uninterrupted_one(runs: dict[str, Any]) -> None:
    whole, rest = runs["whole"], runs["rest"]
    assert set(whole) == set(rest) and whole
    scale = max(float(t.abs().max()) for t in whole.values())
    worst = max(float((whole[k] - rest[k]).abs().max()) for k in whole)
    print(f"\nresumed vs uninterrupted adapter: largest difference {worst:.3g} (largest weight {scale:.3g})")
    assert worst <= TOLERANCE * scale, (worst, scale)
    # and the run trained: the adapter moved from its initialisation by far more than the tolerance
    assert runs["whole_result"].final_loss < runs["whole_result"].initial_loss


def test_the_metric_series_continues_from_the_checkpoint_step(runs: dict[str, Any]) -> None:
    whole, cut, rest = runs["whole_hooks"], runs["cut_hooks"], runs["rest_hooks"]
    assert [p.step for p in cut.steps] == list(range(1, STOP_AT + 1))
    assert [p.step for p in rest.steps] == list(range(STOP_AT + 1, 13))  # never back to step 1
    assert rest.resumed_at is not None and rest.resumed_at[0] == STOP_AT
    by_step = {p.step: p for p in whole.steps}
    for p in rest.steps:
        w = by_step[p.step]
        assert p.epoch == w.epoch and p.total_steps == w.total_steps == 12
        assert p.learning_rate == pytest.approx(w.learning_rate, rel=1e-12)  # the same schedule
        assert p.loss == pytest.approx(w.loss, rel=1e-5, abs=1e-6)  # the same data order
        assert p.tokens_seen == w.tokens_seen and p.micro_batches == w.micro_batches
    r, u = runs["rest_result"], runs["whole_result"]
    assert r.resumed_from_step == STOP_AT and r.steps == u.steps == 12
    assert r.train_loss_mean == pytest.approx(u.train_loss_mean, rel=1e-5)
    assert r.initial_loss == pytest.approx(u.initial_loss, rel=1e-6)  # carried over from the first run
    assert r.run_micro_batches == u.micro_batches - cut.steps[-1].micro_batches


def test_checkpoints_come_at_the_interval_and_at_epoch_ends(runs: dict[str, Any]) -> None:
    whole = runs["whole_hooks"].written
    assert [(w.step, w.reason, w.next_epoch, w.next_step_in_epoch) for w in whole] == [
        (4, "epoch_end", 1, 0),
        (8, "epoch_end", 2, 0),
        (12, "epoch_end", 3, 0),
    ]
    assert [w.partial for w in whole] == [True, True, False]
    cut = runs["cut_hooks"].written
    assert [w.step for w in cut] == list(range(1, STOP_AT + 1))
    assert [w.reason for w in cut] == ["interval", "interval", "interval", "epoch_end", "interval", "interval"]
    w6 = cut[-1]
    assert (w6.next_epoch, w6.next_step_in_epoch, w6.epoch) == (1, 2, 1.5)


def test_a_checkpoint_holds_the_adapter_the_optimizer_and_the_position(runs: dict[str, Any]) -> None:
    d = runs["checkpoint_dir"]
    assert sorted(p.name for p in d.iterdir()) == sorted(ckpt.FILES)
    state = json.loads((d / ckpt.STATE_JSON).read_text())
    assert state["step"] == STOP_AT and state["next_epoch"] == 1 and state["next_step_in_epoch"] == 2
    assert state["format"] == ckpt.FORMAT and state["fingerprint"] == "fingerprint-of-the-test"
    assert state["scheduler"]["last_epoch"] == STOP_AT
    assert state["optimizer"]["name"] == "adamw_torch" and len(state["rng"]["python"][1]) == 625
    tensors = load_file(str(d / ckpt.STATE_TENSORS))
    n_params = len(state["params"])
    assert {k for k in tensors if k.startswith("optimizer.")} == {
        f"optimizer.{i}.{k}" for i in range(n_params) for k in ("exp_avg", "exp_avg_sq", "step")
    }
    assert "rng.torch_cpu" in tensors
    adapter = load_file(str(d / "adapter_model.safetensors"))
    assert len(adapter) == n_params and all(t.dtype == torch.float32 for t in adapter.values())
    cfg = json.loads((d / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "Qwen/Qwen3-Next-80B-A3B-Instruct"
    size = sum(p.stat().st_size for p in d.iterdir())
    secs = runs["cut_hooks"].written[-1].write_seconds
    print(f"\ntiny model checkpoint: {size} bytes ({adapter_bytes(d)} adapter), written in {secs:.3f}s")


def adapter_bytes(d: Path) -> int:
    return (d / "adapter_model.safetensors").stat().st_size


def test_a_checkpoint_that_does_not_fit_the_model_is_refused_before_anything_changes(
    runs: dict[str, Any], tiny_model_dir: Path, toy_dataset: bytes
) -> None:
    spec = make_spec(tiny_model_dir, toy_dataset, every=600_000, lora_rank=4, lora_alpha=8)
    session = train.load_model(spec)
    try:
        before = adapter_of(session)
        with pytest.raises(ckpt.CheckpointError, match="does not fit the model"):
            ckpt.load(runs["checkpoint_dir"], session.model)
        after = adapter_of(session)
        assert all(torch.equal(before[k], after[k]) for k in before)
    finally:
        train.release(session)


def test_a_checkpoint_with_a_missing_file_is_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "ck"
    shutil.copytree(runs["checkpoint_dir"], d)
    (d / ckpt.STATE_TENSORS).unlink()
    with pytest.raises(ckpt.CheckpointError, match="lacks training_state.safetensors"):
        ckpt.read_state(d)


def test_the_fingerprint_ignores_the_micro_batch_budget_but_not_the_data(tiny_model_dir: Path, toy_dataset: bytes) -> None:
    a = make_spec(tiny_model_dir, toy_dataset, every=600)
    b = make_spec(tiny_model_dir, toy_dataset, every=600, micro_batch_tokens=4096)
    c = make_spec(tiny_model_dir, toy_dataset, every=600, learning_rate=2e-4)
    lengths = [(10, 5), (20, 7)]
    assert ckpt.fingerprint(a, lengths, 0, 42) == ckpt.fingerprint(b, lengths, 0, 42)
    assert ckpt.fingerprint(a, lengths, 0, 42) != ckpt.fingerprint(c, lengths, 0, 42)
    assert ckpt.fingerprint(a, lengths, 0, 42) != ckpt.fingerprint(a, [(10, 5), (20, 8)], 0, 42)
    assert ckpt.fingerprint(a, lengths, 0, 42) != ckpt.fingerprint(a, lengths, 1, 42)


def test_a_resumed_nf4_run_matches_too(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    """The default job trains in 4-bit NF4: bitsandbytes' CPU dequantization
    is deterministic, so the same tolerance holds."""
    examples, pad_id = examples_for(tiny_model_dir)
    d = tiny_spec("http://127.0.0.1:9", tiny_model_dir, toy_dataset, **{**HP, "epochs": 2})
    d["checkpoint_every_seconds"] = 1e-6
    spec = spec_mod.parse(d)
    adapters = []
    cut = Hooks(stop_after=5)
    for hooks, resume in ((Hooks(), None), (cut, None), (Hooks(), "cut")):
        scramble_rngs()
        session = train.load_model(spec)
        ck = next(w.dir for w in cut.written if w.step == 5) if resume else None
        try:
            if hooks is cut:
                with pytest.raises(errors.WorkerError):
                    train.fit(session, examples, spec, hooks, tmp_path / "cut", pad_id=pad_id)
            else:
                r = train.fit(session, examples, spec, hooks, tmp_path / f"run{len(adapters)}", pad_id=pad_id, resume=ck)
                assert r.steps == 8 and (r.resumed_from_step == 5) == (resume is not None)
                adapters.append(adapter_of(session))
        finally:
            train.release(session)
    whole, rest = adapters
    scale = max(float(t.abs().max()) for t in whole.values())
    worst = max(float((whole[k] - rest[k]).abs().max()) for k in whole)
    assert worst <= TOLERANCE * scale, (worst, scale)


def test_a_stop_is_honoured_before_the_next_micro_batch(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    """A step of four micro-batches: a stop asked for after the second
    micro-batch ends the run before the third, in the middle of the step."""
    examples, pad_id = examples_for(tiny_model_dir)
    d = tiny_spec("http://127.0.0.1:9", tiny_model_dir, toy_dataset, batch_size=1, gradient_accumulation=4, micro_batch_tokens=1)
    spec = spec_mod.parse(d)
    session = train.load_model(spec)
    forwards = {"n": 0}
    session.model.register_forward_pre_hook(lambda m, a: forwards.__setitem__("n", forwards["n"] + 1))

    class StopAfterTwo(Hooks):
        def stop_error(self) -> Optional[errors.WorkerError]:
            if forwards["n"] >= 2:
                return errors.WorkerError(errors.CANCELLED, "stop")
            return None

    hooks = StopAfterTwo()
    try:
        with pytest.raises(errors.WorkerError) as ei:
            train.fit(session, examples, spec, hooks, tmp_path, pad_id=pad_id)
    finally:
        train.release(session)
    assert ei.value.code == errors.CANCELLED
    assert forwards["n"] == 2 and hooks.steps == []  # mid-step: no step was completed


def test_the_8bit_optimizers_state_layout_survives_a_checkpoint() -> None:
    """The GPU's optimizer (bitsandbytes' paged 8-bit AdamW) cannot step on
    the CPU, but its state layout can be built there: uint8 buffers, shared
    quantization maps, block absmax, an int step. It goes through the
    checkpoint's safetensors + JSON and comes back equal."""
    import bitsandbytes as bnb
    from safetensors.torch import load, save

    params = [torch.nn.Parameter(torch.randn(64, 128)), torch.nn.Parameter(torch.randn(8, 16))]  # 8-bit and 32-bit state
    opt = bnb.optim.PagedAdamW8bit(params, lr=1e-3, betas=(0.9, 0.999))
    for i, p in enumerate(params):
        opt.init_state(opt.param_groups[0], p, 0, i)
        for t in opt.state[p].values():
            if torch.is_tensor(t) and t.dtype == torch.uint8:
                t.random_(0, 255)
        opt.state[p]["step"] = 17
    js, tensors = ckpt._optimizer_state(opt)
    js = json.loads(json.dumps(js))  # through trainer_state.json
    tensors = load(save(tensors))  # through training_state.safetensors
    again = bnb.optim.PagedAdamW8bit([torch.nn.Parameter(p.detach().clone()) for p in params], lr=5e-4)
    ckpt.load_optimizer(again, js, tensors)
    assert again.param_groups[0]["lr"] == 1e-3 and again.param_groups[0]["betas"] == (0.9, 0.999)
    for p, q in zip(params, again.param_groups[0]["params"]):
        a, b = opt.state[p], again.state[q]
        assert set(a) == set(b) and b["step"] == 17
        for k, v in a.items():
            if torch.is_tensor(v):
                assert torch.equal(v, b[k]), k
    assert opt.state[params[0]]["state1"].dtype == torch.uint8 and opt.state[params[1]]["state1"].dtype == torch.float32
