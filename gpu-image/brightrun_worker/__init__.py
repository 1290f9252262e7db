"""Bright Run GPU worker: trains LoRA / QLoRA adapters on RunPod Serverless.

Only the modules that train or build models import torch, transformers and
peft: ``train`` and ``moe`` at module level, ``prepare`` inside the function
that quantizes, and the test helper ``tiny``; every other module needs
nothing beyond the standard library and ``tokenizers``, so the job logic is
testable on any machine.
"""

__version__ = "0.1.0"
