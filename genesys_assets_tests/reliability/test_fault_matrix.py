"""The fault matrix: every fault of issue #7 against every daily asset, on the sandbox.

Each cell starts from a copy of the fault-free reference home (so the day already has a good partition), runs
the domain's daily assets for the day under the fault, and ends in one of:

- ``identical``: the run succeeded and every lake file and warehouse row equals the fault-free run;
- ``clear failure + recovered``: the run failed naming the cause, the previous good partition is untouched (the
  snapshot still equals the reference), and a re-run without the fault gives the fault-free output;
- ``quarantined + recovered``: the one refused record is quarantined with its reason and counted by the
  reconciliation check; a re-run once the target accepts it gives the fault-free output;
- ``same rows, drift WARN`` (schema drift): the drifted fields are the only difference (same rows by key), and
  the schema-drift check warns listing the unknown and missing keys;
- ``killed + recovered``: the run process was SIGKILLed after a random page; nothing half-written is visible,
  the previous partition is untouched and a re-run gives the fault-free output.

The whole matrix (``-m slow``) runs every fault against every domain; the default suite runs one row per fault
class against the domains the fault touches. Both print the matrix and write it to ``FAULT_MATRIX_FILE``
(default ``.genesys/reports/fault_matrix.md``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from genesys_assets.sandbox.services import Sandbox
from genesys_assets_tests.reliability.platform import (
    DAILY_ASSETS,
    DAY,
    OTHER_DAY,
    Reference,
    copy_home,
    diff,
    lake_files,
    outcome,
    run_domain,
    snapshot,
    spawn,
)
from genesys_assets_tests.support import failure_text, kill_mid_run

pytestmark = pytest.mark.timeout(900)

IDENTICAL = "identical"
FAILED = "clear failure + recovered"
QUARANTINED = "quarantined + recovered"
KILLED = "killed + recovered"
DRIFT = "same rows, drift WARN"
#: Lake folders each domain writes (a successful run must have rewritten all of its files of the day).
DOMAIN_LAKE = {"analytics": ("analytics/", "raw/analytics/"), "legacy": ("legacy/",), "messaging": ("webchat/",)}
DOMAINS = tuple(DAILY_ASSETS)
MATRIX_FILE = Path(os.environ.get("FAULT_MATRIX_FILE",
                                  Path(__file__).resolve().parents[2] / ".genesys" / "reports" / "fault_matrix.md"))


@dataclass(frozen=True)
class Fault:
    """One row: how to arm the fault on the sandbox, the client settings of the faulty run, what is expected."""

    name: str
    kind: str  # inprocess | kill | same_day | two_days
    arm: Callable[[Sandbox, Reference], None] = lambda sb, ref: None
    client: dict[str, Any] = field(default_factory=dict)
    touches: tuple[str, ...] = DOMAINS  # domains the fault reaches (the fast subset runs only these)
    error: str = ""  # a clear failure names this (regex-free substring, case-insensitive)
    fast: bool = False


def _set(**faults: Any) -> Callable[[Sandbox, Reference], None]:
    return lambda sb, ref: sb.emulator.set_faults(**faults)


def _jobs(outcome_: str, count: int) -> Callable[[Sandbox, Reference], None]:
    return lambda sb, ref: sb.emulator.fail_next_jobs(outcome_, count)


def _bursts(sb: Sandbox, ref: Reference) -> None:
    sb.emulator.set_faults(rate_5xx=0.25)
    sb.emulator.fail_next(503, 4)


def _head_lag(sb: Sandbox, ref: Reference) -> None:
    """Empty the staging bucket (so every recording is PUT again) and make each new object 404 on two HEADs."""
    s3 = sb.s3.client()
    bucket = sb.endpoints.staging_bucket  # type: ignore[union-attr]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
    sb.s3.set_head_lag(2)


def _refuse_one_record(sb: Sandbox, ref: Reference) -> None:
    ledger = pl.read_parquet(ref.home / "lake" / "legacy" / "ingest_ledger" / _hive(DAY) / "ledger.parquet")
    ingested = ledger.filter(pl.col("outcome") != "rejected")["id"].sort().to_list()
    sb.emulator.refuse_records({random.Random(7).choice(ingested)})


FAULTS = [
    Fault("429 storm (50%, Retry-After 1-5 s)", "inprocess", _set(rate_429=0.5, retry_after="1-5"), fast=True),
    Fault("5xx bursts", "inprocess", _bursts),
    Fault("dropped connections mid-body", "inprocess", _set(rate_drop=0.2)),
    Fault("token expiry (TTL 1 s)", "inprocess", _set(token_ttl_seconds=1)),
    Fault("details job FAILED (every submission)", "inprocess", _jobs("FAILED", 3),
          touches=("analytics", "messaging"), error="FAILED"),
    Fault("details job EXPIRED (once)", "inprocess", _jobs("EXPIRED", 1), touches=("analytics", "messaging")),
    Fault("details job stuck PENDING past the deadline", "inprocess", _jobs("STUCK", 20),
          client={"job_deadline_seconds": 1.5}, touches=("analytics", "messaging"), error="deadline", fast=True),
    Fault("availability lag (day not complete)", "inprocess", _set(availability_lag_seconds=30 * 86400),
          touches=("analytics", "messaging"), error="availab"),
    Fault("schema drift (new keys, missing keys, attribute types)", "inprocess", _set(schema_drift=True),
          touches=("analytics", "messaging"), fast=True),
    Fault("S3 HEAD not visible after PUT", "inprocess", _head_lag, touches=("legacy",), fast=True),
    Fault("target 400 for one record of a batch", "inprocess", _refuse_one_record, touches=("legacy",), fast=True),
    Fault("kill -9 after a random page", "kill", fast=True),
    Fault("two runs of the same day at once", "same_day", fast=True),
    Fault("two runs of different days at once", "two_days"),
]

CELLS: dict[tuple[str, str], str] = {}


def _hive(day: date) -> str:
    return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


def _cases(fast_only: bool) -> list[Any]:
    out = []
    for fault in FAULTS:
        for domain in DOMAINS:
            if domain not in fault.touches or (fast_only and not fault.fast):
                continue  # a fault that cannot reach a domain has no cell (shown as "-" in the table)
            out.append(pytest.param(fault, domain, id=f"{fault.name.split(' (')[0]}-{domain}".replace(" ", "_")))
    return out


def _record(fault: Fault, domain: str, cells: dict[str, str]) -> None:
    for asset in DAILY_ASSETS[domain]:
        CELLS[(fault.name, asset)] = cells.get(asset, cells.get("*", "?"))


def _inode_map(home: Path, domain: str, day: date = DAY) -> dict[str, int]:
    root = home / "lake"
    return {rel: (root / rel).stat().st_ino for rel in lake_files(home, day) if rel.startswith(DOMAIN_LAKE[domain])}


def _assert_rewritten(before: dict[str, int], home: Path, domain: str) -> None:
    after = _inode_map(home, domain)
    stale = [rel for rel, ino in before.items() if after.get(rel) == ino]
    assert not stale, f"a successful run left these files of the day unwritten: {stale}"


def _rerun_converges(sb: Sandbox, ref: Reference, home: Path, domain: str, day: date = DAY) -> None:
    result = run_domain(sb.endpoints, home, domain, day)  # type: ignore[arg-type]
    assert result.success, failure_text(result)
    expected = ref.snapshot if day == DAY else ref.other_snapshot
    assert diff(snapshot(home, day), expected) == []


# ------------------------------------------------------------------------------------------- in-process faults


def _run_inprocess(fault: Fault, domain: str, sb: Sandbox, ref: Reference, home: Path) -> dict[str, str]:
    before = _inode_map(home, domain)
    fault.arm(sb, ref)
    try:
        result = run_domain(sb.endpoints, home, domain, DAY, **fault.client)  # type: ignore[arg-type]
        head_misses = sb.s3.head_misses
    finally:
        sb.emulator.clear_faults()
        sb.s3.set_head_lag(0)
        _quiet(sb)
    changed = diff(snapshot(home), ref.snapshot)
    done = outcome(result)
    if result.success and not changed:
        _assert_rewritten(before, home, domain)
        if fault.arm is _head_lag:
            assert head_misses > 0, "the HEAD lag never answered 404: the fault did not reach the uploader"
        return dict.fromkeys(DAILY_ASSETS[domain], IDENTICAL)
    if result.success and fault.arm is _refuse_one_record:
        return _quarantined(sb, ref, home, domain, changed, result)
    if result.success and fault.name.startswith("schema drift"):
        return _drift_tolerated(ref, home, domain, changed, result)
    assert not result.success, f"{fault.name}: the run succeeded but its output differs: {changed}"
    text = failure_text(result)
    assert fault.error.lower() in text.lower(), f"{fault.name}: the failure does not say {fault.error!r}: {text}"
    assert changed == [], f"{fault.name}: a failed run changed the previous good partition: {changed}"
    _rerun_converges(sb, ref, home, domain)
    return {a: IDENTICAL if done.get(a) else FAILED for a in DAILY_ASSETS[domain]}


def _check(result: dg.ExecuteInProcessResult, name: str) -> tuple[bool, dict[str, Any], Any]:
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == name)
    return evaluation.passed, {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}, evaluation.severity


def _quarantined(sb: Sandbox, ref: Reference, home: Path, domain: str, changed: list[str],
                 result: dg.ExecuteInProcessResult) -> dict[str, str]:
    assert domain == "legacy"
    quarantine = pl.read_parquet(home / "lake" / "legacy" / "quarantine" / "source=cloud" / _hive(DAY)
                                 / "quarantine.parquet")
    refused = quarantine.filter(pl.col("reason") == "target_rejected")
    assert refused.height == 1 and "400" in refused["detail"][0]
    # Counted: source = ingested + quarantined + skipped. The record was ingested by the previous good run, so
    # the target still holds it and the reconciliation names it as the one id the ledger does not explain.
    passed, md, _ = _check(result, "legacy_reconciliation")
    assert md["balance"] == 0, md
    assert passed or md["unexpected_in_target"] == refused["id"].to_list(), md
    allowed = ("lake:legacy/ingest_ledger/", "lake:legacy/quarantine/source=cloud/", "warehouse:main.legacy_ingest",
               "warehouse:main.legacy_quarantine_cloud")
    assert [c for c in changed if not c.startswith(allowed)] == [], changed
    _rerun_converges(sb, ref, home, domain)
    return {"legacy_interactions": IDENTICAL, "staged_recordings": IDENTICAL, "cloud_interactions": QUARANTINED,
            "legacy_audit_tables": QUARANTINED}


def _drift_tolerated(ref: Reference, home: Path, domain: str, changed: list[str],
                     result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Drifted pages change the drifted fields only: the same rows (by key) as the reference, a WARN listing them."""
    assert domain == "analytics", changed
    passed, md, severity = _check(result, "conversation_details_schema_drift")
    assert not passed and severity == dg.AssetCheckSeverity.WARN and md["unknown_key_paths"], md
    for key in changed:
        if key.startswith("lake:analytics/") and key.endswith(".parquet"):
            rel = key.removeprefix("lake:")
            new, old = pl.read_parquet(home / "lake" / rel), pl.read_parquet(ref.home / "lake" / rel)
            assert new.height == old.height and new["conversation_id"].sort().equals(old["conversation_id"].sort())
    return dict.fromkeys(DAILY_ASSETS[domain], DRIFT)


def _quiet(sb: Sandbox) -> None:
    sb.emulator.set_faults(rate_429=0.0, retry_after="1", rate_5xx=0.0, rate_drop=0.0, token_ttl_seconds=86400,
                           availability_lag_seconds=6 * 3600, schema_drift=False, latency_seconds=0.0)


# ------------------------------------------------------------------------------------------- process faults

PAGE_REQUESTS: dict[str, Callable[[dict], bool]] = {
    "analytics": lambda e: e["path"].endswith("/results") and e["status"] == 200,
    "messaging": lambda e: e["path"].endswith("/messages/bulk") and e["status"] == 200,
    "legacy": lambda e: e["path"] == "/api/v2/routing/queues" and e["status"] == 200,
}


def _run_kill(domain: str, sb: Sandbox, ref: Reference, home: Path) -> dict[str, str]:
    emulator = sb.emulator
    pages = random.Random(f"kill-{domain}").randint(1, 3)
    if domain == "legacy":  # no API pages before the migration step: kill once the day's recordings are staging
        ready = _legacy_staging_started(home)
    else:
        def ready() -> bool:
            return sum(PAGE_REQUESTS[domain](e) for e in emulator.request_log()) >= pages
    emulator.clear_request_log()
    emulator.set_faults(latency_seconds=0.1)
    try:
        kill_mid_run(spawn(sb.endpoints, home, domain, DAY, home / "dagster"), ready)  # type: ignore[arg-type]
    finally:
        emulator.set_faults(latency_seconds=0.0)
    assert diff(snapshot(home), ref.snapshot) == [], "the killed run changed the previous good partition"
    _rerun_converges(sb, ref, home, domain)
    return {"*": KILLED}


def _legacy_staging_started(home: Path) -> Callable[[], bool]:
    target = home / "lake" / "legacy" / "recording_links" / _hive(DAY) / "recording_links.parquet"
    first = target.stat().st_ino

    def ready() -> bool:
        try:
            return target.stat().st_ino != first  # legacy_interactions published: staging runs now
        except FileNotFoundError:
            return False

    return ready


def _run_concurrent(fault: Fault, domain: str, sb: Sandbox, ref: Reference, home: Path) -> dict[str, str]:
    """Two processes with one real DagsterInstance and one home (lake, warehouse, scratch) at once."""
    days = [DAY, DAY] if fault.kind == "same_day" else [DAY, OTHER_DAY]
    children = [spawn(sb.endpoints, home, domain, d, home / "dagster") for d in days]  # type: ignore[arg-type]
    codes = [child.wait(timeout=300) for child in children]
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in home.glob("child-*.log"))
    for day in sorted(set(days)):
        expected = ref.snapshot if day == DAY else ref.other_snapshot
        # Whatever happened, a reader sees the fault-free partition (the new one, or the untouched previous one).
        assert diff(snapshot(home, day), expected) == [], logs
    for day, code in zip(days, codes, strict=True):
        if code != 0:
            _rerun_converges(sb, ref, home, domain, day)
    return {"*": FAILED if any(codes) else IDENTICAL}


# ------------------------------------------------------------------------------------------- tests


@pytest.fixture
def fault_home(reference: Reference, tmp_path: Path) -> Path:
    return copy_home(reference.home, tmp_path / "home")


def _cell(fault: Fault, domain: str, sandbox: Sandbox, reference: Reference, home: Path) -> None:
    if fault.kind == "inprocess":
        cells = _run_inprocess(fault, domain, sandbox, reference, home)
    elif fault.kind == "kill":
        cells = _run_kill(domain, sandbox, reference, home)
    else:
        cells = _run_concurrent(fault, domain, sandbox, reference, home)
    _record(fault, domain, cells)


@pytest.mark.parametrize(("fault", "domain"), _cases(fast_only=True))
def test_fault_row(fault: Fault, domain: str, clean_sandbox: Sandbox, reference: Reference,
                   fault_home: Path, matrix_report: None) -> None:
    _cell(fault, domain, clean_sandbox, reference, fault_home)


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "domain"), _cases(fast_only=False))
def test_full_matrix(fault: Fault, domain: str, clean_sandbox: Sandbox, reference: Reference,
                     fault_home: Path, matrix_report: None) -> None:
    _cell(fault, domain, clean_sandbox, reference, fault_home)


def render_matrix(cells: dict[tuple[str, str], str]) -> str:
    assets = [a for d in DOMAINS for a in DAILY_ASSETS[d]]
    lines = ["| fault | " + " | ".join(assets) + " |", "|---" * (len(assets) + 1) + "|"]
    for fault in FAULTS:
        if any((fault.name, a) in cells for a in assets):
            lines.append(f"| {fault.name} | " + " | ".join(cells.get((fault.name, a), "not run") for a in assets)
                         + " |")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def matrix_report() -> Iterator[None]:
    """After the module: print the matrix and write it to MATRIX_FILE."""
    yield
    if not CELLS:
        return
    table = render_matrix(CELLS)
    MATRIX_FILE.parent.mkdir(parents=True, exist_ok=True)
    MATRIX_FILE.write_text(table)
    print(f"\nFault matrix ({MATRIX_FILE}):\n{table}")


def test_render_matrix_lists_every_asset_of_a_row() -> None:
    cells = {(FAULTS[0].name, "conversation_details"): IDENTICAL}
    table = render_matrix(cells)
    assert "| 429 storm" in table and "| identical | not run |" in table
    assert table.splitlines()[0].count("|") == sum(map(len, DAILY_ASSETS.values())) + 2
