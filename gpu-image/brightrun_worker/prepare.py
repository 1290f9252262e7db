"""Prepare a base model's pre-quantized 4-bit copy on the network volume,
once per volume, so that QLoRA jobs load ≈ 45 GB of NF4 weights instead of
reading and quantizing the 163 GB BF16 checkpoint every time.

    python -m brightrun_worker.prepare --source /runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct \\
        --out /runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct-bnb-nf4 [--verify]
    python -m brightrun_worker.prepare --out DIR --verify [--sha256]     # check a copy

Progress goes to stderr, a JSON summary to stdout (exit 0), or the error as
{"error", "code", "advice"} (exit 1). On RunPod the same code runs as the job
``{"action": "prepare_model", ...}`` (handler.py), which
``go run ./infra/provision prepare-model`` submits.

What it writes in ``out``: the weights quantized by bitsandbytes (NF4, double
quantization, BF16 compute; registry.QLORA_SKIP_MODULES — router, gates,
lm_head — kept in BF16) as safetensors, config.json with its
quantization_config, generation_config.json, the tokenizer files of the
source, and the manifest ``brightrun-prepared.json`` (MANIFEST_FIELDS).

Invariants:

- ``out`` either does not exist or is complete. The copy is built in a
  sibling ``.<name>.tmp-<token>`` on the same filesystem, every file and the
  directory fsynced, the manifest written last, then renamed into place:
  rename(2) of a directory is atomic, and it fails when ``out`` exists and is
  not empty, so two builders can never mix their files.
- One preparer at a time per ``out``: the lock is a directory
  ``.<name>.lock`` made with mkdir(2), which is atomic on NFS and the other
  network filesystems where flock(2) is not reliable. It holds owner.json
  (host, pid, token, times), which the owner rewrites every
  ``heartbeat_seconds``. A waiter takes the lock over when owner.json has
  not changed for ``stale_seconds`` of the waiter's own monotonic clock (no
  agreement between the hosts' clocks is needed), or at once when the owner
  is a dead process on the same host. Correctness does not rest on the lock
  (the rename does); the lock saves a second GPU from doing the work twice.
- A complete copy (a manifest whose files exist with their recorded sizes)
  makes prepare a no-op; the holder of the lock removes temporary and stale
  directories that crashed runs left beside ``out``.

torch, transformers and bitsandbytes are imported inside the functions that
quantize, so that importing this module (the handler, missing_model_advice)
stays light.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

from . import __version__, errors
from .registry import QLORA_SKIP_MODULES

log = logging.getLogger(__name__)

MANIFEST = "brightrun-prepared.json"
FORMAT = "brightrun-prepared"
FORMAT_VERSION = 1
KIND = "bnb-nf4"

# What the manifest records (tests hold the manifest to this list).
MANIFEST_FIELDS = (
    "format",
    "format_version",
    "kind",
    "created_at",
    "host",
    "device",
    "source",
    "quantization",
    "versions",
    "files",
    "bytes",
    "timings",
)

# Copied from the source when present; the first two must be there (the job
# tokenizes with tokenizer.json).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

# NF4 with double quantization is ≈ 4.13 bits per weight: a copy is ≈ 26 %
# of the BF16 checkpoint plus the modules kept in BF16. Free space asked for
# before starting: 30 % of the source's weights plus a margin.
OUTPUT_SHARE = 0.30
SPACE_MARGIN_BYTES = 64 << 20
MAX_SHARD_SIZE = "5GB"
CHUNK = 16 << 20

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LockSettings:
    """Timing of the lock directory (seconds)."""

    heartbeat_seconds: float = 30.0
    stale_seconds: float = 600.0  # owner.json unchanged this long: the owner is gone
    poll_seconds: float = 5.0
    wait_seconds: Optional[float] = None  # give up waiting after this long; None: wait for the owner


DEFAULT_LOCK = LockSettings()


# -- advice ------------------------------------------------------------------


def missing_model_advice(volume_path: str, hub_id: str) -> str:
    """The sentence telling an operator what puts a missing model copy back.

    A ``-bnb-nf4`` directory is the prepared 4-bit copy (one job on the
    endpoint makes it); any other directory is the checkpoint as published,
    downloaded from a Pod (docs/deploy.md, section 2).
    """
    if volume_path.rstrip("/").endswith("-bnb-nf4"):
        return (
            f"The 4-bit copy {volume_path} has not been prepared on this network volume. Prepare it once per volume "
            f"with `go run ./infra/provision prepare-model --endpoint ENDPOINT_ID --model {hub_id}` "
            f"(ENDPOINT_ID: your RunPod endpoint's id; it needs the BF16 checkpoint of {hub_id} on the volume), "
            "as docs/deploy.md describes in \"5. The 4-bit copy of the base model\", then retry the job."
        )
    return (
        f"Download {hub_id} to {volume_path} on the network volume from a Pod "
        f"(`huggingface-cli download {hub_id} --local-dir /workspace/{_volume_relative(volume_path)}`; "
        "a Pod mounts the volume at /workspace), as docs/deploy.md describes in "
        "\"2. The network volume and the base model\", then retry the job."
    )


def _volume_relative(path: str) -> str:
    p = path.rstrip("/")
    for root in ("/runpod-volume/", "/workspace/"):
        if p.startswith(root):
            return p[len(root) :]
    return p.lstrip("/")


# -- progress ----------------------------------------------------------------


class _Reporter:
    """Progress events {stage, files_done, files_total, bytes_done,
    bytes_total, elapsed_seconds}, from any thread; an exception raised by
    the callback in another thread is kept and re-raised by check()."""

    def __init__(self, fn: Optional[ProgressFn]) -> None:
        self.fn = fn
        self.t0 = time.monotonic()
        self.state: dict[str, Any] = {"stage": "check", "files_done": 0, "files_total": 0, "bytes_done": 0, "bytes_total": 0}
        self.error: Optional[BaseException] = None
        self._mu = threading.Lock()

    def __call__(self, **fields: Any) -> None:
        with self._mu:
            self.state.update(fields)
            event = dict(self.state, elapsed_seconds=round(time.monotonic() - self.t0, 3))
        if self.fn is not None:
            self.fn(event)

    def from_thread(self, **fields: Any) -> bool:
        """Report from a helper thread; False once the callback has failed."""
        if self.error is not None:
            return False
        try:
            self(**fields)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e
            return False
        return True

    def check(self) -> None:
        if self.error is not None:
            raise self.error


# -- files and hashes ---------------------------------------------------------


def _hash_file(path: Path, on_bytes: Callable[[int], bool], *, fsync: bool = False) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            h.update(block)
            if not on_bytes(len(block)):
                raise _Stopped()
        if fsync:
            os.fsync(f.fileno())
    return h.hexdigest()


class _Stopped(Exception):
    pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _listing(d: Path) -> list[Path]:
    """Regular, non-hidden files directly in d, sorted (shards in order)."""
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))


def _weight_files(d: Path) -> list[Path]:
    return [p for p in _listing(d) if p.suffix == ".safetensors" or (p.name.startswith("pytorch_model") and p.suffix == ".bin")]


def _hub_metadata(source: Path, name: str) -> tuple[Optional[str], Optional[str]]:
    """(commit, etag) that `huggingface-cli download --local-dir` recorded
    for a file; for LFS files the etag is the file's sha256."""
    meta = source / ".cache" / "huggingface" / "download" / f"{name}.metadata"
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None, None
    commit = lines[0].strip() if lines else None
    etag = lines[1].strip().strip('"') if len(lines) > 1 else None
    return commit or None, etag or None


def _guess_hub_id(source: Path) -> Optional[str]:
    """"Org/Name" when the source sits at .../models/Org/Name, as the catalog lays it out."""
    parts = source.parts
    if len(parts) >= 3 and parts[-3] == "models":
        return f"{parts[-2]}/{parts[-1]}"
    return None


# -- checks ------------------------------------------------------------------


def _check_source(source: Path) -> list[Path]:
    download_advice = (
        "Download the checkpoint to that directory first (docs/deploy.md, \"2. The network volume and the base model\"), "
        "then run the preparation again."
    )
    if not source.is_dir():
        raise errors.WorkerError(errors.MODEL_LOAD, f"The source checkpoint {source} does not exist.", download_advice)
    if not (source / "config.json").is_file():
        raise errors.WorkerError(
            errors.MODEL_LOAD, f"The source checkpoint {source} has no config.json: it is not a model directory.", download_advice
        )
    try:
        cfg = json.loads((source / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise errors.WorkerError(errors.MODEL_LOAD, f"{source}/config.json is not readable JSON ({e}).", download_advice) from e
    if isinstance(cfg, dict) and isinstance(cfg.get("quantization_config"), dict):
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The source {source} is already quantized ({cfg['quantization_config'].get('quant_method')}); "
            "the preparation starts from the BF16 checkpoint.",
            "Point --source (or the job's source) at the unquantized checkpoint.",
        )
    weights = _weight_files(source)
    if not weights:
        raise errors.WorkerError(
            errors.MODEL_LOAD, f"The source checkpoint {source} has a config.json but no weights (*.safetensors).", download_advice
        )
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = source / index_name
        if not index.is_file():
            continue
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise errors.WorkerError(errors.MODEL_LOAD, f"{index} is not a readable weight index ({e}).", download_advice) from e
        missing = sorted(s for s in shards if not (source / s).is_file())
        if missing:
            raise errors.WorkerError(
                errors.MODEL_LOAD,
                f"The source checkpoint {source} is incomplete: {len(missing)} of {len(shards)} weight files "
                f"are missing ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}).",
                "Run the download again (it resumes), then run the preparation again.",
            )
    absent = [n for n in REQUIRED_TOKENIZER_FILES if not (source / n).is_file()]
    if absent:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The source checkpoint {source} has no {' or '.join(absent)}: jobs need the tokenizer beside the weights.",
            download_advice,
        )
    return weights


def _require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            "Preparing a 4-bit copy needs bitsandbytes, which is not installed here.",
            "Run the preparation on the worker image (go run ./infra/provision prepare-model), or install the pinned "
            "requirements (pip install -r gpu-image/requirements.txt) and run it again.",
        ) from None


def _no_space(where: Path, need: Optional[int], free: Optional[int]) -> errors.WorkerError:
    if need is None:
        what = f"The disk filled up while writing the 4-bit copy beside {where}."
    else:
        what = f"Not enough space for the 4-bit copy beside {where}: it needs about {need / 1e9:.1f} GB, {(free or 0) / 1e9:.1f} GB are free."
    return errors.WorkerError(
        errors.MODEL_LOAD,
        what,
        "Enlarge the network volume (RunPod console → Storage → the volume → Expand) or delete what it no longer needs, "
        "then run the preparation again (it starts over and cleans up the partial copy).",
    )


def _check_space(parent: Path, source_weight_bytes: int) -> int:
    need = int(source_weight_bytes * OUTPUT_SHARE) + SPACE_MARGIN_BYTES
    free = shutil.disk_usage(parent).free
    if free < need:
        raise _no_space(parent, need, free)
    return need


# -- the copy on disk ---------------------------------------------------------


def _read_manifest(out: Path) -> dict[str, Any]:
    doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{MANIFEST} is not a {FORMAT} manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{MANIFEST} has format_version {doc.get('format_version')!r}, this worker reads {FORMAT_VERSION}")
    files = doc.get("files")
    if not isinstance(files, list) or not files:
        raise ValueError(f"{MANIFEST} lists no files")
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("size_bytes"), int)):
            raise ValueError(f"{MANIFEST} has a malformed file entry {f!r}")
        if "/" in f["name"] or f["name"] in ("", ".", "..") or f["name"] == MANIFEST:
            raise ValueError(f"{MANIFEST} names a file outside the copy: {f['name']!r}")
    return doc


def problems(out: Path, *, sha256: bool = False, progress: Optional[ProgressFn] = None) -> list[str]:
    """What is wrong with the prepared copy at out ([] when it is complete):
    a missing or unreadable manifest, missing files, sizes that differ from
    the manifest's, and with sha256=True contents that differ."""
    if not out.exists():
        return [f"{out} does not exist"]
    if not out.is_dir():
        return [f"{out} is not a directory"]
    try:
        doc = _read_manifest(out)
    except FileNotFoundError:
        return [f"{out} has no {MANIFEST}: it was not made by brightrun_worker.prepare, or not finished"]
    except (OSError, ValueError) as e:
        return [f"{out}/{MANIFEST} is unreadable ({e})"]
    found: list[str] = []
    for f in doc["files"]:
        p = out / f["name"]
        try:
            size = p.stat().st_size
        except OSError:
            found.append(f"{f['name']} is missing")
            continue
        if size != f["size_bytes"]:
            found.append(f"{f['name']} has {size} bytes, the manifest says {f['size_bytes']}")
    if sha256 and not found:
        report = _Reporter(progress)
        total = sum(f["size_bytes"] for f in doc["files"])
        report(stage="verify", files_done=0, files_total=len(doc["files"]), bytes_done=0, bytes_total=total)
        done = 0

        def on_bytes(n: int) -> bool:
            nonlocal done
            done += n
            report(bytes_done=done)
            return True

        for i, f in enumerate(doc["files"]):
            digest = _hash_file(out / f["name"], on_bytes)
            if digest != f.get("sha256"):
                found.append(f"{f['name']} has sha256 {digest}, the manifest says {f.get('sha256')}")
            report(files_done=i + 1)
    return found


def is_complete(out: Path) -> bool:
    """A manifest whose files all exist with their recorded sizes."""
    return not problems(out)


def verify(out: Path, *, sha256: bool = False, progress: Optional[ProgressFn] = None) -> dict[str, Any]:
    """Check the copy at out against its manifest: sizes always, contents
    (sha256) when asked. Returns a summary; raises WorkerError (model_load)
    listing what is wrong."""
    out = Path(out)
    t0 = time.monotonic()
    found = problems(out, sha256=sha256, progress=progress)
    if found:
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"The prepared copy at {out} is not intact: {'; '.join(found[:5])}{more}.",
            "Prepare it again with force (go run ./infra/provision prepare-model ... --force, or "
            "python -m brightrun_worker.prepare ... --force): the new copy replaces it when complete.",
        )
    doc = _read_manifest(out)
    return {
        "status": "verified",
        "out": str(out),
        "files": len(doc["files"]),
        "bytes": sum(f["size_bytes"] for f in doc["files"]),
        "sha256_checked": sha256,
        "created_at": doc.get("created_at"),
        "seconds": round(time.monotonic() - t0, 3),
    }


# -- the lock ----------------------------------------------------------------


def _host() -> str:
    return os.environ.get("RUNPOD_POD_ID") or socket.gethostname()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


class _Lock:
    """The mkdir lock beside out (see the module docstring)."""

    def __init__(self, out: Path, settings: LockSettings, report: _Reporter) -> None:
        self.path = out.parent / f".{out.name}.lock"
        self.owner_file = self.path / "owner.json"
        self.settings = settings
        self.report = report
        self.token = uuid.uuid4().hex
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None
        self._count = 0
        self.waited_seconds = 0.0
        self.took_over: Optional[str] = None

    def _owner_doc(self) -> dict[str, Any]:
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return {
            "token": self.token,
            "host": _host(),
            "boot_id": _boot_id(),
            "pid": os.getpid(),
            "heartbeat": self._count,
            "heartbeat_at": now,
        }

    def _write_owner(self) -> None:
        tmp = self.path / f"owner.json.{self.token}"
        tmp.write_text(json.dumps(self._owner_doc()), encoding="utf-8")
        os.replace(tmp, self.owner_file)

    def _read_owner(self, path: Optional[Path] = None) -> str:
        try:
            return (path or self.owner_file).read_text(encoding="utf-8")
        except OSError:
            return ""

    def held(self) -> bool:
        return _parse(self._read_owner()).get("token") == self.token

    def acquire(self) -> None:
        t0 = time.monotonic()
        seen, seen_at = None, t0
        while True:
            try:
                os.mkdir(self.path)
            except FileExistsError:
                pass
            else:
                try:
                    self._write_owner()
                except BaseException:
                    shutil.rmtree(self.path, ignore_errors=True)
                    raise
                self.waited_seconds = round(time.monotonic() - t0, 3)
                self._beat = threading.Thread(target=self._heartbeat, name="prepare-lock-heartbeat", daemon=True)
                self._beat.start()
                return
            now = time.monotonic()
            text = self._read_owner()
            if text != seen:
                seen, seen_at = text, now
            owner = _parse(text)
            if self._dead_here(owner) or now - seen_at >= self.settings.stale_seconds:
                self._break(text, owner)
                continue
            waited = now - t0
            if self.settings.wait_seconds is not None and waited >= self.settings.wait_seconds:
                raise errors.WorkerError(
                    errors.MODEL_LOAD,
                    f"Another preparer ({_who(owner)}) has held {self.path} for {waited:.0f} s.",
                    "Wait for it to finish and run the preparation again; it does nothing once the copy is complete.",
                )
            self.report(stage="waiting", holder=_who(owner))
            time.sleep(self.settings.poll_seconds)

    def _dead_here(self, owner: dict[str, Any]) -> bool:
        pid = owner.get("pid")
        return (
            isinstance(pid, int)
            and owner.get("host") == _host()
            and owner.get("boot_id") == _boot_id()
            and pid != os.getpid()
            and not _pid_alive(pid)
        )

    def _break(self, observed: str, owner: dict[str, Any]) -> None:
        """Take a stale lock away: rename it aside (one breaker wins), check
        that it is still the one judged stale, and remove it."""
        tomb = self.path.parent / f"{self.path.name}.stale-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(self.path, tomb)
        except FileNotFoundError:
            return  # released or broken by someone else meanwhile
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return
            raise
        if self._read_owner(tomb / "owner.json") != observed:
            # A new owner took the lock between our look and the rename: give it back.
            try:
                os.rename(tomb, self.path)
                return
            except OSError:
                pass  # its heartbeat sees the loss and stops
        log.warning("took over the stale lock %s of %s", self.path, _who(owner))
        self.took_over = _who(owner)
        shutil.rmtree(tomb, ignore_errors=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            if not self.held():
                log.error("lost the lock %s to another preparer", self.path)
                self.lost.set()
                return
            self._count += 1
            try:
                self._write_owner()
            except OSError:
                log.warning("could not refresh the lock %s", self.path, exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if not self.held():
            return
        tomb = self.path.parent / f"{self.path.name}.released-{self.token[:12]}"
        try:
            os.rename(self.path, tomb)
        except OSError:
            return
        shutil.rmtree(tomb, ignore_errors=True)


def _parse(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _who(owner: dict[str, Any]) -> str:
    if not owner:
        return "an unknown owner"
    return f"{owner.get('host', '?')} pid {owner.get('pid', '?')}"


# -- prepare -----------------------------------------------------------------


def _versions() -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {"python": platform.python_version(), "brightrun_worker": __version__}
    for name in ("torch", "transformers", "bitsandbytes", "peft", "safetensors", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _quantization_settings() -> dict[str, Any]:
    return {
        "method": "bitsandbytes",
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bfloat16",
        "llm_int8_skip_modules": list(QLORA_SKIP_MODULES),
    }


def _leftovers(out: Path) -> list[Path]:
    prefixes = (f".{out.name}.tmp-", f".{out.name}.lock.stale-", f".{out.name}.lock.released-", f".{out.name}.old-")
    try:
        return [out.parent / n for n in os.listdir(out.parent) if n.startswith(prefixes)]
    except FileNotFoundError:
        return []


def _exists_summary(out: Path, source: Path, t0: float, lock: Optional[_Lock], how: str) -> dict[str, Any]:
    doc = _read_manifest(out)
    return {
        "status": "exists",
        "message": f"{out} is already prepared ({how}, created {doc.get('created_at')}): nothing to do.",
        "out": str(out),
        "source": str(source),
        "manifest": str(out / MANIFEST),
        "files": len(doc["files"]),
        "bytes": sum(f["size_bytes"] for f in doc["files"]),
        "created_at": doc.get("created_at"),
        "seconds": round(time.monotonic() - t0, 3),
        "lock": _lock_summary(lock),
    }


def _lock_summary(lock: Optional[_Lock]) -> Optional[dict[str, Any]]:
    if lock is None:
        return None
    return {"waited_seconds": lock.waited_seconds, "took_over_from": lock.took_over}


def prepare(
    source: Path,
    out: Path,
    *,
    progress: Optional[ProgressFn] = None,
    hub_id: Optional[str] = None,
    force: bool = False,
    lock: LockSettings = DEFAULT_LOCK,
) -> dict[str, Any]:
    """Quantize the BF16 checkpoint at source to NF4 and save it at out,
    atomically and once (see the module docstring). Returns a summary whose
    status is "prepared", or "exists" when a complete copy was already there
    (the call did nothing). force=True rebuilds even a complete copy and
    replaces it when the new one is complete. progress receives events
    {stage, files_done, files_total, bytes_done, bytes_total,
    elapsed_seconds}; an exception it raises aborts the preparation (nothing
    is published, the partial copy is removed). Failures are WorkerErrors."""
    source, out = Path(source), Path(out)
    t0 = time.monotonic()
    report = _Reporter(progress)
    report(stage="check")
    if source == out or source in out.parents or out in source.parents:
        raise errors.WorkerError(
            errors.SPEC_INVALID, f"The copy {out} and the source {source} must be separate directories.", "Choose another out."
        )
    weights = _check_source(source)
    if not force and is_complete(out):
        return _exists_summary(out, source, t0, None, "found complete")
    out.parent.mkdir(parents=True, exist_ok=True)

    held = _Lock(out, lock, report)
    held.acquire()
    report.state.pop("holder", None)
    tmp: Optional[Path] = None
    try:
        if not force and is_complete(out):
            return _exists_summary(out, source, t0, held, "by another preparer while this one waited")
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # an empty directory holds nothing to keep
        if out.exists() and not force:
            found = problems(out)
            raise errors.WorkerError(
                errors.MODEL_LOAD,
                f"{out} exists but is not a complete prepared copy ({'; '.join(found[:3])}).",
                "Prepare it again with force (go run ./infra/provision prepare-model ... --force, or "
                "python -m brightrun_worker.prepare ... --force) to replace it, or remove the directory.",
            )
        for old in _leftovers(out):
            log.warning("removing %s, left by an interrupted preparation", old)
            shutil.rmtree(old, ignore_errors=True)
        _require_bitsandbytes()
        _check_space(out.parent, sum(p.stat().st_size for p in weights))
        tmp = out.parent / f".{out.name}.tmp-{held.token[:12]}"
        tmp.mkdir()
        summary = _build(source, tmp, out, report, hub_id=hub_id)
        report.check()
        if held.lost.is_set():
            log.warning("the lock was taken over while preparing; publishing anyway (rename refuses a second copy)")
        replaced = _publish(tmp, out, force=force, token=held.token)
        tmp = None
        summary.update(
            status="exists" if replaced is None else "prepared",
            seconds=round(time.monotonic() - t0, 3),
            lock=_lock_summary(held),
        )
        if replaced is None:
            summary["message"] = f"{out} was published by another preparer meanwhile: kept it, dropped this copy."
        report.from_thread(stage="done")  # published: a failing callback changes nothing now
        return summary
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(out.parent, None, None) from e
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        held.release()


def _publish(tmp: Path, out: Path, *, force: bool, token: str) -> Optional[bool]:
    """Rename tmp to out. Returns True when an old copy was replaced, False
    when out was new, None when someone else's complete copy is there."""
    aside: Optional[Path] = None
    if force and out.exists():
        aside = out.parent / f".{out.name}.old-{token[:12]}"
        os.rename(out, aside)
    try:
        os.rename(tmp, out)
    except OSError as e:
        if aside is not None:
            os.rename(aside, out)  # put the old copy back rather than leave none
            raise
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not is_complete(out):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    _fsync_dir(out.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return aside is not None


def _build(source: Path, tmp: Path, out: Path, report: _Reporter, *, hub_id: Optional[str]) -> dict[str, Any]:
    import gc

    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    timings: dict[str, float] = {}
    cuda = torch.cuda.is_available()
    device = f"cuda:0 ({torch.cuda.get_device_name(0)})" if cuda else "cpu"
    src_files = _listing(source)
    src_total = sum(p.stat().st_size for p in src_files)

    # The source is hashed in a second thread while transformers reads it:
    # both read the shards in order, so the second reader mostly hits the
    # page cache, and the hasher's bytes are the stage's progress.
    report(stage="quantize", files_done=0, files_total=len(src_files), bytes_done=0, bytes_total=src_total)
    hashes: dict[str, str] = {}
    stop = threading.Event()
    read = 0
    hash_seconds = 0.0

    def hash_source() -> None:
        nonlocal hash_seconds
        started = time.monotonic()

        def on_bytes(n: int) -> bool:
            nonlocal read
            read += n
            return not stop.is_set() and report.from_thread(bytes_done=read)

        try:
            for i, p in enumerate(src_files):
                hashes[p.name] = _hash_file(p, on_bytes)
                if not report.from_thread(files_done=i + 1):
                    return
        except _Stopped:
            return
        except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
            report.error = report.error or e
        hash_seconds = round(time.monotonic() - started, 3)

    hasher = threading.Thread(target=hash_source, name="prepare-hash-source", daemon=True)
    t = time.monotonic()
    hasher.start()
    model = None
    try:
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=list(QLORA_SKIP_MODULES),
        )
        with _classified(f"Quantizing {source}"):
            model = AutoModelForCausalLM.from_pretrained(
                str(source),
                dtype=torch.bfloat16,
                quantization_config=quant,
                device_map={"": 0} if cuda else {"": "cpu"},
                local_files_only=True,
                low_cpu_mem_usage=True,
            )
        timings["quantize_seconds"] = round(time.monotonic() - t, 3)
        hasher.join()
        timings["hash_source_seconds"] = hash_seconds
        report.check()
        _check_hub_hashes(source, hashes)

        t = time.monotonic()
        report(stage="save", files_done=0, files_total=0, bytes_done=0, bytes_total=0)
        with _classified(f"Saving the 4-bit copy of {source}"):
            model.save_pretrained(str(tmp), safe_serialization=True, max_shard_size=MAX_SHARD_SIZE)
    finally:
        stop.set()
        hasher.join()
        del model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    for name in TOKENIZER_FILES + ("generation_config.json",):
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
    _check_saved(tmp)
    timings["save_seconds"] = round(time.monotonic() - t, 3)
    report.check()

    t = time.monotonic()
    out_files = _listing(tmp)
    for p in out_files:
        os.chmod(p, 0o644)  # safetensors writes 0600; every worker of the volume reads the copy
    out_total = sum(p.stat().st_size for p in out_files)
    report(stage="hash_output", files_done=0, files_total=len(out_files), bytes_done=0, bytes_total=out_total)
    done = 0

    def on_out(n: int) -> bool:
        nonlocal done
        done += n
        report(bytes_done=done)
        return True

    entries = []
    for i, p in enumerate(out_files):
        entries.append({"name": p.name, "size_bytes": p.stat().st_size, "sha256": _hash_file(p, on_out, fsync=True)})
        report(files_done=i + 1)
    timings["hash_output_seconds"] = round(time.monotonic() - t, 3)
    timings["total_seconds"] = round(time.monotonic() - report.t0, 3)

    commit, _ = _hub_metadata(source, "config.json")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": _host(),
        "device": device,
        "source": {
            "hub_id": hub_id or _guess_hub_id(source),
            "path": str(source),
            "revision": commit,
            "files": [{"name": p.name, "size_bytes": p.stat().st_size, "sha256": hashes[p.name]} for p in src_files],
            "bytes": src_total,
        },
        "quantization": _quantization_settings(),
        "versions": _versions(),
        "files": entries,
        "bytes": out_total,
        "timings": timings,
    }
    report(stage="publish")
    mpath = tmp / MANIFEST
    with open(mpath, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    return {
        "status": "prepared",
        "message": f"Prepared {out}: {len(entries)} files, {out_total / 1e9:.2f} GB.",
        "out": str(out),
        "source": str(source),
        "manifest": str(out / MANIFEST),
        "files": len(entries),
        "bytes": out_total,
        "source_bytes": src_total,
        "device": device,
        "created_at": manifest["created_at"],
        "timings": timings,
    }


class _classified:
    """Turns a failure of transformers or bitsandbytes into a WorkerError
    (OSErrors pass through: prepare() tells a full disk apart)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: Any, tb: Any) -> bool:
        if e is None or not isinstance(e, Exception) or isinstance(e, (errors.WorkerError, OSError)):
            return False
        if errors.is_oom(e):
            raise errors.WorkerError(
                errors.OOM,
                f"{self.what} ran out of memory.",
                "Run the preparation on an endpoint with an 80 GB (or larger) GPU.",
            ) from e
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise errors.WorkerError(errors.MODEL_LOAD, f"{self.what} failed ({type(e).__name__}: {first}).") from e


def _check_hub_hashes(source: Path, hashes: dict[str, str]) -> None:
    """A file whose sha256 differs from the one the hub download recorded
    is damaged (an interrupted or corrupted download)."""
    bad = []
    for name, digest in hashes.items():
        _, etag = _hub_metadata(source, name)
        if etag and len(etag) == 64 and all(c in "0123456789abcdef" for c in etag.lower()) and etag.lower() != digest:
            bad.append(name)
    if bad:
        raise errors.WorkerError(
            errors.MODEL_LOAD,
            f"{len(bad)} file(s) of {source} differ from what the hub published ({', '.join(sorted(bad)[:3])}).",
            "Download the checkpoint again (huggingface-cli download re-fetches damaged files), then run the preparation again.",
        )


def _check_saved(tmp: Path) -> None:
    try:
        cfg = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise errors.WorkerError(errors.INTERNAL, f"Saving the 4-bit copy wrote no readable config.json ({e}).") from e
    q = cfg.get("quantization_config") or {}
    if not (q.get("load_in_4bit") and q.get("bnb_4bit_quant_type") == "nf4"):
        raise errors.WorkerError(errors.INTERNAL, f"Saving the 4-bit copy wrote no NF4 quantization_config ({q}).")
    if not _weight_files(tmp):
        raise errors.WorkerError(errors.INTERNAL, "Saving the 4-bit copy wrote no weights.")


# -- command line --------------------------------------------------------------


class _StderrProgress:
    """One line per stage change, at most one per `every` seconds otherwise."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.last_stage: Optional[str] = None
        self.last = 0.0

    def __call__(self, e: dict[str, Any]) -> None:
        now = time.monotonic()
        if e.get("stage") == self.last_stage and now - self.last < self.every:
            return
        self.last_stage, self.last = e.get("stage"), now
        print(f"prepare: {describe(e)}", file=sys.stderr, flush=True)


def describe(e: dict[str, Any]) -> str:
    """A progress event as one line: "quantize: 12/41 files, 48.0/163.0 GB, 3m12s"."""
    parts = [str(e.get("stage", "?"))]
    if e.get("stage") == "waiting":
        parts[0] += f" for {e.get('holder', 'another preparer')}"
    detail = []
    if e.get("files_total"):
        detail.append(f"{e.get('files_done', 0)}/{e['files_total']} files")
    if e.get("bytes_total"):
        detail.append(f"{e.get('bytes_done', 0) / 1e9:.1f}/{e['bytes_total'] / 1e9:.1f} GB")
    s = int(e.get("elapsed_seconds", 0))
    detail.append(f"{s // 60}m{s % 60:02d}s")
    return parts[0] + ": " + ", ".join(detail)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m brightrun_worker.prepare",
        description="Prepare (or verify) the pre-quantized NF4 copy of a base model.",
    )
    ap.add_argument("--source", type=Path, help="the BF16 checkpoint directory")
    ap.add_argument("--out", type=Path, required=True, help="the copy's directory (…-bnb-nf4)")
    ap.add_argument("--hub-id", help="the model's hub id, recorded in the manifest (default: from the source path)")
    ap.add_argument("--verify", action="store_true", help="check the copy against its manifest (after preparing, with sha256)")
    ap.add_argument("--sha256", action="store_true", help="with --verify alone: also check every file's sha256")
    ap.add_argument("--force", action="store_true", help="rebuild even a complete copy, and replace a broken one")
    args = ap.parse_args(argv)
    if args.source is None and not args.verify:
        ap.error("--source is required unless --verify checks an existing copy")
    logging.basicConfig(level=os.environ.get("BRIGHTRUN_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    show = _StderrProgress()
    try:
        if args.source is not None:
            summary = prepare(args.source, args.out, progress=show, hub_id=args.hub_id, force=args.force)
            if args.verify:
                summary["verify"] = verify(args.out, sha256=True, progress=show)
        else:
            summary = verify(args.out, sha256=args.sha256, progress=show)
    except errors.WorkerError as e:
        print(f"prepare: {e.message}\n{e.advice}", file=sys.stderr)
        print(json.dumps({"error": f"{e.code}: {e.message}", "code": e.code, "advice": e.advice}))
        return 1
    print(f"prepare: {summary.get('message', summary.get('status'))}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
