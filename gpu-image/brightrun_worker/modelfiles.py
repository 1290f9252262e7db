"""The base model's directory on the network volume, checked without torch:
what is missing, whether it is a pre-quantized copy, and what fixes it.

The job checks the directory before it downloads anything, so a volume that
was never prepared fails in seconds with the command that prepares it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def model_files_problem(path: Path) -> Optional[str]:
    """What is missing from a model directory for loading, or None."""
    if not (path / "config.json").is_file():
        return f"No model found at {path} (config.json is missing)."
    if not any(next(path.glob(p), None) for p in WEIGHT_PATTERNS):
        return f"The model at {path} has a config.json but no weights (*.safetensors)."
    if not (path / "tokenizer.json").is_file():
        return f"The model at {path} has no tokenizer.json."
    return None


def prequantized(path: Path) -> Optional[dict[str, Any]]:
    """The quantization_config of a pre-quantized copy (written by
    brightrun_worker.prepare), or None for a plain checkpoint."""
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    q = cfg.get("quantization_config")
    return q if isinstance(q, dict) else None


def missing_model_advice(volume_path: str, hub_id: str, quantization: str) -> str:
    """What puts the model there: preparing the 4-bit copy, or downloading
    the checkpoint (docs/deploy.md)."""
    if quantization == "nf4":
        from .prepare import missing_model_advice as prepare_advice

        return prepare_advice(volume_path, hub_id)
    return f"Download {hub_id} to {volume_path} on the network volume (docs/deploy.md, step 2), then retry."
