"""Progress lines for long loops: at most one every ``every_seconds``, and one at the end, so a run's log shows
the work advancing (and how fast) without a line per item. Thread-safe: pool workers report as they finish.

The package's loggers reach each run's event log through ``python_logs.managed_python_loggers`` in
``dagster.yaml``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class Progress:
    """``advance`` as items finish; ``done`` writes the closing line unless reaching the total already did."""

    def __init__(self, what: str, log: logging.Logger, total: int | None = None, *, every_seconds: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.count = what, total, 0
        self._log, self._every, self._clock = log, every_seconds, clock
        self._started = self._last = clock()
        self._lock = threading.Lock()
        self._ended = False

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.count += n
            now = self._clock()
            finished = self.total is not None and self.count >= self.total
            if finished or now - self._last >= self._every:
                self._last = now
                self._line(now, finished)

    def done(self) -> None:
        with self._lock:
            if not self._ended:
                self._line(self._clock(), True)

    def _line(self, now: float, final: bool) -> None:
        self._ended = self._ended or final
        elapsed = now - self._started
        rate = f", {self.count / elapsed:.1f}/s" if elapsed > 0 else ""
        of = f" of {self.total} ({100 * self.count / self.total:.0f} %)" if self.total else ""
        self._log.info("%s: %d%s%s in %.0f s%s", self.what, self.count, of, rate, elapsed, " (done)" if final else "")
