"""The whole platform against one sandbox: resources for any GENESYS_HOME, one run per domain, snapshots to compare.

A *domain run* materializes a domain's daily assets (with their checks) for one day, in process or in a child
process with a real ``DagsterInstance`` (``python -m genesys_assets_tests.reliability.child``). A *snapshot* is what
a reader of the platform sees for the day: the sha256 of every lake file of the day (volatile run fields such as
run ids and completion times normalised away) and the rows of every warehouse table and view, so two homes compare
equal exactly when their outputs are identical.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource

from genesys_assets.resources.data_lake_webhook import DataLakeWebhookResource
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.resources.pureconnect import PureConnectResource
from genesys_assets.sandbox.s3 import SANDBOX_ACCESS_KEY, SANDBOX_REGION, SANDBOX_SECRET_KEY
from genesys_assets.sandbox.services import SANDBOX_PII_HASH_KEY, SandboxEndpoints
from genesys_assets_tests.analytics.conftest import ASSETS as ANALYTICS_ASSETS
from genesys_assets_tests.analytics.conftest import CHECKS as ANALYTICS_CHECKS
from genesys_assets_tests.legacy.conftest import ASSETS as LEGACY_ASSETS
from genesys_assets_tests.legacy.conftest import CHECKS as LEGACY_CHECKS
from genesys_assets_tests.messaging.conftest import ASSETS as MESSAGING_ASSETS

#: Old enough for the emulator's 6 h availability lag; the PureConnect site is built around it.
DAY = datetime.now(UTC).date() - timedelta(days=3)
OTHER_DAY = DAY - timedelta(days=1)
CONVERSATIONS_PER_DAY = 120
INTERACTIONS_PER_DAY = 60

#: The daily assets of each domain, in dependency order (the matrix's columns).
DAILY_ASSETS: dict[str, tuple[str, ...]] = {
    "analytics": ("conversation_details", "wrapup_facts", "warehouse_views"),
    "legacy": ("legacy_interactions", "staged_recordings", "cloud_interactions", "legacy_audit_tables"),
    "messaging": ("webchat_archive", "webchat_audit_events"),
}
#: Unpartitioned assets a domain's days read (materialized once, in the reference home).
UNPARTITIONED: dict[str, tuple[str, ...]] = {"analytics": ("wrapup_codes",), "legacy": ("id_maps",), "messaging": ()}
DEFINITIONS: dict[str, list[Any]] = {
    "analytics": [*ANALYTICS_ASSETS, *ANALYTICS_CHECKS],
    "legacy": [*LEGACY_ASSETS, *LEGACY_CHECKS],
    "messaging": list(MESSAGING_ASSETS),
}
#: Small pages so a day spans several of them (a kill lands between pages).
PAGE_CONFIG: dict[str, dict[str, dict[str, Any]]] = {
    "analytics": {"conversation_details": {"page_size": 20}},
    "legacy": {},
    "messaging": {"webchat_archive": {"page_size": 5, "part_max_mb": 0.005, "fetch_workers": 2}},
}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

#: Append-only audit trails: every run adds its own file/rows by design (compared by presence, not identity).
APPEND_ONLY_LAKE = ("legacy/ingest_batches/", "audit/events/")
APPEND_ONLY_TABLES = ("legacy_ingest_batches", "audit_events")
#: Run-specific fields of otherwise deterministic files: run ids and times, and the record of how the raw pages
#: were fetched (windows, job ids, submissions: a faulty run legitimately fetched them differently).
VOLATILE_JSON_KEYS = ("run", "run_id", "completed_at", "written_at", "data_availability_date", "passes", "pages",
                      "raw_files")

FAST_CLIENT: dict[str, Any] = {
    "requests_per_second": 0, "max_attempts": 30, "request_deadline_seconds": 120, "timeout_seconds": 10,
    "backoff_base_seconds": 0.02, "backoff_max_seconds": 0.1, "retry_after_max_seconds": 0.05,
    "job_poll_initial_seconds": 0.05, "job_poll_max_seconds": 0.2, "job_deadline_seconds": 60,
}


def platform_resources(ep: SandboxEndpoints, home: Path, **genesys: Any) -> dict[str, Any]:
    """Every resource of the platform pointed at the sandbox ``ep``, with its state under ``home``."""
    settings = {"api_base_url": ep.genesys_api_base_url, "client_id": ep.client_id,
                "client_secret": ep.client_secret, **FAST_CLIENT, **genesys}
    return {
        "genesys": GenesysCloudResource(**settings),
        "pureconnect": PureConnectResource(uri=ep.pureconnect_uri),
        "lake": Lake(base_uri=str(home / "lake")),
        "warehouse": DuckDBResource(database=str(home / "warehouse.duckdb")),
        "recordings_s3": S3Resource(endpoint_url=ep.s3_endpoint_url, region_name=SANDBOX_REGION,
                                    aws_access_key_id=SANDBOX_ACCESS_KEY, aws_secret_access_key=SANDBOX_SECRET_KEY),
        "pii": PiiHashingResource(hash_key=SANDBOX_PII_HASH_KEY),
        "data_lake_webhook": DataLakeWebhookResource(url=ep.webhook_url, backoff_base_seconds=0.01,
                                                     backoff_max_seconds=0.05),
    }


@contextlib.contextmanager
def platform_env(ep: SandboxEndpoints, home: Path) -> Iterator[Path]:
    """The deployment's environment (sandbox values) and ``GENESYS_HOME`` = ``home`` for the block."""
    values = {**ep.to_env(), "GENESYS_HOME": str(home)}
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield home
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_config(domain: str, home: Path, extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    ops: dict[str, dict[str, Any]] = {name: dict(cfg) for name, cfg in PAGE_CONFIG[domain].items()}
    if domain == "messaging":
        ops["webchat_archive"]["work_dir"] = str(home / "work" / "webchat")
    for name, cfg in (extra or {}).items():
        ops.setdefault(name, {}).update(cfg)
    return {**QUIET, "ops": {name: {"config": cfg} for name, cfg in ops.items()}}


def run_domain(ep: SandboxEndpoints, home: Path, domain: str, day: date | None = DAY, *,
               instance: dg.DagsterInstance | None = None, config: dict[str, dict[str, Any]] | None = None,
               unpartitioned: bool = False, **genesys: Any) -> dg.ExecuteInProcessResult:
    """Materialize the domain's daily assets for ``day`` (or its unpartitioned ones) with their checks."""
    keys = UNPARTITIONED[domain] if unpartitioned else DAILY_ASSETS[domain]
    selection = dg.AssetSelection.assets(*keys) | dg.AssetSelection.checks_for_assets(*keys)
    with platform_env(ep, home), contextlib.ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.DagsterInstance.ephemeral())
        return dg.materialize(
            DEFINITIONS[domain], resources=platform_resources(ep, home, **genesys), instance=instance,
            partition_key=None if unpartitioned or day is None else day.isoformat(), selection=selection,
            run_config=QUIET if unpartitioned else run_config(domain, home, config), raise_on_error=False)


def outcome(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """asset -> materialized; checks -> passed (by check name)."""
    done = {e.step_materialization_data.materialization.asset_key.to_user_string(): True
            for e in result.get_asset_materialization_events()}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return {**done, **checks}


# ------------------------------------------------------------------------------------------- child processes


def child_command(ep: SandboxEndpoints, home: Path, domain: str, day: date,
                  config: dict[str, dict[str, Any]] | None = None, **genesys: Any) -> list[str]:
    args = {"endpoints": ep.__dict__, "home": str(home), "domain": domain, "day": day.isoformat(),
            "config": config or {}, "genesys": genesys}
    return [sys.executable, "-m", "genesys_assets_tests.reliability.child", json.dumps(args)]


def spawn(ep: SandboxEndpoints, home: Path, domain: str, day: date, dagster_home: Path,
          **kw: Any) -> subprocess.Popen:
    """A domain run in its own process, recorded in the persistent DagsterInstance at ``dagster_home``."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GENESYS_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    log = open(home / f"child-{domain}-{day}-{os.urandom(3).hex()}.log", "wb")  # noqa: SIM115 - closed by the OS
    return subprocess.Popen(child_command(ep, home, domain, day, **kw), env=env, stdout=log, stderr=log)


# ------------------------------------------------------------------------------------------- snapshots


def day_marker(day: date) -> tuple[str, ...]:
    """How a lake path names the day (Hive partitions, or the day's ISO date in audit paths)."""
    return (f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}", day.isoformat())


def _raw_conversations(data: bytes) -> bytes:
    """A raw landing file as the sorted conversations it holds (page boundaries and cursors are the fetch's)."""
    conversations = [c for line in gzip.decompress(data).splitlines() if line.strip()
                     for c in json.loads(line).get("conversations") or []]
    return json.dumps(sorted(conversations, key=lambda c: c.get("conversationId", "")), sort_keys=True).encode()


def _normalised(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ndjson.gz") and "/raw/" in path.as_posix():
        return _raw_conversations(data)
    if path.suffix == ".json":
        with contextlib.suppress(ValueError):
            doc = json.loads(data)
            if isinstance(doc, dict):
                for key in VOLATILE_JSON_KEYS:
                    doc.pop(key, None)
            return json.dumps(doc, sort_keys=True).encode()
    if path.name.endswith(".gz"):
        return gzip.decompress(data)  # the gzip header carries an mtime
    return data


def lake_files(home: Path, day: date) -> dict[str, str]:
    """sha256 of every visible lake file of ``day`` (hidden staging excluded), append-only trails excepted."""
    root = home / "lake"
    markers = day_marker(day)
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")) if root.exists() else []:
        rel = str(path.relative_to(root))
        if not path.is_file() or any(p.startswith(".") for p in Path(rel).parts):
            continue
        if not any(m in rel for m in markers) or rel.startswith(APPEND_ONLY_LAKE):
            continue
        out[rel] = hashlib.sha256(_normalised(path)).hexdigest()
    return out


def warehouse_rows(home: Path, tables: tuple[str, ...] | None = None) -> dict[str, str]:
    """sha256 of each warehouse table's and view's rows in a canonical order (append-only tables excepted)."""
    db = home / "warehouse.duckdb"
    if not db.exists():
        return {}
    out: dict[str, str] = {}
    with duckdb.connect(str(db), read_only=True) as con:
        names = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_catalog = current_database() ORDER BY ALL").fetchall()
        for schema, name in names:
            if name in APPEND_ONLY_TABLES or (tables is not None and name not in tables):
                continue
            qualified = f'"{schema}"."{name}"'
            try:
                rows = con.execute(f"SELECT * FROM {qualified} ORDER BY ALL").fetchall()
            except duckdb.Error as exc:  # a view over files that are not there
                out[f"{schema}.{name}"] = f"error: {type(exc).__name__}"
                continue
            out[f"{schema}.{name}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


def snapshot(home: Path, day: date = DAY) -> dict[str, str]:
    return {**{f"lake:{k}": v for k, v in lake_files(home, day).items()},
            **{f"warehouse:{k}": v for k, v in warehouse_rows(home).items()}}


def diff(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def copy_home(source: Path, dest: Path) -> Path:
    """A copy of a reference home (lake and warehouse; no scratch, no logs)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "lake", dest / "lake")
    if (source / "warehouse.duckdb").exists():
        shutil.copy2(source / "warehouse.duckdb", dest / "warehouse.duckdb")
    return dest


@dataclass
class Reference:
    """The fault-free run of every domain for DAY (and OTHER_DAY) in one home, and its snapshot."""

    home: Path
    snapshot: dict[str, str]
    other_snapshot: dict[str, str]
