"""conversation_details against the sandbox tenant: exact days, idempotent re-runs, the lake format, replay."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from genesys_assets.lib.analytics_plan import day_bounds, sync_count_body
from genesys_assets.lib.schemas import TABLE_SCHEMAS
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.analytics.conftest import (
    CONVERSATIONS_PER_DAY,
    check_results,
    hidden_entries,
    materialize,
    metadata,
    past_day,
    resources,
    table_digests,
)
from genesys_assets_tests.support import crosses_both_midnights, latest_day_with, sandbox_days, step_failure

TABLES = ("conversations", "participants", "sessions", "segments")


#: Old enough for the 6 h availability lag, and crossing both midnights: the first test needs the day's own
#: crossers and yesterday's (``dropped_neighbours``). A 300-conversation day has ~3 each way, and none on some
#: days (2025-02-25 had no crosser out, 2025-02-26 none in; 6 of the 732 days from 2026-06-01 lack one), so a
#: fixed offset from today failed on the calendar: the latest such day up to today - 3 instead.
with sandbox_days(CONVERSATIONS_PER_DAY) as day_index:
    DAY = latest_day_with(past_day(3), lambda day: crosses_both_midnights(day_index, day),
                          "conversations crossing both midnights")


@pytest.fixture(scope="module")
def first_run(emulator: GenesysEmulator, home: Path) -> dg.ExecuteInProcessResult:
    res = resources(emulator, home)
    materialize(res, None, "wrapup_codes")
    return materialize(res, DAY, "conversation_details", "wrapup_facts", "warehouse_views")


def _lake_ids(home: Path, day: date) -> list[str]:
    part = f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"
    return pl.read_parquet(home / "lake/analytics/conversations" / part / "*.parquet")["conversation_id"].to_list()


def test_a_day_is_exactly_the_tenants_conversations_each_once(first_run, emulator: GenesysEmulator,
                                                              home: Path) -> None:
    ids = _lake_ids(home, DAY)
    assert len(ids) == len(set(ids))
    truth = {c["conversationId"] for c in emulator.conversations_for_day(DAY)}
    # An independent count: the sync query ("started in the interval"), paged to the end.
    client = resources(emulator, home)["genesys"].get_client()
    start, end = day_bounds(DAY)
    synced = {c["conversationId"] for page in client.iter_details_query_pages(sync_count_body(start, end))
              for c in page.get("conversations", [])}
    assert set(ids) == truth == synced
    # Conversations crossing midnight stay on their start day; yesterday's crossers (returned by the job) do not.
    convs = pl.read_parquet(home / "lake/analytics/conversations" / f"year={DAY:%Y}/month={DAY:%m}/day={DAY:%d}")
    assert convs.filter(pl.col("conversation_end") >= end).height > 0
    assert convs["conversation_start"].min() >= start and convs["conversation_start"].max() < end
    md = metadata(first_run, "conversation_details")
    assert md["dropped_neighbours"] > 0 and md["rows"] == len(truth) == md["total_hits"]
    checks = check_results(first_run)
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}


def test_flow_exit_reasons_are_the_codes_the_api_sent(first_run, emulator: GenesysEmulator, home: Path) -> None:
    sent = {s["flow"]["exitReason"] for c in emulator.conversations_for_day(DAY) for p in c["participants"]
            for s in p["sessions"] if s.get("flow", {}).get("exitReason")}
    part = f"year={DAY:%Y}/month={DAY:%m}/day={DAY:%d}"
    stored = set(pl.read_parquet(home / "lake/analytics/sessions" / part)["flow_exit_reason"].drop_nulls())
    assert sent and stored == sent  # codes such as TRANSFER, not hashes


def test_metadata_shows_rows_bytes_preview_schema_api_and_job(first_run) -> None:
    md = metadata(first_run, "conversation_details")
    for t in TABLES:
        assert md[f"rows_{t}"] > 0 and md[f"bytes_{t}"] > 0 and md[f"files_{t}"] == 1
    assert md["files"] == 4 and md["raw_pages"] >= 1 and md["api_requests"] >= 5
    assert "api_throttled" in md and "api_retries" in md and md["seconds_submit_to_fulfilled"] > 0
    assert len(md["job_ids"]) == 1 and md["windows_tried"][0]["window_hours"] == 24
    assert md["preview"].startswith("| conversation_id |") and "`conversation_start`: `timestamp[us, tz=UTC]`" in md[
        "schema"]


def test_raw_landing_is_replayable_pages_as_sent(first_run, home: Path) -> None:
    raw = home / "lake/raw/analytics/conversation_details" / f"year={DAY:%Y}/month={DAY:%m}/day={DAY:%d}"
    files = sorted(raw.glob("*.ndjson.gz"))
    assert [f.name for f in files] == ["part-000.ndjson.gz"]
    pages = [orjson.loads(line) for line in gzip.decompress(files[0].read_bytes()).splitlines()]
    assert sum(len(p["conversations"]) for p in pages) == metadata(first_run, "conversation_details")[
        "windows_tried"][0]["windows"][0]["returned"]
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["rows"]["conversations"] == metadata(first_run, "conversation_details")["rows"]


def test_rerun_and_replay_give_byte_identical_tables(first_run, emulator: GenesysEmulator, home: Path) -> None:
    before = table_digests(home / "lake", DAY, (*TABLES, "wrapup_facts"))
    res = resources(emulator, home)
    materialize(res, DAY, "conversation_details", "wrapup_facts")
    assert table_digests(home / "lake", DAY, (*TABLES, "wrapup_facts")) == before
    requests_before = len(emulator.request_log())
    materialize(res, DAY, "conversation_details", config={"conversation_details": {"replay_from_raw": True}})
    assert table_digests(home / "lake", DAY, TABLES) == {k: v for k, v in before.items() if not k.startswith("wrap")}
    # The replay itself calls no API (only its reconciliation check does: one sync count).
    assert len(emulator.request_log()) - requests_before <= 3
    assert hidden_entries(home / "lake") == []
    assert not any((home / "work").rglob("*.parquet"))


def test_parquet_files_have_the_promised_layout_and_read_everywhere(first_run, home: Path) -> None:
    lake = home / "lake"
    for table in (*TABLES, "wrapup_facts"):
        files = sorted((lake / "analytics" / table).rglob("*.parquet"))
        assert files and all(f"year={DAY:%Y}/month={DAY:%m}/day={DAY:%d}/part-" in str(f) for f in files)
        pf = pq.ParquetFile(files[0])
        expected = TABLE_SCHEMAS[table]
        assert pf.schema_arrow.remove_metadata().equals(expected.remove_metadata()), table
        meta = pf.metadata
        for g in range(meta.num_row_groups):
            assert meta.row_group(g).num_rows <= 100_000
            for c in range(meta.row_group(g).num_columns):
                col = meta.row_group(g).column(c)
                assert col.compression == "ZSTD"
        dict_cols = [f.name for f in expected if str(f.type).startswith("dictionary")]
        names = [meta.row_group(0).column(c).path_in_schema for c in range(meta.num_columns)]
        for name in dict_cols:
            col = meta.row_group(0).column(names.index(name))
            assert any("DICTIONARY" in e for e in col.encodings), (table, name, col.encodings)
        glob = str(lake / "analytics" / table / "year=*/month=*/day=*/*.parquet")
        n_duck = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true) "
                            f"WHERE year={DAY.year} AND month={DAY.month} AND day={DAY.day}").fetchall()[0][0]
        n_polars = pl.scan_parquet(lake / "analytics" / table, hive_partitioning=True).filter(
            pl.col("day") == DAY.day).select(pl.len()).collect().item()
        n_arrow = ds.dataset(lake / "analytics" / table, format="parquet", partitioning="hive").count_rows()
        assert n_duck == n_polars == n_arrow == meta.num_rows
    facts = pq.read_schema(next((lake / "analytics/wrapup_facts").rglob("*.parquet")))
    assert str(facts.field("conversation_start").type) == "timestamp[us, tz=UTC]"
    assert not facts.field("media_type").nullable and facts.field("wrap_up_code_id").nullable


def test_warehouse_views_cover_the_lake(first_run, home: Path) -> None:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM analytics.conversations WHERE year = ? AND month = ? AND day = ?",
                        [DAY.year, DAY.month, DAY.day]).fetchone()[0]
        labelled = con.execute("SELECT count(*), count(label_as_of_conversation) FROM "
                               "analytics.wrapup_facts_labelled").fetchone()
    finally:
        con.close()
    assert n == metadata(first_run, "conversation_details")["rows"]
    assert labelled[0] == metadata(first_run, "wrapup_facts")["rows"] and labelled[1] == labelled[0]


def test_a_day_past_the_watermark_refuses_and_writes_nothing(emulator: GenesysEmulator, home: Path) -> None:
    today = past_day(1)  # yesterday: the latest partition
    _, end = day_bounds(today)
    lag = (datetime.now(UTC) - (end - timedelta(hours=2))).total_seconds()  # watermark at 22:00 on the day
    emulator.set_faults(availability_lag_seconds=lag)
    try:
        result = materialize(resources(emulator, home), today, "conversation_details", raise_on_error=False)
    finally:
        emulator.set_faults(availability_lag_seconds=6 * 3600)
    assert not result.success
    assert "not yet available until" in step_failure(result).error.message
    assert not (home / "lake/analytics/conversations" / f"year={today:%Y}/month={today:%m}/day={today:%d}").exists()


def test_a_missing_required_key_fails_naming_the_conversation(emulator: GenesysEmulator, home: Path) -> None:
    """A landed page with a conversation lacking conversationStart: the replay fails and names it."""
    day = DAY - timedelta(days=5)
    raw = home / "lake/raw/analytics/conversation_details" / f"year={day:%Y}/month={day:%m}/day={day:%d}"
    raw.mkdir(parents=True)
    good = emulator.conversations_for_day(day)[:3]
    bad = dict(good[1])
    bad.pop("conversationStart")
    page = orjson.dumps({"conversations": [good[0], bad, good[2]]})
    (raw / "part-000.ndjson.gz").write_bytes(gzip.compress(page + b"\n"))
    result = materialize(resources(emulator, home), day, "conversation_details", raise_on_error=False,
                         config={"conversation_details": {"replay_from_raw": True}})
    assert not result.success
    message = step_failure(result).error.message
    assert bad["conversationId"] in message and "conversationStart" in message


def test_a_segment_without_a_start_is_counted_and_warned_not_silently_lost(emulator: GenesysEmulator,
                                                                           home: Path) -> None:
    """Landed pages with a segment lacking segmentStart: the replay writes the rest and says what it left out."""
    day = DAY - timedelta(days=6)
    raw = home / "lake/raw/analytics/conversation_details" / f"year={day:%Y}/month={day:%m}/day={day:%d}"
    raw.mkdir(parents=True)
    convs = orjson.loads(orjson.dumps(emulator.conversations_for_day(day)[:3]))  # a copy: the tenant stays whole
    first = convs[0]["participants"][0]["sessions"][0]["segments"][0]
    first.pop("segmentStart")
    (raw / "part-000.ndjson.gz").write_bytes(gzip.compress(orjson.dumps({"conversations": convs}) + b"\n"))
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(resources(emulator, home), day, "conversation_details", raise_on_error=False,
                         config={"conversation_details": {"replay_from_raw": True}}, instance=instance)
    md = metadata(result, "conversation_details")
    assert md["incomplete_segments"] == 1 and md["rows"] == 3
    sent = sum(len(s["segments"]) for c in convs for p in c["participants"] for s in p["sessions"])
    assert md["rows_segments"] == sent - 1 - md["duplicate_segments"]
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if "without a segmentStart" in e.user_message]
    assert len(warnings) == 1 and "raw/analytics/conversation_details" in warnings[0]
