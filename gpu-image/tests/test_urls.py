"""URLs asked for through signed callbacks (urls.py, transfers.py): the
answers the broker accepts, its fallback when the server does not hand out
URLs, and transfers that get fresh URLs after a refusal."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import load_contract

from brightrun_worker import errors
from brightrun_worker.spec import FileInfo, Transfer
from brightrun_worker.transfers import Unavailable, fetch, upload
from brightrun_worker.urls import UrlBroker, parse_answer


class Requester:
    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def request(self, type_: str, data: dict[str, Any], *, timeout: float = 0) -> tuple[int, bytes]:
        assert type_ == "urls"
        self.sent.append(data)
        status, body = self.answers.pop(0) if self.answers else (200, {"urls": {}})
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()


def put_url(name: str, n: int = 1) -> dict[str, Any]:
    return {"url": f"https://s3.example/{name}?X-Amz-Signature={n}", "method": "PUT"}


@pytest.mark.parametrize("status", [400, 404, 405, 501])
def test_a_server_without_the_route_makes_the_broker_fall_back_once(status: int, caplog: pytest.LogCaptureFixture) -> None:
    r = Requester((status, {"error": {"code": "invalid", "message": "unknown callback type"}}))
    b = UrlBroker(r)
    with caplog.at_level(logging.WARNING):
        assert b.ask("dataset", [{"name": "dataset.jsonl"}]) is None
        assert b.ask("artifact", [{"name": "adapter_config.json"}]) is None
    assert b.supported is False and b.refused_status == status
    assert len(r.sent) == 1  # not asked again
    assert sum("does not hand out URLs" in m for m in caplog.messages) == 1


@pytest.mark.parametrize("status", [0, 422, 429, 503])
def test_a_transient_failure_or_a_refused_request_fails_one_request_only(status: int) -> None:
    r = Requester((status, b""), (200, {"urls": {"dataset.jsonl": {"url": "https://s3.example/d", "method": "GET"}}}))
    b = UrlBroker(r)
    assert b.ask("dataset", [{"name": "dataset.jsonl"}]) is None and b.supported is None
    g = b.ask("dataset", [{"name": "dataset.jsonl"}])
    assert g is not None and g.urls["dataset.jsonl"].url == "https://s3.example/d" and b.supported is True


@pytest.mark.parametrize(
    "body,why",
    [
        (b"not json", "not JSON"),
        ({"urls": {}}, "lacks adapter_config.json"),
        ({"urls": {"adapter_config.json": {"url": "https://x/y", "method": "GET"}}}, "must be one of PUT"),
        ({"urls": {"adapter_config.json": {"url": "ftp://x/y", "method": "PUT"}}}, "http(s) URL"),
        ({"urls": {"adapter_config.json": {"url": "https://x/y", "method": "PUT", "headers": {"a": 1}}}}, "string header values"),
    ],
)
def test_an_unusable_answer_is_refused(body: Any, why: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_answer(raw, "artifact", ["adapter_config.json"])
    b = UrlBroker(Requester((200, body)))
    assert b.ask("artifact", [{"name": "adapter_config.json", "size_bytes": 1, "sha256": "0" * 64}]) is None
    assert b.supported is None


def test_the_request_carries_purpose_files_step_and_retry() -> None:
    r = Requester((200, {"urls": {"a.json": put_url("a.json")}}))
    b = UrlBroker(r)
    b.ask("checkpoint", [{"name": "a.json", "size_bytes": 3, "sha256": "0" * 64}], step=40, retry=2)
    assert r.sent == [{"purpose": "checkpoint", "files": [{"name": "a.json", "size_bytes": 3, "sha256": "0" * 64}], "step": 40, "retry": 2}]
    v = jsonschema.Draft202012Validator(load_contract("callback.v1.schema.json"))
    v.validate({"version": 1, "type": "urls", "job_id": "j", "attempt": 1, "seq": 3, "sent_at": "2026-11-25T12:00:00Z", "data": r.sent[0]})


def test_a_checkpoint_download_answer_carries_the_manifest() -> None:
    doc = load_contract("urls_response.checkpoint_download.json")
    g = parse_answer(json.dumps(doc).encode(), "checkpoint_download", [])
    assert g.checkpoint is not None and g.checkpoint.step == doc["checkpoint"]["step"]
    assert {f.name for f in g.checkpoint.files} == set(g.urls)
    none = parse_answer(json.dumps({"urls": {}, "checkpoint": None}).encode(), "checkpoint_download", [])
    assert none.checkpoint is None and not none.urls


def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, body in (("adapter_config.json", b"{}"), ("adapter_model.safetensors", b"x" * 100)):
        p = tmp_path / name
        p.write_bytes(body)
        out[name] = p
    return out


class Store:
    """PUT targets: URLs whose signature is in ``expired`` answer 403."""

    def __init__(self, expired: set[str] = frozenset()) -> None:
        self.expired = set(expired)
        self.puts: list[str] = []
        self.stored: dict[str, bytes] = {}

    def put(self, url: str, path: Path, headers: Any) -> None:
        self.puts.append(url)
        if url in self.expired:
            e = errors.WorkerError(errors.UPLOAD, f"Uploading {path.name} failed (HTTP 403).")
            e.http_status = 403
            raise e
        self.stored[url.split("?")[0].rsplit("/", 1)[1]] = path.read_bytes()


def test_an_expired_upload_url_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    names = ["adapter_config.json", "adapter_model.safetensors"]
    r = Requester(
        (200, {"urls": {n: put_url(n, 1) for n in names}}),
        (200, {"urls": {"adapter_model.safetensors": put_url("adapter_model.safetensors", 2)}}),
    )
    store = Store(expired={put_url("adapter_model.safetensors", 1)["url"]})
    infos = upload(UrlBroker(r), "artifact", files(tmp_path), put=store.put, sleep=lambda s: None)
    assert [i.name for i in infos] == names
    assert infos[1].sha256 == hashlib.sha256(b"x" * 100).hexdigest() and infos[1].size_bytes == 100
    assert set(store.stored) == set(names)
    assert r.sent[1]["retry"] == 1 and [f["name"] for f in r.sent[1]["files"]] == ["adapter_model.safetensors"]


def test_an_upload_that_keeps_failing_is_an_upload_failure(tmp_path: Path) -> None:
    r = Requester(*[(200, {"urls": {n: put_url(n, i) for n in ("adapter_config.json", "adapter_model.safetensors")}}) for i in range(3)])
    store = Store(expired={put_url(n, i)["url"] for n in ("adapter_config.json", "adapter_model.safetensors") for i in range(3)})
    with pytest.raises(errors.WorkerError) as ei:
        upload(UrlBroker(r), "artifact", files(tmp_path), put=store.put, sleep=lambda s: None)
    assert ei.value.code == errors.UPLOAD and "after 3 rounds of fresh URLs" in ei.value.message
    assert len(r.sent) == 3


def test_without_the_route_an_upload_uses_the_fallback_or_is_unavailable(tmp_path: Path) -> None:
    fallback = {n: Transfer(f"https://spec.example/{n}", "PUT", {}) for n in ("adapter_config.json", "adapter_model.safetensors")}
    store = Store()
    upload(UrlBroker(Requester((404, {}))), "artifact", files(tmp_path), fallback=fallback, put=store.put, sleep=lambda s: None)
    assert all(u.startswith("https://spec.example/") for u in store.puts)
    with pytest.raises(Unavailable):
        upload(UrlBroker(Requester((404, {}))), "checkpoint", files(tmp_path), step=3, put=store.put, sleep=lambda s: None)


def test_an_expired_download_url_is_replaced_by_a_fresh_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from brightrun_worker import transfers

    body = b"hello\n"
    info = FileInfo("dataset.jsonl", len(body), hashlib.sha256(body).hexdigest())
    seen: list[str] = []

    def download(url: str, dest: Path, **kw: Any) -> Path:
        seen.append(url)
        if url.endswith("1"):
            e = errors.WorkerError(errors.DATASET_DOWNLOAD, "The dataset URL answered HTTP 403 (the download link may have expired).")
            e.http_status = 403
            raise e
        dest.write_bytes(body)
        return dest

    monkeypatch.setattr(transfers, "download", download)
    r = Requester(
        (200, {"urls": {"dataset.jsonl": {"url": "https://s3.example/d?sig=1", "method": "GET"}}}),
        (200, {"urls": {"dataset.jsonl": {"url": "https://s3.example/d?sig=2", "method": "GET"}}}),
    )
    fetch(UrlBroker(r), "dataset", info, tmp_path / "d.jsonl", fallback=Transfer("https://spec.example/d", "GET", {}))
    assert seen == ["https://s3.example/d?sig=1", "https://s3.example/d?sig=2"]
    # without the route, a refused spec URL is the end
    seen.clear()
    with pytest.raises(errors.WorkerError, match="HTTP 403"):
        fetch(UrlBroker(Requester((404, {}))), "dataset", info, tmp_path / "e.jsonl", fallback=Transfer("https://spec.example/1", "GET", {}))
    assert seen == ["https://spec.example/1"]


S3_ERROR = "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{msg}</Message></Error>"


@pytest.mark.parametrize(
    "status,code,msg,replaced",
    [
        # The signing role's session token expired: S3's answer, whatever X-Amz-Expires said.
        (400, "ExpiredToken", "The provided token has expired.", True),
        (403, "AccessDenied", "Request has expired", True),
        (400, "InvalidArgument", "Invalid argument.", False),
    ],
)
def test_a_download_refused_for_expired_credentials_gets_a_fresh_url(
    tmp_path: Path, status: int, code: str, msg: str, replaced: bool
) -> None:
    """Through the real download: an S3 refusal that means the URL expired
    (400 ExpiredToken included) gets a fresh URL; another 400 does not."""
    import http.server
    import threading

    body = b'{"messages": []}\n'
    served: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            served.append(self.path)
            if self.path.endswith("sig=1"):
                payload = S3_ERROR.format(code=code, msg=msg).encode()
                self.send_response(status)
            else:
                payload = body
                self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}/d"
        r = Requester(
            (200, {"urls": {"dataset.jsonl": {"url": base + "?sig=1", "method": "GET"}}}),
            (200, {"urls": {"dataset.jsonl": {"url": base + "?sig=2", "method": "GET"}}}),
        )
        info = FileInfo("dataset.jsonl", len(body), hashlib.sha256(body).hexdigest())
        if replaced:
            out = fetch(UrlBroker(r), "dataset", info, tmp_path / "d.jsonl")
            assert out.read_bytes() == body and served == ["/d?sig=1", "/d?sig=2"]
            assert [s.get("retry", 0) for s in r.sent] == [0, 1]
        else:
            with pytest.raises(errors.WorkerError, match=f"HTTP {status}") as e:
                fetch(UrlBroker(r), "dataset", info, tmp_path / "d.jsonl")
            assert not e.value.url_expired and served == ["/d?sig=1"]
    finally:
        srv.shutdown()
