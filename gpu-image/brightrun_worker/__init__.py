"""Bright Run GPU worker: trains LoRA / QLoRA adapters on RunPod Serverless.

Only ``brightrun_worker.train`` (and the test helper ``brightrun_worker.tiny``)
import torch, transformers and peft; every other module needs nothing beyond
the standard library and ``tokenizers``, so the job logic is testable on any
machine.
"""

__version__ = "0.1.0"
