"""Presigned URLs asked for when they are needed, through a signed ``urls``
callback (contract: testdata/contracts/callback.v1.schema.json, ``urls``, and
urls_response.v1.schema.json), instead of URLs minted at dispatch that S3
stops honouring once the dispatcher's temporary credentials expire.

One exchange: the worker POSTs ``{"type": "urls", "data": {"purpose", "files",
"step"?, "checkpoint_id"?, "retry"?}}`` to the callback URL, signed and
numbered like every callback (same seq, webhook-id, retries, 409 / 410
fencing), and the server's 200 body carries ``{"urls": {name: {url, method,
headers}}, "expires_at", "checkpoint"?}``.

A server that does not implement it answers 400 (today's server: an unknown
callback type), 404, 405 or 501: the broker then remembers that URLs cannot
be asked for, and the job falls back to the job spec's URLs (dataset,
artifacts, ``resume.urls``) and skips checkpoint uploads (logged once). A
request the server understood and cannot serve (422), a transient failure
(network, 429, 5xx after the client's retries) or a malformed answer fails
only that one request. Nothing here ever fails a job.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Protocol, Sequence

from . import spec as spec_mod

log = logging.getLogger(__name__)

PURPOSES = ("dataset", "checkpoint", "checkpoint_download", "artifact")
UPLOAD_PURPOSES = ("checkpoint", "artifact")
# Answers that mean "this server does not hand out URLs this way".
UNSUPPORTED_STATUSES = (400, 404, 405, 501)
DATASET_FILE = "dataset.jsonl"
VALIDATION_FILE = "validation.jsonl"


class Requester(Protocol):
    def request(self, type_: str, data: dict[str, Any], *, timeout: float = ...) -> tuple[int, bytes]: ...


@dataclass(frozen=True)
class CheckpointManifest:
    """A checkpoint as the server recorded it (from the worker's checkpoint callback)."""

    step: int
    files: tuple[spec_mod.FileInfo, ...]
    checkpoint_id: Optional[str] = None


@dataclass(frozen=True)
class Grant:
    urls: Mapping[str, spec_mod.Transfer]
    expires_at: Optional[str] = None
    checkpoint: Optional[CheckpointManifest] = None  # checkpoint_download only


class UrlBroker:
    """Asks the server for URLs; remembers when it cannot."""

    def __init__(self, requester: Requester, *, timeout: float = 120.0) -> None:
        self._requester = requester
        self._timeout = timeout
        self._lock = threading.Lock()
        self.supported: Optional[bool] = None  # None until the first answer
        self.refused_status = 0

    def ask(
        self,
        purpose: str,
        files: Sequence[Mapping[str, Any]] = (),
        *,
        step: Optional[int] = None,
        checkpoint_id: Optional[str] = None,
        retry: int = 0,
    ) -> Optional[Grant]:
        """Fresh URLs for ``files`` (dicts with name, and for uploads
        size_bytes and sha256), or None: unsupported (``supported`` is then
        False), a transient failure, or a malformed answer."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown URL purpose {purpose!r}")
        if self.supported is False:
            return None
        data: dict[str, Any] = {"purpose": purpose}
        if files:
            data["files"] = [dict(f) for f in files]
        if step is not None:
            data["step"] = step
        if checkpoint_id is not None:
            data["checkpoint_id"] = checkpoint_id
        if retry:
            data["retry"] = retry
        status, body = self._requester.request("urls", data, timeout=self._timeout)
        if status in UNSUPPORTED_STATUSES:
            with self._lock:
                first = self.supported is not False
                self.supported, self.refused_status = False, status
            if first:
                log.warning(
                    "the server does not hand out URLs (HTTP %d to a urls callback): using the job spec's URLs, "
                    "and checkpoints are not uploaded in this attempt",
                    status,
                )
            return None
        if not 200 <= status < 300:
            log.warning("urls %s: no answer (HTTP %s); this request fails, the next one asks again", purpose, status or "none")
            return None
        try:
            grant = parse_answer(body, purpose, [str(f["name"]) for f in files])
        except ValueError as e:
            log.warning("urls %s: the server's answer is unusable (%s)", purpose, e)
            return None
        self.supported = True
        return grant


def parse_answer(body: bytes, purpose: str, names: Sequence[str]) -> Grant:
    """Check a 200 answer: every asked-for name has a URL with the method the
    purpose needs (PUT for uploads, GET for downloads)."""
    try:
        doc = json.loads(body or b"null")
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    method = "PUT" if purpose in UPLOAD_PURPOSES else "GET"
    c = spec_mod._Checker()
    raw = c.obj(doc.get("urls"), "urls")
    urls: dict[str, spec_mod.Transfer] = {}
    for name, v in raw.items():
        t = spec_mod.transfer(c, v, f"urls.{name}", (method,))
        if t is not None:
            urls[str(name)] = t
    manifest: Optional[CheckpointManifest] = None
    if purpose == "checkpoint_download" and doc.get("checkpoint") is not None:
        m = c.obj(doc["checkpoint"], "checkpoint")
        step = c.field(m, "step", "checkpoint", lambda v, p: c.integer(v, p, 1))
        files = []
        fl = m.get("files")
        if not isinstance(fl, list) or not fl:
            c.bad("checkpoint.files", "must be a non-empty list")
        else:
            for i, f in enumerate(fl):
                fi = spec_mod.file_info(c, f, f"checkpoint.files[{i}]")
                if fi is not None:
                    files.append(fi)
        cid = m.get("checkpoint_id") if isinstance(m.get("checkpoint_id"), str) else None
        if step is not None:
            manifest = CheckpointManifest(step=step, files=tuple(files), checkpoint_id=cid)
            names = list(names) + [f.name for f in files]
    missing = sorted(set(names) - set(urls))
    if missing:
        c.bad("urls", f"lacks {', '.join(missing)}")
    if c.problems:
        raise ValueError("; ".join(c.problems))
    expires = doc.get("expires_at") if isinstance(doc.get("expires_at"), str) else None
    return Grant(urls=urls, expires_at=expires, checkpoint=manifest)
