"""The Dockerfile cannot be built here: check what can be checked statically."""

from __future__ import annotations

import re

from conftest import GPU_IMAGE

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([0-9][^\s\\\"']*)$")


def pins_of(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line:
            continue
        m = PIN.match(line)
        assert m, f"not an exact pin: {line!r}"
        out[m.group(1).lower()] = m.group(2)
    return out


def requirements(name: str) -> dict[str, str]:
    return pins_of((GPU_IMAGE / name).read_text().splitlines())


def dockerfile() -> str:
    return (GPU_IMAGE / "Dockerfile").read_text()


def dockerfile_pins() -> dict[str, str]:
    text = dockerfile()
    m = re.search(r"RUN python -m pip install --no-cache-dir \\\n((?:\s+\S+==\S+(?: \\)?\n)+)", text)
    assert m, "the Dockerfile's pinned pip install step was not found"
    return pins_of(m.group(1).splitlines())


def test_dockerfile_pins_equal_requirements() -> None:
    assert dockerfile_pins() == requirements("requirements.txt")


def test_required_versions() -> None:
    req = requirements("requirements.txt")
    assert req["transformers"].startswith("4.57.")
    assert req["bitsandbytes"] == "0.48.2"
    assert {"torch", "peft", "accelerate", "runpod", "safetensors", "tokenizers"} <= set(req)


def test_base_image_matches_the_torch_pin() -> None:
    m = re.search(r"^ARG BASE_IMAGE=runpod/pytorch:1\.0\.2-cu1281-torch(\d)(\d)(\d)-ubuntu2204$", dockerfile(), re.M)
    assert m, "base image must be runpod/pytorch:1.0.2-cu1281-torch2x0-ubuntu2204"
    assert requirements("requirements.txt")["torch"] == ".".join(m.groups())


def test_dev_requirements_match_the_image() -> None:
    req = requirements("requirements.txt")
    dev = requirements("requirements-dev.txt")
    # Every pin of the image, bitsandbytes included: the tests train NF4 on the CPU.
    for name, version in req.items():
        assert dev.get(name) == version, name
    assert {"pytest", "jsonschema"} <= set(dev)


def test_image_is_offline_and_ships_no_weights() -> None:
    text = dockerfile()
    assert re.search(r"HF_HUB_OFFLINE=1", text)
    copies = re.findall(r"^COPY\s+(.+)$", text, re.M)
    assert copies == ["brightrun_worker /app/brightrun_worker"]
    assert 'CMD ["python", "-u", "-m", "brightrun_worker.handler"]' in text
    weights = [p for p in GPU_IMAGE.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".gguf")]
    assert weights == []


def test_the_fast_kernels_are_in_the_default_image() -> None:
    """fla for the gated delta rule, and a Triton with the Hopper backward fix
    (>= 3.7.1), the version the worker's run-time guard checks for."""
    text = dockerfile()
    assert re.search(r"^ARG WITH_FAST_KERNELS=1$", text, re.M)
    assert re.search(r"^\s+flash-linear-attention==0\.5\.\d+ \\$", text, re.M)
    m = re.search(r"^\s+triton==(\d+)\.(\d+)\.(\d+);", text, re.M)
    assert m and tuple(int(x) for x in m.groups()) >= (3, 7, 1)
    assert "causal-conv1d==" not in text


def test_no_machine_paths_in_the_package() -> None:
    for p in list(GPU_IMAGE.rglob("*.py")) + list(GPU_IMAGE.rglob("*.md")) + [GPU_IMAGE / "Dockerfile"]:
        if "__pycache__" in p.parts:
            continue
        assert "/" + "work/" not in p.read_text(encoding="utf-8"), p


def test_style_torch_is_imported_only_where_training_happens() -> None:
    """Module-level imports of the heavy packages only in the modules that
    train (train.py, moe.py) and build models (tiny.py); handler.py imports
    runpod inside main()."""
    import ast

    heavy = {"torch", "transformers", "peft", "bitsandbytes", "runpod", "safetensors"}
    for p in (GPU_IMAGE / "brightrun_worker").glob("*.py"):
        if p.name in ("train.py", "moe.py", "tiny.py"):
            continue
        for node in ast.parse(p.read_text()).body:  # top level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in heavy, f"{p.name}:{node.lineno} imports {n} at module level"


def test_job_path_imports_no_torch() -> None:
    """Everything but training runs without torch being imported."""
    import subprocess
    import sys

    code = (
        "import sys, brightrun_worker.handler, brightrun_worker.local, brightrun_worker.job;"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'runpod') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=GPU_IMAGE, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
