"""A local stand-in for the Go server and S3 (stdlib http.server in a thread):
serves the dataset (with Range), receives and verifies signed callbacks, and
accepts artifact uploads."""

from __future__ import annotations

import json
import threading
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
class State:
    key: bytes = b""
    dataset: bytes = b""
    drop_first_get_after: Optional[int] = None  # break the first GET after N bytes
    gets: list[dict[str, str]] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    upload_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    # callback answer: (status, json) chosen per callback doc
    answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] = lambda doc: (200, {"action": "continue"})
    fail_next_callbacks: int = 0  # answer 503 this many times first


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

    def do_GET(self) -> None:
        st = self.server.state
        if self.path.split("?")[0] != "/dataset.jsonl":
            self._reply(404, b'{"error":"not found"}')
            return
        st.gets.append({k.lower(): v for k, v in self.headers.items()})
        data = st.dataset
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
        if st.drop_first_get_after is not None and len(st.gets) == 1:
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
        self._reply(status, json.dumps(answer).encode())

    def do_PUT(self) -> None:
        st = self.server.state
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        name = self.path.split("?")[0].rsplit("/", 1)[-1]
        st.uploads[name] = body
        st.upload_headers[name] = {k.lower(): v for k, v in self.headers.items()}
        self._reply(200, b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.lock = threading.Lock()


class FakeServer:
    def __init__(self, state: Optional[State] = None) -> None:
        self.state = state or State()
        self._srv = _Server(self.state)
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._srv.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._srv.shutdown()
        self._srv.server_close()

    def docs(self, type_: Optional[str] = None) -> list[dict[str, Any]]:
        return [c.doc for c in self.state.callbacks if type_ is None or c.doc["type"] == type_]
