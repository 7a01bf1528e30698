"""One run at a time per (asset, day) on a machine: two runs of the same day must not share scratch.

Two runs of one day (a sensor request and a UI backfill, say) would otherwise write the same scratch folder,
sweep each other's staging and publish a mix. ``day_lock`` is an exclusive ``flock`` on a small file beside the
scratch: the second run waits for the first and then redoes the day (the result is the same), and the OS drops
the lock when its holder dies, so a killed run never leaves a stale lock behind. ``file_lock`` is that lock on any
file (the sandbox's endpoints file takes it too).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path


class DayLockTimeout(RuntimeError):
    """Another run held the day's lock for longer than the wait allowed."""


@contextmanager
def file_lock(path: Path, timeout_seconds: float, timed_out: Callable[[], Exception],
              poll_seconds: float = 0.1) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, 0o600), waiting up to ``timeout_seconds`` for another holder,
    then raising ``timed_out()``. The OS drops the lock when its holder dies: no stale lock after a kill."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise timed_out() from None
                time.sleep(poll_seconds)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def day_lock(root: Path, name: str, day: date, timeout_seconds: float = 6 * 3600,
             poll_seconds: float = 0.1) -> Iterator[Path]:
    """Hold the exclusive lock of ``name`` for ``day`` under ``root/locks`` (waiting up to ``timeout_seconds``)."""
    path = root / "locks" / f"{name}-{day.isoformat()}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)

    def timed_out() -> DayLockTimeout:
        return DayLockTimeout(f"another run has been materializing {name} for {day} for over {timeout_seconds:g}s "
                              f"(lock {path}); let it finish or stop it, then re-run the day")

    with file_lock(path, timeout_seconds, timed_out, poll_seconds):
        yield path
