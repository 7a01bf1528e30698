"""The headless demo: start the sandbox, materialize every asset for each day, print what happened.

Runs are recorded in the persistent DAGSTER_HOME, so ``genesys-assets dev`` shows them afterwards. The exit
code is 1 when any run or asset check failed, so the demo doubles as a smoke test.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from types import TracebackType
from typing import TextIO

import dagster as dg

from genesys_assets import settings
from genesys_assets.sandbox.services import Sandbox


@dataclass
class StepOutcome:
    partition: str
    asset: str
    ok: bool
    rows: int | None = None
    files: int | None = None
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)


def _int_metadata(metadata: dict, *names: str) -> int | None:
    for name in names:
        value = metadata.get(name)
        if value is not None:
            return int(getattr(value, "value", value))
    return None


def _outcomes(result: dg.ExecuteInProcessResult, partition: str) -> list[StepOutcome]:
    outcomes: dict[str, StepOutcome] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        key = materialization.asset_key.to_user_string()
        outcomes[key] = StepOutcome(
            partition, key, True,
            rows=_int_metadata(materialization.metadata, "rows", "dagster/row_count"),
            files=_int_metadata(materialization.metadata, "files"),
        )
    for step in result.get_step_failure_events():
        key = step.step_key or "?"
        outcomes.setdefault(key, StepOutcome(partition, key, False)).ok = False
    for evaluation in result.get_asset_check_evaluations():
        key = evaluation.asset_key.to_user_string()
        outcome = outcomes.setdefault(key, StepOutcome(partition, key, True))
        if evaluation.passed:
            outcome.checks_passed += 1
        else:
            outcome.checks_failed.append(evaluation.check_name)
    return list(outcomes.values())


def _print_summary(outcomes: list[StepOutcome], out: TextIO) -> None:
    header = f"{'partition':<12} {'asset':<28} {'status':<7} {'rows':>10} {'files':>6}  checks"
    print(header, file=out)
    print("-" * len(header), file=out)
    for o in outcomes:
        checks = f"{o.checks_passed} passed" + (f", FAILED: {', '.join(o.checks_failed)}" if o.checks_failed else "")
        rows = "" if o.rows is None else f"{o.rows:,}"
        files = "" if o.files is None else str(o.files)
        status = "ok" if o.ok else "FAILED"
        print(f"{o.partition:<12} {o.asset:<28} {status:<7} {rows:>10} {files:>6}  {checks}", file=out)


# The console shows what a person follows (progress, warnings), not Dagster's step-by-step debug events.
_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


class Stopped(Exception):
    """A SIGTERM or Ctrl-C arrived: the demo stops after the run it landed in."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def _noted(signum: int, frame: object) -> None:
    """SIGTERM's and SIGINT's handler while the demo runs Dagster: the wakeup fd has noted the signal."""


class StopSignals:
    """Which of SIGTERM and Ctrl-C arrived while the demo runs Dagster, so it stops after the run it landed in.

    While a run is in process Dagster puts its own handler on both signals, which only records them (or fails the
    step it interrupts), then puts SIGINT's handler back on both. So both get ``_noted`` here (which Dagster then
    restores) and the wakeup fd, which every Python-handled signal reaches whichever handler takes it, tells
    ``check`` what arrived; no signal raises in the middle of collecting a run's outcomes."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def __enter__(self) -> StopSignals:
        self._handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
        self._read, self._write = os.pipe()
        try:
            os.set_blocking(self._read, False)
            os.set_blocking(self._write, False)
            self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        except BaseException:
            os.close(self._read)
            os.close(self._write)
            raise
        try:
            for signum in self._handlers:
                signal.signal(signum, _noted)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def check(self) -> None:
        """Raise ``Stopped`` if SIGTERM or SIGINT arrived."""
        while select.select([self._read], [], [], 0)[0]:
            self._seen.update(os.read(self._read, 64))
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signum in self._seen:
                raise Stopped(signum)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, handler in self._handlers.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back from here
                signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd, warn_on_full_buffer=False)
        os.close(self._read)
        os.close(self._write)


def materialize_all(defs: dg.Definitions, days: list[date],
                    instance: dg.DagsterInstance) -> Iterator[list[StepOutcome]]:
    """Unpartitioned assets once, then every daily asset for each day, in dependency order: each run's outcomes
    as it ends."""
    assets = [a for a in (defs.assets or []) if isinstance(a, dg.AssetsDefinition)]
    checks = list(defs.asset_checks or [])
    resources = dict(defs.resources or {})
    unpartitioned = [a for a in assets if a.partitions_def is None]
    partitioned = [a for a in assets if a.partitions_def is not None]
    if unpartitioned:
        result = dg.materialize(
            [*assets, *checks], instance=instance, resources=resources, raise_on_error=False, run_config=_RUN_CONFIG,
            selection=dg.AssetSelection.assets(*unpartitioned),
        )
        yield _outcomes(result, "-") or [StepOutcome("-", "(run)", result.success)]
    for day in days:
        if not partitioned:
            break
        partition = day.isoformat()
        result = dg.materialize(
            [*assets, *checks], instance=instance, resources=resources, raise_on_error=False, run_config=_RUN_CONFIG,
            partition_key=partition, selection=dg.AssetSelection.assets(*partitioned),
        )
        yield _outcomes(result, partition) or [StepOutcome(partition, "(run)", result.success)]


def run_demo(days: list[date], sandbox: Sandbox, out: TextIO = sys.stdout) -> int:
    """Materialize everything for ``days`` against ``sandbox`` (started here); 1 if anything failed, 128 + the
    signal if a SIGTERM or Ctrl-C stopped it (after the run it landed in, the sandbox stopped)."""
    from genesys_assets.cli import prepare_dagster_home
    from genesys_assets.definitions import build_definitions

    prepare_dagster_home()
    print(f"Starting the sandbox in {sandbox.dir} for {days[0]} .. {days[-1]}", file=out, flush=True)
    outcomes: list[StepOutcome] = []
    stopped: Stopped | None = None
    with sandbox:
        assert sandbox.endpoints is not None
        os.environ.update(sandbox.endpoints.to_env(), GENESYS_MODE=settings.SANDBOX)
        defs = build_definitions()
        if not defs.assets:
            print("No assets are defined yet: the sandbox started and stopped cleanly.", file=out)
            return 0
        runs = 0
        try:
            with dg.DagsterInstance.get() as instance, StopSignals() as signals:
                for run_outcomes in materialize_all(defs, days, instance):  # the next run starts after the check
                    outcomes += run_outcomes
                    runs += 1
                    signals.check()
        except Stopped as stop:
            stopped = stop
    _print_summary(outcomes, out)
    if stopped is not None:
        print(f"\ngenesys-assets demo: stopped by {stopped} after {runs} run(s), summarised above; the sandbox "
              "stopped.", file=out, flush=True)
        return stopped.exit_code
    failed = [o for o in outcomes if not o.ok or o.checks_failed]
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} asset runs succeeded with all checks passing; "
          f"run history in {settings.dagster_home()} (see it with `genesys-assets dev`).", file=out)
    return 1 if failed else 0
