"""A tiny random Qwen3-Next checkpoint for CPU tests and the local worker mode.

    python -m brightrun_worker.tiny --out /tmp/tiny-qwen3-next

writes config.json, model.safetensors, tokenizer.json and
tokenizer_config.json: a directory the trainer loads exactly like the real
model's directory on the network volume (same architecture and module names,
4 layers, hidden size 64, 4 routed experts). Imports torch and transformers
(a development tool, not part of the job path).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
TOKENIZER = ASSETS / "tiny-tokenizer.json"


def config_kwargs(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        layer_types=["linear_attention"] * 3 + ["full_attention"],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_conv_kernel_dim=4,
        num_experts=4,  # the default is 512
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=32,
        decoder_sparse_step=1,
        hidden_act="silu",
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        use_cache=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build(out: Path, *, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(TOKENIZER))
    kwargs = config_kwargs(tok.get_vocab_size(with_added_tokens=True))
    kwargs.update(
        eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=tok.token_to_id("<|endoftext|>"),
    )
    config = Qwen3NextConfig(**kwargs)
    torch.manual_seed(seed)
    model = Qwen3NextForCausalLM(config)
    # A wider output layer than the default init (std 0.02): with hidden size
    # 64 the default caps the logits near +-1.3, so no adapter could bring the
    # loss far below ln(vocab); std 0.1 lets LoRA memorize a toy set quickly.
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.1)
    model = model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copyfile(TOKENIZER, out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "Qwen2TokenizerFast",
                "add_bos_token": False,
                "add_prefix_space": False,
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "model_max_length": 2048,
            },
            indent=2,
        )
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="directory to write the tiny checkpoint to")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(build(args.out, seed=args.seed))


if __name__ == "__main__":
    main()
