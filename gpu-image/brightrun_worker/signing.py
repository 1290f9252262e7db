"""Standard Webhooks signing of worker callbacks.

Per-job key = HMAC-SHA256(key = master secret (UTF-8), msg =
"brightrun/callback/v1/" + job_id); the spec carries it as "whsec_" +
standard base64. Each message is signed over f"{webhook_id}.{timestamp}.{body}"
with the exact body bytes sent. Test vectors: testdata/contracts/signatures.json.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Mapping, Optional

DERIVATION_PREFIX = "brightrun/callback/v1/"
DEFAULT_TOLERANCE_SECONDS = 300


def derive_job_key(master_secret: str, job_id: str) -> bytes:
    """The per-job key; only the server (which holds the master secret) calls this."""
    return hmac.new(
        master_secret.encode("utf-8"), (DERIVATION_PREFIX + job_id).encode("utf-8"), hashlib.sha256
    ).digest()


def encode_secret(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode("ascii")


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value: "v1," + base64 HMAC-SHA256."""
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode("utf-8") + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, webhook_id, timestamp, body),
    }


def verify(
    key: bytes,
    hdrs: Mapping[str, str],
    body: bytes,
    *,
    now: Optional[float] = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Check a signed request the way a Standard Webhooks receiver does.

    Header names are matched case-insensitively; the signature header may hold
    several space-separated "v1,<sig>" entries. Used by the tests' fake server
    (the Go server has its own).
    """
    lower = {k.lower(): v for k, v in hdrs.items()}
    msg_id = lower.get("webhook-id")
    ts = lower.get("webhook-timestamp")
    sigs = lower.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return False
    try:
        ts_int = int(ts)
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - ts_int) > tolerance:
        return False
    want = sign(key, msg_id, ts_int, body).split(",", 1)[1]
    for entry in sigs.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, want):
            return True
    return False
