"""Schemathesis hooks for Bright Run's conformance run (schemathesis_test.go).

JSON Schema cannot say everything the OpenAPI document says. A few rules are
stated in the document's prose, with the 400 answer that enforces them:

- a cursor is only one that the same list returned (Cursor parameter);
- gpu_type and base_model are ids of GET /v1/gpus and GET /v1/models;
- the model, at the request's max_seq_length, lora_rank and batch, must fit
  the GPU named (or some GPU), within its context length;
- budget_usd must not be below the lowest estimate;
- an import's source is an https URL (http only to loopback on the local
  stack) to an address the network policy allows, or s3://bucket/key under
  a prefix the deployment allows, and a name left out is the source's file
  name, which must be a valid name.
- an account registers at most 20 webhook endpoints (409), and a disabled
  endpoint is not redelivered to (409).

A request that the schema allows but one of these rules refuses is not a
drift between the document and the server, so the positive_data_acceptance
failure it raises is dropped here, and only then: each rule is recognised by
what the request sent and by the server's answer, never by status alone.
Dropped failures are counted in the run's report ("filtered"); every other
failure stands.

Two things a client does are not API calls, and the hooks do them: uploading
a file (to presigned URLs), done for small multipart datasets, whose positive
completions then list the parts the uploads answered, so that the stateful
phase follows create -> complete -> get to a 200; and validating a dataset,
so positive estimates and jobs use the ready dataset the test uploaded, which
no generated request deletes.

Positive webhook registrations and URL changes point at a closed port on
loopback (the local stack allows http to loopback), never at a generated
host: the stack delivers events to its endpoints, and a generated URL may
name a real host.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import schemathesis

# The cursors each list returned, by list: its path with the ids filled in,
# and the status filter of GET /v1/jobs.
_issued: dict[tuple[str, Any], set[str]] = {}


def _list_key(case: Any) -> tuple[str, Any]:
    path = case.path
    for name, value in (case.path_parameters or {}).items():
        path = path.replace("{" + name + "}", str(value))
    return path, (case.query or {}).get("status")


def _json(response: Any) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, TypeError):
        return None


# The parts uploaded for a dataset, as its completion lists them.
_uploaded: dict[str, list[dict[str, Any]]] = {}

# Datasets of up to this size, uploaded in parts, get their parts uploaded.
_UPLOAD_AT_MOST = 12 << 20


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    body = _json(response)
    if response.status_code == 200 and isinstance(body, dict) and isinstance(body.get("next_cursor"), str):
        _issued.setdefault(_list_key(case), set()).add(body["next_cursor"])
    if case.method.upper() == "POST" and case.path == "/v1/datasets" and response.status_code == 201:
        _upload_parts(body)


def _upload_parts(created: Any) -> None:
    """PUTs zeros to every part of a small multipart upload, as a client
    uploading its file would, and keeps the ETags for its completion."""
    try:
        dataset, upload = created["dataset"], created["upload"]
        if upload["type"] != "multipart" or dataset["size_bytes"] > _UPLOAD_AT_MOST:
            return
        parts = []
        for part in upload["parts"]:
            request = urllib.request.Request(part["url"], data=bytes(part["size_bytes"]), method=part["method"])
            for name, value in (part.get("headers") or {}).items():
                request.add_header(name, value)
            with urllib.request.urlopen(request, timeout=30) as answer:
                parts.append({"part_number": part["part_number"], "etag": answer.headers["ETag"]})
        _uploaded[dataset["id"]] = parts
    except (KeyError, TypeError, OSError) as e:
        _note(f"upload_failed {e}")


# Where positive webhook registrations point: loopback's discard port, closed.
_NOWHERE = "http://127.0.0.1:9/brightrun-webhook"

# The ready dataset the test uploaded: the only one estimates and jobs can
# use (no generated request can upload and validate a file).
_READY = os.environ.get("BRIGHTRUN_DATASET_ID", "")


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: Any) -> None:
    # Schemathesis's dependency analysis reads a body field `<word>_id` as a
    # reference to a `<Word>` resource: validation_dataset_id names a
    # "ValidationDataset" that no operation produces, and an operation that
    # needs an unproduced resource never starts a stateful scenario, so
    # POST /v1/jobs would never start one (and its links never be followed).
    # The field is a dataset id, which this run has no second one of; it is
    # left to POST /v1/estimates (the same request part) and the Go tests.
    schemas = raw_schema.get("components", {}).get("schemas", {})
    props = schemas.get("CreateJobRequest", {}).get("properties", {})
    if props.pop("validation_dataset_id", None) is not None:
        schemas["CreateJobRequest"].pop("not", None)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = getattr(case, "meta", None)
    positive = meta is None or not meta.generation.mode.is_negative
    method, path = case.method.upper(), case.path
    # A positive completion of a dataset whose parts were uploaded lists
    # them; negative ones, and completions of other datasets, are left as
    # generated.
    if method == "POST" and path == "/v1/datasets/{id}/complete":
        parts = _uploaded.get(str((case.path_parameters or {}).get("id")))
        if parts and positive:
            case.body = {"parts": parts}
    # Positive estimates and jobs train on the ready dataset, also where a
    # stateful link offers another (one still awaiting its upload).
    if method == "POST" and path in ("/v1/estimates", "/v1/jobs") and positive and isinstance(case.body, dict) and _READY:
        case.body["dataset_id"] = _READY
        # The run has no second ready dataset to evaluate on: positive
        # requests hold out a share instead (negative ones keep the field).
        case.body.pop("validation_dataset_id", None)
    # Webhook endpoints registered by positive requests point nowhere real.
    if method in ("POST", "PATCH") and path in ("/v1/webhooks", "/v1/webhooks/{id}") and positive and isinstance(case.body, dict) and "url" in case.body:
        case.body["url"] = _NOWHERE
    # Nothing deletes the ready dataset: it stays for the others.
    if method == "DELETE" and path == "/v1/datasets/{id}" and (case.path_parameters or {}).get("id") == _READY:
        case.path_parameters["id"] = "ds_00000000000000000000000000"
    return case


def _error(response: Any) -> tuple[str, Any]:
    body = _json(response)
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return "", None
    e = body["error"]
    return str(e.get("message", "")), e.get("details")


def _foreign_cursor(case: Any, message: str, details: Any) -> bool:
    cursor = (case.query or {}).get("cursor")
    return (
        message == "cursor is not one this list returned"
        and isinstance(cursor, str)
        and cursor != ""
        and cursor not in _issued.get(_list_key(case), set())
    )


def _unknown_catalog_id(case: Any, message: str, details: Any) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    for field, prefix in (("gpu_type", "unknown GPU type "), ("base_model", "unknown base model ")):
        value = body.get(field)
        if isinstance(value, str) and message.startswith(prefix) and "choose one of " in message:
            known = message.rsplit("choose one of ", 1)[-1].split(", ")
            if value not in known:
                return True
    return False


def _does_not_fit(case: Any, message: str, details: Any) -> bool:
    # One GPU named: details is its memory plan (catalog.NotFit); none
    # named: the plans of every GPU, none of which fits.
    plans = details if isinstance(details, list) else [details]
    plans_given = bool(plans) and all(isinstance(p, dict) and "gpu" in p and "required_gib" in p for p in plans)
    if plans_given and (" does not fit on " in message or " fits on no GPU " in message):
        return True
    return message.startswith("max_seq_length ") and "is longer than" in message and "context length" in message


def _budget_below_estimate(case: Any, message: str, details: Any) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    budget, low = body.get("budget_usd"), (details or {}).get("estimate_low_usd") if isinstance(details, dict) else None
    return (
        isinstance(details, dict)
        and details.get("field") == "budget_usd"
        and isinstance(budget, (int, float))
        and isinstance(low, (int, float))
        and budget < low
    )


def _refused_source(case: Any, message: str, details: Any) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    if case.path != "/v1/datasets/import" or not isinstance(body.get("source"), str):
        return False
    source = body["source"]
    refused = (
        message.startswith("source URL refused: ")
        or message.startswith("source URL: ")
        or (message.startswith("source ") and ("must be an https URL or s3://bucket/key" in message or "an S3 source is" in message))
        or message.startswith("source has a space or control character")
        or message.startswith("source is ") and "a URL may have at most" in message
        or (message.startswith("source ") and "bucket name" in message)
        or (message.startswith("source ") and "key has a control character" in message)
        or message.endswith("is not under a bucket and prefix this deployment imports from")
    )
    # A name left out is the source's last path element.
    unnamed = "name" not in body and message.startswith("name ")
    return (refused and source not in _IMPORT_SOURCES) or unnamed


# The sources schemathesis.toml offers, which the stack accepts.
_IMPORT_SOURCES = {"https://example.invalid/exports/chats.jsonl", "http://127.0.0.1:9/chats.jsonl"}


def _endpoint_limit(case: Any, message: str, details: Any) -> bool:
    return case.path == "/v1/webhooks" and message.startswith("an account may register at most ") and "webhook endpoints" in message


def _disabled_endpoint(case: Any, message: str, details: Any) -> bool:
    return case.path.endswith("/redeliver") and " is disabled " in message and message.endswith("enable it first")


_RULES = {
    (400, "GET"): (_foreign_cursor,),
    (400, "POST"): (_unknown_catalog_id, _does_not_fit, _budget_below_estimate, _refused_source),
    (409, "POST"): (_endpoint_limit, _disabled_endpoint),
}


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if getattr(failure, "code", None) != "ST202" or response.status_code not in (400, 409):
        return True
    message, details = _error(response)
    for rule in _RULES.get((response.status_code, case.method.upper()), ()):
        if rule(case, message, details):
            _note(f"{rule.__name__.strip('_')} {case.method.upper()} {case.path}")
            return False
    return True


def _note(line: str) -> None:
    """Appends line to the file BRIGHTRUN_SCHEMATHESIS_DROPPED names, if any."""
    path = os.environ.get("BRIGHTRUN_SCHEMATHESIS_DROPPED")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
