"""File upload to a presigned URL (PUT), with bounded retries: network
errors, 429 and 5xx are retried; any other 4xx (an expired or wrong URL)
fails at once, since only a fresh URL helps (transfers.py asks for one)."""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

from . import errors

log = logging.getLogger(__name__)


def put_file(
    url: str,
    path: Path,
    headers: Mapping[str, str],
    *,
    attempts: int = 4,
    timeout: float = 300.0,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    size = path.stat().st_size
    last = ""
    status = 0
    for i in range(attempts):
        if i:
            sleep(min(30.0, backoff * (2 ** (i - 1))))
        hdrs = {"Content-Length": str(size)}
        hdrs.update(headers)
        with open(path, "rb") as body:
            req = urllib.request.Request(url, data=body, headers=hdrs, method="PUT")
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    resp.read()
                    return
            except urllib.error.HTTPError as e:
                last, status = f"HTTP {e.code}", e.code
                if e.code != 429 and e.code < 500:
                    break  # an expired or wrong URL does not get better
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                last = f"network error: {getattr(e, 'reason', e)}"
        log.warning("upload %s try %d/%d: %s", path.name, i + 1, attempts, last)
    err = errors.WorkerError(
        errors.UPLOAD,
        f"Uploading {path.name} failed ({last}).",
        "Retry the job; the trained adapter could not be uploaded.",
    )
    err.http_status = status
    raise err
