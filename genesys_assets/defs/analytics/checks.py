"""Asset checks of the analytics domain: every day reconciles, stays inside itself, and drift is visible.

Blocking where a downstream day would be wrong (reconciliation, integrity, wrap-up totals); schema drift warns.
The rules live in ``lib/analytics_quality``; these are thin wrappers that read the lake's partitions.
"""

import json
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from genesys_assets.defs.analytics import assets as analytics_assets
from genesys_assets.defs.partitions import DAILY
from genesys_assets.lib.analytics_extract import replay_pass
from genesys_assets.lib.analytics_lake import (
    iter_raw_pages,
    partition_stats,
    remove_tree,
    scan_partition,
    work_dir,
)
from genesys_assets.lib.analytics_plan import (
    CONVERSATION_TABLES,
    MANIFEST,
    RECONCILE_TOLERANCE,
    day_bounds,
    raw_prefix,
    relative_difference,
    sync_count_body,
    wrapup_aggregates_body,
)
from genesys_assets.lib.analytics_quality import (
    aggregate_totals,
    compare_totals,
    facts_totals,
    integrity_report,
    missing_optional_counts,
    missing_required_ids,
)
from genesys_assets.lib.analytics_views import SCHEMA as VIEW_SCHEMA
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.settings import GENESYS_API_POOL, WAREHOUSE_POOL


def _day(context: dg.AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def read_manifest(lake: Lake, day: date) -> dict[str, Any]:
    """The raw landing's manifest of the day (jobs, windows tried, drift), or {} when there is none."""
    path = f"{raw_prefix(day)}/{MANIFEST}"
    return json.loads(lake.read_bytes(path)) if lake.exists(path) else {}


def _integrity(lake: Lake, day: date, tables: tuple[str, ...]) -> dg.AssetCheckResult:
    reports: dict[str, Any] = {}
    problems: list[str] = []
    for table in tables:
        lf = scan_partition(lake, table, day)
        if lf is None:
            problems.append(f"{table}: no files for {day}")
            continue
        rep = integrity_report(lf, table, day)
        reports[table] = rep
        for what in ("outside_day", "duplicate_keys", "start_after_end"):
            if rep[what]:
                problems.append(f"{table}: {rep[what]} {what.replace('_', ' ')}")
    return dg.AssetCheckResult(
        passed=not problems,
        description="every row inside its day, no duplicate keys, start <= end" if not problems
        else "; ".join(problems),
        metadata={"rows": sum(r["rows"] for r in reports.values()), "problems": dg.MetadataValue.json(problems),
                  "tables": dg.MetadataValue.json(reports)},
    )


@dg.asset_check(asset=analytics_assets.conversation_details, partitions_def=DAILY, blocking=True, pool=GENESYS_API_POOL,
                description="Conversations in the partition vs the sync details query's totalHits for the same day "
                "(started-on-the-day semantics): more than 5 % apart fails. Shows every window the asset tried.")
def conversation_details_reconciliation(context: dg.AssetCheckExecutionContext, lake: Lake,
                                        genesys: GenesysCloudResource) -> dg.AssetCheckResult:
    day = _day(context)
    rows, _ = partition_stats(lake, "conversations", day)
    start, end = day_bounds(day)
    total_hits = genesys.get_client().details_query_total_hits(sync_count_body(start, end))
    diff = relative_difference(rows, total_hits)
    manifest = read_manifest(lake, day)
    return dg.AssetCheckResult(
        passed=diff <= RECONCILE_TOLERANCE,
        description=f"{rows} conversations in the lake, {total_hits} by the sync query ({diff:.2%} apart)",
        metadata={"conversations_in_lake": rows, "total_hits": total_hits, "difference_pct": round(diff * 100, 3),
                  "windows_tried": dg.MetadataValue.json(manifest.get("passes", []))},
    )


@dg.asset_check(asset=analytics_assets.conversation_details, partitions_def=DAILY, blocking=True,
                description="Every row of the four tables starts inside its UTC day, no duplicate keys, start <= end.")
def conversation_details_integrity(context: dg.AssetCheckExecutionContext, lake: Lake) -> dg.AssetCheckResult:
    return _integrity(lake, _day(context), CONVERSATION_TABLES)


@dg.asset_check(asset=analytics_assets.conversation_details, partitions_def=DAILY, blocking=False,
                description="Schema drift: keys the SDK does not know and normally-present keys that are missing "
                "are counted and listed (a warning); a participant or session without its id fails, naming the "
                "conversation.")
def conversation_details_schema_drift(context: dg.AssetCheckExecutionContext, lake: Lake) -> dg.AssetCheckResult:
    day = _day(context)
    manifest = read_manifest(lake, day)
    unknown = list(manifest.get("unknown_fields", []))
    nulls = {t: partition_stats(lake, t, day)[1] for t in CONVERSATION_TABLES}
    missing = missing_optional_counts(nulls)
    frames = {t: lf for t in ("participants", "sessions") if (lf := scan_partition(lake, t, day)) is not None}
    required = missing_required_ids(frames)
    metadata = {"unknown_keys": len(unknown), "unknown_key_paths": dg.MetadataValue.json(unknown),
                "missing_optional_keys": dg.MetadataValue.json(missing),
                "missing_optional_records": sum(missing.values()),
                "sdk_fields_not_output": len(manifest.get("sdk_fields_not_output", [])),
                "missing_required_keys": dg.MetadataValue.json(required)}
    if required:
        ids = sorted({cid for cids in required.values() for cid in cids})
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
            description=f"required key(s) {sorted(required)} missing in conversation(s) {', '.join(ids)}")
    drift = bool(unknown or missing)
    return dg.AssetCheckResult(
        passed=not drift, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
        description=(f"{len(unknown)} unknown key(s), {len(missing)} normally-present key(s) missing"
                     if drift else "no schema drift"))


@dg.asset_check(asset=analytics_assets.wrapup_facts, partitions_def=DAILY, blocking=True, pool=GENESYS_API_POOL,
                description="Wrap-up totals (count and summed tAcw per wrap-up code id) vs the aggregates query "
                "grouped by wrapUpCode for the day, counted by the day each wrap-up ended.")
def wrapup_facts_match_aggregates(context: dg.AssetCheckExecutionContext, lake: Lake, pii: PiiHashingResource,
                                  genesys: GenesysCloudResource) -> dg.AssetCheckResult:
    day = _day(context)
    facts_today = scan_partition(lake, "wrapup_facts", day)
    if facts_today is None:
        return dg.AssetCheckResult(passed=False, description=f"no wrapup_facts files for {day}")
    # The aggregates count a wrap-up on the day it ended; yesterday's conversations that wrapped up today are in
    # today's raw landing (the job's neighbours), so their facts are rebuilt from it: the comparison is exact.
    work = work_dir(analytics_assets.work_root(), "wrapup_facts_check", day)
    try:
        yesterday = replay_pass(iter_raw_pages(lake, day), day - timedelta(days=1), work, pii.hasher(),
                                tables=("wrapup_facts",))
        frames = [facts_today, *(pl.scan_parquet(f) for f in yesterday.files["wrapup_facts"])]
        facts = facts_totals(frames, day)
    finally:
        remove_tree(work)
    aggregates = aggregate_totals(genesys.get_client().aggregates_query(wrapup_aggregates_body(day)))
    mismatches = compare_totals(facts, aggregates)
    n_facts = sum(c for c, _ in facts.values())
    n_aggs = sum(c for c, _ in aggregates.values())
    return dg.AssetCheckResult(
        passed=not mismatches,
        description=f"{n_facts} wrap-ups ended on {day} in the facts, {n_aggs} in the aggregates; "
        f"{len(mismatches)} code(s) differ",
        metadata={"facts_wrapups": n_facts, "aggregates_wrapups": n_aggs, "codes": len(set(facts) | set(aggregates)),
                  "from_yesterdays_conversations": yesterday.rows.get("wrapup_facts", 0),
                  "mismatched_codes": dg.MetadataValue.json(mismatches)},
    )


@dg.asset_check(asset=analytics_assets.wrapup_facts, partitions_def=DAILY, blocking=True,
                description="Every wrap-up fact inside its day, no duplicate keys, segment start <= end.")
def wrapup_facts_integrity(context: dg.AssetCheckExecutionContext, lake: Lake) -> dg.AssetCheckResult:
    return _integrity(lake, _day(context), ("wrapup_facts",))


@dg.asset_check(asset=analytics_assets.warehouse_views, partitions_def=DAILY, blocking=False, pool=WAREHOUSE_POOL,
                description="The warehouse views return exactly the lake's rows for the day (Hive partitions read).")
def warehouse_views_read_the_day(context: dg.AssetCheckExecutionContext, lake: Lake,
                                 warehouse: DuckDBResource) -> dg.AssetCheckResult:
    day = _day(context)
    counts: dict[str, dict[str, int]] = {}
    with warehouse.get_connection() as connection:
        for table in (*CONVERSATION_TABLES, "wrapup_facts"):
            in_lake, _ = partition_stats(lake, table, day)
            row = connection.execute(
                f"SELECT count(*) FROM {VIEW_SCHEMA}.{table} WHERE year = ? AND month = ? AND day = ?",
                [day.year, day.month, day.day]).fetchone()
            counts[table] = {"lake": in_lake, "view": int(row[0]) if row else 0}
    wrong = [t for t, c in counts.items() if c["lake"] != c["view"]]
    return dg.AssetCheckResult(passed=not wrong, metadata={"counts": dg.MetadataValue.json(counts)},
                               description="views match the lake" if not wrong else f"views disagree for {wrong}")
