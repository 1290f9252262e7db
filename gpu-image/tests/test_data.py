"""Rendering, the trained-token rule and dataset parsing (tiny tokenizer; the
real Qwen3 tokenizer is in test_tokref_parity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from brightrun_worker import errors
from brightrun_worker.data import IGNORE_INDEX, Message, build, count, encode, read_jsonl, read_jsonl_lines, render
from brightrun_worker.registry import CHAT_RULES
from brightrun_worker.tiny import TOKENIZER

RULE = CHAT_RULES["chatml-no-think"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(str(TOKENIZER))


def trained_text(tok: Tokenizer, msgs: list[Message], max_len=None) -> list[str]:
    ex = encode(tok, msgs, max_seq_length=max_len)
    return [tok.decode([i], skip_special_tokens=False) for i, l in zip(ex.input_ids, ex.labels) if l != IGNORE_INDEX]


def test_render_is_chatml_without_default_system_prompt_or_think() -> None:
    r = render([Message("user", "Hi"), Message("assistant", "Hello")], RULE)
    assert r.text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
    assert r.trained_spans == [(r.text.index("Hello"), r.text.index("Hello") + 5)]
    assert "<think>" not in r.text and "system" not in r.text


def test_only_assistant_content_and_its_im_end_are_trained(tok: Tokenizer) -> None:
    msgs = [Message("system", "Be brief."), Message("user", "Hello"), Message("assistant", "Hello world")]
    pieces = trained_text(tok, msgs)
    assert "".join(pieces) == "Hello world<|im_end|>"
    ex = encode(tok, msgs, max_seq_length=None)
    assert ex.trained == len(pieces) and ex.total == len(ex.input_ids)
    # labels are the token ids themselves where trained (the model shifts)
    assert all(l in (IGNORE_INDEX, i) for i, l in zip(ex.input_ids, ex.labels))


def test_weight_zero_messages_are_not_trained(tok: Tokenizer) -> None:
    msgs = [
        Message("user", "a"),
        Message("assistant", "skip me", weight=0),
        Message("user", "b"),
        Message("assistant", "keep me", weight=1),
    ]
    assert "".join(trained_text(tok, msgs)) == "keep me<|im_end|>"
    _, trained = count(tok, [Message("user", "a"), Message("assistant", "x", weight=0)])
    assert trained == 0


def test_leading_newline_merges_with_the_header_newline_and_is_trained(tok: Tokenizer) -> None:
    msgs = [Message("user", "q"), Message("assistant", "\nThe answer")]
    pieces = trained_text(tok, msgs)
    assert pieces[0].startswith("\n")
    assert "".join(pieces).endswith("The answer<|im_end|>")


def test_empty_assistant_content_trains_only_im_end(tok: Tokenizer) -> None:
    assert trained_text(tok, [Message("user", "q"), Message("assistant", "")]) == ["<|im_end|>"]


def test_literal_im_end_inside_content(tok: Tokenizer) -> None:
    # inside assistant content it is trained (it overlaps the content) ...
    pieces = trained_text(tok, [Message("user", "q"), Message("assistant", "a<|im_end|>b")])
    assert pieces.count("<|im_end|>") == 2
    # ... inside user content it is not
    pieces = trained_text(tok, [Message("user", "x<|im_end|>y"), Message("assistant", "ok")])
    assert pieces == ["ok", "<|im_end|>"] or "".join(pieces) == "ok<|im_end|>"


def test_truncation_keeps_the_start_and_counts_before_truncation(tok: Tokenizer) -> None:
    msgs = [Message("user", "q"), Message("assistant", "word " * 200)]
    full = encode(tok, msgs, max_seq_length=None)
    cut = encode(tok, msgs, max_seq_length=50)
    assert cut.truncated and len(cut.input_ids) == 50 and cut.input_ids == full.input_ids[:50]
    assert (cut.total, cut.trained) == (full.total, full.trained)
    assert cut.trained_kept < full.trained


def test_build_drops_examples_without_trained_tokens(tok: Tokenizer) -> None:
    convs = [
        [Message("user", "q"), Message("assistant", "a")],
        [Message("user", "q"), Message("assistant", "a", weight=0)],
    ]
    examples, stats = build(tok, convs, max_seq_length=256, rule_name="chatml-no-think")
    assert len(examples) == 1 and stats.examples == 2 and stats.examples_used == 1
    with pytest.raises(errors.WorkerError) as ei:
        build(tok, convs[1:], max_seq_length=256, rule_name="chatml-no-think")
    assert ei.value.code == errors.DATASET_INVALID


def test_read_jsonl_reports_bad_lines_with_numbers(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(
        b'{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}\n'
        b"\n"
        b"{not json\n"
        b'{"messages":[{"role":"robot","content":"q"}]}\n'
        b'{"messages":[{"role":"assistant","content":"a","weight":0.5}]}\n'
        b'{"messages":[{"role":"assistant","content":7}]}\n'
        b'{"messages":[]}\n'
        b'["x"]\n'
        b"\xff\xfe\n"
    )
    with pytest.raises(errors.WorkerError) as ei:
        read_jsonl(p)
    e = ei.value
    assert e.code == errors.DATASET_INVALID
    assert e.message.startswith("The dataset has 7 invalid lines: line 3: not valid JSON")
    assert 'line 4: messages[0].role must be one of system, user, assistant, got "robot"' in e.message
    assert "line 5: messages[0].weight must be 0 or 1, got 0.5" in e.message
    assert "(and 2 more bad lines)" in e.message


def test_read_jsonl_parses_weights(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"messages":[{"role":"assistant","content":"a","weight":0,"extra":1}]}\n')
    assert read_jsonl(p) == [[Message("assistant", "a", 0)]]
    p.write_text("\n\n")
    with pytest.raises(errors.WorkerError):
        read_jsonl(p)


@pytest.mark.parametrize("spelling,want", [("1", 1), ("1.0", 1), ("1e0", 1), ("0.0", 0), ("-0.0", 0), ("0", 0)])
def test_a_weight_of_0_or_1_however_spelled_is_read_as_the_validator_reads_it(tmp_path: Path, spelling: str, want: int) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a","weight":' + spelling + "}]}\n")
    (msgs,) = read_jsonl(p)
    assert msgs[1].weight == want and isinstance(msgs[1].weight, int)


def test_a_byte_order_mark_on_the_first_line_is_allowed_as_the_validator_allows_it(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}\n')
    assert read_jsonl_lines(p)[0][0] == 1 and read_jsonl(p)[0][1].content == "a"
