"""Extracting a day of conversation details: details jobs per window, raw landing and streaming flattening.

One *pass* runs one details job per window of the day (24 h, or 6 h / 1 h when reconciliation asks for narrower
windows), reads each job's results page by page by cursor, appends every page unchanged as one line of the
window's NDJSON.gz landing file and feeds it to one ``DayFlattener``, which drops the neighbours, dedups across
windows and writes the four tables. Everything goes to a local work folder; the asset publishes it to the lake
only when the pass reconciles, so a failed or killed pass never leaves a partial partition.

A job that ends EXPIRED or FAILED before its results are read is submitted again (its window only); an error
while paging fails the pass, and the caller restarts the pass from a clean folder: half a window is never mixed
with a retried one.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from genesys_assets.lib.analytics_plan import (
    CONVERSATION_TABLES,
    MEDIA_TYPES,
    day_bounds,
    details_job_body,
    interval,
    iso,
    sync_count_body,
    windows,
)
from genesys_assets.lib.conversation_details import DayFlattener, DayResult
from genesys_assets.lib.pii import AddressHasher
from genesys_assets.lib.raw_redaction import redact_page
from genesys_assets.resources.genesys_cloud_client import GenesysCloudClient
from genesys_assets.resources.genesys_cloud_errors import DetailsJobExpired, DetailsJobFailed, GenesysError

log = logging.getLogger(__name__)

RAW_COMPRESSLEVEL = 6  # gzip's default 9 costs ~3x the CPU for ~3 % smaller pages


class DayNotAvailableError(RuntimeError):
    """The availability watermark has not reached the end of the day: its data may still be short."""


@dataclass
class WindowRun:
    """One window's details job, as shown in the asset's metadata."""

    window: str
    job_id: str = ""
    submissions: int = 0
    failed_jobs: list[str] = field(default_factory=list)
    seconds_to_fulfilled: float = 0.0
    pages: int = 0
    returned: int = 0  # conversations the job returned (neighbours included)
    kept: int = 0  # of those, conversations that started in the window
    total_hits: int | None = None  # the sync query's count for the window (narrow passes only)
    raw_bytes: int = 0


@dataclass
class PassResult:
    hours: int
    windows: list[WindowRun]
    day: DayResult
    raw_files: list[Path]
    tables_dir: Path
    watermark: datetime | None = None

    def summary(self, total_hits: int | None = None) -> dict[str, Any]:
        return {"window_hours": self.hours, "conversations": self.day.conversations, "total_hits": total_hits,
                "windows": [asdict(w) for w in self.windows]}


def run_window(client: GenesysCloudClient, flattener: DayFlattener, run: WindowRun, body: dict[str, Any],
               raw_path: Path, hasher: AddressHasher, *, page_size: int, max_submissions: int,
               day_end: datetime) -> None:
    """Submit (again if it expires or fails), wait, then land and flatten every page of one window's job.

    Each page is redacted first (customer numbers hashed), then landed as one NDJSON line and flattened, so the
    landing zone holds no clear number and a replay from it gives the rows of the live run.
    """
    while True:
        run.submissions += 1
        started = time.monotonic()
        job_id = client.submit_details_job(body)
        try:
            client.wait_for_details_job(job_id)
        except (DetailsJobExpired, DetailsJobFailed) as exc:
            run.failed_jobs.append(f"{job_id}: {exc.state}")
            if run.submissions >= max_submissions:
                raise
            log.warning("Details job %s for %s ended %s; submitting it again (%d of %d)", job_id, run.window,
                        exc.state, run.submissions + 1, max_submissions)
            continue
        run.job_id = job_id
        run.seconds_to_fulfilled = round(time.monotonic() - started, 3)
        break
    with gzip.open(raw_path, "wb", compresslevel=RAW_COMPRESSLEVEL) as landing:
        for page in client.iter_details_job_pages(job_id, page_size=page_size):
            available = page.data_availability_date
            if available is not None and available < day_end:
                raise DayNotAvailableError(
                    f"job {job_id} reports dataAvailabilityDate {iso(available)}, before the end of the day "
                    f"{iso(day_end)}: its results may be short")
            redacted = redact_page(page.raw, hasher)
            landing.write(redacted + b"\n")
            run.raw_bytes += len(redacted) + 1
            run.pages += 1
            run.returned += redacted.count(b'"conversationId"')  # one per conversation; no parse needed
            flattener.add_page(redacted)
    try:
        client.delete_details_job(job_id)  # free the job slot; results are landed
    except GenesysError as exc:
        log.info("Could not delete details job %s: %s", job_id, exc)


def run_pass(client: GenesysCloudClient, day: date, hours: int, work: Path, hasher: AddressHasher, *,
             page_size: int = 1000, limit: int | None = None, media_types: Iterable[str] = MEDIA_TYPES,
             max_submissions: int = 3, window_counts: bool = False) -> PassResult:
    """One pass over the day in ``hours``-long windows; the four tables and raw pages end up under ``work``."""
    _, day_end = day_bounds(day)
    raw_dir, tables_dir = work / "raw", work / "tables"
    raw_dir.mkdir(parents=True, exist_ok=True)
    runs: list[WindowRun] = []
    raw_files: list[Path] = []
    with DayFlattener(day, work / "flatten", hasher) as flattener:
        for i, (lo, hi) in enumerate(windows(day, hours)):
            run = WindowRun(window=interval(lo, hi))
            runs.append(run)
            raw_path = raw_dir / f"part-{i:03d}.ndjson.gz"
            raw_files.append(raw_path)
            body = details_job_body(lo, hi, media_types=media_types, limit=limit)
            run_window(client, flattener, run, body, raw_path, hasher, page_size=page_size,
                       max_submissions=max_submissions, day_end=day_end)
            if window_counts:
                run.total_hits = client.details_query_total_hits(sync_count_body(lo, hi, media_types=media_types))
        result = flattener.finish(tables_dir, tables=CONVERSATION_TABLES)
    _count_windows(runs, result, day, hours)
    return PassResult(hours, runs, result, raw_files, tables_dir)


def _count_windows(runs: list[WindowRun], result: DayResult, day: date, hours: int) -> None:
    """Conversations kept per window (by start), from the small conversations table just written."""
    files = result.files.get("conversations") or []
    if not files:
        return
    start, _ = day_bounds(day)
    counts = (pl.scan_parquet(files).select(
        ((pl.col("conversation_start") - pl.lit(start)).dt.total_hours() // hours).alias("w"))
        .group_by("w").agg(pl.len().alias("n")).collect())
    by_window = dict(zip(counts["w"].to_list(), counts["n"].to_list(), strict=True))
    for i, run in enumerate(runs):
        run.kept = int(by_window.get(i, 0))


def replay_pass(pages: Iterable[bytes], day: date, work: Path, hasher: AddressHasher,
                labels: pl.DataFrame | None = None, tables: Iterable[str] = CONVERSATION_TABLES) -> DayResult:
    """Re-flatten landed pages (no API): the same tables the API pass wrote, from the raw record."""
    out = work / "tables"
    with DayFlattener(day, work / "flatten", hasher, labels=labels) as flattener:
        for raw in pages:
            flattener.add_page(raw)
        return flattener.finish(out, tables=tables)

