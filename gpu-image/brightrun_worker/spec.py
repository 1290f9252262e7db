"""The job spec (RunPod ``input``), version 1: parsing and validation.

The contract lives in testdata/contracts/job_spec.v1.schema.json; this module
implements the same rules by hand (no jsonschema at run time) and reports
every problem at once in one plain sentence. Unknown fields are ignored so a
newer server can add optional fields without breaking older images.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from . import errors
from .registry import CHAT_RULES, FORBIDDEN_TARGETS

VERSION = 1
ARTIFACT_NAMES = ("adapter_config.json", "adapter_model.safetensors")
QUANTIZATIONS = ("nf4", "bf16")
DATASET_FORMATS = ("chat-jsonl",)
MAX_TIME_LIMIT_SECONDS = 7 * 24 * 3600

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_SECRET_PREFIX = "whsec_"
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CHECKPOINT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

# Same bounds as the Go server (shared/pipeline.Bounds): (min, max, integer?)
HYPERPARAMETER_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "learning_rate": (1e-5, 1e-3, False),
    "batch_size": (1, 64, True),
    "gradient_accumulation": (1, 64, True),
    "epochs": (1, 20, True),
    "lora_rank": (4, 128, True),
    "lora_alpha": (1, 512, True),
    "lora_dropout": (0, 0.5, False),
    "max_seq_length": (256, 32768, True),
    "warmup_ratio": (0, 0.5, False),
}

# The largest token budget of one micro-batch a spec may ask for.
MAX_MICRO_BATCH_TOKENS = 65536

# Checkpoints: every this many seconds of training wall time (and at every
# epoch's end) unless the spec says otherwise.
DEFAULT_CHECKPOINT_EVERY_SECONDS = 600.0

# Files of one checkpoint (checkpoint.py writes them; the callback schema's
# checkpoint file names follow _FILE_NAME).
CHECKPOINT_FILE_NAMES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "training_state.safetensors",
    "trainer_state.json",
)

# Validation: the most held-out examples unless the spec says otherwise, and
# the bounds of an explicit split.
DEFAULT_VALIDATION_MAX_EXAMPLES = 200
MAX_VALIDATION_EXAMPLES = 100_000
MAX_VALIDATION_SPLIT = 0.5


class SpecError(errors.WorkerError):
    """The job spec does not follow the contract."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(errors.SPEC_INVALID, "Invalid job spec: " + "; ".join(problems) + ".")


@dataclass(frozen=True)
class BaseModel:
    id: str
    volume_path: str
    quantization: str  # "nf4" (QLoRA) or "bf16" (LoRA)
    chat_rule: str
    lora_targets: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    url: str
    sha256: str
    size_bytes: int
    format: str
    examples: int
    tokens_total: int
    tokens_trained: int


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float
    batch_size: int
    gradient_accumulation: int
    epochs: int
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    max_seq_length: int
    warmup_ratio: float
    # Padded tokens (rows x longest row) one micro-batch may hold; the
    # control plane sizes it to the GPU's memory. Absent: max_seq_length x
    # batch_size, the largest micro-batch a fixed example count could make.
    micro_batch_tokens: int = 0

    def token_budget(self) -> int:
        return self.micro_batch_tokens or self.max_seq_length * self.batch_size

    def knobs(self) -> errors.Knobs:
        return errors.Knobs(
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            gradient_accumulation=self.gradient_accumulation,
            lora_rank=self.lora_rank,
            max_seq_length=self.max_seq_length,
        )


@dataclass(frozen=True)
class Callback:
    url: str
    secret: str  # "whsec_" + base64 of the per-job key
    progress_every_steps: int
    progress_every_seconds: float

    @property
    def key(self) -> bytes:
        return decode_secret(self.secret)


@dataclass(frozen=True)
class Artifact:
    url: str
    method: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Transfer:
    """A presigned URL for one file: GET (download) or PUT (upload)."""

    url: str
    method: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class FileInfo:
    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Resume:
    """The checkpoint a re-dispatched attempt continues from. The worker asks
    for its download URLs (a ``urls`` callback, purpose checkpoint_download);
    ``urls``, when given, are used only if the server cannot answer that."""

    step: int
    checkpoint_id: Optional[str] = None
    files: tuple[FileInfo, ...] = ()
    urls: Mapping[str, Transfer] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationDataset:
    """A second ready dataset to evaluate on (instead of a held-out share)."""

    url: str
    sha256: str
    size_bytes: int
    format: str
    examples: Optional[int] = None
    tokens_total: Optional[int] = None
    tokens_trained: Optional[int] = None


@dataclass(frozen=True)
class Validation:
    """Held-out evaluation. ``split`` None means the default rule
    (data.default_validation_split); 0 turns evaluation off."""

    split: Optional[float] = None
    max_examples: int = DEFAULT_VALIDATION_MAX_EXAMPLES
    every_steps: Optional[int] = None  # None: about ten evaluations per run (train.eval_interval)
    seed: int = 0
    dataset: Optional[ValidationDataset] = None


@dataclass(frozen=True)
class JobSpec:
    version: int
    job_id: str
    attempt: int
    base_model: BaseModel
    dataset: Dataset
    hyperparameters: Hyperparameters
    callback: Callback
    artifacts: Mapping[str, Artifact]
    time_limit_seconds: int
    # Optional (absent in older specs): see job_spec.v1.schema.json.
    checkpoint_every_seconds: float = DEFAULT_CHECKPOINT_EVERY_SECONDS
    resume: Optional[Resume] = None
    validation: Validation = field(default_factory=Validation)


def decode_secret(secret: str) -> bytes:
    """Decode a Standard Webhooks secret ("whsec_" + standard base64)."""
    if not isinstance(secret, str) or not secret.startswith(_SECRET_PREFIX):
        raise ValueError('must start with "whsec_"')
    try:
        key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid standard base64 after the whsec_ prefix") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"must decode to 24..64 bytes, got {len(key)}")
    return key


class _Checker:
    """Collects every problem with a spec instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, what: str) -> None:
        self.problems.append(f"{path} {what}")

    def obj(self, v: Any, path: str) -> Mapping[str, Any]:
        if isinstance(v, Mapping):
            return v
        self.bad(path, "must be an object" if v is not None else "is required")
        return {}

    def field(self, o: Mapping[str, Any], key: str, path: str, check: Callable[[Any, str], Any]) -> Any:
        p = f"{path}.{key}" if path else key
        if key not in o or o[key] is None:
            self.bad(p, "is required")
            return None
        return check(o[key], p)

    def string(self, v: Any, p: str, pattern: Optional[re.Pattern[str]] = None, what: str = "") -> Optional[str]:
        if not isinstance(v, str) or not v:
            self.bad(p, "must be a non-empty string")
            return None
        if pattern is not None and not pattern.match(v):
            self.bad(p, what or f"must match {pattern.pattern}")
            return None
        return v

    def url(self, v: Any, p: str) -> Optional[str]:
        s = self.string(v, p)
        if s is not None and not (s.startswith("https://") or s.startswith("http://")):
            self.bad(p, "must be an http(s) URL")
            return None
        return s

    def enum(self, v: Any, p: str, allowed: tuple[str, ...]) -> Optional[str]:
        if v not in allowed:
            self.bad(p, f"must be one of {', '.join(allowed)}, got {_show(v)}")
            return None
        return v

    def integer(self, v: Any, p: str, lo: Optional[int] = None, hi: Optional[int] = None) -> Optional[int]:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
            isinstance(v, float) and (not math.isfinite(v) or not v.is_integer())
        ):
            self.bad(p, f"must be an integer, got {_show(v)}")
            return None
        n = int(v)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            self.bad(p, _range_text(lo, hi, n))
            return None
        return n

    def number(self, v: Any, p: str, lo: Optional[float] = None, hi: Optional[float] = None) -> Optional[float]:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.bad(p, f"must be a number, got {_show(v)}")
            return None
        x = float(v)
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            self.bad(p, _range_text(lo, hi, x))
            return None
        return x


def _range_text(lo: Optional[float], hi: Optional[float], v: float) -> str:
    f = errors.fmt_number
    if lo is not None and hi is not None:
        return f"must be between {f(lo)} and {f(hi)}, got {f(v)}"
    if lo is not None:
        return f"must be at least {f(lo)}, got {f(v)}"
    return f"must be at most {f(hi)}, got {f(v)}"  # type: ignore[arg-type]


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def parse(raw: Any) -> JobSpec:
    """Validate a decoded job spec and return it typed; raise SpecError listing every problem."""
    c = _Checker()
    top = c.obj(raw, "spec")
    if not top:
        raise SpecError(c.problems or ["spec must be a non-empty object"])

    version = c.field(top, "version", "", lambda v, p: c.integer(v, p))
    if version is not None and version != VERSION:
        c.bad("version", f"must be {VERSION}, got {version} (this worker speaks job spec v{VERSION})")
    job_id = c.field(
        top,
        "job_id",
        "",
        lambda v, p: c.string(v, p, _JOB_ID, "must be 1-128 letters, digits, '_' or '-'"),
    )
    attempt = c.field(top, "attempt", "", lambda v, p: c.integer(v, p, 1))
    time_limit = c.field(
        top, "time_limit_seconds", "", lambda v, p: c.integer(v, p, 1, MAX_TIME_LIMIT_SECONDS)
    )

    bm = c.obj(top.get("base_model"), "base_model")
    model_id = c.field(bm, "id", "base_model", lambda v, p: c.string(v, p))
    volume_path = c.field(bm, "volume_path", "base_model", lambda v, p: c.string(v, p))
    if volume_path is not None and not volume_path.startswith("/"):
        c.bad("base_model.volume_path", f"must be an absolute path, got {_show(volume_path)}")
    quant = c.field(bm, "quantization", "base_model", lambda v, p: c.enum(v, p, QUANTIZATIONS))
    chat_rule = c.field(bm, "chat_rule", "base_model", lambda v, p: c.enum(v, p, tuple(CHAT_RULES)))
    targets = c.field(bm, "lora_targets", "base_model", lambda v, p: _targets(c, v, p))

    ds = c.obj(top.get("dataset"), "dataset")
    d_url = c.field(ds, "url", "dataset", c.url)
    d_sha = c.field(
        ds, "sha256", "dataset", lambda v, p: c.string(v, p, _SHA256, "must be 64 lowercase hex characters")
    )
    d_size = c.field(ds, "size_bytes", "dataset", lambda v, p: c.integer(v, p, 1))
    d_fmt = c.field(ds, "format", "dataset", lambda v, p: c.enum(v, p, DATASET_FORMATS))
    d_examples = c.field(ds, "examples", "dataset", lambda v, p: c.integer(v, p, 1))
    d_total = c.field(ds, "tokens_total", "dataset", lambda v, p: c.integer(v, p, 0))
    d_trained = c.field(ds, "tokens_trained", "dataset", lambda v, p: c.integer(v, p, 0))

    hp = c.obj(top.get("hyperparameters"), "hyperparameters")
    hvals: dict[str, Any] = {}
    for name, (lo, hi, is_int) in HYPERPARAMETER_BOUNDS.items():
        if is_int:
            hvals[name] = c.field(hp, name, "hyperparameters", lambda v, p, lo=lo, hi=hi: c.integer(v, p, int(lo), int(hi)))
        else:
            hvals[name] = c.field(hp, name, "hyperparameters", lambda v, p, lo=lo, hi=hi: c.number(v, p, lo, hi))

    if hp and "micro_batch_tokens" in hp:
        hvals["micro_batch_tokens"] = c.integer(
            hp["micro_batch_tokens"], "hyperparameters.micro_batch_tokens", 1, MAX_MICRO_BATCH_TOKENS
        )

    cb = c.obj(top.get("callback"), "callback")
    cb_url = c.field(cb, "url", "callback", c.url)
    cb_secret = c.field(cb, "secret", "callback", lambda v, p: _secret(c, v, p))
    cb_steps = c.field(cb, "progress_every_steps", "callback", lambda v, p: c.integer(v, p, 1))
    cb_secs = c.field(cb, "progress_every_seconds", "callback", lambda v, p: c.number(v, p, 1))

    arts = c.obj(top.get("artifacts"), "artifacts")
    artifacts: dict[str, Artifact] = {}
    for name in ARTIFACT_NAMES:
        a = c.field(arts, name, "artifacts", lambda v, p: _artifact(c, v, p))
        if a is not None:
            artifacts[name] = a

    every = DEFAULT_CHECKPOINT_EVERY_SECONDS
    if top.get("checkpoint_every_seconds") is not None:
        every = c.number(top["checkpoint_every_seconds"], "checkpoint_every_seconds", hi=float(MAX_TIME_LIMIT_SECONDS))
        if every is not None and every <= 0:
            c.bad("checkpoint_every_seconds", f"must be more than 0, got {errors.fmt_number(every)}")
    resume = _resume(c, top["resume"], "resume") if top.get("resume") is not None else None
    validation = _validation(c, top["validation"], "validation") if top.get("validation") is not None else Validation()

    if c.problems:
        raise SpecError(c.problems)
    return JobSpec(
        version=version,
        job_id=job_id,
        attempt=attempt,
        base_model=BaseModel(
            id=model_id,
            volume_path=volume_path,
            quantization=quant,
            chat_rule=chat_rule,
            lora_targets=tuple(targets),
        ),
        dataset=Dataset(
            url=d_url,
            sha256=d_sha,
            size_bytes=d_size,
            format=d_fmt,
            examples=d_examples,
            tokens_total=d_total,
            tokens_trained=d_trained,
        ),
        hyperparameters=Hyperparameters(**hvals),
        callback=Callback(
            url=cb_url,
            secret=cb_secret,
            progress_every_steps=cb_steps,
            progress_every_seconds=cb_secs,
        ),
        artifacts=artifacts,
        time_limit_seconds=time_limit,
        checkpoint_every_seconds=every,
        resume=resume,
        validation=validation,
    )


def _targets(c: _Checker, v: Any, p: str) -> Optional[list[str]]:
    if not isinstance(v, list) or not v:
        c.bad(p, "must be a non-empty list of module name suffixes")
        return None
    out: list[str] = []
    ok = True
    for i, t in enumerate(v):
        if isinstance(t, str) and (t in FORBIDDEN_TARGETS or ".experts." in f".{t}." or t.startswith("experts")):
            c.bad(
                f"{p}[{i}]",
                f"{t!r} may not be adapted (router, gates, conv1d, routed experts and all-linear are excluded)",
            )
            ok = False
        elif not isinstance(t, str) or not _TARGET.match(t):
            c.bad(f"{p}[{i}]", f"must be a module name suffix like q_proj, got {_show(t)}")
            ok = False
        elif t in out:
            c.bad(f"{p}[{i}]", f"repeats {t!r}")
            ok = False
        else:
            out.append(t)
    return out if ok else None


def _secret(c: _Checker, v: Any, p: str) -> Optional[str]:
    if not isinstance(v, str):
        c.bad(p, "must be a string")
        return None
    try:
        decode_secret(v)
    except ValueError as e:
        c.bad(p, str(e))
        return None
    return v


def _artifact(c: _Checker, v: Any, p: str) -> Optional[Artifact]:
    o = c.obj(v, p)
    if not o:
        return None
    url = c.field(o, "url", p, c.url)
    method = c.field(o, "method", p, lambda v, p: c.enum(v, p, ("PUT",)))
    headers: dict[str, str] = {}
    h = o.get("headers")
    if h is not None:
        if not isinstance(h, Mapping) or not all(isinstance(k, str) and isinstance(x, str) for k, x in h.items()):
            c.bad(f"{p}.headers", "must be an object of string header values")
        else:
            headers = dict(h)
    if url is None or method is None:
        return None
    return Artifact(url=url, method=method, headers=headers)


def _headers(c: _Checker, h: Any, p: str) -> dict[str, str]:
    if h is None:
        return {}
    if not isinstance(h, Mapping) or not all(isinstance(k, str) and isinstance(x, str) for k, x in h.items()):
        c.bad(p, "must be an object of string header values")
        return {}
    return dict(h)


def transfer(c: _Checker, v: Any, p: str, methods: tuple[str, ...]) -> Optional[Transfer]:
    """A presigned URL object {url, method, headers?} (also the urls answer's entries)."""
    o = c.obj(v, p)
    if not o:
        return None
    url = c.field(o, "url", p, c.url)
    method = c.field(o, "method", p, lambda v, p: c.enum(v, p, methods))
    headers = _headers(c, o.get("headers"), f"{p}.headers")
    if url is None or method is None:
        return None
    return Transfer(url=url, method=method, headers=headers)


def file_info(c: _Checker, v: Any, p: str) -> Optional[FileInfo]:
    o = c.obj(v, p)
    if not o:
        return None
    name = c.field(o, "name", p, lambda v, p: c.string(v, p, _FILE_NAME, "must be a plain file name"))
    size = c.field(o, "size_bytes", p, lambda v, p: c.integer(v, p, 1))
    sha = c.field(o, "sha256", p, lambda v, p: c.string(v, p, _SHA256, "must be 64 lowercase hex characters"))
    if name is None or size is None or sha is None:
        return None
    return FileInfo(name=name, size_bytes=size, sha256=sha)


def _resume(c: _Checker, v: Any, p: str) -> Optional[Resume]:
    o = c.obj(v, p)
    if not o:
        return None
    step = c.field(o, "step", p, lambda v, p: c.integer(v, p, 1))
    cid = None
    if o.get("checkpoint_id") is not None:
        cid = c.string(o["checkpoint_id"], f"{p}.checkpoint_id", _CHECKPOINT_ID, "must be 1-128 letters, digits or ._:-")
    files: list[FileInfo] = []
    if o.get("files") is not None:
        if not isinstance(o["files"], list):
            c.bad(f"{p}.files", "must be a list of {name, size_bytes, sha256}")
        else:
            for i, f in enumerate(o["files"]):
                fi = file_info(c, f, f"{p}.files[{i}]")
                if fi is not None:
                    files.append(fi)
    urls: dict[str, Transfer] = {}
    if o.get("urls") is not None:
        u = c.obj(o["urls"], f"{p}.urls")
        for name, t in u.items():
            if not isinstance(name, str) or not _FILE_NAME.match(name):
                c.bad(f"{p}.urls", f"has a key that is not a plain file name: {_show(name)}")
                continue
            tr = transfer(c, t, f"{p}.urls.{name}", ("GET",))
            if tr is not None:
                urls[name] = tr
    if step is None:
        return None
    return Resume(step=step, checkpoint_id=cid, files=tuple(files), urls=urls)


def _validation(c: _Checker, v: Any, p: str) -> Validation:
    o = c.obj(v, p)
    split = None
    if o.get("split") is not None:
        split = c.number(o["split"], f"{p}.split", 0.0, MAX_VALIDATION_SPLIT)
    max_examples = DEFAULT_VALIDATION_MAX_EXAMPLES
    if o.get("max_examples") is not None:
        max_examples = c.integer(o["max_examples"], f"{p}.max_examples", 1, MAX_VALIDATION_EXAMPLES) or max_examples
    every = None
    if o.get("every_steps") is not None:
        every = c.integer(o["every_steps"], f"{p}.every_steps", 1)
    seed = 0
    if o.get("seed") is not None:
        seed = c.integer(o["seed"], f"{p}.seed", 0, 2**31 - 1) or 0
    ds = None
    if o.get("dataset") is not None:
        d = c.obj(o["dataset"], f"{p}.dataset")
        dp = f"{p}.dataset"
        url = c.field(d, "url", dp, c.url)
        sha = c.field(d, "sha256", dp, lambda v, p: c.string(v, p, _SHA256, "must be 64 lowercase hex characters"))
        size = c.field(d, "size_bytes", dp, lambda v, p: c.integer(v, p, 1))
        fmt = c.field(d, "format", dp, lambda v, p: c.enum(v, p, DATASET_FORMATS))
        opt = {k: c.integer(d[k], f"{dp}.{k}", 0) for k in ("examples", "tokens_total", "tokens_trained") if d.get(k) is not None}
        if None not in (url, sha, size, fmt):
            ds = ValidationDataset(url=url, sha256=sha, size_bytes=size, format=fmt, **opt)
    return Validation(split=split, max_examples=max_examples, every_steps=every, seed=seed, dataset=ds)


@dataclass(frozen=True)
class CallbackTarget:
    """Just enough of a spec to report its failure (even when the rest is broken)."""

    job_id: str
    attempt: int
    url: str
    key: bytes


def callback_target(raw: Any) -> Optional[CallbackTarget]:
    """Best effort: where and how to send callbacks for a possibly invalid spec."""
    try:
        job_id = raw["job_id"]
        attempt = raw["attempt"]
        cb = raw["callback"]
        url = cb["url"]
        key = decode_secret(cb["secret"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (isinstance(job_id, str) and _JOB_ID.match(job_id)):
        return None
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    return CallbackTarget(job_id=job_id, attempt=attempt, url=url, key=key)
