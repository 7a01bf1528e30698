"""Typed errors of the Genesys Cloud client.

Each error says which endpoint failed (method and path template, never a token, secret or query string),
what Genesys answered and, where there is one, what to do about it. Callers catch the type, operators read
the message.
"""

from __future__ import annotations

import re
from typing import Any

# A Genesys permission looks like domain:entity:action, e.g. analytics:conversationDetail:view.
_PERMISSION_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9]*:[A-Za-z*][A-Za-z0-9*]*:[A-Za-z*][A-Za-z0-9*]*\b")


class GenesysError(Exception):
    """Base of every error raised by the Genesys Cloud client."""


class GenesysConfigError(GenesysError, ValueError):
    """The resource is configured wrongly (no region/base URL, missing credentials...)."""


class GenesysApiError(GenesysError):
    """Genesys Cloud answered with an error status (or never answered usefully).

    ``status`` is the HTTP status (``None`` for a connection error), ``code`` and ``api_message`` come from
    the Genesys error body ``{"message", "code", "status", "messageParams", "contextId"}``.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        code: str | None = None,
        api_message: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.api_message = api_message
        self.correlation_id = correlation_id

    @classmethod
    def describe(
        cls,
        endpoint: str,
        status: int | None,
        body: dict[str, Any] | None,
        correlation_id: str | None = None,
    ) -> tuple[str | None, str | None, str]:
        """(code, message, one-line summary) of an error response."""
        body = body or {}
        code = _as_str(body.get("code") or body.get("error"))
        message = _as_str(body.get("message") or body.get("error_description") or body.get("description"))
        summary = f"{endpoint} answered {status}"
        if code:
            summary += f" {code}"
        if message:
            summary += f": {message}"
        if correlation_id:
            summary += f" (correlation id {correlation_id})"
        return code, message, summary


class GenesysAuthError(GenesysApiError):
    """The OAuth server refused the client credentials, or a fresh token was refused too."""


class GenesysPermissionError(GenesysApiError):
    """403: the OAuth client's roles lack a permission. ``permissions`` names it when Genesys says which."""

    def __init__(self, message: str, *, permissions: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.permissions = permissions or []


class GenesysNotFoundError(GenesysApiError):
    """404: the entity (job, conversation...) does not exist or has expired."""


class GenesysRetriesExhausted(GenesysApiError):
    """429/5xx/connection errors went on past ``max_attempts`` or the per-call deadline."""

    def __init__(
        self, message: str, *, attempts: int, elapsed_seconds: float, last_error: str | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.attempts = attempts
        self.elapsed_seconds = elapsed_seconds
        self.last_error = last_error


class PaginationCapExceeded(GenesysApiError):
    """The sync details query cannot page past 100,000 results: split the interval and query each part."""

    def __init__(self, message: str, *, total_hits: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.total_hits = total_hits


class DetailsJobError(GenesysError):
    """An analytics details job did not produce results."""

    def __init__(self, message: str, *, job_id: str, state: str | None, error_message: str | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.state = state
        self.error_message = error_message


class DetailsJobFailed(DetailsJobError):
    """The job ended FAILED; ``error_message`` is Genesys's ``errorMessage``."""


class DetailsJobCancelled(DetailsJobError):
    """The job ended CANCELLED (someone deleted it)."""


class DetailsJobExpired(DetailsJobError):
    """The job's results expired before they were read: submit it again."""


class DetailsJobTimeout(DetailsJobError):
    """The job stayed QUEUED/PENDING past ``job_deadline_seconds``; the client deleted it."""


def permissions_from_error(body: dict[str, Any] | None) -> list[str]:
    """The permission names a Genesys 403 body mentions (``messageParams`` first, then the message)."""
    if not body:
        return []
    found: list[str] = []

    def add(text: Any) -> None:
        if isinstance(text, str):
            for match in _PERMISSION_RE.findall(text):
                if match not in found:
                    found.append(match)
        elif isinstance(text, list | tuple):
            for item in text:
                add(item)

    params = body.get("messageParams")
    if isinstance(params, dict):
        for value in params.values():
            add(value)
    add(body.get("message"))
    for detail in body.get("details") or []:
        if isinstance(detail, dict):
            add(detail.get("errorMessage") or detail.get("message"))
    return found


def _as_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
