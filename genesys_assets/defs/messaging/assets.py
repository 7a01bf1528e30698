"""Web messaging archive (seed 002): each UTC day's web messaging transcripts as gzip NDJSON in the lake.

``webchat_archive`` refuses before any data moves when the region is not allowed or the estimate does not fit the
quota, then archives the day resumably (``lib/webchat_archive.py``), publishes parts + manifest, writes the audit
event to the lake and announces the day on the data-lake webhook. ``webchat_audit_events`` loads the day's audit
events into the warehouse (``warehouse`` pool, one DuckDB writer at a time).
"""

import hashlib
import logging
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genesys_assets import settings
from genesys_assets.defs.availability import require_complete_day
from genesys_assets.defs.metadata import api_calls, column_schema, row_count
from genesys_assets.defs.partitions import DAILY
from genesys_assets.lib.day_lock import day_lock
from genesys_assets.lib.pii import AddressHasher
from genesys_assets.lib.webchat_archive import (
    MANIFEST_NAME,
    ArchiveSettings,
    archive_day,
    build_manifest,
    lake_prefix,
    now_iso,
    publish,
    recent_manifests,
)
from genesys_assets.lib.webchat_audit import (
    ARCHIVE_EXPORT_COMPLETED,
    AUDIT_SCHEMA,
    audit_event,
    audit_log_line,
    audit_path,
    audit_prefix,
    encode,
    upsert_events,
)
from genesys_assets.lib.webchat_policy import (
    DEFAULT_BYTES_PER_RECORD,
    DEFAULT_QUOTA_MB,
    ArchivePolicyError,
    average_record_bytes,
    check_quota,
    check_residency,
    effective_region,
    parse_allowed_regions,
)
from genesys_assets.lib.webchat_record import ALLOW_LIST, query_body
from genesys_assets.lib.webchat_webhook import webhook_payload
from genesys_assets.resources.data_lake_webhook import DataLakeWebhookResource
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.settings import GENESYS_API_POOL, WAREHOUSE_POOL

ASSET_NAME = "webchat_archive"
audit_log = logging.getLogger("genesys_assets.audit")


class WebchatArchiveConfig(dg.Config):
    """Limits default to the environment (``ALLOWED_REGIONS``, ``ARCHIVE_QUOTA_MB``) when left unset."""

    allowed_regions: str | None = Field(
        default=None, description="Comma-separated regions data may be archived from; default env ALLOWED_REGIONS, "
        "else 'sandbox' only (a live region must be listed explicitly)."
    )
    archive_quota_mb: float | None = Field(
        default=None,
        description=f"Largest estimated day in MiB; default env ARCHIVE_QUOTA_MB, else {DEFAULT_QUOTA_MB:g}.",
    )
    page_size: int = Field(default=1000, description="Details-job results page size (a checkpoint per page).")
    part_max_mb: float = Field(default=128.0, description="A part rolls over after this much NDJSON (MiB).")
    compression_level: int = Field(default=6, description="gzip level 1-9.")
    fetch_workers: int = Field(default=4, description="Conversations of a page fetched in parallel.")
    work_dir: str | None = Field(
        default=None, description="Local folder for parts in progress and checkpoints; default GENESYS_HOME/work."
    )
    data_classification: str = Field(default="CONVERSATION_ARCHIVE", description="Audit: data classification.")
    retention_directive: str = Field(default="COMPLIANT_RETENTION_WINDOW", description="Audit: retention directive.")

    def archive_settings(self) -> ArchiveSettings:
        return ArchiveSettings(page_size=self.page_size, part_max_bytes=max(1, int(self.part_max_mb * 1024 * 1024)),
                               compression_level=self.compression_level, fetch_workers=self.fetch_workers)

    def day_work_dir(self, day: date) -> Path:
        root = Path(self.work_dir) if self.work_dir else settings.genesys_home() / "work"
        return root / ASSET_NAME / f"day={day.isoformat()}"


def _basis(measured: bool) -> str:
    """Where the quota estimate's bytes per record came from, as the metadata says it."""
    return "measured" if measured else "default"


def _refuse(exc: ArchivePolicyError, **limits: Any) -> dg.Failure:
    """A policy refusal (never retried), with the figures it was decided on shown in the UI."""
    return dg.Failure(description=str(exc), allow_retries=False, metadata=limits)


@dg.asset(
    group_name="messaging",
    partitions_def=DAILY,
    kinds={"genesys", "ndjson"},
    pool=GENESYS_API_POOL,
    code_version="1",
    description=(
        "Web messaging conversations that started in the UTC day, with their messages (text and media references), "
        "stripped to seed 002's field set (a participant name that is a phone number kept as its hash), as gzip "
        "NDJSON: lake webchat/year=/month=/day=/part-NNNN.ndjson.gz + "
        "manifest.json. Refuses before extracting when the region is not in ALLOWED_REGIONS or the estimate exceeds "
        "ARCHIVE_QUOTA_MB. Resumes a crashed day from its checkpoint. Announces each day on DATA_LAKE_WEBHOOK_URL."
    ),
    metadata={"allow_list": dg.MetadataValue.json(ALLOW_LIST)},
)
def webchat_archive(
    context: dg.AssetExecutionContext,
    config: WebchatArchiveConfig,
    genesys: GenesysCloudResource,
    lake: Lake,
    data_lake_webhook: DataLakeWebhookResource,
    pii: PiiHashingResource,
) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    started = time.monotonic()
    allowed = parse_allowed_regions(config.allowed_regions or os.environ.get("ALLOWED_REGIONS"))
    quota_mb = config.archive_quota_mb or settings.env_number("ARCHIVE_QUOTA_MB", DEFAULT_QUOTA_MB, low=0)
    region = "unknown"
    try:  # no request has been sent yet
        region = effective_region(genesys.region, genesys.hosts().api_base_url)
        check_residency(region, allowed)
    except ArchivePolicyError as exc:
        raise _refuse(exc, region=region, allowed_regions=", ".join(allowed)) from None

    client = genesys.get_client()
    before = client.stats()
    require_complete_day(client, day, "Web messaging conversations", context.run.tags)
    total_hits = client.details_query_total_hits(query_body(day))
    measured = average_record_bytes(recent_manifests(lake, day))
    bytes_per_record = measured or DEFAULT_BYTES_PER_RECORD
    try:
        estimate_mb = check_quota(total_hits, bytes_per_record, quota_mb, measured=bool(measured))
    except ArchivePolicyError as exc:
        raise _refuse(exc, conversations=total_hits, bytes_per_record=bytes_per_record,
                      bytes_per_record_basis=_basis(bool(measured)), quota_mib=quota_mb) from None
    context.log.info("%s: %d web messaging conversations, estimated %.2f MiB of %g MiB quota (region %s)",
                     day, total_hits, estimate_mb, quota_mb, region)

    work_dir = config.day_work_dir(day)
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    # One run of the day at a time: two would resume from and publish each other's checkpoint and parts.
    with day_lock(settings.genesys_home(), ASSET_NAME, day):
        return _archive_and_publish(context, config, client, lake, data_lake_webhook, pii.hasher(), day, work_dir,
                                    region, total_hits, estimate_mb, bool(measured), started, before)


def _archive_and_publish(context: dg.AssetExecutionContext, config: WebchatArchiveConfig, client: Any, lake: Lake,
                         data_lake_webhook: DataLakeWebhookResource, hasher: AddressHasher, day: date,
                         work_dir: Path, region: str, total_hits: int, estimate_mb: float, measured: bool,
                         started: float, before: dict) -> dg.MaterializeResult:
    run = archive_day(client, day, work_dir, hasher, config.archive_settings())
    cp = run.checkpoint
    if run.restart_reason:
        context.log.warning("Started the day cleanly: %s", run.restart_reason)
    completed_at = now_iso()
    manifest = build_manifest(cp, region=region, run={
        "run_id": context.run.run_id, "job_id": cp.job_id, "completed_at": completed_at, "resumed": run.resumed,
        "resumed_from_page": run.resumed_from_page, "pages": cp.pages,
    })
    paths = publish(lake, day, work_dir, manifest)
    manifest_bytes = lake.read_bytes(f"{lake_prefix(day)}/{MANIFEST_NAME}")
    seconds = time.monotonic() - started
    destination = lake.uri(lake_prefix(day))

    event = audit_event(
        event_type=ARCHIVE_EXPORT_COMPLETED, event_time=completed_at, source=ASSET_NAME, day=day,
        records=manifest["records"], bytes_=manifest["bytes"], destination=destination,
        data_classification=config.data_classification, retention_directive=config.retention_directive,
        region=region, details={"run_id": context.run.run_id, "files": len(manifest["files"]),
                                "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest()},
    )
    lake.write_bytes(audit_path(event), encode(event))
    line = audit_log_line(event)
    audit_log.info(line)
    context.log.info("audit %s", line)

    payload = webhook_payload(
        day=day.isoformat(), records=manifest["records"], bytes_=manifest["bytes"], bytes_raw=manifest["bytes_raw"],
        seconds=seconds, completed_at=completed_at, region=region, destination=destination,
        manifest_sha256=event["details"]["manifest_sha256"],
    )
    delivery = data_lake_webhook.notify(payload, idempotency_key=f"{ASSET_NAME}/{day.isoformat()}/{event['event_id']}")
    webhook: dict[str, dg.MetadataValue | str | int | bool] = {}
    if delivery is None:
        webhook["webhook"] = "not configured (DATA_LAKE_WEBHOOK_URL unset)"
    else:
        webhook["webhook_delivered"] = delivery.delivered
        webhook["webhook_attempts"] = delivery.attempts
        if not delivery.delivered:
            warning = (f"data-lake webhook failed after {delivery.attempts} attempt(s) ({delivery.error}); "
                       "the archive is complete and valid, re-announce it from the manifest")
            webhook["webhook_warning"] = warning
            context.log.warning(warning)

    api = client.stats_since(before)
    return dg.MaterializeResult(
        metadata={
            **row_count(manifest["records"]),
            "records": manifest["records"],
            "files": len(manifest["files"]),
            "messages": manifest["messages"],
            "bytes_raw": manifest["bytes_raw"],
            "bytes_compressed": manifest["bytes"],
            "compression_ratio": round(manifest["bytes_raw"] / manifest["bytes"], 2) if manifest["bytes"] else 0.0,
            "throughput_records_per_second": round(manifest["records"] / max(seconds, 1e-6), 1),
            "throughput_mib_per_second": round(manifest["bytes_raw"] / 1048576 / max(seconds, 1e-6), 3),
            "seconds": round(seconds, 2),
            "region": region,
            "conversations_expected": total_hits,
            "estimate_mib": round(estimate_mb, 3),
            "bytes_per_record_basis": _basis(measured),
            "neighbours_skipped": cp.neighbours_skipped,
            "duplicates_skipped": cp.duplicates_skipped,
            "resumed": run.resumed,
            "resumed_from_page": run.resumed_from_page if run.resumed_from_page is not None else -1,
            "pages": cp.pages,
            **api_calls(api),
            "path": dg.MetadataValue.path(destination),
            "manifest": dg.MetadataValue.json(orjson.loads(manifest_bytes)),
            "lake_paths": dg.MetadataValue.json(paths),
            **webhook,
        }
    )


@dg.asset(
    group_name="messaging",
    partitions_def=DAILY,
    deps=[webchat_archive],
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    metadata=column_schema(AUDIT_SCHEMA),
    description="The day's archive audit events (lake audit/events/source=webchat_archive/) upserted into the "
    "warehouse table audit_events; rebuildable from the lake at any time.",
)
def webchat_audit_events(
    context: dg.AssetExecutionContext, lake: Lake, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    paths = [p for p in lake.list(audit_prefix(ASSET_NAME, day)) if p.endswith(".json")]
    events = [orjson.loads(lake.read_bytes(p)) for p in paths]
    with warehouse.get_connection() as connection:
        loaded = upsert_events(connection, events)
    return dg.MaterializeResult(metadata={**row_count(loaded), "files": len(paths), "table": "audit_events"})
