"""Callback signing against the shared vectors (the Go side checks the same)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from conftest import load_contract

from brightrun_worker import signing, spec

VECTORS = load_contract("signatures.json")


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_vector(v: dict) -> None:
    key = signing.derive_job_key(v["master_secret"], v["job_id"])
    assert signing.encode_secret(key) == v["job_secret"]
    assert spec.decode_secret(v["job_secret"]) == key
    body = v["body"].encode("utf-8")
    assert signing.sign(key, v["webhook_id"], v["timestamp"], body) == v["signature"]
    # independently of the module, straight from the rule in the README
    k2 = hmac.new(v["master_secret"].encode(), ("brightrun/callback/v1/" + v["job_id"]).encode(), hashlib.sha256).digest()
    mac = hmac.new(k2, f'{v["webhook_id"]}.{v["timestamp"]}.'.encode() + body, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(mac).decode() == v["signature"]
    hdrs = {"webhook-id": v["webhook_id"], "webhook-timestamp": str(v["timestamp"]), "webhook-signature": v["signature"]}
    assert signing.verify(key, hdrs, body, now=v["timestamp"])


def test_standard_webhooks_reference_vector() -> None:
    r = VECTORS["standard_webhooks_reference"]
    key = spec.decode_secret(r["job_secret"])
    assert signing.sign(key, r["webhook_id"], r["timestamp"], r["body"].encode()) == r["signature"]


def test_verify_rejects_tampering_and_old_timestamps() -> None:
    key = signing.derive_job_key("m", "j")
    body = b'{"a":1}'
    h = signing.headers(key, "j.1.1", 1000, body)
    assert h["Content-Type"] == "application/json"
    assert signing.verify(key, h, body, now=1000)
    assert signing.verify(key, {k.upper(): v for k, v in h.items()}, body, now=1000)
    assert not signing.verify(key, h, b'{"a":2}', now=1000)
    assert not signing.verify(signing.derive_job_key("m", "other"), h, body, now=1000)
    assert not signing.verify(key, h, body, now=1000 + 301)
    multi = dict(h, **{"webhook-signature": "v1,AAAA " + h["webhook-signature"]})
    assert signing.verify(key, multi, body, now=1000)
    assert not signing.verify(key, {"webhook-id": "x"}, body, now=1000)
