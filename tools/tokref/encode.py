#!/usr/bin/env python3
"""Reference encoder (Python `tokenizers`): reads one JSON string per line on
stdin and writes the Qwen3 token ids of each as a JSON array, one per line
(add_special_tokens=False)."""

import json
import sys

import tokref


def main():
    tok = tokref.load()
    texts = [json.loads(line) for line in sys.stdin if line.strip()]
    out = sys.stdout
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        out.write(json.dumps(enc.ids, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
