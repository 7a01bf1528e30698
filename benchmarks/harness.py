"""The measuring machinery: every run in its own subprocess, its peak RSS read from the kernel, results as JSON.

Why a subprocess per run: peak RSS (``ru_maxrss``) is a high-water mark, so two runs in one process would hide
each other, and data preparation (generating a day, building a site) must not count against the code under test.
The parent starts ``python -m benchmarks.child MODULE:FUNC RESULT_PATH`` (the arguments as JSON on its stdin), reaps
it with ``os.wait4`` and reads the figures the child wrote, including the child's peak RSS as it measured it (``VmHWM``
of itself, ``RUSAGE_CHILDREN`` for an ``ffmpeg`` or ``aws`` it ran: see :mod:`benchmarks.child` for why not
``wait4``'s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCALES = ("small", "medium", "large")


@dataclass(frozen=True)
class Scale:
    """Sizes per scale: ``small`` is the CI smoke run, ``large`` is where the issue's targets are read."""

    name: str
    conversations: int  # scenario 1 (flatten)
    scaling: tuple[int, ...]  # scenario 5
    api_conversations: int  # scenario 2
    legacy_rows: int  # scenario 4
    recordings: int  # scenario 3
    recording_max_seconds: int  # longest recording of scenario 3 (the 10 min at large)
    baseline_a_max: int  # largest day the seed-style loop is run on (it is the slow one)


SCALE_SIZES: dict[str, Scale] = {
    "small": Scale("small", 5_000, (1_000, 5_000), 2_000, 5_000, 12, 40, 5_000),
    "medium": Scale("medium", 100_000, (10_000, 100_000), 20_000, 200_000, 100, 180, 100_000),
    "large": Scale("large", 1_000_000, (10_000, 100_000, 1_000_000), 100_000, 1_000_000, 500, 600, 1_000_000),
}


def bench_home() -> Path:
    """Cached inputs (generated days, page files, sites, recordings) live here between runs."""
    base = os.environ.get("GENESYS_BENCH_HOME")
    return Path(base) if base else REPO / ".genesys" / "bench"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def warm(*paths: str | Path) -> None:
    """Read ``paths`` (files, or folders recursively) so the next run finds its input in the page cache.

    Why: this machine reclaims idle page cache within minutes (DAMON), so whichever variant ran first used to read
    its input from disk (3.8 GB of pages at ~330 MB/s: ~12 s) and the next one from memory. Every variant now
    starts warm, and each comparison is of the work, not of who went first.
    """
    for path in map(Path, paths):
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                with open(f, "rb", buffering=0) as fh:
                    while fh.read(16 << 20):
                        pass


def run_child(target: str, args: dict[str, Any], *, timeout: float | None = None,
              inputs: tuple[str | Path, ...] = ()) -> dict[str, Any]:
    """Run ``target`` (``module:function``) in a fresh interpreter; its figures plus ``peak_rss_mib``.

    The function receives ``args`` and returns a JSON-able dict; ``seconds`` in it is timed by the function
    around the work only (imports and input loading excluded), so interpreter start-up is not charged to either
    side of a comparison. ``wall_seconds`` is the whole subprocess, for reference.
    """
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.child", target, str(out)]
        warm(*inputs)
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            with proc.stdin:  # args carry the sandbox's credentials: on argv, any process could read them (ps)
                proc.stdin.write(json.dumps(args).encode())
        except BrokenPipeError:  # it died before reading them: reaped and reported below, with its exit code
            pass
        deadline = None if timeout is None else started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise TimeoutError(f"{target} did not finish in {timeout} s")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"benchmark child {target} failed with exit code {proc.returncode}")
        result = json.loads(out.read_text())
    # The child's own measure (see benchmarks/child.py); wait4's ru_maxrss would include the harness's RSS.
    result["peak_rss_mib"] = round(result.pop("peak_rss_kib", usage.ru_maxrss) / 1024, 1)
    result["wall_seconds"] = round(wall, 3)
    return result


def alternating_rounds(rounds: int, variants: dict[str, Callable[[int], dict[str, Any]]]
                       ) -> tuple[dict[str, dict[str, Any]], str]:
    """Run each variant ``rounds`` times, alternating (a, b, a, b, ...; the callable gets the round number), and
    keep each variant's run of median seconds: a run that happened, not an average of runs.

    Why: on this shared 2-core machine a run of 5-15 s swings by +-20 % from one run to the next, so one slow run
    of either side could decide a ratio. Returns the medians and a note with every round's seconds.
    """
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, run in variants.items():
            log(f"  round {r + 1}/{rounds}: {name}")
            runs[name].append(run(r))
    medians = {name: sorted(done, key=lambda run: run["seconds"])[len(done) // 2] for name, done in runs.items()}
    note = (f"{rounds} alternating rounds, the median run of each shown; seconds per round: "
            + "; ".join(f"{name} {[round(run['seconds'], 2) for run in done]}" for name, done in runs.items()))
    return medians, note


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


@dataclass
class Target:
    """One target of the issue, read against this run's figures."""

    name: str
    wanted: str  # e.g. ">= 10x"
    value: float | None
    met: bool | None
    note: str = ""


@dataclass
class ScenarioResult:
    """What one scenario prints and writes to JSON: our figures, each baseline's, ratios and targets."""

    key: str
    title: str
    scale: str
    figures: dict[str, Any]
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "scale": self.scale, "figures": self.figures, "baselines": self.baselines,
            "ratios": self.ratios,
            "targets": [{"name": t.name, "wanted": t.wanted, "value": t.value, "met": t.met, "note": t.note}
                        for t in self.targets],
            "notes": self.notes,
        }


def target(name: str, wanted: str, value: float | None, ok: bool | None, note: str = "") -> Target:
    return Target(name, wanted, None if value is None else round(value, 3), ok, note)


def at_least(name: str, value: float | None, floor: float, note: str = "") -> Target:
    return target(name, f">= {floor:g}x", value, None if value is None else value >= floor, note)


def at_most(name: str, value: float | None, ceiling: float, note: str = "") -> Target:
    return target(name, f"<= {ceiling:g}", value, None if value is None else value <= ceiling, note)
