"""The page pipeline of conversation_details: pages fetched and redacted ahead of the landing, in order, with
bounded memory, errors raised in the caller as the same exception, and no request spent on a finished job."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from genesys_assets.lib.analytics_extract import DayNotAvailableError, Prefetch, WindowRun, replay_pass, run_window
from genesys_assets.lib.analytics_plan import day_bounds, details_job_body
from genesys_assets.lib.conversation_details import DayFlattener
from genesys_assets.lib.pii import AddressHasher
from genesys_assets.resources.genesys_cloud_client import ClientSettings, DetailsJobPage, GenesysCloudClient
from genesys_assets.resources.genesys_cloud_errors import GenesysApiError, GenesysRetriesExhausted
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.analytics.conftest import PII_KEY, after_pages, past_day, served_result_pages

DAY = past_day(5)


class Source:
    """An iterator that records how far it was driven, sleeps per item, and may fail after some items."""

    def __init__(self, n: int, *, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.n, self.delay, self.fail_after = n, delay, fail_after
        self.produced = 0
        self.closed = False
        self.threads: set[str] = set()

    def __iter__(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.threads.add(threading.current_thread().name)
                if self.fail_after is not None and i == self.fail_after:
                    raise GenesysRetriesExhausted(f"GET /results failed after 6 attempt(s) at item {i}",
                                                  attempts=6, elapsed_seconds=1.0, endpoint="GET /results")
                time.sleep(self.delay)
                self.produced += 1
                yield i
        finally:
            self.closed = True


def test_prefetch_keeps_order_and_runs_on_its_own_thread() -> None:
    source = Source(50)
    with Prefetch(source, name="test-prefetch") as items:
        assert list(items) == list(range(50))
    assert source.threads == {"test-prefetch"} and source.closed


def test_prefetch_stays_at_most_depth_ahead() -> None:
    source = Source(100)
    with Prefetch(source, depth=1) as items:
        assert next(items) == 0
        time.sleep(0.3)  # the producer runs free while the caller is busy...
        # ...but holds only one item in the queue and one in hand: memory does not grow with the source.
        assert source.produced <= 3
    deeper = Source(100)
    with Prefetch(deeper, depth=2) as items:
        assert next(items) == 0
        time.sleep(0.3)
        assert deeper.produced == 4  # the caller's item, two queued and one in hand
    assert not [t for t in threading.enumerate() if t.name == "prefetch"]


def test_prefetch_by_bytes_stays_within_its_budget_but_always_one_ahead() -> None:
    small = Source(100)
    with Prefetch(small, max_bytes=10, size=lambda item: 3) as items:
        assert next(items) == 0
        time.sleep(0.3)
        assert 4 <= small.produced <= 6  # 4 items of 3 bytes fill 10 bytes, plus the one taken and one in hand
    big = Source(100)
    with Prefetch(big, max_bytes=10, size=lambda item: 50) as items:
        assert next(items) == 0
        time.sleep(0.3)
        assert big.produced <= 3  # an item larger than the budget still goes one ahead, never more
    with pytest.raises(ValueError, match="size function"):
        Prefetch([1], max_bytes=10)


def test_prefetch_fetches_the_next_item_while_the_caller_works_on_this_one() -> None:
    """The overlap a Retry-After sleep hides behind: item k + 1 is being fetched while the caller still holds item
    k. Each fetch waits until the caller is at work on the item before it, so in sequence none would ever come."""
    working, fetching = ([threading.Event() for _ in range(5)] for _ in range(2))
    fetched: list[int] = []

    def source() -> Iterator[int]:
        for k in range(5):
            fetching[k].set()
            if k:
                assert working[k - 1].wait(10), f"item {k} was fetched before the caller took item {k - 1}"
            fetched.append(k)
            yield k

    with Prefetch(source()) as items:
        for k in items:
            working[k].set()
            if k < 4:
                assert fetching[k + 1].wait(10), f"item {k + 1} was not fetched while the caller worked on item {k}"
    assert fetched == [0, 1, 2, 3, 4]


def test_an_error_in_the_thread_is_raised_in_the_caller_as_the_same_exception() -> None:
    source = Source(10, fail_after=3)
    seen: list[int] = []
    message = r"^GET /results failed after 6 attempt\(s\) at item 3$"
    with pytest.raises(GenesysRetriesExhausted, match=message) as info, Prefetch(source) as items:
        seen.extend(items)
    assert seen == [0, 1, 2]  # every item before the failure, none after
    assert any(frame.name == "__iter__" for frame in info.traceback)  # the producer's frames are kept
    assert source.closed


def test_leaving_early_stops_the_thread_and_closes_the_source() -> None:
    source = Source(1000, delay=0.01)
    with pytest.raises(RuntimeError, match="flattening failed"), Prefetch(source, name="early-exit") as items:
        for i in items:
            if i == 2:
                raise RuntimeError("flattening failed")
    assert source.closed and source.produced < 10
    assert not [t for t in threading.enumerate() if t.name == "early-exit"]


def test_prefetch_refuses_a_depth_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Prefetch([1], depth=0)


# ------------------------------------------------------------------------------------- against the sandbox

@pytest.fixture
def client(emulator: GenesysEmulator) -> Iterator[GenesysCloudClient]:
    settings = ClientSettings(api_base_url=emulator.base_url, login_base_url=emulator.base_url,
                              requests_per_second=None, max_attempts=2, backoff_base_seconds=0.01,
                              backoff_max_seconds=0.02, job_poll_initial_seconds=0.05, job_poll_max_seconds=0.2)
    with GenesysCloudClient(settings, emulator.client_id, emulator.client_secret) as c:
        yield c


def _window(client: GenesysCloudClient, tmp_path: Path, *, page_size: int = 50) -> tuple[WindowRun, Path]:
    start, end = day_bounds(DAY)
    run = WindowRun(window="day")
    raw = tmp_path / "part-000.ndjson.gz"
    hasher = AddressHasher(PII_KEY)
    with DayFlattener(DAY, tmp_path / "flatten", hasher) as flattener:
        run_window(client, flattener, run, details_job_body(start, end), raw, hasher, page_size=page_size,
                   max_submissions=1, day_end=end)
    return run, raw


def test_a_window_lands_every_page_in_order_and_leaves_the_finished_job_alone(
        emulator: GenesysEmulator, client: GenesysCloudClient, tmp_path: Path) -> None:
    emulator.clear_request_log()
    run, raw = _window(client, tmp_path)
    lines = gzip.decompress(raw.read_bytes()).splitlines()
    assert run.pages == len(lines) == len(served_result_pages(emulator)) > 3
    ids = [c["conversationId"] for line in lines for c in orjson.loads(line)["conversations"]]
    job = emulator.jobs.jobs[run.job_id]
    assert ids == [emulator.analytics.store.day(d).index.ids[row] for d, row in job.refs or []]  # cursor order
    assert run.returned == len(ids)
    # The results were read: the job is left to expire; a DELETE would only be a request more.
    assert not [e for e in emulator.request_log() if e["method"] == "DELETE"]


def test_the_api_time_the_pipeline_did_not_hide_is_counted(
        emulator: GenesysEmulator, client: GenesysCloudClient, tmp_path: Path) -> None:
    """Every request takes 0.05 s: the redaction stage waits at least for the first page, never longer than the
    window took; the figure is reported to the millisecond."""
    emulator.set_faults(latency_seconds=0.05)
    try:
        started = time.monotonic()
        run, _ = _window(client, tmp_path)
        elapsed = time.monotonic() - started
    finally:
        emulator.set_faults(latency_seconds=0.0)
    assert run.pages > 3
    assert 0.05 <= run.seconds_waiting_for_api <= elapsed
    assert run.seconds_waiting_for_api == round(run.seconds_waiting_for_api, 3)


def test_a_page_fetch_that_fails_is_raised_by_the_window_with_its_message(
        emulator: GenesysEmulator, client: GenesysCloudClient, tmp_path: Path) -> None:
    """Retries exhausted on a result page, inside the fetch thread: the window raises the client's own error."""
    emulator.clear_request_log()
    armed = threading.Event()

    def fail_next_page(job_id: str) -> None:
        emulator.fail_next(503, count=2)  # max_attempts=2: both attempts of the next request fail
        armed.set()

    try:
        with after_pages(emulator, 2, fail_next_page), pytest.raises(GenesysRetriesExhausted) as info:
            _window(client, tmp_path, page_size=20)
    finally:
        emulator.clear_faults()
    assert armed.is_set()
    assert str(info.value).startswith("GET /api/v2/analytics/conversations/details/jobs/{job_id}/results failed "
                                      "after 2 attempt(s)")
    assert not [t for t in threading.enumerate() if t.name.startswith("details-")]


def test_a_page_size_the_api_refuses_is_named_in_the_error(
        emulator: GenesysEmulator, client: GenesysCloudClient, tmp_path: Path) -> None:
    """The first results page answered 400: the error keeps the API's own message and says which setting to lower."""
    with pytest.raises(GenesysApiError) as info:
        _window(client, tmp_path, page_size=20_000)
    message = str(info.value)
    assert "answered 400" in message and "pageSize must be between 1 and 10000" in message
    assert "20,000 to a page (the asset's page_size config)" in message and "set page_size lower" in message
    assert info.value.status == 400 and info.value.code == "bad.request"
    assert not [t for t in threading.enumerate() if t.name.startswith("details-")]


def test_a_bad_request_after_the_first_page_is_raised_as_the_api_said_it(
        emulator: GenesysEmulator, client: GenesysCloudClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 400 mid-window is not the page size (the first page took it): no hint, the client's error unchanged."""
    real = client.iter_details_job_pages

    def bad_cursor_after_two_pages(job_id: str, page_size: int, cursor: str | None = None) -> Iterator[DetailsJobPage]:
        pages = real(job_id, page_size, cursor)
        yield next(pages)
        yield next(pages)
        yield from real(job_id, page_size, cursor="not-a-cursor")

    monkeypatch.setattr(client, "iter_details_job_pages", bad_cursor_after_two_pages)
    with pytest.raises(GenesysApiError) as info:
        _window(client, tmp_path)
    assert "Invalid cursor" in str(info.value) and "page_size" not in str(info.value)
    assert info.value.status == 400
    assert not [t for t in threading.enumerate() if t.name.startswith("details-")]


def test_a_short_day_reported_by_a_page_is_refused_before_it_is_landed(
        emulator: GenesysEmulator, client: GenesysCloudClient, tmp_path: Path) -> None:
    """dataAvailabilityDate before the day's end on a page: DayNotAvailableError, raised in the caller."""
    emulator.set_faults(availability_lag_seconds=timedelta(days=10).total_seconds())  # watermark before DAY
    try:
        with pytest.raises(DayNotAvailableError, match="reports dataAvailabilityDate"):
            _window(client, tmp_path)
    finally:
        emulator.set_faults(availability_lag_seconds=6 * 3600)
    assert gzip.decompress((tmp_path / "part-000.ndjson.gz").read_bytes()) == b""
    assert not [t for t in threading.enumerate() if t.name.startswith("details-")]


def test_a_page_that_cannot_be_redacted_fails_the_window_with_the_parsers_error(
        emulator: GenesysEmulator, client: GenesysCloudClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in the redaction thread (here a page that is not JSON) surfaces in the caller unchanged."""
    from genesys_assets.lib import analytics_extract

    real = analytics_extract.redact_page
    calls = {"n": 0}

    def redact(raw: bytes, hasher: AddressHasher) -> bytes:
        calls["n"] += 1
        return real(raw[:-1] if calls["n"] == 2 else raw, hasher)  # the second page loses its closing brace

    monkeypatch.setattr(analytics_extract, "redact_page", redact)
    with pytest.raises(orjson.JSONDecodeError):
        _window(client, tmp_path)
    assert gzip.decompress((tmp_path / "part-000.ndjson.gz").read_bytes()).count(b"\n") == 1


def _landed_pages(n: int) -> list[bytes]:
    from genesys_assets_tests.lib.test_conversation_details import DAY, conversation, page

    return [page([conversation(f"c-{i}", f"{DAY.isoformat()}T10:{i:02d}:00.000Z", f"{DAY.isoformat()}T11:00:00.000Z")])
            for i in range(n)]


def test_a_replay_reads_the_landed_pages_ahead_on_its_own_thread(tmp_path: Path) -> None:
    from genesys_assets_tests.lib.test_conversation_details import DAY

    readers: list[str] = []

    def landed() -> Iterator[bytes]:
        for raw in _landed_pages(5):
            readers.append(threading.current_thread().name)
            yield raw

    result = replay_pass(landed(), DAY, tmp_path, AddressHasher(PII_KEY))
    assert result.rows["conversations"] == 5 and result.pages == 5
    assert set(readers) == {f"replay-pages-{DAY.isoformat()}"}


def test_a_landed_file_that_fails_to_read_fails_the_replay_and_writes_no_table(tmp_path: Path) -> None:
    from genesys_assets_tests.lib.test_conversation_details import DAY

    def landed() -> Iterator[bytes]:
        yield from _landed_pages(3)
        raise gzip.BadGzipFile("Not a gzipped file (b'\\x00\\x00')")

    with pytest.raises(gzip.BadGzipFile, match="Not a gzipped file"):
        replay_pass(landed(), DAY, tmp_path, AddressHasher(PII_KEY))
    assert not (tmp_path / "tables").exists() and not list((tmp_path / "flatten").glob("parts-*"))
