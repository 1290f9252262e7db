"""Failure classification and advice."""

from __future__ import annotations

from brightrun_worker import errors

K = errors.Knobs(learning_rate=2e-4, batch_size=4, gradient_accumulation=8, lora_rank=16, max_seq_length=4096)


class OutOfMemoryError(RuntimeError):  # the name torch.cuda.OutOfMemoryError carries
    pass


def test_cuda_oom_by_type_names_the_knobs_to_lower() -> None:
    e = errors.classify(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.11 GiB"), K)
    assert e.code == errors.OOM
    assert e.message == "The GPU ran out of memory during training (Tried to allocate 2.00 GiB)."
    assert e.advice == (
        "Lower batch_size from 4 to 2 (and raise gradient_accumulation from 8 to 16 to keep the same "
        "effective batch), or lora_rank from 16 to 8, or max_seq_length from 4096 to 2048."
    )


def test_oom_by_message_and_at_the_smallest_settings() -> None:
    e = errors.classify(RuntimeError("CUDA error: out of memory"), errors.Knobs(1e-4, 1, 1, 4, 256))
    assert e.code == errors.OOM
    assert "choose a GPU with more memory" in e.advice
    e = errors.classify(RuntimeError("x"), None)
    assert e.code == errors.INTERNAL
    assert errors.classify(MemoryError(), errors.Knobs(1e-4, 1, 1, 8, 256)).advice == "Lower lora_rank from 8 to 4."


def test_nan_advice() -> None:
    e = errors.nan_loss(K, 12, float("nan"))
    assert e.code == errors.NAN_LOSS
    assert e.message == "The training loss became nan at step 12; the run diverged."
    assert e.advice == "Lower learning_rate from 0.0002 to 5e-05 and retry."
    assert "already at its minimum" in errors.nan_advice(errors.Knobs(1e-5, 1, 1, 4, 256))


def test_internal_errors_hide_the_traceback_but_name_the_error() -> None:
    e = errors.classify(KeyError("model.layers.0"), K)
    assert e.code == errors.INTERNAL
    assert e.message == "An unexpected error stopped the worker (KeyError: 'model.layers.0')."
    assert "Traceback" not in e.message and e.advice


def test_worker_errors_pass_through_and_messages_are_clipped() -> None:
    w = errors.WorkerError(errors.TIMEOUT, "x" * 5000)
    assert errors.classify(w) is w
    assert len(w.message) <= 600 and w.advice == errors.default_advice(errors.TIMEOUT)


def test_every_failed_code_has_advice() -> None:
    for code in errors.FAILED_CODES:
        assert errors.default_advice(code).endswith(".")
