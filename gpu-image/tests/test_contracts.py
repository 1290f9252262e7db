"""The contract fixtures in testdata/contracts: schema-valid, accepted by the
worker's parser, and consistent with the worker's constants."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import CONTRACTS, load_contract

from brightrun_worker import callbacks, errors, spec

REQUIRED_SPECS = ["job_spec.example.json", "job_spec.qlora.json", "job_spec.bf16.json"]
REQUIRED_CALLBACKS = {
    "started": "callback.started.json",
    "stage": "callback.stage.json",
    "progress": "callback.progress.json",
    "artifact": "callback.artifact.json",
    "completed": "callback.completed.json",
    "failed": "callback.failed.json",
    "checkpoint": "callback.checkpoint.json",
    "urls": "callback.urls.json",
}
REQUIRED_URL_ANSWERS = ["urls_response.dataset.json", "urls_response.checkpoint.json", "urls_response.checkpoint_download.json", "urls_response.artifact.json"]
# Every fixture present is tested, not only the required ones.
SPEC_FIXTURES = sorted(p.name for p in CONTRACTS.glob("job_spec.*.json") if "schema" not in p.name)
CALLBACK_FIXTURES = sorted(p.name for p in CONTRACTS.glob("callback.*.json") if "schema" not in p.name)
URL_ANSWER_FIXTURES = sorted(p.name for p in CONTRACTS.glob("urls_response.*.json") if "schema" not in p.name)


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = load_contract(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", SPEC_FIXTURES)
def test_job_spec_fixture_is_schema_valid_and_parses(name: str) -> None:
    doc = load_contract(name)
    validator("job_spec.v1.schema.json").validate(doc)
    s = spec.parse(doc)
    assert s.version == 1 and s.job_id == doc["job_id"] and s.attempt == doc["attempt"]
    assert s.base_model.quantization == doc["base_model"]["quantization"]
    assert set(s.artifacts) == set(spec.ARTIFACT_NAMES)
    assert len(s.callback.key) == 32


def test_fixtures_cover_qlora_and_bf16() -> None:
    quants = {load_contract(n)["base_model"]["quantization"] for n in REQUIRED_SPECS}
    assert quants == {"nf4", "bf16"}


@pytest.mark.parametrize("name", CALLBACK_FIXTURES)
def test_callback_fixture_is_schema_valid(name: str) -> None:
    doc = load_contract(name)
    validator("callback.v1.schema.json").validate(doc)
    assert doc["seq"] >= 1


@pytest.mark.parametrize("name", URL_ANSWER_FIXTURES)
def test_urls_answer_fixture_is_schema_valid_and_accepted(name: str) -> None:
    from brightrun_worker.urls import parse_answer

    doc = load_contract(name)
    validator("urls_response.v1.schema.json").validate(doc)
    purpose = name.split(".")[1]
    g = parse_answer(json.dumps(doc).encode(), purpose, list(doc["urls"]))
    assert set(g.urls) == set(doc["urls"])


def test_the_resume_and_validation_fixtures_parse_to_their_values() -> None:
    s = spec.parse(load_contract("job_spec.resume.json"))
    assert s.resume is not None and s.resume.step == 300 and len(s.resume.files) == 4
    assert {f.name for f in s.resume.files} == set(spec.CHECKPOINT_FILE_NAMES)
    assert s.validation.split == 0.05 and s.validation.every_steps == 225 and s.checkpoint_every_seconds == 600
    v = spec.parse(load_contract("job_spec.validation_dataset.json")).validation
    assert v.dataset is not None and v.dataset.size_bytes == 812344 and v.max_examples == 180
    old = spec.parse(load_contract("job_spec.example.json"))  # an older spec: the defaults
    assert old.resume is None and old.validation.split is None and old.checkpoint_every_seconds == 600


def test_a_checkpoint_fixture_lists_the_files_a_checkpoint_has() -> None:
    files = [f["name"] for f in load_contract("callback.checkpoint.json")["data"]["files"]]
    assert sorted(files) == sorted(spec.CHECKPOINT_FILE_NAMES)
    req = load_contract("callback.urls.json")["data"]
    assert req["purpose"] == "checkpoint" and [f["name"] for f in req["files"]] == files


def test_required_fixtures_exist() -> None:
    for name in REQUIRED_SPECS + REQUIRED_URL_ANSWERS + [
        "job_spec.v1.schema.json", "callback.v1.schema.json", "urls_response.v1.schema.json",
        "signatures.json", "validation_split.json", "README.md", "job_spec.resume.json",
    ]:
        assert (CONTRACTS / name).is_file(), name
    for type_, name in REQUIRED_CALLBACKS.items():
        assert load_contract(name)["type"] == type_


def test_schema_enums_match_the_worker() -> None:
    cb = load_contract("callback.v1.schema.json")
    assert tuple(cb["properties"]["type"]["enum"]) == callbacks.TYPES
    assert tuple(cb["$defs"]["stage"]["properties"]["stage"]["enum"]) == callbacks.STAGES
    assert tuple(cb["$defs"]["failed"]["properties"]["code"]["enum"]) == errors.FAILED_CODES
    js = load_contract("job_spec.v1.schema.json")
    hp = js["properties"]["hyperparameters"]["properties"]
    for name, (lo, hi, is_int) in spec.HYPERPARAMETER_BOUNDS.items():
        assert hp[name]["minimum"] == lo and hp[name]["maximum"] == hi, name
        assert hp[name]["type"] == ("integer" if is_int else "number"), name
    assert set(js["properties"]["hyperparameters"]["required"]) == set(spec.HYPERPARAMETER_BOUNDS)
    forbidden = js["properties"]["base_model"]["properties"]["lora_targets"]["items"]["not"]["enum"]
    from brightrun_worker.registry import FORBIDDEN_TARGETS

    assert set(forbidden) == set(FORBIDDEN_TARGETS)


def test_worker_messages_are_schema_valid() -> None:
    """Messages built by the worker's own code pass the callback schema."""
    v = validator("callback.v1.schema.json")
    sent: list[bytes] = []

    def transport(url, body, headers, timeout):
        sent.append(body)
        return 200, b'{"action":"continue"}'

    c = callbacks.CallbackClient("http://127.0.0.1:9/cb", b"k" * 32, "job_1", 1, transport=transport)
    c.send("started", {"worker_id": "w", "runpod_job_id": "r", "worker_version": "0", "gpu": None})
    c.send("stage", {"stage": "download"})
    err = errors.oom(errors.Knobs(1e-4, 4, 2, 16, 4096))
    c.send("failed", {"code": err.code, "message": err.message, "advice": err.advice, "stage": "train"}, wait=True)
    c.close()
    assert len(sent) == 3
    for body in sent:
        v.validate(json.loads(body))
