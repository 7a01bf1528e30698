"""Pure rules of the analytics domain: day windows, request bodies, lake paths, watermark and sensor planning.

No Dagster and no I/O, so the rules the assets, checks and sensor share are tested in milliseconds:

* a day is the half-open UTC interval ``[D 00:00, D+1 00:00)``; narrower windows tile it exactly;
* details jobs carry bounded filters (an explicit media-type list, never a wildcard) and no ``paging``;
* the sync count uses the same interval and filters, so "started in the window" is compared like with like;
* a day is complete once the availability watermark has reached its end; the sensor requests each complete
  day once, oldest first, from a configured start date.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

# Every media type of AnalyticsSession.mediaType (SDK enum), listed rather than wildcarded (seed 003).
MEDIA_TYPES = ("voice", "chat", "email", "callback", "message", "cobrowse", "video", "screenshare")
RECONCILE_TOLERANCE = 0.05
WINDOW_HOURS = (24, 6, 1)  # the whole day, then the narrower re-runs when reconciliation fails

CONVERSATION_TABLES = ("conversations", "participants", "sessions", "segments")
RAW_ROOT = "raw/analytics/conversation_details"
TABLE_ROOT = "analytics"
MANIFEST = "manifest.json"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[day 00:00 UTC, next day 00:00 UTC)``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def iso(ts: datetime) -> str:
    """The API's timestamp form: UTC, milliseconds, ``Z``."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def interval(start: datetime, end: datetime) -> str:
    return f"{iso(start)}/{iso(end)}"


def windows(day: date, hours: int) -> list[tuple[datetime, datetime]]:
    """The day cut into ``hours``-long half-open windows that tile it exactly (no overlap, no gap)."""
    if hours <= 0 or 24 % hours:
        raise ValueError(f"window hours must divide 24, got {hours}")
    start, _ = day_bounds(day)
    step = timedelta(hours=hours)
    return [(start + i * step, start + (i + 1) * step) for i in range(24 // hours)]


def media_filter(media_types: Iterable[str] = MEDIA_TYPES) -> list[dict[str, Any]]:
    """A segment filter naming each media type: bounded, explicit, evaluated per segment as the API does."""
    return [{"type": "or", "predicates": [
        {"type": "dimension", "dimension": "mediaType", "operator": "matches", "value": m} for m in media_types]}]


def details_job_body(start: datetime, end: datetime, *, media_types: Iterable[str] = MEDIA_TYPES,
                     limit: int | None = None) -> dict[str, Any]:
    """``POST .../details/jobs`` body for one window (async: conversations with activity in the window)."""
    body: dict[str, Any] = {"interval": interval(start, end), "order": "asc", "orderBy": "conversationStart",
                            "segmentFilters": media_filter(media_types)}
    if limit:
        body["limit"] = int(limit)
    return body


def sync_count_body(start: datetime, end: datetime, *, media_types: Iterable[str] = MEDIA_TYPES) -> dict[str, Any]:
    """``POST .../details/query`` body counting conversations that started in the window (same filters)."""
    return {"interval": interval(start, end), "order": "asc", "orderBy": "conversationStart",
            "segmentFilters": media_filter(media_types)}


def wrapup_aggregates_body(day: date) -> dict[str, Any]:
    """``POST .../aggregates/query``: tAcw (count and sum) per wrap-up code, for the metrics emitted in the day."""
    start, end = day_bounds(day)
    return {"interval": interval(start, end), "granularity": "P1D", "groupBy": ["wrapUpCode"],
            "metrics": ["tAcw"]}


def relative_difference(found: int, expected: int) -> float:
    """|found - expected| / expected (0 when both are 0; 1 when only ``expected`` is 0)."""
    if expected == 0:
        return 0.0 if found == 0 else 1.0
    return abs(found - expected) / expected


# --------------------------------------------------------------------------------------------- lake paths

def partition_path(day: date) -> str:
    return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


def raw_prefix(day: date) -> str:
    """Where a day's raw result pages land (NDJSON.gz, one page per line, as Genesys sent it)."""
    return f"{RAW_ROOT}/{partition_path(day)}"


def table_prefix(table: str, day: date) -> str:
    return f"{TABLE_ROOT}/{table}/{partition_path(day)}"


def table_glob(table: str) -> str:
    """The Hive glob of a lake table. ``day=*`` never matches the dot-named staging folders of a running write."""
    return f"{TABLE_ROOT}/{table}/year=*/month=*/day=*/*.parquet"


# --------------------------------------------------------------------------------------------- watermark

def day_is_complete(day: date, watermark: datetime) -> bool:
    """Genesys guarantees details before ``dataAvailabilityDate``; the day is complete once it covers the end."""
    return day_bounds(day)[1] <= watermark


def last_complete_day(watermark: datetime) -> date:
    """The latest day whose end the watermark has reached."""
    w = watermark.astimezone(UTC)
    return w.date() - timedelta(days=1)


def days_to_request(*, start: date, cursor: date | None, watermark: datetime, max_days: int) -> list[date]:
    """Days that became complete since ``cursor`` (the last day requested), oldest first, at most ``max_days``.

    Without a cursor the sensor starts at ``start``; a cursor before ``start`` (the start moved later) is ignored.
    """
    first = start if cursor is None or cursor < start else cursor + timedelta(days=1)
    last = last_complete_day(watermark)
    out: list[date] = []
    day = first
    while day <= last and len(out) < max_days:
        out.append(day)
        day += timedelta(days=1)
    return out
