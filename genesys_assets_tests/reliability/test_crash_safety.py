"""Crash safety: readers never see a half-written partition, the warehouse changes a day in one transaction, and a
re-run after a crash at any moment converges to the fault-free result without manual cleanup."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from dagster_duckdb import DuckDBResource

from genesys_assets.resources import lake as lake_module
from genesys_assets.resources.lake import Lake
from genesys_assets.sandbox.services import Sandbox
from genesys_assets_tests.reliability.platform import (
    DAILY_ASSETS,
    DAY,
    Reference,
    _normalised,
    copy_home,
    diff,
    lake_files,
    run_domain,
    snapshot,
    spawn,
)
from genesys_assets_tests.support import failure_text

pytestmark = pytest.mark.timeout(600)


def _partitions(home: Path) -> dict[Path, dict[str, str]]:
    """The day's partition folders of a home and the digests of their files."""
    out: dict[Path, dict[str, str]] = {}
    for rel, digest in lake_files(home, DAY).items():
        path = Path(rel)
        out.setdefault(path.parent, {})[path.name] = digest
    return out


def _read_partition(folder: Path) -> dict[str, str] | None:
    """What a reader sees: every visible file of the folder, read whole; None when a swap raced the read."""
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        return {n: hashlib.sha256(_normalised(folder / n)).hexdigest() for n in names}
    except FileNotFoundError:
        return None


def test_readers_only_ever_see_complete_partitions(reference: Reference, clean_sandbox: Sandbox,
                                                   tmp_path: Path) -> None:
    """A reader polls every partition of the day while all domains re-run it: each read is the whole partition."""
    home = copy_home(reference.home, tmp_path / "home")
    expected = _partitions(reference.home)
    seen: Counter[str] = Counter()
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for rel, files in expected.items():
                folder = home / "lake" / rel
                if not folder.is_dir():
                    bad.append(f"{rel}: no partition at all")
                    continue
                got = _read_partition(folder)
                if got is None:
                    seen["raced"] += 1  # listed the old folder, which a swap retired before it was read: re-read
                elif got != files:
                    bad.append(f"{rel}: {sorted(set(got.items()) ^ set(files.items()))}")
                else:
                    seen["complete"] += 1

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for domain in DAILY_ASSETS:
            result = run_domain(clean_sandbox.endpoints, home, domain, DAY)  # type: ignore[arg-type]
            assert result.success, failure_text(result)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert bad == [], bad[:5]
    assert seen["complete"] > 10 * len(expected), seen  # the reader really read throughout the runs
    assert diff(snapshot(home), reference.snapshot) == []


def test_a_partition_swap_never_leaves_the_day_without_a_partition(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """After every rename of ``replace_partition`` the partition exists, whole (old or new)."""
    lake = Lake(base_uri=str(tmp_path / "lake"))
    prefix = "t/year=2026/month=01/day=01"
    with lake.replace_partition(prefix) as writer:
        writer.write_bytes("a.bin", b"old")
    final = tmp_path / "lake" / prefix
    observed: list[set[str] | None] = []
    real_replace, real_exchange = os.replace, lake_module._exchange

    def look() -> None:
        observed.append({p.name for p in final.iterdir()} if final.is_dir() else None)

    def replace(a: object, b: object) -> None:
        real_replace(a, b)  # type: ignore[arg-type]
        look()

    def exchange(a: Path, b: Path) -> bool:
        done = real_exchange(a, b)
        look()
        return done

    monkeypatch.setattr(lake_module.os, "replace", replace)
    monkeypatch.setattr(lake_module, "_exchange", exchange)
    with lake.replace_partition(prefix) as writer:
        writer.write_bytes("b.bin", b"new")
    swaps = [o for o in observed if o is None or "a.bin" in o or "b.bin" in o]
    assert swaps and all(o in ({"a.bin"}, {"b.bin"}) for o in swaps), observed
    assert (final / "b.bin").read_bytes() == b"new" and not (final / "a.bin").exists()
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # no staging or retired folder left


AUDIT = ("legacy_quarantine_interactions", "legacy_recordings_manifest", "legacy_quarantine_cloud",
         "legacy_ingest_ledger", "legacy_ingest_batches")


def _day_rows(db: Path) -> dict[str, int]:
    with DuckDBResource(database=str(db)).get_connection() as con:  # the assets' configuration, same process
        return {t: con.execute(f"SELECT count(*) FROM {t} WHERE day = ?", [DAY]).fetchone()[0] for t in AUDIT}


def test_the_warehouse_takes_a_day_in_one_transaction(reference: Reference, clean_sandbox: Sandbox,
                                                      tmp_path: Path) -> None:
    """legacy_audit_tables fails on its fourth table: none of the five tables shows the new day."""
    home = copy_home(reference.home, tmp_path / "home")
    db = home / "warehouse.duckdb"
    with DuckDBResource(database=str(db)).get_connection() as con:
        for table in AUDIT:
            con.execute(f"DELETE FROM {table} WHERE day = ?", [DAY])
        # A warehouse table whose column no longer takes the lake's values (a bad manual migration, say).
        con.execute("CREATE OR REPLACE TABLE legacy_ingest_ledger AS "
                    "SELECT * REPLACE (NULL::INTEGER AS outcome) FROM legacy_ingest_ledger")
    assert set(_day_rows(db).values()) == {0}
    result = run_domain(clean_sandbox.endpoints, home, "legacy", DAY)  # type: ignore[arg-type]
    assert not result.success and "legacy_audit_tables" in failure_text(result)
    assert _day_rows(db) == dict.fromkeys(AUDIT, 0), "a failed load left part of the day in the warehouse"


def test_warehouse_replace_rows_together_rolls_back_every_table(tmp_path: Path) -> None:
    from genesys_assets.lib.warehouse import replace_rows_together

    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        good = pa.table({"day": ["d1"], "v": [1]})
        replace_rows_together(con, "day", "d1", {"a": good, "b": good})
        with pytest.raises(duckdb.Error):
            replace_rows_together(con, "day", "d1", {"a": pa.table({"day": ["d1"], "v": [2]}),
                                                     "b": pa.table({"day": ["d1"], "v": ["not a number"]})})
        assert con.execute("SELECT v FROM a").fetchall() == [(1,)]
        assert con.execute("SELECT v FROM b").fetchall() == [(1,)]


@pytest.mark.parametrize("domain", list(DAILY_ASSETS))
def test_rerun_after_a_kill_at_a_random_moment_converges(domain: str, reference: Reference, clean_sandbox: Sandbox,
                                                         tmp_path: Path) -> None:
    """SIGKILL the run at a random moment; a plain re-run (no cleanup) gives the fault-free day, no debris."""
    home = copy_home(reference.home, tmp_path / "home")
    clean_sandbox.emulator.set_faults(latency_seconds=0.05)
    delay = random.Random(f"{domain}-{DAY}").uniform(1.0, 3.0)
    child = spawn(clean_sandbox.endpoints, home, domain, DAY, home / "dagster")  # type: ignore[arg-type]
    try:
        try:
            child.wait(timeout=delay)
        except Exception:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        clean_sandbox.emulator.set_faults(latency_seconds=0.0)
    assert diff(snapshot(home), reference.snapshot) == []  # the previous good day, untouched
    started = time.monotonic()
    result = run_domain(clean_sandbox.endpoints, home, domain, DAY)  # type: ignore[arg-type]
    assert result.success, failure_text(result)
    assert diff(snapshot(home), reference.snapshot) == []
    debris = [str(p.relative_to(home)) for p in (home / "lake").rglob(".*")]
    assert debris == [], debris
    assert time.monotonic() - started < 120
