from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

GPU_IMAGE = Path(__file__).resolve().parent.parent
REPO = GPU_IMAGE.parent
CONTRACTS = REPO / "testdata" / "contracts"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MASTER_SECRET = "test-master-secret"

sys.path.insert(0, str(GPU_IMAGE))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread: on a small shared CPU, more threads make the tiny model's
# steps up to 100x slower (OpenMP oversubscription).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def load_contract(name: str) -> Any:
    return json.loads((CONTRACTS / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-Next checkpoint + the tiny tokenizer, as on the volume."""
    from brightrun_worker import tiny

    return tiny.build(tmp_path_factory.mktemp("tiny-qwen3-next"), seed=0)


@pytest.fixture(scope="session")
def toy_dataset() -> bytes:
    return (FIXTURES / "toy_chat.jsonl").read_bytes()


def tiny_spec(
    base: str,
    model_dir: Path,
    dataset: bytes,
    *,
    job_id: str = "job_test",
    attempt: int = 1,
    **hyper: Any,
) -> dict[str, Any]:
    """The example job spec pointed at the fake server and the tiny model."""
    from brightrun_worker import signing

    spec = copy.deepcopy(load_contract("job_spec.example.json"))
    spec["job_id"] = job_id
    spec["attempt"] = attempt
    spec["base_model"]["volume_path"] = str(model_dir)
    spec["dataset"].update(
        url=f"{base}/dataset.jsonl?sig=abc",
        sha256=hashlib.sha256(dataset).hexdigest(),
        size_bytes=len(dataset),
        examples=8,
    )
    spec["hyperparameters"].update(
        dict(
            learning_rate=1e-3,
            batch_size=2,
            gradient_accumulation=1,
            epochs=2,
            lora_rank=8,
            lora_alpha=16,
            lora_dropout=0.0,
            max_seq_length=256,
            warmup_ratio=0.0,
        )
    )
    spec["hyperparameters"].update(hyper)
    spec["callback"].update(
        url=f"{base}/callbacks",
        secret=signing.encode_secret(signing.derive_job_key(MASTER_SECRET, job_id)),
        progress_every_steps=2,
        progress_every_seconds=60,
    )
    spec["artifacts"] = {
        "adapter_config.json": {"url": f"{base}/artifacts/adapter_config.json?sig=1", "method": "PUT"},
        "adapter_model.safetensors": {
            "url": f"{base}/artifacts/adapter_model.safetensors?sig=2",
            "method": "PUT",
            "headers": {"Content-Type": "application/octet-stream"},
        },
    }
    spec["time_limit_seconds"] = 600
    total, trained = _counts(model_dir, dataset)
    spec["dataset"].update(tokens_total=total, tokens_trained=trained)
    return spec


def _counts(model_dir: Path, dataset: bytes) -> tuple[int, int]:
    """The validator's token counts for the spec (0, 0 when they cannot be made)."""
    from tokenizers import Tokenizer

    from brightrun_worker.data import count, parse_line

    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return 0, 0
    tok = Tokenizer.from_file(str(path))
    total = trained = 0
    try:
        for line in dataset.decode("utf-8").splitlines():
            if line.strip():
                t, k = count(tok, parse_line(line))
                total, trained = total + t, trained + k
    except ValueError:
        return 0, 0
    return total, trained
