"""Checking a TaskFlow callback on the receiving side: ``verify_signature`` (docs/callbacks.md).

>>> from taskflow_client import verify_signature
>>> def receive(headers, body: bytes) -> None:  # in your web framework's handler
...     if not verify_signature(SECRET, headers["TaskFlow-Signature"], body):
...         raise PermissionError("not from TaskFlow")
...     # dedupe on headers["TaskFlow-Delivery"]: a delivery may arrive more than once
"""

from __future__ import annotations

import hashlib
import hmac
import time

DEFAULT_TOLERANCE_SECONDS = 300.0


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (the TaskFlow-Signature value, ``t=<unix>,v1=<hex>``) signs ``body`` (the
    raw request body, as received) with ``secret`` (TASKFLOW_WEBHOOK_SECRET), at a time within
    ``tolerance`` seconds of now (a replayed old request fails). Several v1 values (a secret being
    rotated) pass when any matches. Compares in constant time."""
    if not header:
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)
