"""Genesys Cloud analytics: conversation details, wrap-up facts, the wrap-up code dimension, the warehouse views.

Thin assets over ``lib/analytics_*`` and ``lib/conversation_details``: the rules (windows, bodies, paths, checks)
live there, where they are tested without Dagster.

Lake layout (Hive partitions, UTC days):
- ``raw/analytics/conversation_details/year=/month=/day=/part-NNN.ndjson.gz``: every result page exactly as Genesys
  sent it, one page per line, one file per details-job window, plus ``manifest.json`` (jobs, windows, counts).
  The replayable record: ``wrapup_facts`` and a ``replay_from_raw`` run re-flatten it without the API.
- ``analytics/{conversations,participants,sessions,segments,wrapup_facts}/year=/month=/day=/part-NNNNN.parquet``.
"""

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genesys_assets import settings
from genesys_assets.defs.availability import require_complete_day
from genesys_assets.defs.metadata import api_calls, column_schema, row_count
from genesys_assets.defs.partitions import DAILY
from genesys_assets.lib import wrapup_dimension
from genesys_assets.lib.analytics_extract import (
    DETAILS_PAGE_SIZE,
    DayNotAvailableError,
    PassResult,
    replay_pass,
    run_pass,
)
from genesys_assets.lib.analytics_lake import (
    day_prefixes,
    iter_raw_pages,
    publish_partition,
    raw_files,
    remove_tree,
    sweep_staging,
    work_dir,
)
from genesys_assets.lib.analytics_plan import (
    CONVERSATION_TABLES,
    MANIFEST,
    RECONCILE_TOLERANCE,
    WINDOW_HOURS,
    day_bounds,
    iso,
    raw_prefix,
    relative_difference,
    sync_count_body,
    table_prefix,
)
from genesys_assets.lib.analytics_quality import markdown_preview, schema_markdown, split_unknown_fields
from genesys_assets.lib.analytics_views import create_views
from genesys_assets.lib.conversation_details import DayResult, MissingRequiredFieldError
from genesys_assets.lib.day_lock import day_lock
from genesys_assets.lib.schemas import SCHEMA_VERSION, TABLE_SCHEMAS, WRAPUP_FACTS_SCHEMA
from genesys_assets.lib.warehouse import replace_table
from genesys_assets.lib.wrapup_dimension import merge_snapshot, snapshot_frame
from genesys_assets.resources.genesys_cloud import (
    DetailsJobExpired,
    DetailsJobFailed,
    DetailsJobTimeout,
    GenesysCloudClient,
    GenesysCloudResource,
    GenesysNotFoundError,
)
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.settings import GENESYS_API_POOL, WAREHOUSE_POOL

WRAPUP_CODES_PATH = wrapup_dimension.LAKE_PATH
# Downstream days follow their upstream day, for sensor runs and UI backfills alike (not only the latest day).
# The dimension is read as it is at run time: its daily refresh must not re-run every historical day.
FOLLOW_UPSTREAM_DAY = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .ignore(dg.AssetSelection.assets("wrapup_codes"))
)
_PREVIEW_COLUMNS = {
    "conversations": ["conversation_id", "conversation_start", "conversation_end", "originating_direction",
                      "participant_count", "segment_count"],
    "wrapup_facts": ["conversation_id", "conversation_start", "media_type", "wrap_up_code_id", "wrap_up_code_label",
                     "t_acw_ms", "t_handle_ms"],
}


def work_root() -> Path:
    """Local scratch for a day being built (parts, raw pages); removed after the run, swept before the next."""
    return settings.genesys_home() / "work" / "analytics"


def _day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def _preview(files: list[Path], table: str) -> str:
    if not files:
        return "(no rows)"
    first = pq.ParquetFile(files[0])
    if first.metadata.num_row_groups == 0:
        return "(no rows)"
    cols = _PREVIEW_COLUMNS.get(table)
    return markdown_preview(first.read_row_group(0, columns=cols).slice(0, 5))


def _table_metadata(result: DayResult, tables: tuple[str, ...]) -> dict[str, Any]:
    md: dict[str, Any] = {}
    for t in tables:
        md[f"rows_{t}"] = result.rows.get(t, 0)
        md[f"bytes_{t}"] = result.bytes_written.get(t, 0)
        md[f"files_{t}"] = len(result.files.get(t, []))
    md["files"] = sum(len(result.files.get(t, [])) for t in tables)
    md["bytes_written"] = sum(result.bytes_written.get(t, 0) for t in tables)
    md["schema"] = dg.MetadataValue.md("\n\n".join(f"**{t}**\n\n{schema_markdown(TABLE_SCHEMAS[t])}" for t in tables))
    return md


# ================================================================================================ assets

class ConversationDetailsConfig(dg.Config):
    """How a day is extracted (defaults suit a real org; tests shrink them)."""

    page_size: int = Field(
        default=DETAILS_PAGE_SIZE, description="Results per page when reading a details job by cursor (the sandbox "
        "accepts up to 10,000). Larger pages mean fewer requests and fewer 429s, and more memory per page in flight.")
    job_limit: int | None = Field(
        default=None, description="The details job's `limit` (rows per job). A window that hits it comes back "
        "short, reconciliation notices and narrower windows are tried.")
    window_hours: list[int] = Field(
        default=list(WINDOW_HOURS), description="Window widths tried in order until the day reconciles (a pass "
        "whose details job is still unfinished at the resource's job_deadline_seconds moves on to the next).")
    reconcile_tolerance: float = Field(
        default=RECONCILE_TOLERANCE, description="Largest relative gap to the sync query's totalHits.")
    max_job_submissions: int = Field(default=3, description="Submissions per window when a job EXPIRES/FAILS.")
    max_pass_attempts: int = Field(default=3, description="Restarts of a pass when results vanish while paging.")
    replay_from_raw: bool = Field(
        default=False, description="Re-flatten the landed raw pages of the day instead of calling the API.")


@dg.asset(
    group_name="analytics",
    partitions_def=DAILY,
    pool=GENESYS_API_POOL,
    kinds={"genesys", "polars", "parquet"},
    code_version="1",
    description=(
        "Conversation details of one UTC day (conversations that started on it) from an async details job: raw "
        "pages landed as NDJSON.gz under lake raw/analytics/conversation_details/, flattened into the "
        "conversations, participants, sessions (metrics pivoted) and segments tables under "
        "lake analytics/<table>/year=/month=/day=/. Refuses a day the availability watermark has not passed; "
        "re-runs the day in 6 h then 1 h windows when it does not reconcile with the sync query or a details job "
        "is still unfinished at its deadline."
    ),
)
def conversation_details(
    context: dg.AssetExecutionContext,
    config: ConversationDetailsConfig,
    genesys: GenesysCloudResource,
    lake: Lake,
    pii: PiiHashingResource,
) -> dg.MaterializeResult:
    day = _day(context)
    # One run of the day at a time: a second one waits, so it never sweeps the first one's staging or scratch.
    with day_lock(settings.genesys_home(), "conversation_details", day):
        swept = sweep_staging(lake, day_prefixes(day, CONVERSATION_TABLES))
        if swept:
            context.log.warning("Removed %d staging folder(s) an interrupted run left: %s", len(swept), swept)
        work = work_dir(work_root(), "conversation_details", day)
        try:
            if config.replay_from_raw:
                return _replay_details(context, lake, pii, day, work)
            return _extract_details(context, config, genesys.get_client(), lake, pii, day, work)
        except MissingRequiredFieldError as exc:
            raise dg.Failure(
                description=f"Conversation details for {day}: {exc}. A conversation without its id or start cannot "
                "be placed in a day or deduplicated; nothing was written.",
                metadata={"conversation_id": exc.conversation_id or "", "missing_key": exc.field_name},
            ) from exc
        finally:
            remove_tree(work)


def _extract_details(context: dg.AssetExecutionContext, config: ConversationDetailsConfig,
                     client: GenesysCloudClient, lake: Lake, pii: PiiHashingResource, day: date,
                     work: Path) -> dg.MaterializeResult:
    before = client.stats()
    start, end = day_bounds(day)
    watermark = require_complete_day(client, day, "Conversation details", context.run.tags)
    total_hits = client.details_query_total_hits(sync_count_body(start, end))
    hasher = pii.hasher()
    passes: list[dict[str, Any]] = []
    chosen: PassResult | None = None
    for hours in config.window_hours:
        pass_dir = work / f"pass-{hours}h"
        try:
            result = _run_pass_with_restarts(context, client, config, day, hours, pass_dir, hasher)
        except DetailsJobTimeout as exc:  # seed 003: a job that never finishes is retried over narrower windows
            passes.append({"window_hours": hours, "timed_out": str(exc)})
            context.log.warning("%s in %d h windows: %s; trying narrower windows", day, hours, exc)
            remove_tree(pass_dir)
            continue
        diff = relative_difference(result.day.conversations, total_hits)
        passes.append({**result.summary(total_hits), "difference_pct": round(diff * 100, 3)})
        context.log.info("%s in %d h windows: %d conversations, sync totalHits %d (%.2f %% apart)", day, hours,
                         result.day.conversations, total_hits, diff * 100)
        if diff <= config.reconcile_tolerance:
            chosen = result
            break
        remove_tree(result.tables_dir.parent)
    api = api_calls(client.stats_since(before))
    if chosen is None:
        timeouts = [p["timed_out"] for p in passes if "timed_out" in p]
        raise dg.Failure(
            description=f"Conversation details for {day} do not reconcile: every pass was more than "
            f"{config.reconcile_tolerance:.0%} away from the sync query's totalHits {total_hits} or had a details "
            f"job still unfinished at its deadline (windows of {config.window_hours} hours tried"
            + (f"; {len(timeouts)} timed out, the last: {timeouts[-1]}" if timeouts else "")
            + "). Nothing was written.",
            metadata={"total_hits": total_hits, "windows_tried": dg.MetadataValue.json(passes), **api},
        )

    r = chosen.day
    drift, sdk_known = split_unknown_fields(r.unknown_fields)
    for table in CONVERSATION_TABLES:
        publish_partition(lake, table_prefix(table, day), r.files[table])
    manifest = {
        "day": day.isoformat(), "source": "api", "schema_version": SCHEMA_VERSION,
        "written_at": iso(datetime.now(UTC)), "data_availability_date": iso(watermark), "total_hits": total_hits,
        "passes": passes, "rows": r.rows, "pages": r.pages, **r.counts, "conform_pages": r.conform_pages,
        "unknown_fields": drift, "sdk_fields_not_output": sdk_known,
        "raw_files": [p.name for p in chosen.raw_files],
    }
    raw_bytes = publish_partition(lake, raw_prefix(day), chosen.raw_files,
                                  extra={MANIFEST: json.dumps(manifest, indent=2).encode()})
    job_ids = [w.job_id for w in chosen.windows]
    context.log.info("%s: %d conversations (%d neighbours dropped, %d duplicates) in %d pages; %d API requests",
                     day, r.conversations, r.dropped_neighbours, r.duplicate_conversations, r.pages,
                     api["api_requests"])
    _warn_incomplete_segments(context, lake, r)
    return dg.MaterializeResult(metadata={
        **row_count(r.conversations),
        **_table_metadata(r, CONVERSATION_TABLES),
        "raw_pages": r.pages, "raw_bytes": raw_bytes, "raw_files": len(chosen.raw_files),
        "preview": dg.MetadataValue.md(_preview(r.files["conversations"], "conversations")),
        "total_hits": total_hits, "difference_pct": passes[-1]["difference_pct"],
        "window_hours": chosen.hours, "windows_tried": dg.MetadataValue.json(passes),
        "job_ids": dg.MetadataValue.json(job_ids),
        "seconds_submit_to_fulfilled": round(sum(w.seconds_to_fulfilled for w in chosen.windows), 3),
        **r.counts, "unknown_fields": dg.MetadataValue.json(drift),
        "data_availability_date": iso(watermark), **api,
        "path": dg.MetadataValue.path(lake.uri(table_prefix("conversations", day))),
    })


def _warn_incomplete_segments(context: dg.AssetExecutionContext, lake: Lake, r: DayResult) -> None:
    if r.incomplete_segments:
        context.log.warning(
            "%s: %d segment(s) without a segmentStart or segmentType were left out of the segments table; the pages "
            "holding them are in the raw landing, %s", r.day, r.incomplete_segments, lake.uri(raw_prefix(r.day)))


def _run_pass_with_restarts(context: dg.AssetExecutionContext, client: GenesysCloudClient,
                            config: ConversationDetailsConfig, day: date, hours: int, work: Path,
                            hasher: Any) -> PassResult:
    """A pass, restarted from a clean folder when a job's results vanish or fail mid-way (never half-mixed)."""
    for attempt in range(1, config.max_pass_attempts + 1):
        remove_tree(work)
        try:
            return run_pass(client, day, hours, work, hasher, page_size=config.page_size, limit=config.job_limit,
                            max_submissions=config.max_job_submissions, window_counts=hours < 24)
        except DayNotAvailableError as exc:
            raise dg.Failure(description=f"Conversation details for {day}: {exc}", allow_retries=False) from exc
        except (DetailsJobExpired, DetailsJobFailed, GenesysNotFoundError) as exc:
            if attempt >= config.max_pass_attempts:
                raise
            context.log.warning("%s pass in %d h windows failed (%s); restarting it (%d of %d)", day, hours, exc,
                                attempt + 1, config.max_pass_attempts)
    raise AssertionError("unreachable")


def _replay_details(context: dg.AssetExecutionContext, lake: Lake, pii: PiiHashingResource, day: date,
                    work: Path) -> dg.MaterializeResult:
    if not raw_files(lake, day):
        raise dg.Failure(description=f"No raw landing for {day} under {lake.uri(raw_prefix(day))}: materialize "
                         "conversation_details for the day without replay_from_raw first.")
    r = replay_pass(iter_raw_pages(lake, day), day, work, pii.hasher())
    for table in CONVERSATION_TABLES:
        publish_partition(lake, table_prefix(table, day), r.files[table])
    drift, _ = split_unknown_fields(r.unknown_fields)
    context.log.info("%s re-flattened from %d landed pages without the API: %d conversations", day, r.pages,
                     r.conversations)
    _warn_incomplete_segments(context, lake, r)
    return dg.MaterializeResult(metadata={
        **row_count(r.conversations), "source": "raw landing (replay)",
        **_table_metadata(r, CONVERSATION_TABLES), "raw_pages": r.pages,
        "preview": dg.MetadataValue.md(_preview(r.files["conversations"], "conversations")),
        **r.counts, "unknown_fields": dg.MetadataValue.json(drift),
        "path": dg.MetadataValue.path(lake.uri(table_prefix("conversations", day))),
    })


@dg.asset(
    group_name="analytics",
    kinds={"genesys", "parquet", "duckdb"},
    pool=WAREHOUSE_POOL,
    code_version="1",
    description=(
        "Wrap-up codes from /api/v2/routing/wrapupcodes kept as a slowly changing dimension (valid_from, "
        "valid_to, is_deleted): renamed and deleted codes still join by their immutable id to the label "
        "valid at conversation time. Lake: " + WRAPUP_CODES_PATH + "; warehouse table wrapup_codes."
    ),
    automation_condition=dg.AutomationCondition.on_cron("0 2 * * *"),
)
def wrapup_codes(
    context: dg.AssetExecutionContext, genesys: GenesysCloudResource, lake: Lake, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    client = genesys.get_client()
    before = client.stats()
    snapshot_at = datetime.now(UTC)
    snapshot = snapshot_frame(list(client.iter_entities("/api/v2/routing/wrapupcodes", page_size=100)))
    previous = pl.from_arrow(lake.read_parquet(WRAPUP_CODES_PATH)) if lake.exists(WRAPUP_CODES_PATH) else None
    dimension = merge_snapshot(previous, snapshot, snapshot_at)

    new_rows = dimension.filter(pl.col("snapshot_at") == snapshot_at)
    renamed = new_rows.filter(~pl.col("is_deleted")).join(
        dimension.filter(~pl.col("is_current")), on="wrap_up_code_id", how="semi"
    ).height
    deleted = new_rows.filter(pl.col("is_deleted")).height
    size = lake.write_parquet(WRAPUP_CODES_PATH, dimension)
    with warehouse.get_connection() as connection:
        replace_table(connection, "wrapup_codes", dimension.to_arrow())
    context.log.info(
        "Wrap-up codes: %d in the directory, %d renamed and %d deleted since the last snapshot",
        snapshot.height, renamed, deleted,
    )
    return dg.MaterializeResult(
        metadata={
            **row_count(dimension.height),
            "files": 1,
            "codes_in_directory": snapshot.height,
            "renamed_since_last_snapshot": renamed,
            "deleted_since_last_snapshot": deleted,
            "bytes": size,
            "path": dg.MetadataValue.path(lake.uri(WRAPUP_CODES_PATH)),
            **api_calls(client.stats_since(before)),
        }
    )


def read_wrapup_dimension(lake: Lake) -> pl.DataFrame | None:
    """The SCD2 wrap-up code dimension from the lake (the system of record), or None before its first snapshot."""
    if not lake.exists(WRAPUP_CODES_PATH):
        return None
    frame = pl.from_arrow(lake.read_parquet(WRAPUP_CODES_PATH))
    assert isinstance(frame, pl.DataFrame)
    return frame


@dg.asset(
    group_name="analytics",
    partitions_def=DAILY,
    deps=[conversation_details, wrapup_codes],
    automation_condition=FOLLOW_UPSTREAM_DAY,
    kinds={"polars", "parquet"},
    code_version="1",
    metadata=column_schema(WRAPUP_FACTS_SCHEMA),
    description=(
        "One row per wrap-up segment of the day's conversations: the immutable wrap_up_code_id and the label valid "
        "at conversation time (from the wrapup_codes dimension, never validated against today's codes). "
        "Re-flattened from the raw landing (no API call); explicit Arrow schema, zstd, 100k-row row groups, one "
        "file per day unless over 256 MB, under lake analytics/wrapup_facts/year=/month=/day=/."
    ),
)
def wrapup_facts(context: dg.AssetExecutionContext, lake: Lake, pii: PiiHashingResource) -> dg.MaterializeResult:
    day = _day(context)
    with day_lock(settings.genesys_home(), "wrapup_facts", day):  # one run of the day at a time
        return _wrapup_facts(context, lake, pii, day)


def _wrapup_facts(context: dg.AssetExecutionContext, lake: Lake, pii: PiiHashingResource,
                  day: date) -> dg.MaterializeResult:
    sweep_staging(lake, [table_prefix("wrapup_facts", day)])
    if not raw_files(lake, day):
        raise dg.Failure(description=f"conversation_details has no raw landing for {day} "
                         f"({lake.uri(raw_prefix(day))}); materialize it first.")
    dimension = read_wrapup_dimension(lake)
    if dimension is None:
        context.log.warning("The wrapup_codes dimension has no snapshot yet: labels are null, ids are kept.")
    work = work_dir(work_root(), "wrapup_facts", day)
    try:
        r = replay_pass(iter_raw_pages(lake, day), day, work, pii.hasher(), labels=dimension,
                        tables=("wrapup_facts",))
        written = publish_partition(lake, table_prefix("wrapup_facts", day), r.files["wrapup_facts"])
        files = r.files["wrapup_facts"]
        labelled = unlabelled = codes = 0
        if files:
            counts = pl.scan_parquet(files).select(
                pl.col("wrap_up_code_label").is_not_null().sum().alias("labelled"),
                (pl.col("wrap_up_code_id").is_not_null() & pl.col("wrap_up_code_label").is_null()).sum()
                .alias("unlabelled"),
                pl.col("wrap_up_code_id").n_unique().alias("codes")).collect().row(0, named=True)
            labelled, unlabelled, codes = counts["labelled"], counts["unlabelled"], counts["codes"]
        preview = _preview(files, "wrapup_facts")
    finally:
        remove_tree(work)
    rows = r.rows.get("wrapup_facts", 0)
    return dg.MaterializeResult(metadata={
        **row_count(rows), **_table_metadata(r, ("wrapup_facts",)), "bytes": written,
        "distinct_wrap_up_codes": int(codes), "rows_labelled": int(labelled),
        "rows_with_code_but_no_label": int(unlabelled),
        "dimension_versions": 0 if dimension is None else dimension.height,
        "preview": dg.MetadataValue.md(preview), "source_pages": r.pages,
        "path": dg.MetadataValue.path(lake.uri(table_prefix("wrapup_facts", day))),
    })


@dg.asset(
    group_name="analytics",
    partitions_def=DAILY,
    deps=[conversation_details, wrapup_facts, wrapup_codes],
    automation_condition=FOLLOW_UPSTREAM_DAY,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    code_version="1",
    description=(
        "DuckDB views in the warehouse over every analytics lake table (Hive partitioning, all days: "
        "analytics.conversations, .participants, .sessions, .segments, .wrapup_facts, .wrapup_codes) and "
        "analytics.wrapup_facts_labelled, which joins each fact to the label valid at conversation time. "
        "Materialized per day so a day's run refreshes them after its tables land; its check reads the day back."
    ),
)
def warehouse_views(context: dg.AssetExecutionContext, lake: Lake, warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as connection:
        views = create_views(connection, lake, WRAPUP_CODES_PATH)
    empty = [v for v, has_files in views.items() if not has_files]
    if empty:
        context.log.info("No lake files yet for %s: typed empty views created", ", ".join(empty))
    return dg.MaterializeResult(metadata={
        "views": dg.MetadataValue.json(sorted(views)), "views_without_files": dg.MetadataValue.json(empty),
        "files": 0, "database": dg.MetadataValue.path(warehouse.database),
    })
