"""Fixtures for the analytics assets: a small sandbox tenant on loopback, resources pointed at it, helpers."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource

from genesys_assets.defs.analytics import assets as analytics_assets
from genesys_assets.defs.analytics import checks as analytics_checks
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.sandbox.genesys_emulator import FaultConfig, GenesysEmulator

CONVERSATIONS_PER_DAY = 300
PII_KEY = "analytics-tests-pii-key-0123456789"
ASSETS = [analytics_assets.conversation_details, analytics_assets.wrapup_codes, analytics_assets.wrapup_facts,
          analytics_assets.warehouse_views]
CHECKS = [v for v in vars(analytics_checks).values() if isinstance(v, dg.AssetChecksDefinition)]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def past_day(days_ago: int = 3) -> date:
    """A day comfortably older than the default 6 h availability lag."""
    return datetime.now(UTC).date() - timedelta(days=days_ago)


def resources(emulator: GenesysEmulator, home: Path, **genesys: Any) -> dict[str, Any]:
    return {
        "genesys": GenesysCloudResource(
            api_base_url=emulator.base_url, client_id=emulator.client_id, client_secret=emulator.client_secret,
            requests_per_second=0, job_poll_initial_seconds=0.05, job_poll_max_seconds=0.2,
            backoff_base_seconds=0.05, backoff_max_seconds=0.5, retry_after_max_seconds=5, **genesys),
        "lake": Lake(base_uri=str(home / "lake")),
        "warehouse": DuckDBResource(database=str(home / "warehouse.duckdb")),
        "pii": PiiHashingResource(hash_key=PII_KEY),
    }


def materialize(res: dict[str, Any], day: date | None, *assets: str, config: dict | None = None,
                raise_on_error: bool = True, tags: dict[str, str] | None = None,
                instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Materialize ``assets`` (and their checks) for ``day`` in ``instance`` (by default an ephemeral one)."""
    run_config: dict[str, Any] = dict(QUIET)
    if config:
        run_config["ops"] = {name: {"config": cfg} for name, cfg in config.items()}
    return dg.materialize(
        [*ASSETS, *CHECKS], resources=res, partition_key=day.isoformat() if day else None,
        selection=dg.AssetSelection.assets(*assets), run_config=run_config, raise_on_error=raise_on_error,
        tags=tags, instance=instance)


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        m = event.step_materialization_data.materialization
        if m.asset_key.to_user_string() == asset:
            return {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def table_digests(lake_root: Path, day: date, tables: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every Parquet file of the day's partitions (byte-identical re-runs compare equal)."""
    out = {}
    part = f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"
    for table in tables:
        for f in sorted((lake_root / "analytics" / table / part).glob("*.parquet")):
            out[f"{table}/{f.name}"] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def sorted_rows(lake_root: Path, day: date, table: str) -> pl.DataFrame:
    """A day's table in a canonical row order (for runs whose windows delivered conversations in another order)."""
    part = f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"
    df = pl.read_parquet(lake_root / "analytics" / table / part / "*.parquet")
    keys = [c for c in ("conversation_id", "participant_id", "session_id", "segment_start", "segment_type")
            if c in df.columns]
    return df.sort(keys)


def hidden_entries(root: Path) -> list[str]:
    """Dot-named files or folders anywhere under ``root`` (staging, temp parts a crash could leave)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def served_result_pages(emulator: GenesysEmulator) -> list[str]:
    """Paths of the details-job result pages the emulator answered 200, in order."""
    return [e["path"] for e in emulator.request_log() if e["path"].endswith("/results") and e["status"] == 200]


@contextmanager
def after_pages(emulator: GenesysEmulator, pages: int, action: Callable[[str], object]) -> Iterator[None]:
    """Within the block, run ``action(job_id)`` once ``pages`` result pages were served: in the emulator's serving
    thread before the last of them is answered, so it takes effect from the next request on (mid-paging)."""
    served = itertools.count(1)

    def hook(entry: dict) -> None:
        if entry["path"].endswith("/results") and entry["status"] == 200 and next(served) == pages:
            action(entry["path"].split("/")[-2])  # count's next() is atomic: exactly one thread sees ``pages``

    with emulator.request_hook(hook):
        yield


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """GENESYS_HOME for the module (the assets keep their scratch under it)."""
    path = tmp_path_factory.mktemp("genesys-home")
    previous = os.environ.get("GENESYS_HOME")
    os.environ["GENESYS_HOME"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("GENESYS_HOME", None)
    else:
        os.environ["GENESYS_HOME"] = previous


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GenesysEmulator]:
    state = tmp_path_factory.mktemp("tenant")
    with GenesysEmulator(state, conversations_per_day=CONVERSATIONS_PER_DAY,
                         faults=FaultConfig(job_delay_seconds=0.2)) as gc:
        yield gc
