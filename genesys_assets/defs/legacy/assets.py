"""PureConnect migration: legacy interactions → id maps → staged recordings → ingested Cloud records.

Assets stay thin: the transforms live in ``lib/legacy_*.py`` and ``lib/recordings_staging.py``. Everything is
written to the lake first (the system of record); ``legacy_audit_tables`` loads the day's manifest, ledger and
quarantine into the DuckDB warehouse in the ``warehouse`` pool, so the slow S3 and API steps never hold the
single DuckDB writer slot.
"""

import os
import time
from datetime import date, timedelta

import dagster as dg
import orjson
import polars as pl
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genesys_assets.defs.metadata import api_calls, row_count
from genesys_assets.defs.partitions import DAILY
from genesys_assets.lib import legacy_cloud as lc
from genesys_assets.lib import legacy_id_maps as idm
from genesys_assets.lib import legacy_lake as paths
from genesys_assets.lib import wrapup_dimension
from genesys_assets.lib.legacy_interactions import (
    PHONE_COLUMNS_ENV,
    QUARANTINE_SCHEMA,
    normalise_day,
    phone_custom_columns,
)
from genesys_assets.lib.recordings_staging import (
    DEFAULT_REQUESTS_PER_SECOND,
    MANIFEST_SCHEMA,
    QUARANTINED,
    StagingSettings,
    day_prefix,
    stage_all,
    stated_source_audio,
)
from genesys_assets.lib.warehouse import replace_rows_together, replace_table
from genesys_assets.resources.genesys_cloud import GenesysApiError, GenesysCloudResource, GenesysPermissionError
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.resources.pureconnect import INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA, PureConnectResource
from genesys_assets.settings import GENESYS_API_POOL, WAREHOUSE_POOL

GROUP = "legacy_migration"
# Downstream days follow their upstream day, for any day (not only the latest), so one sensor request or a UI
# backfill of legacy_interactions carries the day through the domain. A refreshed id_maps does not re-post every
# migrated day by itself: replay days deliberately.
FOLLOW_UPSTREAM_DAY = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .replace("any_deps_updated",
             dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.assets("id_maps")))
)


def env_default(value: str | None, name: str, default: str = "") -> str:
    """A config value, or (when left unset) the environment variable that deployments set."""
    return value if value is not None else os.environ.get(name, default)


def _first_ids(rows: pl.DataFrame, n: int = 20) -> str:
    """The first ``n`` legacy ids of ``rows``, for a warning that names them without flooding the log."""
    return ", ".join(rows["x_legacy_id"].head(n).to_list())


def partition_day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


# ---------------------------------------------------------------------------------------------------------
# legacy_interactions
# ---------------------------------------------------------------------------------------------------------


class LegacyInteractionsConfig(dg.Config):
    site_timezone: str | None = Field(
        default=None,
        description="IANA zone of the PureConnect server, used only for rows carrying local time without an "
        "offset. Unset: env PURECONNECT_SITE_TIMEZONE. Empty: none configured, such rows are quarantined as "
        "ambiguous_timezone (seed 000: UTC only after explicit confirmation).",
    )
    phone_custom_columns: str | None = Field(
        default=None,
        description="Comma-separated InteractionCustomAttributes columns this site keeps phone numbers in (e.g. "
        "'CustomString2,CustomNum1'): every value in them is hashed. Other columns have only values written as "
        "numbers (tel:, sip:, +) hashed, since digits alone are often account numbers. Unset: env "
        "PURECONNECT_PHONE_CUSTOM_COLUMNS.",
    )


@dg.asset(
    group_name=GROUP,
    partitions_def=DAILY,
    kinds={"pureconnect", "polars", "parquet"},
    code_version="1",
    description=(
        "One UTC day of PureConnect InteractionSummary joined with InteractionWrapup, InteractionCustomAttributes "
        "and IR_RecordingMedia, normalised into canonical records: UUIDv5 Cloud id over SiteID/InteractionIDKey/"
        "SeqNo (legacy id kept as x_legacy_id), UTC times (local-only rows converted with the site timezone), raw "
        "timestamp strings, decoded codes, customer number as an HMAC hash. Untrusted rows go to "
        f"{paths.QUARANTINE}/source=interactions with a reason and the raw row; byte-identical duplicates are "
        f"skipped once. Lake: {paths.INTERACTIONS}/year=/month=/day=, {paths.RECORDING_LINKS}/..."
    ),
)
def legacy_interactions(
    context: dg.AssetExecutionContext, config: LegacyInteractionsConfig, pureconnect: PureConnectResource,
    lake: Lake, pii: PiiHashingResource,
) -> dg.MaterializeResult:
    day = partition_day(context)
    timezone = env_default(config.site_timezone, "PURECONNECT_SITE_TIMEZONE") or None
    phone_columns = phone_custom_columns(  # checked before the day is read
        env_default(config.phone_custom_columns, PHONE_COLUMNS_ENV), INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA,
        source=PHONE_COLUMNS_ENV if config.phone_custom_columns is None else "the config's phone_custom_columns")
    started = time.perf_counter()
    legacy = pureconnect.read_day(day)
    read_seconds = time.perf_counter() - started
    result = normalise_day(legacy, day, timezone, pii.hasher(), phone_columns)
    summary = {"day": day.isoformat(), "site_timezone": timezone, **result.stats}
    sizes = [
        paths.write_day(lake, paths.INTERACTIONS, day, "interactions.parquet", result.interactions,
                        summary=summary),
        paths.write_day(lake, paths.quarantine_base("interactions"), day, "quarantine.parquet", result.rejects),
        paths.write_day(lake, paths.RECORDING_LINKS, day, "recording_links.parquet", result.recording_links),
    ]
    seconds = time.perf_counter() - started
    stats = result.stats
    if stats["skipped_duplicates"]:
        context.log.warning("%d byte-identical duplicate row(s) skipped once: %s", stats["skipped_duplicates"],
                            _first_ids(result.skipped_duplicates))
    if stats["end_before_start_repaired"]:  # clock skew between PureConnect servers (seed 001, edge case 1)
        context.log.warning("%d row(s) ended before they started: start and end swapped, flagged "
                            "end_before_start_repaired: %s", stats["end_before_start_repaired"],
                            _first_ids(result.interactions.filter("end_before_start_repaired")))
    if stats["quarantined"]:
        context.log.warning("%d row(s) quarantined: %s", stats["quarantined"],
                            dict(result.quarantined.group_by("reason").len().iter_rows()))
    if not timezone and stats.get("reason_ambiguous_timezone"):
        context.log.warning("No site timezone configured: set PURECONNECT_SITE_TIMEZONE to migrate the %d "
                            "local-time-only row(s) of this day", stats["reason_ambiguous_timezone"])
    return dg.MaterializeResult(metadata={
        **row_count(result.interactions.height),
        "files": len(sizes),
        **stats,
        "site_timezone": timezone or "(none: local-time rows quarantined)",
        "phone_custom_columns": ", ".join(phone_columns) or "(none: only values written as numbers are hashed)",
        "bytes": sum(sizes),
        "read_seconds": round(read_seconds, 3),
        "seconds": round(seconds, 3),
        "rows_per_second": round(stats["source_rows"] / seconds, 1) if seconds else 0.0,
        "path": day_path(lake, paths.INTERACTIONS, day, "interactions.parquet"),
        "quarantine_path": day_path(lake, paths.quarantine_base("interactions"), day, "quarantine.parquet"),
    })


# ---------------------------------------------------------------------------------------------------------
# id_maps
# ---------------------------------------------------------------------------------------------------------


class IdMapsConfig(dg.Config):
    mappings_dir: str | None = Field(default=None, description="Folder with agents.csv, queues.csv, wrapups.csv "
                                     "(seed 001 format). Unset: env GENESYS_MAPPINGS_DIR.")
    fallback_user: str | None = Field(default=None, description="Cloud user (name or id) for unmapped agents. "
                                      "Unset: env GENESYS_FALLBACK_USER, else 'Historical Migration - Unknown "
                                      "Agent'.")
    default_queue: str | None = Field(default=None, description="Cloud queue (name or id) for unmapped "
                                      "workgroups. Unset: env GENESYS_DEFAULT_QUEUE, else 'Historical Migration - "
                                      "Unmapped'.")


@dg.asset(
    group_name=GROUP,
    kinds={"genesys", "csv", "parquet", "duckdb"},
    pool=WAREHOUSE_POOL,
    code_version="1",
    description=(
        "Legacy agent → Cloud user, workgroup → queue and wrap-up → wrap-up code maps from the mapping CSVs, each "
        "Cloud id validated against the directory (/users?state=any, /routing/queues, /routing/wrapupcodes plus the "
        "codes deleted since, from the wrapup_codes dimension); the "
        "fallback user and default queue resolved. Never by phone number. Lake: " + paths.ID_MAPS_PATH
        + "; warehouse tables legacy_id_maps, legacy_id_map_targets. Refreshed hourly; its data version changes "
        "only when a mapping does."
    ),
    automation_condition=dg.AutomationCondition.on_cron("0 * * * *"),
    deps=["wrapup_codes"],
)
def id_maps(
    context: dg.AssetExecutionContext, config: IdMapsConfig, genesys: GenesysCloudResource, lake: Lake,
    warehouse: DuckDBResource,
) -> dg.MaterializeResult:
    from pathlib import Path

    folder = Path(env_default(config.mappings_dir, "GENESYS_MAPPINGS_DIR"))
    client = genesys.get_client()
    before = client.stats()
    csvs = {kind: idm.read_mapping_csv(folder / f"{kind}.csv", kind) for kind in idm.CSV_COLUMNS}
    directories = {
        idm.AGENTS: idm.directory_frame(list(client.iter_entities("/api/v2/users", {"state": "any"}, 500))),
        idm.QUEUES: idm.directory_frame(list(client.iter_entities("/api/v2/routing/queues", page_size=500))),
        idm.WRAPUPS: idm.with_deleted_codes(
            idm.directory_frame(list(client.iter_entities("/api/v2/routing/wrapupcodes", page_size=500))),
            pl.from_arrow(lake.read_parquet(wrapup_dimension.LAKE_PATH))
            if lake.exists(wrapup_dimension.LAKE_PATH) else None,
        ),
    }
    maps = idm.build_id_maps(
        csvs, directories,
        fallback_user=env_default(config.fallback_user, "GENESYS_FALLBACK_USER",
                                  "Historical Migration - Unknown Agent"),
        default_queue=env_default(config.default_queue, "GENESYS_DEFAULT_QUEUE", "Historical Migration - Unmapped"),
    )
    targets = {"fallback_user_id": maps.fallback_user_id, "fallback_user_name": maps.fallback_user_name,
               "default_queue_id": maps.default_queue_id, "default_queue_name": maps.default_queue_name}
    size = lake.write_parquet(paths.ID_MAPS_PATH, maps.maps)
    lake.write_bytes(paths.ID_MAP_TARGETS_PATH, orjson.dumps(targets, option=orjson.OPT_SORT_KEYS))
    with warehouse.get_connection() as connection:
        replace_table(connection, "legacy_id_maps", maps.maps.to_arrow())
        replace_table(connection, "legacy_id_map_targets", pl.DataFrame([targets]).to_arrow())
    invalid = maps.maps.filter(pl.col("status") == "invalid")
    for kind, legacy_id, problem in invalid.select("kind", "legacy_id", "problem").iter_rows():
        context.log.warning("%s mapping %r ignored: %s", kind, legacy_id, problem)
    counts = {f"{kind}_{status}": n for kind, status, n in
              maps.maps.group_by("kind", "status").len().sort("kind", "status").iter_rows()}
    return dg.MaterializeResult(
        metadata={**row_count(maps.maps.height), "files": 2, **counts, "invalid_rows": invalid.height, **targets,
                  "bytes": size, "fingerprint": maps.fingerprint(),
                  "path": dg.MetadataValue.path(lake.uri(paths.ID_MAPS_PATH)),
                  "invalid": dg.MetadataValue.json(invalid.select("kind", "legacy_id", "cloud_id", "problem")
                                                   .to_dicts()),
                  **api_calls(client.stats_since(before))},
        data_version=dg.DataVersion(maps.fingerprint()),
    )


def load_id_maps(lake: Lake) -> idm.IdMaps:
    """The maps id_maps wrote (the lake is the system of record, so any machine can read them)."""
    if not lake.exists(paths.ID_MAPS_PATH):
        raise dg.Failure("id_maps has not been materialized: run it first (it validates the mapping CSVs)")
    frame = pl.from_arrow(lake.read_parquet(paths.ID_MAPS_PATH))
    targets = orjson.loads(lake.read_bytes(paths.ID_MAP_TARGETS_PATH))
    assert isinstance(frame, pl.DataFrame)
    return idm.IdMaps(frame, targets["fallback_user_id"], targets["fallback_user_name"],
                      targets["default_queue_id"], targets["default_queue_name"])


def day_path(lake: Lake, base: str, day: date, name: str) -> dg.MetadataValue:
    """A day's lake file as a path the UI shows (and copies)."""
    return dg.MetadataValue.path(lake.uri(paths.day_file(base, day, name)))


def read_required(lake: Lake, base: str, day: date, name: str, upstream: str) -> pl.DataFrame:
    frame = paths.read_day(lake, base, day, name)
    if frame is None:
        raise dg.Failure(f"{upstream} has no data for {day}: materialize it first")
    return frame


# ---------------------------------------------------------------------------------------------------------
# staged_recordings
# ---------------------------------------------------------------------------------------------------------


class StagedRecordingsConfig(dg.Config):
    bucket: str | None = Field(default=None, description="Staging bucket. Unset: env GENESYS_STAGING_BUCKET.")
    workers: int = Field(default=10, ge=1, le=20, description="Concurrent recordings (bounded pool).")
    requests_per_second: float = Field(
        default=DEFAULT_REQUESTS_PER_SECOND, ge=0,
        description="S3 requests per second (listing, PUTs, parts, HEADs, retries) shared by all workers; 0: "
                    "unpaced. S3 takes 3,500 writes and 5,500 reads per second per prefix.")
    multipart_threshold_mb: int = Field(
        default=64, ge=5, description="Files this large go up in 8 MiB multipart parts; smaller ones in one PUT.")
    verify_attempts: int = Field(default=6, ge=1, description="HEADs (exponential backoff) before a PUT counts.")
    source_audio: str | None = Field(
        default=None, description="'raw' or 'masked': whether PureConnect's recording files keep what its UI masks "
        "(card numbers, SSNs), as your security team confirmed. Unset: env PURECONNECT_RECORDING_AUDIO; nothing is "
        "staged until it is stated. Each object is tagged source-audio=<value>.")


@dg.asset(
    group_name=GROUP,
    partitions_def=DAILY,
    deps=[legacy_interactions],
    kinds={"s3", "pyav", "parquet"},
    pool=GENESYS_API_POOL,
    code_version="3",
    automation_condition=FOLLOW_UPSTREAM_DAY,
    description=(
        "Every call recording of the day's interactions read from its MediaURI, checked (magic bytes, container, "
        "codec, the WAV header's declared length vs the file, duration vs the database), transcoded to PCM WAV by "
        "PyAV when the Cloud player cannot play it, streamed to the staging bucket under "
        "recordings/year=/month=/day=/<sha256>.<ext> with exact Content-Type, SSE, retention tags and the SHA-256 "
        "for S3 to check on receipt, and confirmed visible by one listing of the day (HEAD with backoff for any key it "
        "does not show). SASF, zero-byte, truncated and "
        f"undecodable files are quarantined. Manifest: {paths.RECORDINGS_MANIFEST}/year=/month=/day=."
    ),
)
def staged_recordings(
    context: dg.AssetExecutionContext, config: StagedRecordingsConfig, lake: Lake, recordings_s3: S3Resource,
) -> dg.MaterializeResult:
    day = partition_day(context)
    links = read_required(lake, paths.RECORDING_LINKS, day, "recording_links.parquet", "legacy_interactions")
    calls = links.filter(pl.col("recording_media_type") == "call")
    try:
        source_audio = stated_source_audio(env_default(config.source_audio, "PURECONNECT_RECORDING_AUDIO"))
    except ValueError as exc:
        raise dg.Failure(f"No recording was staged: {exc} (Or set the asset's source_audio config.)",
                         allow_retries=False) from None
    settings = StagingSettings(bucket=env_default(config.bucket, "GENESYS_STAGING_BUCKET"),
                               multipart_threshold=config.multipart_threshold_mb * 1024 * 1024,
                               verify_attempts=config.verify_attempts, source_audio=source_audio)
    if not settings.bucket:
        raise dg.Failure("No staging bucket: set GENESYS_STAGING_BUCKET or the asset's bucket config")
    if settings.source_audio == "raw":
        context.log.warning("Recordings are staged as raw audio (PURECONNECT_RECORDING_AUDIO=raw): anything "
                            "PureConnect masked only in its UI is audible in them. They are tagged source-audio=raw; "
                            "redact them in Genesys Cloud (speech analytics redaction) or restrict who can read the "
                            "bucket.")
    started = time.perf_counter()
    manifest, run = stage_all(recordings_s3.get_client(), calls.to_dicts(), day, settings, workers=config.workers,
                              requests_per_second=config.requests_per_second or None)
    seconds = time.perf_counter() - started
    quarantined = manifest.filter(pl.col("status") == QUARANTINED)
    sizes = [paths.write_day(lake, paths.RECORDINGS_MANIFEST, day, "manifest.parquet", manifest),
             paths.write_day(lake, paths.quarantine_base("recordings"), day, "quarantine.parquet", quarantined)]
    if quarantined.height:
        context.log.warning("%d recording(s) quarantined: %s", quarantined.height,
                            dict(quarantined.group_by("reason").len().iter_rows()))
    staged = manifest.height - quarantined.height
    return dg.MaterializeResult(metadata={
        **row_count(manifest.height), "files": len(sizes), "staged": staged, "quarantined": quarantined.height,
        **{f"reason_{r}": n for r, n in quarantined.group_by("reason").len().sort("reason").iter_rows()},
        "transcoded": int(manifest["transcoded"].sum()), "uploaded": run.uploaded,
        "already_present": run.already_present, "bytes_uploaded": run.bytes_uploaded,
        "verify_retries": run.verify_retries, "s3_requests": run.requests, "listed_existing": run.listed,
        "non_call_recordings": links.height - calls.height,
        "seconds": round(seconds, 3), "recordings_per_second": round(manifest.height / seconds, 1) if seconds else 0,
        "bucket": settings.bucket, "source_audio": settings.source_audio,
        "staged_to": dg.MetadataValue.path(f"s3://{settings.bucket}/{day_prefix(day)}"),
        "manifest_path": day_path(lake, paths.RECORDINGS_MANIFEST, day, "manifest.parquet"),
        "quarantine_path": day_path(lake, paths.quarantine_base("recordings"), day, "quarantine.parquet"),
    })


# ---------------------------------------------------------------------------------------------------------
# cloud_interactions
# ---------------------------------------------------------------------------------------------------------


class CloudInteractionsConfig(dg.Config):
    unmapped_queue_rule: str | None = Field(
        default=None, description="'default_queue' (unmapped workgroups go to the default queue) or 'skip' (the "
        "record is quarantined as unmapped_queue). Unset: env GENESYS_UNMAPPED_QUEUE_RULE, else default_queue.")


def historical_import_poster(client: object) -> lc.Poster:
    """POST one batch through the Genesys client (token refresh, 429/5xx retries) as the lib's Poster."""

    def post(body: bytes, request_id: str) -> tuple[int, dict, bool]:
        try:
            response = client.request("POST", lc.INTERACTIONS_PATH, data=body,  # type: ignore[attr-defined]
                                      headers={"X-Request-ID": request_id, "Content-Type": "application/json"})
        except GenesysPermissionError as exc:
            if exc.code == lc.HISTORICAL_IMPORT_CODE:
                raise lc.HistoricalImportDisabled(lc.ENABLE_HISTORICAL_IMPORT) from None
            raise
        except GenesysApiError as exc:
            if exc.status in (400, 413):  # invalid or too large: the lib bisects and quarantines
                return exc.status, {"message": exc.api_message or str(exc)}, False
            raise
        replayed = response.headers.get("X-Idempotent-Replay", "").lower() == "true"
        return response.status_code, lc.decode_answer(response.content), replayed

    return post


def check_historical_import(client: object) -> None:
    """Fail before posting anything when the target says historical import is off (if we may read settings)."""
    try:
        settings = client.get_json(lc.SETTINGS_PATH)  # type: ignore[attr-defined]
    except GenesysPermissionError:
        return  # no migration:settings:view: the first POST will tell
    if settings.get("allowHistoricalImport") is False:
        raise lc.HistoricalImportDisabled(lc.ENABLE_HISTORICAL_IMPORT)


@dg.asset(
    group_name=GROUP,
    partitions_def=DAILY,
    deps=[legacy_interactions, id_maps, staged_recordings],
    kinds={"genesys", "parquet"},
    pool=GENESYS_API_POOL,
    code_version="1",
    automation_condition=FOLLOW_UPSTREAM_DAY,
    description=(
        "The ingested Cloud records: payloads built from the canonical records, id maps and recordings manifest "
        "(mapped agent and wrap-up, hashed customer, routing queue, a segment per linked recording with its link "
        "and duration in ms, x_legacy_id and raw timestamps as custom attributes, retention tags), posted to the "
        "migration target in batches of 100 with an X-Request-ID derived from the batch contents. "
        f"Ledger (legacy → Cloud id and outcome): {paths.INGEST_LEDGER}; every batch: {paths.INGEST_BATCHES}; "
        f"refused records: {paths.QUARANTINE}/source=cloud."
    ),
)
def cloud_interactions(
    context: dg.AssetExecutionContext, config: CloudInteractionsConfig, genesys: GenesysCloudResource, lake: Lake,
) -> dg.MaterializeResult:
    day = partition_day(context)
    rule = env_default(config.unmapped_queue_rule, "GENESYS_UNMAPPED_QUEUE_RULE", "default_queue")
    if rule not in idm.UNMAPPED_QUEUE_RULES:
        raise dg.Failure(f"unmapped_queue_rule must be one of {idm.UNMAPPED_QUEUE_RULES}, not {rule!r}")
    canonical = read_required(lake, paths.INTERACTIONS, day, "interactions.parquet", "legacy_interactions")
    manifest = read_required(lake, paths.RECORDINGS_MANIFEST, day, "manifest.parquet", "staged_recordings")
    resolved = lc.resolve_mappings(canonical, load_id_maps(lake), rule)
    payloads = lc.build_payloads(resolved, manifest)

    skipped = payloads.filter(pl.col("queue_mapping") == "skipped")
    invalid = lc.invalid_records(payloads)
    valid = payloads.join(skipped.select("id"), on="id", how="anti").join(invalid.select("id"), on="id", how="anti")
    oversized = lc.oversized_records(valid)
    sendable = valid.join(oversized.select("id"), on="id", how="anti")
    client = genesys.get_client()
    before = client.stats()
    started = time.perf_counter()
    try:
        check_historical_import(client)
        outcome = lc.post_records(sendable["id"].to_list(), sendable["payload"].to_list(),
                                  historical_import_poster(client))
    except lc.HistoricalImportDisabled as exc:
        raise dg.Failure(str(exc), metadata={"setting": "allowHistoricalImport",
                                             "records_waiting": sendable.height}) from None
    seconds = time.perf_counter() - started

    rejected = sendable.filter(pl.col("id").is_in(list(outcome.rejected)))
    cloud_quarantine = pl.concat([
        skipped.select("id", "x_legacy_id", "payload", pl.lit(lc.UNMAPPED_QUEUE).alias("reason"),
                       pl.format("workgroup {} has no queue mapping and the rule is 'skip'",
                                 pl.col("queue_legacy_id")).alias("detail")),
        invalid.select("id", "x_legacy_id", "payload", pl.lit(lc.INVALID_RECORD).alias("reason"),
                       pl.col("problem").alias("detail")),
        oversized.select("id", "x_legacy_id", "payload", pl.lit(lc.OVERSIZED_RECORD).alias("reason"),
                         pl.col("problem").alias("detail")),
        rejected.select("id", "x_legacy_id", "payload",
                        pl.col("id").replace_strict(outcome.reasons, default=lc.TARGET_REJECTED,
                                                    return_dtype=pl.String).alias("reason"),
                        pl.col("id").replace_strict(outcome.rejected, return_dtype=pl.String).alias("detail")),
    ]).with_columns(pl.lit(day).alias("day"), pl.lit("quarantined").alias("outcome")).select(
        list(lc.CLOUD_QUARANTINE_SCHEMA)).cast(lc.CLOUD_QUARANTINE_SCHEMA).sort("id")  # type: ignore[arg-type]
    ledger = lc.ledger_frame(day, payloads, outcome)
    batches = pl.DataFrame(
        [{"day": day, "run_id": context.run.run_id, **b} for b in outcome.batches], schema=lc.BATCH_SCHEMA)
    sizes = [
        paths.write_day(lake, paths.INGEST_LEDGER, day, "ledger.parquet", ledger),
        paths.write_day(lake, paths.quarantine_base("cloud"), day, "quarantine.parquet", cloud_quarantine),
        lake.write_parquet(paths.day_file(paths.INGEST_BATCHES, day, f"run={context.run.run_id}.parquet"),
                           batches),
    ]
    ingested = ledger.filter(pl.col("outcome") != lc.REJECTED)
    counts = dict(ledger.group_by("outcome").len().iter_rows())
    if cloud_quarantine.height:
        context.log.warning("%d record(s) not ingested: %s", cloud_quarantine.height,
                            dict(cloud_quarantine.group_by("reason").len().iter_rows()))
    return dg.MaterializeResult(metadata={
        **row_count(ingested.height), "files": len(sizes), "canonical_records": canonical.height,
        "ingested": ingested.height, "cloud_quarantined": cloud_quarantine.height,
        **{f"outcome_{k}": v for k, v in sorted(counts.items())},
        "batches": len(outcome.batches), "replayed_batches": int(batches["replayed"].sum()),
        "agents_on_fallback_user": int((ingested["agent_mapping"] == "fallback").sum()),
        "queues_on_default_queue": int((ingested["queue_mapping"] == "default").sum()),
        "unmapped_queue_rule": rule,
        "ledger_path": day_path(lake, paths.INGEST_LEDGER, day, "ledger.parquet"),
        "quarantine_path": day_path(lake, paths.quarantine_base("cloud"), day, "quarantine.parquet"),
        "seconds": round(seconds, 3),
        "records_per_second": round(sendable.height / seconds, 1) if seconds else 0.0,
        **api_calls(client.stats_since(before)),
    })


# ---------------------------------------------------------------------------------------------------------
# legacy_audit_tables
# ---------------------------------------------------------------------------------------------------------


def _day_frames(lake: Lake, base: str, day: date) -> pl.DataFrame | None:
    files = [f for f in lake.list(paths.partition_prefix(base, day)) if f.endswith(".parquet")]
    frames = [pl.from_arrow(lake.read_parquet(f)) for f in files]
    return pl.concat(frames, how="diagonal_relaxed") if frames else None  # type: ignore[arg-type]


AUDIT_TABLES = {
    "legacy_quarantine_interactions": (paths.quarantine_base("interactions"), QUARANTINE_SCHEMA),
    "legacy_recordings_manifest": (paths.RECORDINGS_MANIFEST, MANIFEST_SCHEMA),
    "legacy_quarantine_cloud": (paths.quarantine_base("cloud"), lc.CLOUD_QUARANTINE_SCHEMA),
    "legacy_ingest_ledger": (paths.INGEST_LEDGER, lc.LEDGER_SCHEMA),
    "legacy_ingest_batches": (paths.INGEST_BATCHES, lc.BATCH_SCHEMA),
}


@dg.asset(
    group_name=GROUP,
    partitions_def=DAILY,
    deps=[legacy_interactions, staged_recordings, cloud_interactions],
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    code_version="1",
    automation_condition=FOLLOW_UPSTREAM_DAY,
    description=(
        "The day's audit trail loaded from the lake into the DuckDB warehouse (one writer, pool warehouse): "
        + ", ".join(AUDIT_TABLES) + ". Each day's rows are replaced in one transaction, so the warehouse can "
        "always be rebuilt from the lake."
    ),
)
def legacy_audit_tables(
    context: dg.AssetExecutionContext, lake: Lake, warehouse: DuckDBResource,
) -> dg.MaterializeResult:
    day = partition_day(context)
    frames: dict[str, pl.DataFrame] = {}
    for table, (base, schema) in AUDIT_TABLES.items():
        frame = _day_frames(lake, base, day)
        frames[table] = pl.DataFrame(schema=schema) if frame is None else frame.select(list(schema)).cast(schema)
    with warehouse.get_connection() as connection:
        # The day's five tables in one transaction: a reader never sees the new ledger beside the old manifest.
        replace_rows_together(connection, "day", day, {t: f.to_arrow() for t, f in frames.items()})
    loaded = {table: frame.height for table, frame in frames.items()}
    return dg.MaterializeResult(metadata={**row_count(sum(loaded.values())), "files": 0, **loaded,
                                          "database": dg.MetadataValue.path(warehouse.database)})


def day_interval(day: date) -> str:
    """The target's ``interval`` parameter for a half-open UTC day."""
    return f"{day.isoformat()}T00:00:00.000Z/{(day + timedelta(days=1)).isoformat()}T00:00:00.000Z"
