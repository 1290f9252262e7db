"""Chat dataset parsing, rendering, tokenization and label masking.

The trained-token RULE, shared with the Go validator (implement exactly):
tokenize the whole rendered conversation with offsets; a token is trained iff
its character span overlaps the character span of the content of an
assistant message whose weight is absent or 1, or it is the ``<|im_end|>``
token that closes such a message. Spans are half-open [start, end); two spans
overlap iff start1 < end2 and start2 < end1 (so empty content overlaps
nothing, and only its closing ``<|im_end|>`` is trained).

Needs only the ``tokenizers`` package (any object with ``encode(text,
add_special_tokens=False)`` returning ``.ids`` / ``.offsets`` will do).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol, Sequence

from . import errors
from .registry import CHAT_RULES, ChatRule

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100
MAX_REPORTED_LINES = 5


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    weight: Optional[int] = None  # None (absent), 0 or 1

    @property
    def trained(self) -> bool:
        return self.role == "assistant" and self.weight != 0


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss is computed
    total: int  # tokens of the whole rendered conversation (before truncation)
    trained: int  # trained tokens before truncation (the Go validator's count)
    truncated: bool

    @property
    def trained_kept(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


class Encoding(Protocol):
    ids: Sequence[int]
    offsets: Sequence[tuple[int, int]]


class Tokenizer(Protocol):
    def encode(self, sequence: str, add_special_tokens: bool = ...) -> Encoding: ...

    def token_to_id(self, token: str) -> Optional[int]: ...


# -- parsing ------------------------------------------------------------------


def parse_line(line: str) -> list[Message]:
    """One JSONL line → messages; ValueError with a plain reason when invalid."""
    try:
        doc = json.loads(line)
    except ValueError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(doc, dict):
        raise ValueError('must be a JSON object with a "messages" list')
    msgs = doc.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError('"messages" must be a non-empty list')
    out: list[Message] = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ValueError(f"{where} must be an object")
        role = m.get("role")
        if role not in ROLES:
            raise ValueError(f'{where}.role must be one of system, user, assistant, got {json.dumps(role)}')
        content = m.get("content")
        if not isinstance(content, str):
            raise ValueError(f"{where}.content must be a string")
        weight = m.get("weight")
        if weight is not None:
            # 0 or 1 however it is spelled (1, 1.0, 1e0, -0.0), as the
            # control plane's validator accepts it.
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight not in (0, 1):
                raise ValueError(f"{where}.weight must be 0 or 1, got {json.dumps(weight)}")
            weight = int(weight)
        out.append(Message(role=role, content=content, weight=weight))
    return out


def read_jsonl(path: Path) -> list[list[Message]]:
    """All conversations of a chat-JSONL file. Blank lines are skipped; every
    bad line is counted and the first few are named in a dataset_invalid error."""
    return [msgs for _, msgs in read_jsonl_lines(path)]


def read_jsonl_lines(path: Path) -> list[tuple[int, list[Message]]]:
    """read_jsonl with each conversation's 1-based line number (blank lines
    count as lines, as in the validator's report)."""
    convs: list[tuple[int, list[Message]]] = []
    bad: list[str] = []
    nbad = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]  # a byte order mark, as the validator allows
            except UnicodeDecodeError:
                nbad += 1
                if len(bad) < MAX_REPORTED_LINES:
                    bad.append(f"line {lineno}: not valid UTF-8")
                continue
            if not line.strip():
                continue
            try:
                convs.append((lineno, parse_line(line)))
            except ValueError as e:
                nbad += 1
                if len(bad) < MAX_REPORTED_LINES:
                    bad.append(f"line {lineno}: {e}")
    if nbad:
        more = f" (and {nbad - len(bad)} more bad lines)" if nbad > len(bad) else ""
        raise errors.WorkerError(
            errors.DATASET_INVALID,
            f"The dataset has {nbad} invalid line{'s' if nbad != 1 else ''}: " + "; ".join(bad) + more + ".",
        )
    if not convs:
        raise errors.WorkerError(errors.DATASET_INVALID, "The dataset has no conversations.")
    return convs


# -- rendering and masking ----------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    text: str
    # (content_start, content_end) of each trained assistant message, in order
    trained_spans: list[tuple[int, int]]


def render(messages: Iterable[Message], rule: ChatRule) -> Rendered:
    """Render with "<|im_start|>{role}\\n{content}<|im_end|>\\n" per message."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in messages:
        head = f"{rule.im_start}{m.role}\n"
        parts.append(head)
        pos += len(head)
        start = pos
        parts.append(m.content)
        pos += len(m.content)
        if m.trained:
            spans.append((start, pos))
        tail = f"{rule.im_end}\n"
        parts.append(tail)
        pos += len(tail)
    return Rendered(text="".join(parts), trained_spans=spans)


def trained_mask(rendered: Rendered, offsets: Sequence[tuple[int, int]], ids: Sequence[int], im_end_id: int, rule: ChatRule) -> list[bool]:
    """Apply the RULE: one flag per token."""
    mask = [False] * len(ids)
    if not rendered.trained_spans:
        return mask
    # <|im_end|> closing a trained message starts exactly where its content ends.
    closers = {end for _, end in rendered.trained_spans}
    spans = rendered.trained_spans
    j = 0
    for i, (s, e) in enumerate(offsets):
        if ids[i] == im_end_id and s in closers and e - s == len(rule.im_end):
            mask[i] = True
            continue
        # Tokens come in text order; skip spans that end at or before this token.
        while j < len(spans) and spans[j][1] <= s:
            j += 1
        k = j
        while k < len(spans) and spans[k][0] < e:
            if s < spans[k][1] and spans[k][0] < e:
                mask[i] = True
                break
            k += 1
    return mask


def special_id(tokenizer: Tokenizer, token: str) -> int:
    tid = tokenizer.token_to_id(token)
    if tid is None:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The base model's tokenizer has no {token} token, so it cannot render this chat format.",
        )
    return tid


def count(tokenizer: Tokenizer, messages: Sequence[Message], rule_name: str = "chatml-no-think") -> tuple[int, int]:
    """(total, trained) tokens of one conversation: the Go validator's numbers."""
    ex = encode(tokenizer, messages, max_seq_length=None, rule_name=rule_name)
    return ex.total, ex.trained


def encode(
    tokenizer: Tokenizer,
    messages: Sequence[Message],
    *,
    max_seq_length: Optional[int],
    rule_name: str = "chatml-no-think",
) -> Example:
    rule = CHAT_RULES[rule_name]
    im_end_id = special_id(tokenizer, rule.im_end)
    rendered = render(messages, rule)
    enc = tokenizer.encode(rendered.text, add_special_tokens=False)
    ids = list(enc.ids)
    mask = trained_mask(rendered, enc.offsets, ids, im_end_id, rule)
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]
    total, trained = len(ids), sum(mask)
    truncated = max_seq_length is not None and len(ids) > max_seq_length
    if truncated:
        ids, labels = ids[:max_seq_length], labels[:max_seq_length]
    return Example(input_ids=ids, labels=labels, total=total, trained=trained, truncated=truncated)


@dataclass(frozen=True)
class DatasetStats:
    examples: int  # conversations in the file
    examples_used: int  # with at least one trained token after truncation
    examples_truncated: int
    tokens_total: int  # before truncation (Go's count)
    tokens_trained: int  # before truncation (Go's count)
    tokens_kept: int  # input tokens after truncation, one epoch
    tokens_trained_kept: int  # loss tokens after truncation, one epoch

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def build(
    tokenizer: Tokenizer,
    conversations: Sequence[Sequence[Message]],
    *,
    max_seq_length: int,
    rule_name: str,
) -> tuple[list[Example], DatasetStats]:
    """Encode every conversation; drop those left with no trained token."""
    examples: list[Example] = []
    total = trained = truncated = kept = trained_kept = 0
    for msgs in conversations:
        ex = encode(tokenizer, msgs, max_seq_length=max_seq_length, rule_name=rule_name)
        total += ex.total
        trained += ex.trained
        truncated += int(ex.truncated)
        tk = ex.trained_kept
        if tk == 0:
            continue
        kept += len(ex.input_ids)
        trained_kept += tk
        examples.append(ex)
    stats = DatasetStats(
        examples=len(conversations),
        examples_used=len(examples),
        examples_truncated=truncated,
        tokens_total=total,
        tokens_trained=trained,
        tokens_kept=kept,
        tokens_trained_kept=trained_kept,
    )
    if not examples:
        raise errors.WorkerError(
            errors.DATASET_INVALID,
            "No conversation has an assistant message to train on (within max_seq_length): "
            "every assistant message has weight 0 or lies past the truncation point.",
            "Add assistant messages with weight 1 (or no weight), or raise max_seq_length.",
        )
    return examples, stats


# -- the validation split ------------------------------------------------------
#
# Which conversations are held out for evaluation: a pure function of the
# line numbers, the count and the settings, so the Go side (token counts,
# estimates) computes the same split without the worker. Whole lines are held
# out, so a conversation is never cut in two.
#
#   key(line)  = SHA-256(UTF-8("brightrun/validation-split/v1:" + seed + ":" + line))
#   k          = held_out_count(n, split, max_examples)
#   held out   = the k lines with the smallest keys (bytewise; ties cannot happen)
#
# n is the number of conversations (non-blank lines); line is the 1-based
# line number in the file; seed and max_examples come from the spec's
# ``validation`` (defaults 0 and 200). testdata/contracts/validation_split.json
# holds vectors.

SPLIT_DOMAIN = "brightrun/validation-split/v1"
DEFAULT_SPLIT = 0.1
DEFAULT_SPLIT_MIN_EXAMPLES = 200  # fewer conversations: no default hold-out, all of them train


def default_validation_split(n: int) -> float:
    """The share held out when the spec does not say: none below
    DEFAULT_SPLIT_MIN_EXAMPLES conversations (so small datasets still train
    on everything), else 10 % (capped by max_examples)."""
    return 0.0 if n < DEFAULT_SPLIT_MIN_EXAMPLES else DEFAULT_SPLIT


def held_out_count(n: int, split: Optional[float], max_examples: int) -> int:
    """floor(split x n) in IEEE double, at most max_examples, and at least one
    conversation left to train on."""
    frac = default_validation_split(n) if split is None else split
    k = int(math.floor(frac * n))
    return max(0, min(k, max_examples, n - 1))


def split_key(seed: int, line: int) -> bytes:
    return hashlib.sha256(f"{SPLIT_DOMAIN}:{seed}:{line}".encode("utf-8")).digest()


def validation_lines(lines: Sequence[int], split: Optional[float], max_examples: int, seed: int = 0) -> set[int]:
    """The line numbers held out for evaluation."""
    k = held_out_count(len(lines), split, max_examples)
    if k <= 0:
        return set()
    ranked = sorted(lines, key=lambda ln: (split_key(seed, ln), ln))
    return set(ranked[:k])


def load_messages(raw: Any) -> list[Message]:
    """Messages from an already-decoded list (test fixtures)."""
    return parse_line(json.dumps({"messages": raw}))
