"""Dataset download: retries with backoff, resume with HTTP Range, size and
sha256 checks. Any failure is a WorkerError with code dataset_download."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from . import errors

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Retry(Exception):
    pass


# S3 answers a presigned URL whose signing credentials expired (a Lambda
# role's session token: hours, whatever X-Amz-Expires says) with 400 and
# the code ExpiredToken; an expired X-Amz-Expires with 403. Both mean: ask
# for a fresh URL.
EXPIRED_CODES = (b"<Code>ExpiredToken</Code>", b"<Code>TokenRefreshRequired</Code>", b"<Code>RequestExpired</Code>")


def url_expired(status: int, body: bytes) -> bool:
    """Whether an error answer means the presigned URL can no longer be used
    (and a fresh one may work)."""
    return status in (401, 403) or status == 400 and any(c in body for c in EXPIRED_CODES)


def _error_body(e: urllib.error.HTTPError) -> bytes:
    try:
        return e.read(8192) or b""
    except (OSError, http.client.HTTPException):
        return b""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    sha256: str,
    size_bytes: int,
    attempts: int = 6,
    timeout: float = 60.0,
    backoff: float = 1.0,
    max_backoff: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Optional[Callable[[], None]] = None,
    headers: Optional[dict[str, str]] = None,
    what: str = "dataset",
) -> Path:
    """Download url to dest; resume after a broken transfer; verify size and sha256.

    ``should_stop`` is called between chunks and may raise to abort (cancel,
    time limit). ``headers`` are sent with every request (a presigned GET
    signed with some). ``what`` names the file in messages. A refusal by
    the URL (4xx other than 429) raises at once, with the status in the
    error's ``http_status`` (401 / 403: the URL may have expired).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if part.exists():
        part.unlink()
    last_error = ""
    for attempt in range(attempts):
        if attempt:
            sleep(min(max_backoff, backoff * (2 ** (attempt - 1))))
        have = part.stat().st_size if part.exists() else 0
        if have > size_bytes:
            part.unlink()
            have = 0
        if have == size_bytes:
            break
        try:
            _fetch(url, part, have, size_bytes, timeout, should_stop, headers or {}, what)
        except _Retry as e:
            last_error = str(e)
            log.warning("dataset download try %d/%d: %s", attempt + 1, attempts, e)
            continue
        if part.stat().st_size == size_bytes:
            break
        last_error = f"transfer ended after {part.stat().st_size} of {size_bytes} bytes"
        log.warning("dataset download try %d/%d: %s", attempt + 1, attempts, last_error)
    else:
        raise errors.WorkerError(
            errors.DATASET_DOWNLOAD,
            f"The {what} could not be downloaded after {attempts} tries ({last_error}).",
            "Check that the dataset still exists and retry the job.",
        )
    got = part.stat().st_size
    if got != size_bytes:
        raise errors.WorkerError(
            errors.DATASET_DOWNLOAD,
            f"The {what} has {got} bytes, expected {size_bytes}.",
        )
    digest = sha256_file(part)
    if digest != sha256:
        part.unlink()
        raise errors.WorkerError(
            errors.DATASET_DOWNLOAD,
            f"The downloaded {what} does not match its checksum (sha256 {digest}, expected {sha256}): "
            "it was corrupted in transit or changed after validation.",
            "Retry the job; if it fails again, upload the dataset again.",
        )
    os.replace(part, dest)
    return dest


def _fetch(
    url: str,
    part: Path,
    have: int,
    size_bytes: int,
    timeout: float,
    should_stop: Optional[Callable[[], None]],
    extra: dict[str, str],
    what: str,
) -> None:
    headers = dict(extra)
    headers["Accept-Encoding"] = "identity"
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers, method="GET")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # Nothing left to send from that offset: start over.
            part.unlink()
            raise _Retry("HTTP 416 on resume") from None
        if e.code == 429 or e.code >= 500:
            raise _Retry(f"HTTP {e.code}") from None
        expired = url_expired(e.code, _error_body(e))
        err = errors.WorkerError(
            errors.DATASET_DOWNLOAD,
            f"The {what} URL answered HTTP {e.code}" + (" (the download link may have expired)." if expired else "."),
            "Retry the job (it gets a fresh download link); if it fails again, check that the dataset still exists.",
        )
        err.http_status = e.code
        err.url_expired = expired
        raise err from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Retry(f"network error: {getattr(e, 'reason', e)}") from None
    with resp:
        mode = "ab"
        if have and resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                part.unlink()
                raise _Retry("server answered a different range than asked")
        elif resp.status == 200:
            mode = "wb"  # the server ignored Range: take the whole body again
        else:
            raise _Retry(f"unexpected HTTP {resp.status}")
        try:
            with open(part, mode) as f:
                written = 0 if mode == "wb" else have
                while True:
                    if should_stop is not None:
                        should_stop()
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    written += len(block)
                    if written > size_bytes:
                        raise errors.WorkerError(
                            errors.DATASET_DOWNLOAD,
                            f"The {what} is larger than the expected {size_bytes} bytes.",
                        )
                    f.write(block)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise _Retry(f"transfer broken: {e}") from None
