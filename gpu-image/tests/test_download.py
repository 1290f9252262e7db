"""Dataset download: resume with Range, checksum, bounded retries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fakeserver import FakeServer, State

from brightrun_worker import errors
from brightrun_worker.download import download

DATA = b"".join(b'{"messages":[{"role":"user","content":"line %d"}]}\n' % i for i in range(5000))


def fetch(srv: FakeServer, dest: Path, data: bytes = DATA, **kw):
    return download(
        f"{srv.base}/dataset.jsonl?X-Amz-Signature=1",
        dest,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        sleep=lambda s: None,
        **kw,
    )


def test_downloads_and_verifies(tmp_path: Path) -> None:
    with FakeServer(State(dataset=DATA)) as srv:
        p = fetch(srv, tmp_path / "d.jsonl")
    assert p.read_bytes() == DATA
    assert not (tmp_path / "d.jsonl.part").exists()


def test_resumes_a_broken_transfer_with_range(tmp_path: Path) -> None:
    st = State(dataset=DATA, drop_first_get_after=70_000)
    with FakeServer(st) as srv:
        p = fetch(srv, tmp_path / "d.jsonl")
    assert p.read_bytes() == DATA
    assert len(st.gets) == 2
    assert "range" not in st.gets[0]
    assert st.gets[1]["range"] == "bytes=70000-"


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    corrupted = DATA[:-2] + b"X\n"
    with FakeServer(State(dataset=corrupted)) as srv:
        with pytest.raises(errors.WorkerError) as ei:
            fetch(srv, tmp_path / "d.jsonl")
    assert ei.value.code == errors.DATASET_DOWNLOAD
    assert "does not match its checksum" in ei.value.message
    assert not (tmp_path / "d.jsonl").exists() and not (tmp_path / "d.jsonl.part").exists()


def test_size_mismatch_is_refused(tmp_path: Path) -> None:
    with FakeServer(State(dataset=DATA + b"extra")) as srv:
        with pytest.raises(errors.WorkerError) as ei:
            fetch(srv, tmp_path / "d.jsonl")
    assert ei.value.code == errors.DATASET_DOWNLOAD
    assert "larger than the expected" in ei.value.message


def test_404_is_not_retried(tmp_path: Path) -> None:
    st = State(dataset=DATA)
    with FakeServer(st) as srv:
        with pytest.raises(errors.WorkerError) as ei:
            download(f"{srv.base}/missing", tmp_path / "d", sha256="0" * 64, size_bytes=10, sleep=lambda s: None)
    assert ei.value.code == errors.DATASET_DOWNLOAD and "HTTP 404" in ei.value.message


def test_unreachable_host_fails_after_bounded_tries(tmp_path: Path) -> None:
    slept: list[float] = []
    with pytest.raises(errors.WorkerError) as ei:
        download("http://127.0.0.1:1/d", tmp_path / "d", sha256="0" * 64, size_bytes=10, attempts=3, sleep=slept.append, timeout=2)
    assert ei.value.code == errors.DATASET_DOWNLOAD and "after 3 tries" in ei.value.message
    assert slept == [1.0, 2.0]


def test_should_stop_aborts(tmp_path: Path) -> None:
    def stop() -> None:
        raise errors.WorkerError(errors.CANCELLED, "cancelled")

    with FakeServer(State(dataset=DATA)) as srv:
        with pytest.raises(errors.WorkerError) as ei:
            fetch(srv, tmp_path / "d.jsonl", should_stop=stop)
    assert ei.value.code == errors.CANCELLED
