"""A local stand-in for the Go server and S3 (stdlib http.server in a thread):
serves the dataset (with Range), receives and verifies signed callbacks,
accepts artifact uploads, and answers ``urls`` callbacks the way the
contract says (testdata/contracts/urls_response.v1.schema.json): short-lived
URLs into its own blob store, checkpoint records kept from ``checkpoint``
callbacks, and knobs for a server without the route and for expired URLs."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

from brightrun_worker import signing


@dataclass
class Callback:
    headers: dict[str, str]
    body: bytes
    doc: dict[str, Any]
    verified: bool


@dataclass
class Token:
    purpose: str
    name: str
    method: str
    key: str  # blob key (checkpoint files) or "" (dataset, artifacts)
    expired: bool


@dataclass
class State:
    key: bytes = b""
    dataset: bytes = b""
    validation_dataset: bytes = b""
    drop_first_get_after: Optional[int] = None  # break the first GET after N bytes
    gets: list[dict[str, str]] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    upload_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    # callback answer: (status, json) chosen per callback doc
    answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] = lambda doc: (200, {"action": "continue"})
    fail_next_callbacks: int = 0  # answer 503 this many times first
    # urls: None = answer them; a status (404, 400, 501) = refuse every one, as a server without the route
    urls_refused_with: Optional[int] = None
    # "purpose:name" -> N: the first N URLs handed out for that purpose and file answer 403 (expired) when used
    expire_first: dict[str, int] = field(default_factory=dict)
    # PUTs to URLs this server did not hand out through urls (the spec's) answer 403
    refuse_spec_puts: bool = False
    blobs: dict[str, bytes] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    issued: dict[str, int] = field(default_factory=dict)  # URLs handed out per "purpose:name"
    refused_uses: list[str] = field(default_factory=list)  # "purpose:name" of each URL that answered 403
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # from checkpoint callbacks, verified against blobs


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _token(self, method: str) -> tuple[bool, Optional[Token]]:
        """(allowed, token): a URL with a token must carry a live one."""
        st = self.server.state
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        t = (q.get("t") or [None])[0]
        if t is None:
            return True, None
        tok = st.tokens.get(t)
        if tok is None or tok.method != method or tok.expired:
            if tok is not None:
                st.refused_uses.append(f"{tok.purpose}:{tok.name}")
            return False, tok
        return True, tok

    def do_GET(self) -> None:
        st = self.server.state
        path = self.path.split("?")[0]
        ok, tok = self._token("GET")
        if not ok:
            self._reply(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", "application/xml")
            return
        if path == "/dataset.jsonl":
            data = st.dataset
        elif path == "/validation.jsonl":
            data = st.validation_dataset
        elif path.startswith("/blobs/") and path[len("/blobs/") :] in st.blobs:
            data = st.blobs[path[len("/blobs/") :]]
        else:
            self._reply(404, b'{"error":"not found"}')
            return
        if path == "/dataset.jsonl":
            st.gets.append({k.lower(): v for k, v in self.headers.items()})
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self._reply(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        chunk = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if path == "/dataset.jsonl" and st.drop_first_get_after is not None and len(st.gets) == 1:
            self.wfile.write(chunk[: st.drop_first_get_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)

    def do_POST(self) -> None:
        st = self.server.state
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path != "/callbacks":
            self._reply(404)
            return
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        ok = signing.verify(st.key, hdrs, body)
        doc = json.loads(body)
        with self.server.lock:
            if st.fail_next_callbacks > 0:
                st.fail_next_callbacks -= 1
                self._reply(503, b'{"error":{"code":"unavailable"}}')
                return
            st.callbacks.append(Callback(headers=hdrs, body=body, doc=doc, verified=ok))
        if not ok:
            self._reply(401, b'{"error":{"code":"unauthorized","message":"bad signature"}}')
            return
        status, answer = st.answer(doc)
        if status == 200 and doc["type"] == "urls":
            status, urls = self.server.urls(doc)
            answer = {**answer, **urls} if status == 200 else urls
        elif status == 200 and doc["type"] == "checkpoint":
            self.server.record_checkpoint(doc)
        self._reply(status, json.dumps(answer).encode())

    def do_PUT(self) -> None:
        st = self.server.state
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        ok, tok = self._token("PUT")
        if not ok or (tok is None and st.refuse_spec_puts):
            self._reply(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", "application/xml")
            return
        path = self.path.split("?")[0]
        if path.startswith("/blobs/"):
            st.blobs[path[len("/blobs/") :]] = body
            self._reply(200, b"")
            return
        name = path.rsplit("/", 1)[-1]
        st.uploads[name] = body
        st.upload_headers[name] = {k.lower(): v for k, v in self.headers.items()}
        self._reply(200, b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def _url(self, purpose: str, name: str, method: str, path: str, key: str = "") -> dict[str, Any]:
        st = self.state
        k = f"{purpose}:{name}"
        with self.lock:
            st.issued[k] = st.issued.get(k, 0) + 1
            expired = st.issued[k] <= st.expire_first.get(k, 0)
            token = f"tk{next(self._ids)}"
            st.tokens[token] = Token(purpose=purpose, name=name, method=method, key=key, expired=expired)
        out: dict[str, Any] = {"url": f"{self.base}{path}?t={token}", "method": method}
        if method == "PUT" and name.endswith(".safetensors"):
            out["headers"] = {"Content-Type": "application/octet-stream"}
        return out

    def urls(self, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        st = self.state
        if st.urls_refused_with is not None:
            return st.urls_refused_with, {"error": {"code": "invalid", "message": "unknown callback type urls"}}
        d = doc["data"]
        purpose = d["purpose"]
        names = [f["name"] for f in d.get("files", [])]
        urls: dict[str, Any] = {}
        answer: dict[str, Any] = {"expires_at": "2026-11-25T13:00:00Z"}
        if purpose == "dataset":
            for n in names:
                urls[n] = self._url(purpose, n, "GET", "/" + n)
        elif purpose == "artifact":
            for n in names:
                urls[n] = self._url(purpose, n, "PUT", "/artifacts/" + n)
        elif purpose == "checkpoint":
            for n in names:
                key = f"checkpoints/step-{d['step']}/{n}"
                urls[n] = self._url(purpose, n, "PUT", "/blobs/" + key, key)
        elif purpose == "checkpoint_download":
            stored = [c for c in st.checkpoints if c["ok"] and ("step" not in d or c["step"] == d["step"])]
            if not stored:
                answer["checkpoint"] = None
            else:
                c = max(stored, key=lambda c: c["step"])
                want = names or [f["name"] for f in c["files"]]
                for n in want:
                    urls[n] = self._url(purpose, n, "GET", f"/blobs/checkpoints/step-{c['step']}/{n}")
                answer["checkpoint"] = {"step": c["step"], "checkpoint_id": f"ck-{c['step']}", "attempt": c["attempt"], "files": c["files"]}
        answer["urls"] = urls
        return 200, answer

    def record_checkpoint(self, doc: dict[str, Any]) -> None:
        """What the control plane does: the files must be in storage, as announced."""
        d = doc["data"]
        ok = True
        for f in d["files"]:
            blob = self.state.blobs.get(f"checkpoints/step-{d['step']}/{f['name']}")
            ok = ok and blob is not None and len(blob) == f["size_bytes"] and hashlib.sha256(blob).hexdigest() == f["sha256"]
        self.state.checkpoints.append({"step": d["step"], "files": d["files"], "attempt": doc["attempt"], "ok": ok, "data": d})


class FakeServer:
    def __init__(self, state: Optional[State] = None) -> None:
        self.state = state or State()
        self._srv = _Server(self.state)
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return self._srv.base

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._srv.shutdown()
        self._srv.server_close()

    def docs(self, type_: Optional[str] = None) -> list[dict[str, Any]]:
        return [c.doc for c in self.state.callbacks if type_ is None or c.doc["type"] == type_]
