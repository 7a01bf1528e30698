"""Progress lines: few enough to read, frequent enough to see a long run advance, exact under threads."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from genesys_assets.lib import legacy_cloud as lc
from genesys_assets.lib.progress import Progress

LOG = logging.getLogger("genesys_assets.lib.test_progress")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG.name]


def test_one_line_per_interval_and_one_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("Records posted", LOG, 1000, every_seconds=15, clock=clock)
    for _ in range(9):  # 900 items in 9 s: no line yet
        clock.now += 1
        progress.advance(100)
    assert _lines(caplog) == []
    clock.now += 6  # 15 s since the start
    progress.advance(50)
    clock.now += 5
    progress.advance(50)  # the last item: a line even inside the interval
    progress.done()  # already said
    assert _lines(caplog) == ["Records posted: 950 of 1000 (95 %), 63.3/s in 15 s",
                              "Records posted: 1000 of 1000 (100 %), 50.0/s in 20 s (done)"]


def test_without_a_total_the_end_is_said_by_done(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("Conversations archived", LOG, every_seconds=15, clock=clock)
    clock.now += 4
    progress.advance(20)
    progress.done()
    progress.done()
    assert _lines(caplog) == ["Conversations archived: 20, 5.0/s in 4 s (done)"]


def test_workers_advancing_together_end_with_the_full_count_and_one_final_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    progress = Progress("Recordings staged", LOG, 4000, every_seconds=3600)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: progress.advance(), range(4000)))
    assert progress.count == 4000
    assert [line.split(",")[0] for line in _lines(caplog)] == ["Recordings staged: 4000 of 4000 (100 %)"]


def test_posting_records_reports_its_progress(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="genesys_assets.lib.legacy_cloud")
    ids = [f"id-{i}" for i in range(250)]
    outcome = lc.post_records(ids, ['{"id": 1}'] * 250, lambda body, rid: (200, {"results": []}, False))
    assert len(outcome.outcomes) == 250
    lines = [r.getMessage() for r in caplog.records if r.name == "genesys_assets.lib.legacy_cloud"]
    assert lines[-1].startswith("Interaction records posted: 250 of 250 (100 %)") and lines[-1].endswith("(done)")
