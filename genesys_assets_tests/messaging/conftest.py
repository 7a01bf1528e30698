"""Fixtures for the messaging tests: one small sandbox tenant per module, resources on it, a clean reference run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from genesys_assets.defs.messaging.assets import webchat_archive, webchat_audit_events
from genesys_assets.defs.messaging.checks import (
    webchat_archive_count,
    webchat_archive_integrity,
    webchat_archive_messages_complete,
)
from genesys_assets.resources.data_lake_webhook import DataLakeWebhookResource
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.sandbox.conversations import DayIndex, day_start_ms
from genesys_assets.sandbox.genesys_emulator import FaultConfig, GenesysEmulator
from genesys_assets.sandbox.services import SANDBOX_PII_HASH_KEY
from genesys_assets_tests.support import latest_day_with, sandbox_days

CONVERSATIONS_PER_DAY = 200
BASE_FAULTS = FaultConfig(job_delay_seconds=0.2)
WEBHOOK_PATH = "/__sandbox__/webhooks/data-lake"
#: Small pages and parts so a 200-conversation day spans several of each.
ARCHIVE_CONFIG: dict[str, Any] = {"page_size": 10, "part_max_mb": 0.01, "fetch_workers": 4}


def _web_chat_job_size(day_index: Callable[[date], DayIndex], day: date) -> int:
    """Web messaging conversations the day's details job returns: the day's own, and yesterday's ending after its
    start (the archive skips those, but they fill the job's pages)."""
    start = day_start_ms(day)
    own, before = day_index(day), day_index(day - timedelta(days=1))
    return (sum(m == "message" for m in own.media)
            + sum(m == "message" and end > start for m, end in zip(before.media, before.ends, strict=True)))


#: Old enough for the emulator's availability lag (6 h): the day's data is complete. And more than three job pages
#: of web chats: the resume tests crash when page 4 is asked for. A day has ~40 (random, seeded by the day; 27 of
#: the 732 days from 2026-06-01 have 30 or fewer, 2026-11-26 among them), so not simply today - 3: the latest such
#: day up to it.
with sandbox_days(CONVERSATIONS_PER_DAY) as day_index:
    DAY = latest_day_with((datetime.now(UTC) - timedelta(days=3)).date(),
                          lambda day: _web_chat_job_size(day_index, day) > 3 * ARCHIVE_CONFIG["page_size"],
                          "more than three pages of web chats")
ASSETS = [webchat_archive, webchat_audit_events, webchat_archive_count, webchat_archive_integrity,
          webchat_archive_messages_complete]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GenesysEmulator]:
    with GenesysEmulator(tmp_path_factory.mktemp("genesys"), conversations_per_day=CONVERSATIONS_PER_DAY,
                         faults=BASE_FAULTS) as emu:
        yield emu


@pytest.fixture
def emu(emulator: GenesysEmulator) -> GenesysEmulator:
    """The module's tenant with default faults and an empty request log."""
    emulator.set_faults(**dataclasses.asdict(BASE_FAULTS))
    emulator.clear_request_log()
    return emulator


def genesys_resource(emu: GenesysEmulator, **overrides: Any) -> GenesysCloudResource:
    config: dict[str, Any] = {
        "api_base_url": emu.base_url, "client_id": emu.client_id, "client_secret": emu.client_secret,
        "requests_per_second": 0, "max_attempts": 8, "request_deadline_seconds": 60, "timeout_seconds": 10,
        "backoff_base_seconds": 0.02, "backoff_max_seconds": 0.1, "retry_after_max_seconds": 0.1,
        "job_poll_initial_seconds": 0.05, "job_poll_max_seconds": 0.2, "job_deadline_seconds": 30,
    }
    config.update(overrides)
    return GenesysCloudResource(**config)


def make_resources(emu: GenesysEmulator, home: Path, webhook_url: str | None = None,
                   **genesys_overrides: Any) -> dict[str, Any]:
    return {
        "genesys": genesys_resource(emu, **genesys_overrides),
        "lake": Lake(base_uri=str(home / "lake")),
        "warehouse": DuckDBResource(database=str(home / "warehouse.duckdb")),
        "pii": PiiHashingResource(hash_key=SANDBOX_PII_HASH_KEY),
        "data_lake_webhook": DataLakeWebhookResource(
            url=webhook_url or emu.base_url + WEBHOOK_PATH, backoff_base_seconds=0.01, backoff_max_seconds=0.05
        ),
    }


def archive(resources: dict[str, Any], home: Path, day: date = DAY, *, with_checks: bool = True,
            raise_on_error: bool = True, **config: Any) -> dg.ExecuteInProcessResult:
    """Materialize the day (archive, warehouse audit and, by default, the checks) in process."""
    run_config = {"ops": {"webchat_archive": {"config": {**ARCHIVE_CONFIG, "work_dir": str(home / "work"), **config}}}}
    assets = ASSETS if with_checks else ASSETS[:2]
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(assets, partition_key=day.isoformat(), resources=resources, run_config=run_config,
                              instance=instance, raise_on_error=raise_on_error)


def web_messaging_truth(emu: GenesysEmulator, day: date = DAY) -> dict[str, dict]:
    """The tenant's web messaging conversations that started on ``day``, by id (ground truth)."""
    out = {}
    for conv in emu.conversations_for_day(day):
        sessions = [s for p in conv["participants"] for s in p.get("sessions") or []]
        if any(s.get("mediaType") == "message" and s.get("messageType") == "webmessaging" for s in sessions):
            out[conv["conversationId"]] = conv
    return out


def materialization(result: dg.ExecuteInProcessResult, key: str = "webchat_archive") -> dict[str, Any]:
    """The metadata of an asset's materialization, as plain values."""
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key.to_user_string() == key:
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


def part_bytes(home: Path, day: date = DAY) -> dict[str, bytes]:
    folder = home / "lake" / "webchat" / f"year={day.year:04d}" / f"month={day.month:02d}" / f"day={day.day:02d}"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.ndjson.gz"))}


@pytest.fixture(scope="module")
def clean_run(emulator: GenesysEmulator, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dg.ExecuteInProcessResult]:
    """One uninterrupted archive of DAY: the reference other runs must match byte for byte."""
    emulator.set_faults(**dataclasses.asdict(BASE_FAULTS))
    home = tmp_path_factory.mktemp("clean")
    deliveries_before = len(emulator.webhook_deliveries())
    result = archive(make_resources(emulator, home), home)
    result.deliveries = emulator.webhook_deliveries()[deliveries_before:]  # type: ignore[attr-defined]
    return home, result
