"""Signed worker callbacks (contract: testdata/contracts/callback.v1.schema.json).

Messages go out in order from one background thread, so training never waits
on the network: ``send`` returns at once unless ``wait=True`` (used for the
terminal messages). Network errors, 429 and 5xx are retried a bounded number
of times with exponential backoff; other 4xx (and 501) are dropped. A
response ``{"action": "stop"}`` (job cancelled) or a 409 / 410 (attempt
superseded) sets ``stop`` so the training loop ends at its next step.

``request`` is the one message whose answer matters beyond its action: a
``urls`` callback asks for presigned URLs and the server's 200 body carries
them (urls.py). It goes through the same queue, so it keeps the order, the
seq numbering, the signing and the retries of every other message.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from . import signing

log = logging.getLogger(__name__)

VERSION = 1
TYPES = ("started", "stage", "progress", "artifact", "completed", "failed", "checkpoint", "urls")
STAGES = ("download", "load", "train", "save", "upload")

# (url, body, headers, timeout) -> (status, response body); raises OSError on network errors.
Transport = Callable[[str, bytes, dict[str, str], float], tuple[int, bytes]]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(1 << 16)
    except urllib.error.HTTPError as e:
        try:
            data = e.read(1 << 16)
        except OSError:
            data = b""
        return e.code, data


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(message: dict[str, Any]) -> bytes:
    """The exact bytes sent (compact JSON, UTF-8)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


@dataclass
class _Item:
    seq: int
    type: str
    body: bytes
    final: bool
    done: threading.Event = field(default_factory=threading.Event)
    delivered: bool = False
    status: int = 0  # the last HTTP status answered (0: none, network errors only)
    response: bytes = b""


class CallbackClient:
    def __init__(
        self,
        url: str,
        key: bytes,
        job_id: str,
        attempt: int,
        *,
        transport: Transport = http_post,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        retries: int = 3,
        final_retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._key = key
        self.job_id = job_id
        self.attempt = attempt
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._retries = retries
        self._final_retries = final_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._seq = 0
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Optional[_Item]]" = queue.Queue()
        self.stop = threading.Event()
        self.stop_reason = ""
        self.superseded = False
        self._thread = threading.Thread(target=self._run, name="brightrun-callbacks", daemon=True)
        self._thread.start()

    # -- public -------------------------------------------------------------

    def send(self, type_: str, data: dict[str, Any], *, wait: bool = False, wait_timeout: float = 120.0) -> bool:
        """Queue one message; with wait=True block until it is delivered or given up."""
        item = self._enqueue(type_, data, final=wait)
        if not wait:
            return True
        item.done.wait(wait_timeout)
        return item.delivered

    def _enqueue(self, type_: str, data: dict[str, Any], *, final: bool) -> _Item:
        if type_ not in TYPES:
            raise ValueError(f"unknown callback type {type_!r}")
        # seq is taken and the item queued under one lock, so the queue's
        # order is the seq order whichever thread sends.
        with self._lock:
            self._seq += 1
            seq = self._seq
            message = {
                "version": VERSION,
                "type": type_,
                "job_id": self.job_id,
                "attempt": self.attempt,
                "seq": seq,
                "sent_at": rfc3339(self._clock()),
                "data": data,
            }
            item = _Item(seq=seq, type=type_, body=encode(message), final=final)
            self._queue.put(item)
        return item

    def request(self, type_: str, data: dict[str, Any], *, timeout: float = 120.0) -> tuple[int, bytes]:
        """Send one message and wait for its answer: (HTTP status, body) of
        the last try; (0, b"") when no answer came (network errors, given up,
        superseded before sending, or the wait timed out)."""
        item = self._enqueue(type_, data, final=False)
        if not item.done.wait(timeout):
            return 0, b""
        return item.status, item.response

    def flush(self, timeout: float = 30.0) -> None:
        """Wait (bounded) until every queued message is delivered or given up."""
        ev = threading.Event()
        marker = _Item(seq=-1, type="", body=b"", final=False, done=ev)
        self._queue.put(marker)
        ev.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout=1.0)

    # -- sender thread ------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if item.seq > 0 and not self.superseded:
                    item.delivered = self._deliver(item)
            except Exception:  # never let the sender die
                log.exception("callback %s seq=%d: unexpected error", item.type, item.seq)
            finally:
                item.done.set()

    def _deliver(self, item: _Item) -> bool:
        webhook_id = f"{self.job_id}.{self.attempt}.{item.seq}"
        tries = 1 + (self._final_retries if item.final else self._retries)
        for i in range(tries):
            if i:
                self._sleep(min(self._max_backoff, self._backoff * (2 ** (i - 1))))
            ts = int(self._clock())
            hdrs = signing.headers(self._key, webhook_id, ts, item.body)
            try:
                status, resp = self._transport(self.url, item.body, hdrs, self._timeout)
            except OSError as e:  # URLError, timeouts, connection resets
                log.warning("callback %s seq=%d: try %d/%d failed: %s", item.type, item.seq, i + 1, tries, e)
                continue
            item.status, item.response = status, resp
            if 200 <= status < 300:
                self._read_action(resp)
                return True
            if status in (409, 410):
                self.superseded = True
                self.stop_reason = _reason(resp) or "this attempt was superseded"
                self.stop.set()
                log.warning("callback %s seq=%d: HTTP %d, attempt superseded: stopping", item.type, item.seq, status)
                return False
            if status == 429 or (status >= 500 and status != 501):
                log.warning("callback %s seq=%d: HTTP %d, try %d/%d", item.type, item.seq, status, i + 1, tries)
                continue
            level = logging.INFO if item.type == "urls" else logging.ERROR  # urls: the caller decides (urls.py)
            log.log(level, "callback %s seq=%d: HTTP %d, not retried: %s", item.type, item.seq, status, resp[:300])
            return False
        log.error("callback %s seq=%d: given up after %d tries", item.type, item.seq, tries)
        return False

    def _read_action(self, resp: bytes) -> None:
        try:
            doc = json.loads(resp or b"{}")
        except ValueError:
            return
        if isinstance(doc, dict) and doc.get("action") == "stop":
            self.stop_reason = _reason(resp) or "the job was cancelled"
            self.stop.set()


def _reason(resp: bytes) -> str:
    try:
        doc = json.loads(resp or b"{}")
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    r = doc.get("reason")
    if isinstance(r, str):
        return r[:300]
    err = doc.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"][:300]
    return ""
