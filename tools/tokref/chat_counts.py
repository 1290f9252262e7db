#!/usr/bin/env python3
"""Recompute testdata/tokenizer/chat_counts.json in place: for each case,
total, trained and ids from Python `tokenizers` (see tokref.count for the
trained rule). Usage: python3 tools/tokref/chat_counts.py [FILE]

With --stdin, read one JSON list of messages per line on stdin and write
[total, trained] for each, one per line (for live tests)."""

import json
import os
import sys
import unicodedata

import tokref

DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "..", "..", "testdata", "tokenizer", "chat_counts.json")


def dumps(v):
    """JSON with readable text, but with invisible and combining characters
    (categories C, M, Z except the space) escaped."""
    out = []
    for ch in json.dumps(v, ensure_ascii=False, separators=(", ", ": ")):
        if unicodedata.category(ch)[0] in "CMZ" and ch != " ":
            cp = ord(ch)
            if cp > 0xFFFF:
                cp -= 0x10000
                out.append("\\u%04x\\u%04x" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)))
            else:
                out.append("\\u%04x" % cp)
        else:
            out.append(ch)
    return "".join(out)


def main():
    if sys.argv[1:] == ["--stdin"]:
        tok = tokref.load()
        for line in sys.stdin:
            if line.strip():
                total, trained, _ = tokref.count(tok, json.loads(line))
                sys.stdout.write(json.dumps([total, trained]) + "\n")
        return
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    tok = tokref.load()
    for c in cases:
        c["total"], c["trained"], c["ids"] = tokref.count(tok, c["messages"])
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i, c in enumerate(cases):
            line = dumps({k: c[k] for k in ("name", "messages", "total", "trained", "ids")})
            f.write("  " + line + (",\n" if i < len(cases) - 1 else "\n"))
        f.write("]\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
