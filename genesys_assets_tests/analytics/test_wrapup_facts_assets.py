"""wrapup_facts and the wrap-up code dimension: ids are immutable, renamed and deleted codes still join."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from genesys_assets.sandbox.directory import build_directory
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.analytics.conftest import check_results, materialize, metadata, resources

DAY = date(2026, 3, 20)  # INFO is renamed on 2026-07-01; WRONG-NUM is deleted on 2026-04-01
FIRST_SNAPSHOT = datetime(2026, 3, 25, 12, tzinfo=UTC)


_DIRECTORY = build_directory()  # the emulator's directory (default seed)


def _code(legacy: str) -> str:
    return next(w.id for w in _DIRECTORY.wrapup_codes if w.legacy_code == legacy)


@pytest.fixture(scope="module")
def run(emulator: GenesysEmulator, home: Path) -> dg.ExecuteInProcessResult:
    res = resources(emulator, home)
    emulator._now_ms = lambda: int(FIRST_SNAPSHOT.timestamp() * 1000)  # the directory as it was in March
    try:
        materialize(res, None, "wrapup_codes")
    finally:
        del emulator._now_ms
    materialize(res, None, "wrapup_codes")  # today: INFO renamed, WRONG-NUM deleted
    return materialize(res, DAY, "conversation_details", "wrapup_facts", "warehouse_views")


def _facts(home: Path) -> pl.DataFrame:
    return pl.read_parquet(home / "lake/analytics/wrapup_facts/year=2026/month=03/day=20/*.parquet").with_columns(
        pl.col("wrap_up_code_id").cast(pl.String), pl.col("wrap_up_code_label").cast(pl.String))


def test_the_dimension_records_the_rename_and_the_deletion(run, home: Path) -> None:
    dim = pl.read_parquet(home / "lake/analytics/dimensions/wrapup_codes/wrapup_codes.parquet")
    info = dim.filter(pl.col("wrap_up_code_id") == _code("INFO")).sort("valid_from")
    assert info["name"].to_list() == ["Information Given", "Info Provided"]
    assert info["valid_to"][0] == datetime(2026, 7, 1, tzinfo=UTC)
    wrong = dim.filter(pl.col("wrap_up_code_id") == _code("WRONG-NUM")).sort("valid_from")
    assert wrong["name"].to_list() == ["Wrong Number", "Wrong Number"] and wrong["is_deleted"].to_list()[-1]


def test_facts_keep_the_immutable_id_and_the_label_as_of_the_conversation(run, emulator: GenesysEmulator,
                                                                         home: Path) -> None:
    facts = _facts(home)
    truth = [seg.get("wrapUpCode") for c in emulator.conversations_for_day(DAY) for p in c["participants"]
             for s in p.get("sessions", []) for seg in s.get("segments", []) if seg.get("segmentType") == "wrapup"]
    assert facts.height == len(truth) == metadata(run, "wrapup_facts")["rows"]
    assert sorted(facts["wrap_up_code_id"].to_list()) == sorted(truth)  # ids as the API gave them, never re-mapped
    renamed = facts.filter(pl.col("wrap_up_code_id") == _code("INFO"))
    deleted = facts.filter(pl.col("wrap_up_code_id") == _code("WRONG-NUM"))
    assert renamed.height > 0 and set(renamed["wrap_up_code_label"]) == {"Information Given"}
    assert deleted.height > 0 and set(deleted["wrap_up_code_label"]) == {"Wrong Number"}
    assert facts["wrap_up_code_label"].null_count() == 0
    checks = check_results(run)
    assert checks["wrapup_facts_match_aggregates"].passed and checks["wrapup_facts_integrity"].passed


def test_the_label_as_of_view_joins_deleted_codes(run, home: Path) -> None:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT DISTINCT label_as_of_conversation, code_deleted_since FROM analytics.wrapup_facts_labelled "
            "WHERE wrap_up_code_id = ?", [_code("WRONG-NUM")]).fetchall()
        renamed = con.execute("SELECT DISTINCT label_as_of_conversation FROM analytics.wrapup_facts_labelled "
                              "WHERE wrap_up_code_id = ?", [_code("INFO")]).fetchall()
    finally:
        con.close()
    assert rows == [("Wrong Number", True)]
    assert renamed == [("Information Given",)]
