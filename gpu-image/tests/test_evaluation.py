"""Held-out evaluation: the split (deterministic, whole conversations, the
contract's vectors), the eval loss's normalisation, and its reporting at the
interval and at the end."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
from conftest import load_contract, tiny_spec

from brightrun_worker import data, errors, spec as spec_mod, train
from test_train_cpu import examples_for


def test_the_split_follows_the_contract_vectors() -> None:
    doc = load_contract("validation_split.json")
    assert doc["domain"] == data.SPLIT_DOMAIN
    for case in doc["cases"]:
        lines = case["lines"] if "lines" in case else list(range(1, case["n"] + 1))
        got = data.validation_lines(lines, case.get("split"), case.get("max_examples", 200), case.get("seed", 0))
        assert sorted(got) == case["held_out"], case["name"]
    k = doc["keys"][0]
    assert data.split_key(k["seed"], k["line"]).hex() == k["sha256"]


@pytest.mark.parametrize(
    "n,split,max_examples,want",
    [
        (8, None, 200, 0),  # small datasets train on everything by default
        (199, None, 200, 0),
        (200, None, 200, 20),  # 10 % from 200 conversations on
        (5000, None, 200, 200),  # capped
        (100, 0.25, 200, 25),
        (100, 0.0, 200, 0),
        (3, 0.5, 200, 1),
        (1, 0.5, 200, 0),  # at least one conversation trains
        (100, 0.29, 200, 28),  # floor(0.29 x 100) in IEEE double is 28
    ],
)
def test_the_held_out_count(n: int, split: Optional[float], max_examples: int, want: int) -> None:
    assert data.held_out_count(n, split, max_examples) == want


def test_the_split_is_deterministic_and_depends_only_on_line_numbers_and_seed() -> None:
    lines = list(range(1, 1001))
    a = data.validation_lines(lines, 0.1, 1000, seed=0)
    assert a == data.validation_lines(list(reversed(lines)), 0.1, 1000, seed=0)
    assert len(a) == 100 and a <= set(lines)
    assert a != data.validation_lines(lines, 0.1, 1000, seed=1)
    # a line keeps its fate when the lines around it differ (no dependence on content or position)
    b = data.validation_lines(lines[:500] + [2000], 0.1, 1000, seed=0)
    assert len(b) == 50


@dataclass
class Hooks:
    steps: list[Any] = field(default_factory=list)

    def progress(self, p: Any) -> None:
        self.steps.append(p)

    def stop_error(self) -> Optional[errors.WorkerError]:
        return None


def test_eval_loss_is_reported_at_the_interval_and_at_the_end(tiny_model_dir: Path, toy_dataset: bytes, tmp_path: Path) -> None:
    examples, pad_id = examples_for(tiny_model_dir)
    train_ex, eval_ex = examples[:6], examples[6:]
    d = tiny_spec("http://127.0.0.1:9", tiny_model_dir, toy_dataset, epochs=3, batch_size=2, learning_rate=1e-3)
    d["validation"] = {"every_steps": 4}
    spec = spec_mod.parse(d)
    session = train.load_model(spec)
    hooks = Hooks()
    try:
        r = train.fit(session, train_ex, spec, hooks, tmp_path, pad_id=pad_id, eval_examples=eval_ex)
        # the same loss computed one example at a time: the normalisation is over all held-out tokens
        lengths = [len(e.input_ids) for e in eval_ex]
        one_by_one = train.split_by_tokens(range(len(eval_ex)), lengths, budget=1)
        direct, tokens = train.evaluate(session.model, eval_ex, one_by_one, pad_id=pad_id, device="cpu", multiple_of=1, check=lambda: None)
    finally:
        train.release(session)
    assert r.steps == 9  # 6 examples / batch 2 x 3 epochs
    evaluated = [(p.step, p.eval_loss) for p in hooks.steps if p.eval_loss is not None]
    assert [s for s, _ in evaluated] == [4, 8, 9]  # every 4 steps and the last
    assert all(math.isfinite(v) and v > 0 for _, v in evaluated)
    assert r.eval_loss == evaluated[-1][1] and r.evaluations == 3 and r.eval_examples == 2
    assert tokens == r.eval_tokens == sum(train.trained_after_shift(e.labels) for e in eval_ex)
    assert direct == pytest.approx(r.eval_loss, rel=1e-4)  # bf16 base: padding changes the rounding a little
    assert r.eval_seconds > 0


def test_the_default_eval_interval_gives_about_ten_evaluations() -> None:
    d = load_contract("job_spec.example.json")
    s = spec_mod.parse(d)
    assert train.eval_interval(s, 2250) == 225 and train.eval_interval(s, 7) == 1
    d["validation"] = {"every_steps": 50}
    assert train.eval_interval(spec_mod.parse(d), 2250) == 50


def test_a_stop_during_model_load_is_honoured_between_its_phases(tiny_model_dir: Path, toy_dataset: bytes) -> None:
    """The load checks before every checkpoint shard (inside from_pretrained)
    and between its phases; a stop there ends it, and transformers' shard
    loader is put back."""
    from transformers import modeling_utils as mu

    real = mu.load_shard_file
    spec = spec_mod.parse(tiny_spec("http://127.0.0.1:9", tiny_model_dir, toy_dataset))
    calls: list[str] = []

    def count() -> None:
        import traceback

        calls.append("shard" if any(f.name == "load_shard_file" for f in traceback.extract_stack()) else "phase")

    train.release(train.load_model(spec, should_stop=count))
    assert calls.count("shard") == 1 and calls.count("phase") >= 3, calls  # the tiny model has one shard
    assert mu.load_shard_file is real
    for stop_at in range(1, len(calls) + 1):
        seen = {"n": 0}

        def stop() -> None:
            seen["n"] += 1
            if seen["n"] >= stop_at:
                raise errors.WorkerError(errors.CANCELLED, "The job was cancelled during load.")

        with pytest.raises(errors.WorkerError) as ei:
            train.load_model(spec, should_stop=stop)
        assert ei.value.code == errors.CANCELLED and seen["n"] == stop_at
        assert mu.load_shard_file is real
