"""Helpers the domain test suites share: what a failed Dagster run says, a run process killed mid-way, the
latest sandbox day whose generated data has what a test needs, and the processes a stop left running."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.events import StepFailureData

from genesys_assets.sandbox.conversations import DAY_MS, ConversationStore, DayIndex, day_start_ms


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's key, error (stack and causes) and failure description: for ``in`` checks and for an
    assertion's message, so a failing test shows why the run failed."""
    texts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        texts.append(f"{event.step_key}: {data.error.to_string() if data.error else ''}")
        if data.user_failure_data is not None:
            texts.append(data.user_failure_data.description or "")
    return "\n".join(texts)


def step_failure(result: dg.ExecuteInProcessResult) -> StepFailureData:
    """The run's one step failure: a test that expects a step to fail also proves no other step did."""
    failures = result.get_step_failure_events()
    assert len(failures) == 1, f"expected exactly one failed step: {failure_text(result) or 'none failed'}"
    return failures[0].step_failure_data


def failure_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """The values of the metadata the run's one failed step raised ``dg.Failure`` with."""
    data = step_failure(result).user_failure_data
    assert data is not None, "the step failed without a dg.Failure"
    return {key: value.value for key, value in data.metadata.items()}


def kill_mid_run(child: subprocess.Popen, ready: Callable[[], bool] | None = None, timeout: float = 120) -> None:
    """SIGKILL ``child`` once ``ready()`` holds (polled), or, without ``ready``, wait for the caller's emulator
    request hook to kill it at an exact point; assert the kill, not the run's end, stopped it. However this ends,
    the child is killed and reaped: a failed test leaves no run writing into its home."""
    try:
        if ready is not None:
            deadline = time.monotonic() + timeout
            while not ready():
                assert child.poll() is None, "the run finished before it could be killed"
                assert time.monotonic() < deadline, "the run never reached the point to kill"
                time.sleep(0.01)
            child.kill()
            timeout = 30  # a killed process ends at once
        assert child.wait(timeout=timeout) == -signal.SIGKILL, "the run finished before it could be killed"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def latest_day_with(latest: date, wanted: Callable[[date], bool], what: str, search_days: int = 60) -> date:
    """The latest day up to ``latest`` for which ``wanted(day)`` holds.

    A sandbox day is random, seeded by the day: a test that needs something of its day's data (a conversation
    crossing midnight, enough web chats for several pages) must not take a fixed offset from today, or it fails on
    the dates whose day lacks it."""
    for back in range(search_days):
        day = latest - timedelta(days=back)
        if wanted(day):
            return day
    raise AssertionError(f"none of the {search_days} days up to {latest} has {what}")


@contextmanager
def sandbox_days(conversations_per_day: int) -> Iterator[Callable[[date], DayIndex]]:
    """The column index (ids, starts, ends in epoch ms, media) of any day of the sandbox tenant (default seed), from a
    scratch store identical to the emulator's own: for choosing a test's day before any emulator exists."""
    with tempfile.TemporaryDirectory(prefix="day-search-") as scratch:
        store = ConversationStore(Path(scratch), conversations_per_day=conversations_per_day)
        try:
            yield lambda day: store.day(day).index
        finally:
            store.close()


def crosses_both_midnights(day_index: Callable[[date], DayIndex], day: date) -> bool:
    """A conversation of ``day`` ends after the day's end, and one of the day before ends after its start."""
    start = day_start_ms(day)
    return (max(day_index(day).ends, default=0) >= start + DAY_MS
            and max(day_index(day - timedelta(days=1)).ends, default=0) > start)


def _live_stat(stat: Path) -> list[str] | None:
    """The fields of a /proc ``stat`` file after the process name, from the state on; None for a process that has
    ended (gone, or a zombie)."""
    try:
        fields = stat.read_bytes().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields


def processes_in_session(sid: int) -> list[str]:
    """The live processes of session ``sid``: what a stop would leave running."""
    return [stat.parent.name for stat in Path("/proc").glob("[0-9]*/stat")
            if (fields := _live_stat(stat)) is not None and int(fields[3]) == sid]


def ends_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while _live_stat(Path(f"/proc/{pid}/stat")) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
