"""Extracting a day of conversation details: details jobs per window, raw landing and streaming flattening.

One *pass* runs one details job per window of the day (24 h, or 6 h / 1 h when reconciliation asks for narrower
windows), reads each job's results page by page by cursor, appends every page unchanged as one line of the
window's NDJSON.gz landing file and feeds it to one ``DayFlattener``, which drops the neighbours, dedups across
windows and writes the four tables. Everything goes to a local work folder; the asset publishes it to the lake
only when the pass reconciles, so a failed or killed pass never leaves a partial partition.

A job that ends EXPIRED or FAILED before its results are read is submitted again (its window only); an error
while paging fails the pass, and the caller restarts the pass from a clean folder: half a window is never mixed
with a retried one. A job whose results were read is left to expire (Genesys keeps results until the job's
``expirationDate``; DELETE only cancels), so no request is spent on it.

Pages flow through a short pipeline of bounded hand-offs: a thread fetches by cursor (up to
``FETCH_AHEAD_BYTES`` ahead), a thread redacts (one page ahead), and the caller lands and flattens. A
``Retry-After`` sleep or a slow page then overlaps with the work on the pages before it, and redaction (pure
Python) overlaps with gzip and the Arrow parsing (which release the GIL). Order is kept (one thread per stage),
memory is bounded whatever the size of the day, and an error in any stage is raised in the caller as the same
exception.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

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
from genesys_assets.lib.progress import Progress
from genesys_assets.lib.raw_redaction import redact_page
from genesys_assets.resources.genesys_cloud_client import DetailsJobPage, GenesysCloudClient
from genesys_assets.resources.genesys_cloud_errors import DetailsJobExpired, DetailsJobFailed, GenesysApiError

log = logging.getLogger(__name__)

RAW_COMPRESSLEVEL = 6  # gzip's default 9 costs ~3x the CPU for ~3 % smaller pages
#: Items each pipeline stage may hold ready for the next one.
PIPELINE_DEPTH = 1
#: Result-page bytes the fetch may run ahead of the redaction: ~1-3 s of redacting and flattening on this
#: class of machine at any page size (a 1,000-conversation page is ~3.7 MB and ~0.3 s of work), so a 1 s
#: Retry-After can be slept out behind pages already fetched when the fetch has got ahead (not when the
#: flattening keeps up with it: see DETAILS_PAGE_SIZE). Always at least one page ahead.
FETCH_AHEAD_BYTES = 32 << 20
#: Results per details-job page. Measured against the sandbox emulator, one run each, on a 100k-conversation
#: day with 20 % of requests answered 429 (Retry-After 1 s): at 1,000 a page was too little work to sleep a
#: Retry-After out behind (wall 1.75x the fault-free run, 106 requests); at 2,000, one ``DayFlattener`` batch
#: (``batch_conversations``) per page, 1.23x with 55 requests, for +70 MiB of asset peak (600 MiB). At 10,000
#: (the emulator's maximum; Genesys documents none) 15 requests, but ~970 MiB.
DETAILS_PAGE_SIZE = 2000
#: Landed pages a replay reads ahead of the flattener: one ``DayFlattener`` batch at the default page size.
REPLAY_READ_AHEAD = 1

T = TypeVar("T")


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
    # Seconds the page pipeline stood waiting for the API: fetches and Retry-After sleeps not hidden behind work.
    seconds_waiting_for_api: float = 0.0


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


class _End:
    """What a pipeline stage's thread hands over last: nothing more (``error`` None) or the error it hit."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetch(Generic[T]):
    """Iterate ``items`` on a background thread, ahead of the caller by at most ``depth`` items, or, when
    ``max_bytes`` is set, by as many as fit in ``max_bytes`` (as measured by ``size``; always at least ``depth``).

    Why: the next result page is fetched (and a ``Retry-After`` slept out) while the caller works on the pages
    before it. Items arrive in order; an exception raised by ``items`` is raised by the caller's iteration as the
    same object (same type, message and traceback); leaving the ``with`` block early stops the thread and closes
    ``items``, waiting at most for the item being produced (one request, bounded by the client's deadline).
    """

    def __init__(self, items: Iterable[T], depth: int = PIPELINE_DEPTH, *, max_bytes: int = 0,
                 size: Callable[[T], int] | None = None, name: str = "prefetch") -> None:
        if depth < 1:
            raise ValueError("Prefetch depth must be at least 1")
        if max_bytes and size is None:
            raise ValueError("Prefetch max_bytes needs a size function")
        self._items = items
        self._depth, self._max_bytes, self._size = depth, max_bytes, size
        self._buffer: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def __enter__(self) -> Iterator[T]:
        self._thread.start()
        return self._consume()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()

    def _room(self) -> bool:
        return len(self._buffer) < self._depth or 0 < self._bytes < self._max_bytes

    def _put(self, item: Any, nbytes: int = 0) -> bool:
        with self._cond:
            while not self._stopped and not self._room():
                self._cond.wait()
            if self._stopped:
                return False
            self._buffer.append((item, nbytes))
            self._bytes += nbytes
            self._cond.notify_all()
            return True

    def _produce(self) -> None:
        source = iter(self._items)
        size = self._size
        try:
            for item in source:
                queued = self._put(item, size(item) if size is not None else 0)
                del item  # not kept alive by this thread while it produces the next one
                if not queued:
                    return
            self._put(_End())
        except BaseException as exc:  # handed to the caller, who raises it
            self._put(_End(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _consume(self) -> Iterator[T]:
        while True:
            with self._cond:
                while not self._buffer:
                    self._cond.wait()
                item, nbytes = self._buffer.popleft()
                self._bytes -= nbytes
                self._cond.notify_all()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
            del item  # the caller is done with it: not kept alive while waiting for the next one


def _page_bytes(page: DetailsJobPage) -> int:
    return len(page.raw)


def _redacted(pages: Iterable[DetailsJobPage], hasher: AddressHasher,
              run: WindowRun) -> Iterator[tuple[datetime | None, bytes]]:
    """(dataAvailabilityDate, redacted page bytes) per page; the API's bytes are dropped as soon as redacted.

    Counts the time it waits for the next page into ``run.seconds_waiting_for_api`` (this is the slowest stage,
    so that is the API time the pipeline did not hide).
    """
    source = iter(pages)
    while True:
        started = time.monotonic()
        page = next(source, None)
        run.seconds_waiting_for_api += time.monotonic() - started
        if page is None:
            return
        available, raw = page.data_availability_date, page.raw
        del page  # the API's bytes live only until redacted, not while the next page is awaited
        redacted = redact_page(raw, hasher)
        del raw
        yield available, redacted
        del redacted


@contextmanager
def _page_size_hint(run: WindowRun, page_size: int) -> Iterator[None]:
    """A first results page refused as a bad request names the page size, the one parameter the user sets
    (Genesys documents no maximum for it)."""
    try:
        yield
    except GenesysApiError as exc:
        if exc.status != 400 or run.pages or type(exc) is not GenesysApiError:  # a subclass says more itself
            raise
        raise GenesysApiError(
            f"{exc}. The results were asked for {page_size:,} to a page (the asset's page_size config): if the "
            f"API refuses that page size, set page_size lower (public Genesys code commonly uses 1,000)",
            endpoint=exc.endpoint, status=exc.status, code=exc.code, api_message=exc.api_message,
            correlation_id=exc.correlation_id) from exc


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
    pages = client.iter_details_job_pages(job_id, page_size=page_size)
    with gzip.open(raw_path, "wb", compresslevel=RAW_COMPRESSLEVEL) as landing, \
            Prefetch(pages, max_bytes=FETCH_AHEAD_BYTES, size=_page_bytes,
                     name=f"details-pages-{job_id[:8]}") as fetched, \
            Prefetch(_redacted(fetched, hasher, run), name=f"details-redact-{job_id[:8]}") as redacted_pages, \
            _page_size_hint(run, page_size):
        progress = Progress(f"Conversations of {run.window} fetched and flattened", log)
        for available, redacted in redacted_pages:
            if available is not None and available < day_end:
                raise DayNotAvailableError(
                    f"job {job_id} reports dataAvailabilityDate {iso(available)}, before the end of the day "
                    f"{iso(day_end)}: its results may be short")
            landing.write(redacted + b"\n")
            run.raw_bytes += len(redacted) + 1
            run.pages += 1
            conversations = redacted.count(b'"conversationId"')  # one per conversation; no parse needed
            run.returned += conversations
            flattener.add_page(redacted)
            progress.advance(conversations)
        progress.done()
    run.seconds_waiting_for_api = round(run.seconds_waiting_for_api, 3)  # summed unrounded, page by page


def run_pass(client: GenesysCloudClient, day: date, hours: int, work: Path, hasher: AddressHasher, *,
             page_size: int = DETAILS_PAGE_SIZE, limit: int | None = None, media_types: Iterable[str] = MEDIA_TYPES,
             max_submissions: int = 3, window_counts: bool = False) -> PassResult:
    """One pass over the day in ``hours``-long windows; the four tables and raw pages end up under ``work``."""
    _, day_end = day_bounds(day)
    raw_dir, tables_dir = work / "raw", work / "tables"
    raw_dir.mkdir(parents=True, exist_ok=True)
    runs: list[WindowRun] = []
    raw_files: list[Path] = []
    with DayFlattener(day, work / "flatten", hasher, tables=CONVERSATION_TABLES) as flattener:
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
        result = flattener.finish(tables_dir)
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
    """Re-flatten landed pages (no API): the same tables the API pass wrote, from the raw record.

    The pages are read (and un-gzipped) ``REPLAY_READ_AHEAD`` pages ahead on a thread of their own, as the API
    pass fetches them, so that work overlaps the flattening instead of taking turns with it (a million-conversation
    day of 3.8 GB of pages: 65.6 s -> 61.7 s in the benchmark, one run each; a deeper read-ahead measured the same).
    """
    out = work / "tables"
    with DayFlattener(day, work / "flatten", hasher, labels=labels, tables=tables) as flattener, \
            Prefetch(pages, depth=REPLAY_READ_AHEAD, name=f"replay-pages-{day.isoformat()}") as read:
        progress = Progress(f"Landed pages of {day} re-flattened", log)
        for raw in read:
            flattener.add_page(raw)
            progress.advance()
        progress.done()
        return flattener.finish(out)

