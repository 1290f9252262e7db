"""Job spec parsing: the fixtures parse; broken specs give one clear message
listing every problem (never a traceback)."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest
from conftest import load_contract

from brightrun_worker import errors, spec


def example() -> dict[str, Any]:
    return copy.deepcopy(load_contract("job_spec.example.json"))


def broken(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    d = example()
    mutate(d)
    return d


CASES = [
    ("version 2 is refused", lambda d: d.update(version=2), "version must be 1, got 2"),
    ("attempt 0", lambda d: d.update(attempt=0), "attempt must be at least 1, got 0"),
    ("attempt as string", lambda d: d.update(attempt="1"), "attempt must be an integer, got '1'"),
    ("attempt as bool", lambda d: d.update(attempt=True), "attempt must be an integer"),
    ("missing job id", lambda d: d.pop("job_id"), "job_id is required"),
    ("job id with a slash", lambda d: d.update(job_id="a/b"), "job_id must be 1-128 letters"),
    ("relative volume path", lambda d: d["base_model"].update(volume_path="models/x"), "base_model.volume_path must be an absolute path"),
    ("unknown quantization", lambda d: d["base_model"].update(quantization="int8"), "base_model.quantization must be one of nf4, bf16, got 'int8'"),
    ("unknown chat rule", lambda d: d["base_model"].update(chat_rule="llama3"), "base_model.chat_rule must be one of chatml-no-think"),
    ("router as target", lambda d: d["base_model"].update(lora_targets=["q_proj", "mlp.gate"]), "base_model.lora_targets[1] 'mlp.gate' may not be adapted"),
    ("experts as target", lambda d: d["base_model"].update(lora_targets=["mlp.experts.0.up_proj"]), "may not be adapted"),
    ("all-linear", lambda d: d["base_model"].update(lora_targets=["all-linear"]), "may not be adapted"),
    ("empty targets", lambda d: d["base_model"].update(lora_targets=[]), "base_model.lora_targets must be a non-empty list"),
    ("bad sha256", lambda d: d["dataset"].update(sha256="ABC"), "dataset.sha256 must be 64 lowercase hex characters"),
    ("ftp url", lambda d: d["dataset"].update(url="ftp://x/y"), "dataset.url must be an http(s) URL"),
    ("format", lambda d: d["dataset"].update(format="alpaca"), "dataset.format must be one of chat-jsonl"),
    ("size zero", lambda d: d["dataset"].update(size_bytes=0), "dataset.size_bytes must be at least 1, got 0"),
    ("learning rate too high", lambda d: d["hyperparameters"].update(learning_rate=0.5), "hyperparameters.learning_rate must be between 1e-05 and 0.001, got 0.5"),
    ("batch size float", lambda d: d["hyperparameters"].update(batch_size=2.5), "hyperparameters.batch_size must be an integer, got 2.5"),
    ("rank too small", lambda d: d["hyperparameters"].update(lora_rank=2), "hyperparameters.lora_rank must be between 4 and 128, got 2"),
    ("missing hyperparameter", lambda d: d["hyperparameters"].pop("epochs"), "hyperparameters.epochs is required"),
    ("secret without prefix", lambda d: d["callback"].update(secret="abc"), 'callback.secret must start with "whsec_"'),
    ("secret bad base64", lambda d: d["callback"].update(secret="whsec_!!!"), "callback.secret is not valid standard base64"),
    ("secret too short", lambda d: d["callback"].update(secret="whsec_YWJj"), "callback.secret must decode to 24..64 bytes, got 3"),
    ("progress every 0 steps", lambda d: d["callback"].update(progress_every_steps=0), "callback.progress_every_steps must be at least 1"),
    ("missing artifact", lambda d: d["artifacts"].pop("adapter_model.safetensors"), "artifacts.adapter_model.safetensors is required"),
    ("POST artifact", lambda d: d["artifacts"]["adapter_config.json"].update(method="POST"), "artifacts.adapter_config.json.method must be one of PUT"),
    ("time limit too long", lambda d: d.update(time_limit_seconds=10**7), "time_limit_seconds must be between 1 and 604800"),
    ("base model not an object", lambda d: d.update(base_model="qwen"), "base_model must be an object"),
    ("NaN learning rate", lambda d: d["hyperparameters"].update(learning_rate=float("nan")), "hyperparameters.learning_rate must be a number, got nan"),
]


@pytest.mark.parametrize("name,mutate,want", CASES, ids=[c[0] for c in CASES])
def test_broken_spec_gives_a_clear_error(name: str, mutate, want: str) -> None:
    with pytest.raises(spec.SpecError) as ei:
        spec.parse(broken(mutate))
    e = ei.value
    assert e.code == errors.SPEC_INVALID
    assert want in e.message, e.message
    assert e.message.startswith("Invalid job spec: ")
    assert "Traceback" not in e.message


def test_every_problem_is_reported_at_once() -> None:
    d = broken(lambda d: (d.update(attempt=0), d["hyperparameters"].update(epochs=0, lora_rank=1000)))
    with pytest.raises(spec.SpecError) as ei:
        spec.parse(d)
    assert len(ei.value.problems) == 3


@pytest.mark.parametrize("doc", [None, [], "spec", 42, {}])
def test_non_objects_are_refused(doc: Any) -> None:
    with pytest.raises(spec.SpecError):
        spec.parse(doc)


def test_unknown_fields_are_ignored() -> None:
    d = example()
    d["future_field"] = {"x": 1}
    d["dataset"]["checksum_algorithm"] = "sha256"
    assert spec.parse(d).job_id == d["job_id"]


def test_integral_floats_are_accepted_as_integers() -> None:
    d = broken(lambda d: d["hyperparameters"].update(batch_size=2.0))
    assert spec.parse(d).hyperparameters.batch_size == 2


def test_callback_target_survives_a_broken_spec() -> None:
    d = broken(lambda d: d.pop("hyperparameters"))
    t = spec.callback_target(d)
    assert t is not None and t.job_id == d["job_id"] and len(t.key) == 32
    assert spec.callback_target({"job_id": "x"}) is None
    assert spec.callback_target(None) is None


def test_artifact_headers_are_kept() -> None:
    s = spec.parse(load_contract("job_spec.bf16.json"))
    assert s.artifacts["adapter_model.safetensors"].headers == {"Content-Type": "application/octet-stream"}
    assert s.hyperparameters.knobs().batch_size == 2


OPTIONAL_CASES = [
    ("checkpoint interval 0", lambda d: d.update(checkpoint_every_seconds=0), "checkpoint_every_seconds must be more than 0, got 0"),
    ("resume without step", lambda d: d.update(resume={"checkpoint_id": "c1"}), "resume.step is required"),
    ("resume at step 0", lambda d: d.update(resume={"step": 0}), "resume.step must be at least 1, got 0"),
    ("resume file with a path", lambda d: d.update(resume={"step": 3, "files": [{"name": "../x", "size_bytes": 1, "sha256": "0" * 64}]}), "resume.files[0].name must be a plain file name"),
    ("resume url not GET", lambda d: d.update(resume={"step": 3, "urls": {"a.json": {"url": "https://x/y", "method": "PUT"}}}), "resume.urls.a.json.method must be one of GET"),
    ("split over one half", lambda d: d.update(validation={"split": 0.6}), "validation.split must be between 0 and 0.5, got 0.6"),
    ("eval every 0 steps", lambda d: d.update(validation={"every_steps": 0}), "validation.every_steps must be at least 1, got 0"),
    ("validation dataset without sha", lambda d: d.update(validation={"dataset": {"url": "https://x/v", "size_bytes": 3, "format": "chat-jsonl"}}), "validation.dataset.sha256 is required"),
]


@pytest.mark.parametrize("name,mutate,want", OPTIONAL_CASES, ids=[c[0] for c in OPTIONAL_CASES])
def test_broken_optional_sections_give_a_clear_error(name: str, mutate, want: str) -> None:
    with pytest.raises(spec.SpecError) as ei:
        spec.parse(broken(mutate))
    assert want in ei.value.message, ei.value.message


def test_the_optional_sections_parse() -> None:
    d = example()
    d["checkpoint_every_seconds"] = 0.5
    d["resume"] = {"step": 12, "checkpoint_id": "ck:12", "urls": {"trainer_state.json": {"url": "https://s3.example/t", "method": "GET", "headers": {"x-amz-a": "b"}}}}
    d["validation"] = {"split": 0, "seed": 3}
    s = spec.parse(d)
    assert s.checkpoint_every_seconds == 0.5
    assert s.resume is not None and s.resume.step == 12 and s.resume.checkpoint_id == "ck:12" and s.resume.files == ()
    assert s.resume.urls["trainer_state.json"].headers == {"x-amz-a": "b"}
    assert s.validation.split == 0 and s.validation.seed == 3 and s.validation.max_examples == 200
