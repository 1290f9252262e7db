"""Moving files through presigned URLs that are asked for when needed
(urls.py): downloads and uploads that get fresh URLs after a refusal, and
the background upload of checkpoints.

- ``fetch``: one file down; a URL that refuses (401 / 403, or S3's 400
  ExpiredToken when the credentials that signed it expired) is
  replaced by a fresh one, up to ``rounds`` times; the job spec's URL is the
  fallback when the server cannot hand out URLs.
- ``upload``: files up; after a failed round the files still missing get
  fresh URLs; the spec's URLs are the fallback (artifacts only). Raises
  ``Unavailable`` when there is no way to get a URL at all.
- ``CheckpointUploader``: a thread that uploads the newest checkpoint while
  training goes on, then sends the ``checkpoint`` callback. It never fails the
  job: a checkpoint that cannot be stored is logged and skipped, and once the
  server says it does not hand out URLs, checkpoints stop being written.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from . import errors
from .download import download, sha256_file
from .spec import FileInfo, Transfer
from .upload import put_file
from .urls import Grant, UrlBroker

log = logging.getLogger(__name__)

ROUNDS = 3  # URL sets tried per transfer (the first plus fresh ones)
EXPIRED = (401, 403)


class Unavailable(Exception):
    """No URL can be had for an upload: the server does not hand them out and
    there is no fallback."""


def file_info(name: str, path: Path) -> FileInfo:
    return FileInfo(name=name, size_bytes=path.stat().st_size, sha256=sha256_file(path))


def fetch(
    broker: UrlBroker,
    purpose: str,
    info: FileInfo,
    dest: Path,
    *,
    fallback: Optional[Transfer] = None,
    grant: Optional[Grant] = None,
    step: Optional[int] = None,
    checkpoint_id: Optional[str] = None,
    should_stop: Optional[Callable[[], None]] = None,
    what: str = "dataset",
    rounds: int = ROUNDS,
    **download_kw: Any,
) -> Path:
    """Download one file (size and sha256 checked). ``grant`` is a first set
    of URLs already asked for; a refusal of its URL gets a fresh one."""
    last: Optional[errors.WorkerError] = None
    for r in range(rounds):
        if r == 0 and grant is not None:
            g: Optional[Grant] = grant
        else:
            g = broker.ask(purpose, [{"name": info.name}], step=step, checkpoint_id=checkpoint_id, retry=r)
        t = g.urls.get(info.name) if g is not None else None
        if t is None:
            t = fallback
        if t is None:
            if last is not None:
                raise last
            raise errors.WorkerError(errors.DATASET_DOWNLOAD, f"No download URL for the {what} could be had.")
        try:
            return download(
                t.url, dest, sha256=info.sha256, size_bytes=info.size_bytes, should_stop=should_stop,
                headers=dict(t.headers), what=what, **download_kw,
            )
        except errors.WorkerError as e:
            expired = e.url_expired or e.http_status in EXPIRED
            if e.code in errors.STOP_CODES or not expired or broker.supported is False:
                raise
            last = e
            log.warning("%s: the URL was refused (HTTP %d): asking for a fresh one", what, e.http_status)
    assert last is not None
    raise last


def upload(
    broker: UrlBroker,
    purpose: str,
    paths: Mapping[str, Path],
    *,
    fallback: Optional[Mapping[str, Transfer]] = None,
    step: Optional[int] = None,
    should_stop: Callable[[], None] = lambda: None,
    rounds: int = ROUNDS,
    put: Callable[..., None] = put_file,
    sleep: Callable[[float], None] = time.sleep,
    backoff: float = 2.0,
) -> list[FileInfo]:
    """Upload every file; return their infos. After a failed round, the files
    not yet uploaded are tried again with fresh URLs. Raises WorkerError
    (upload) when every round failed, Unavailable when no URL can be had."""
    infos = {name: file_info(name, p) for name, p in paths.items()}
    pending = dict(paths)
    last = ""
    for r in range(rounds):
        should_stop()
        if r:
            sleep(backoff * 2 ** (r - 1))
        g = broker.ask(purpose, [vars(infos[n]) for n in pending], step=step, retry=r)
        targets: Optional[Mapping[str, Transfer]] = g.urls if g is not None else fallback
        if targets is None:
            if broker.supported is False:
                raise Unavailable(f"the server does not hand out {purpose} upload URLs (HTTP {broker.refused_status})")
            last = "no upload URLs could be had"
            continue
        try:
            for name in list(pending):
                should_stop()
                t = targets[name]
                put(t.url, pending[name], t.headers)
                del pending[name]
            return [infos[n] for n in paths]
        except errors.WorkerError as e:
            if e.code != errors.UPLOAD:
                raise
            last = f"HTTP {e.http_status}" if e.http_status else e.message.rstrip(".")
            log.warning("%s upload, round %d of %d: %s", purpose, r + 1, rounds, e.message)
        if g is None and broker.supported is False:
            break  # the spec's URLs failed and no fresh ones can be had
    names = ", ".join(sorted(pending))
    raise errors.WorkerError(
        errors.UPLOAD,
        f"Uploading {names} failed{' after ' + str(rounds) + ' rounds of fresh URLs' if broker.supported else ''} (last: {last}).",
    )


class CheckpointUploader:
    """Uploads checkpoints in a background thread, newest first: a checkpoint
    written while another uploads waits; a third replaces the waiting one."""

    def __init__(
        self,
        broker: UrlBroker,
        send: Callable[[str, dict[str, Any]], Any],
        should_stop: Callable[[], None],
        **upload_kw: Any,
    ) -> None:
        self._broker = broker
        self._send = send
        self._should_stop = should_stop
        self._upload_kw = upload_kw
        self._cond = threading.Condition()
        self._pending: Optional[Any] = None
        self._busy = False
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self.disabled = False
        self.uploaded: list[int] = []  # steps
        self.failed: list[int] = []
        self.bytes_uploaded = 0
        self.upload_seconds = 0.0
        self.last: Optional[dict[str, Any]] = None  # data of the last checkpoint callback

    def wanted(self) -> bool:
        return not self.disabled and self._broker.supported is not False

    def submit(self, written: Any) -> None:
        if not self.wanted():
            shutil.rmtree(written.dir, ignore_errors=True)
            return
        with self._cond:
            if self._pending is not None:
                log.info("checkpoint at step %d replaced by step %d before its upload", self._pending.step, written.step)
                shutil.rmtree(self._pending.dir, ignore_errors=True)
            self._pending = written
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="brightrun-checkpoints", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or uploading; False on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                w, self._pending, self._busy = self._pending, None, True
            try:
                self._upload(w)
            except Exception:  # noqa: BLE001 - a checkpoint never fails the job
                log.exception("checkpoint at step %d: upload failed", w.step)
                self.failed.append(w.step)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _upload(self, w: Any) -> None:
        t0 = time.monotonic()
        try:
            infos = upload(
                self._broker, "checkpoint", w.paths(), step=w.step, should_stop=self._should_stop, **self._upload_kw
            )
        except Unavailable as e:
            self.disabled = True
            log.warning("checkpoints are not uploaded in this attempt: %s", e)
            shutil.rmtree(w.dir, ignore_errors=True)
            return
        except errors.WorkerError as e:
            if e.code not in errors.STOP_CODES:
                log.warning("checkpoint at step %d not stored: %s (training goes on)", w.step, e.message)
                self.failed.append(w.step)
            return
        self.upload_seconds += time.monotonic() - t0
        size = sum(i.size_bytes for i in infos)
        self.bytes_uploaded += size
        data: dict[str, Any] = {
            "step": w.step,
            "total_steps": w.total_steps,
            "epoch": round(w.epoch, 4),
            "position": {"epoch": w.next_epoch, "step_in_epoch": w.next_step_in_epoch},
            "reason": w.reason,
            "partial": w.partial,
            "files": [vars(i) for i in infos],
            "size_bytes": size,
            "train_seconds": round(w.train_seconds, 3),
            "tokens_seen": w.tokens_seen,
            "write_seconds": round(w.write_seconds, 3),
            "upload_seconds": round(time.monotonic() - t0, 3),
        }
        if w.loss is not None:
            data["loss"] = w.loss
        if w.eval_loss is not None:
            data["eval_loss"] = w.eval_loss
        self._send("checkpoint", data)
        self.last = data
        self.uploaded.append(w.step)
        log.info("checkpoint at step %d stored (%d bytes in %.2fs)", w.step, size, data["upload_seconds"])
        # The stored checkpoint and older ones are no longer needed on disk.
        for d in w.dir.parent.glob("step-*"):
            if d.name <= w.dir.name:
                shutil.rmtree(d, ignore_errors=True)
