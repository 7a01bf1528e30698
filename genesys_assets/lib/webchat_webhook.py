"""The data-lake webhook: one POST per completed day, retried with backoff, never fatal to the archive.

The payload carries seed 002's fields (status, records, bytes, throughput, completion time, residency,
compression) plus the day and where the files are. Deliveries are retried on connection errors, 429 and 5xx
with exponential backoff and full jitter (honouring ``Retry-After``); other 4xx answers are not retried (the
receiver refused the payload). The caller reports a failed delivery as a warning: the archive stays valid.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from genesys_assets.resources.genesys_cloud_client import parse_retry_after


@dataclass(frozen=True)
class Delivery:
    """How a webhook delivery ended."""

    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


def webhook_payload(*, day: str, records: int, bytes_: int, bytes_raw: int, seconds: float, completed_at: str,
                    region: str, destination: str, manifest_sha256: str) -> dict[str, Any]:
    """The completion notice (seed 002 field names, plus the day and the manifest's address and hash)."""
    seconds = max(seconds, 1e-6)
    return {
        "status": "completed",
        "dataset": "webchat_archive",
        "day": day,
        "recordsArchived": records,
        "storageConsumedBytes": bytes_,
        "uncompressedBytes": bytes_raw,
        "throughputMBps": round(bytes_raw / (1024 * 1024) / seconds, 3),
        "throughputRecordsPerSecond": round(records / seconds, 1),
        "completionTimestamp": completed_at,
        "dataResidency": region,
        "compressionApplied": "gzip",
        "destination": destination,
        "manifestSha256": manifest_sha256,
    }


def deliver(url: str, payload: Mapping[str, Any], *, max_attempts: int = 4, backoff_base_seconds: float = 1.0,
            backoff_max_seconds: float = 30.0, timeout_seconds: float = 10.0,
            headers: Mapping[str, str] | None = None, session: requests.Session | None = None,
            sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST ``payload`` as JSON until a 2xx, a non-retryable answer, or ``max_attempts``."""
    send = session or requests.Session()
    status: int | None = None
    error: str | None = None
    attempt = 0
    try:
        for attempt in range(1, max(1, max_attempts) + 1):
            retry_after: float | None = None
            try:
                response = send.post(url, json=dict(payload), timeout=timeout_seconds,
                                     headers={"X-Archive-Source": "genesys-cloud", **(headers or {})})
            except requests.RequestException as exc:
                status, error = None, f"{type(exc).__name__}"
            else:
                status = response.status_code
                if status < 300:
                    return Delivery(True, attempt, status)
                error = f"HTTP {status}"
                if status != 429 and status < 500:
                    return Delivery(False, attempt, status, error)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), cap=backoff_max_seconds)
            if attempt < max_attempts:
                ceiling = min(backoff_max_seconds, backoff_base_seconds * 2 ** (attempt - 1))
                sleep(retry_after if retry_after is not None else random.uniform(ceiling / 2, ceiling))
    finally:
        if session is None:
            send.close()
    return Delivery(False, attempt, status, error)
