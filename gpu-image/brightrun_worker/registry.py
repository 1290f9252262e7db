"""Per-model-family facts the worker and the Go model registry must agree on.

The job spec carries the LoRA targets and the chat rule, so the Go side's
registry decides; this module only holds what the worker itself needs to
check or apply: the chat rules it can render, the modules that must never be
adapted, and the modules kept out of 4-bit quantization.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatRule:
    """How one conversation is rendered into text for the tokenizer."""

    name: str
    im_start: str
    im_end: str
    pad_token: str


CHAT_RULES = {
    # Qwen3-Next-80B-A3B-Instruct (non-thinking): every message rendered as
    # "<|im_start|>{role}\n{content}<|im_end|>\n", no default system prompt,
    # no <think> block.
    "chatml-no-think": ChatRule(
        name="chatml-no-think",
        im_start="<|im_start|>",
        im_end="<|im_end|>",
        pad_token="<|endoftext|>",
    ),
}

# Qwen3-Next: what axolotl's published QLoRA config targets.
QWEN3_NEXT_LORA_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "in_proj_qkvz",
    "in_proj_ba",
    "out_proj",
    "shared_expert.gate_proj",
    "shared_expert.up_proj",
    "shared_expert.down_proj",
)

# Targets the worker refuses: the router and the shared-expert gate (tiny,
# stability), depthwise conv1d (peft needs rank divisible by groups) and
# "all-linear" (it wraps every routed expert).
FORBIDDEN_TARGETS = frozenset(
    {"gate", "mlp.gate", "shared_expert_gate", "mlp.shared_expert_gate", "conv1d", "all-linear"}
)


def forbidden_module(name: str) -> bool:
    """True for a module path that LoRA must never wrap (routed experts, router, gates)."""
    return (
        ".experts." in f".{name}."
        or name.endswith("mlp.gate")
        or name == "gate"
        or name.endswith("shared_expert_gate")
        or name.endswith("conv1d")
    )


# Modules kept in BF16 when loading in 4 bits (BitsAndBytesConfig
# llm_int8_skip_modules). transformers 4.57 skips a module when its *own*
# name is in the list, or when "<entry>." occurs in its dotted path, or the
# entry equals the whole path: "mlp.gate" alone would NOT match the router
# "model.layers.0.mlp.gate", so the router is listed by its own name "gate"
# (no other Qwen3-Next module is called "gate"). Giving the list replaces
# transformers' default, so lm_head must be named too.
QLORA_SKIP_MODULES = ["lm_head", "gate", "mlp.gate", "shared_expert_gate"]
