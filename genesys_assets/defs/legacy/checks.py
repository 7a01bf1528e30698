"""Checks of the PureConnect migration: every day reconciles (nothing lost, nothing doubled), records are sound,
recordings play back, and mapping coverage is visible."""

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta

import dagster as dg
import polars as pl
from dagster_aws.s3 import S3Resource
from pydantic import Field

from genesys_assets.defs.legacy import assets as legacy
from genesys_assets.defs.partitions import DAILY
from genesys_assets.lib import legacy_cloud as lc
from genesys_assets.lib import legacy_lake as paths
from genesys_assets.lib.legacy_interactions import assign_day, legacy_id_expr
from genesys_assets.lib.recordings_staging import STAGED, playback_problems
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pureconnect import PureConnectResource
from genesys_assets.settings import GENESYS_API_POOL, env_number

LISTED = 50  # ids listed in a failing check's metadata


def _listed(values: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.json(sorted(values)[:LISTED])


@dg.asset_check(asset=legacy.legacy_interactions, partitions_def=DAILY, blocking=True,
                description="No duplicate Cloud ids; every interaction starts inside its UTC day; start <= end "
                            "after repair. Blocking: a failing day is not staged or posted.")
def legacy_interactions_integrity(context: dg.AssetCheckExecutionContext, lake: Lake) -> dg.AssetCheckResult:
    day = legacy.partition_day(context)  # type: ignore[arg-type]
    frame = legacy.read_required(lake, paths.INTERACTIONS, day, "interactions.parquet", "legacy_interactions")
    lo = datetime.combine(day, time(), UTC)
    hi = lo + timedelta(days=1)
    duplicates = frame.filter(pl.col("id").is_duplicated())["id"].unique().to_list()
    outside = frame.filter((pl.col("start_time") < lo) | (pl.col("start_time") >= hi))["x_legacy_id"].to_list()
    reversed_ = frame.filter(pl.col("end_time") < pl.col("start_time"))["x_legacy_id"].to_list()
    return dg.AssetCheckResult(
        passed=not (duplicates or outside or reversed_),
        metadata={"rows": frame.height, "duplicate_ids": len(duplicates), "outside_day": len(outside),
                  "end_before_start": len(reversed_), "duplicate_ids_listed": _listed(duplicates),
                  "outside_day_listed": _listed(outside), "end_before_start_listed": _listed(reversed_)},
        description=f"{frame.height} interactions: {len(duplicates)} duplicate Cloud id(s), {len(outside)} outside "
                    f"{day}, {len(reversed_)} ending before they start",
    )


def _multiset_gap(expected: list[str], found: list[str]) -> tuple[list[str], list[str]]:
    """(missing from ``found``, extra in ``found``), counting repeats."""
    e, f = Counter(expected), Counter(found)
    return list((e - f).elements()), list((f - e).elements())


def target_ids(client: object, day: object) -> list[str]:
    """The ids the migration target itself holds for the day (its GET, paged)."""
    entities = client.iter_entities(lc.INTERACTIONS_PATH, {"interval": legacy.day_interval(day)},  # type: ignore[attr-defined]
                                    page_size=500)
    return [e["id"] for e in entities]


@dg.asset_check(asset=legacy.cloud_interactions, partitions_def=DAILY, pool=GENESYS_API_POOL,
                description="Per day: PureConnect source rows (re-read) = ingested + quarantined (source, cloud) + "
                            "skipped duplicates, and the target's own count for the day (read back through its "
                            "GET) equals ingested. Fails with the missing ids listed.")
def legacy_reconciliation(
    context: dg.AssetCheckExecutionContext, pureconnect: PureConnectResource, lake: Lake,
    genesys: GenesysCloudResource,
) -> dg.AssetCheckResult:
    day = legacy.partition_day(context)  # type: ignore[arg-type]
    summary = paths.read_summary(lake, paths.INTERACTIONS, day) or {}
    timezone = summary.get("site_timezone")
    source = assign_day(pureconnect.read_day(day).interactions, day, timezone)
    source_ids = source.select(legacy_id_expr().fill_null("<missing key>").alias("x"))["x"].to_list()
    canonical = legacy.read_required(lake, paths.INTERACTIONS, day, "interactions.parquet", "legacy_interactions")
    rejects = legacy.read_required(lake, paths.quarantine_base("interactions"), day, "quarantine.parquet",
                            "legacy_interactions")
    ledger = legacy.read_required(lake, paths.INGEST_LEDGER, day, "ledger.parquet", "cloud_interactions")
    cloud_q = legacy.read_required(lake, paths.quarantine_base("cloud"), day, "quarantine.parquet",
                                   "cloud_interactions")
    accounted = canonical["x_legacy_id"].to_list() + rejects["x_legacy_id"].fill_null("<missing key>").to_list()
    lost, doubled = _multiset_gap(source_ids, accounted)

    ingested = ledger.filter(pl.col("outcome") != lc.REJECTED)
    not_posted = set(canonical["id"]) - set(ingested["id"]) - set(cloud_q["id"])
    in_target = target_ids(genesys.get_client(), day)
    missing_in_target, unexpected_in_target = _multiset_gap(ingested["id"].to_list(), in_target)
    quarantined = rejects.filter(pl.col("outcome") == "quarantined").height + cloud_q.height
    skipped = rejects.filter(pl.col("outcome") == "skipped_duplicate").height
    passed = not (lost or doubled or not_posted or missing_in_target or unexpected_in_target)
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "source_rows": len(source_ids), "ingested": ingested.height, "quarantined": quarantined,
            "skipped_duplicates": skipped, "target_count": len(in_target),
            "balance": len(source_ids) - ingested.height - quarantined - skipped,
            "lost_legacy_ids": _listed(lost), "doubled_legacy_ids": _listed(doubled),
            "canonical_not_posted": _listed(list(not_posted)),
            "missing_in_target": _listed(missing_in_target), "unexpected_in_target": _listed(unexpected_in_target),
        },
        description=(
            f"{len(source_ids)} source rows = {ingested.height} ingested + {quarantined} quarantined + {skipped} "
            f"skipped duplicates; the target holds {len(in_target)}") if passed else (
            f"{len(lost)} source row(s) unaccounted, {len(doubled)} doubled, {len(not_posted)} canonical record(s) "
            f"neither ingested nor quarantined, {len(missing_in_target)} ingested id(s) missing from the target, "
            f"{len(unexpected_in_target)} unexpected"),
    )


class PlaybackConfig(dg.Config):
    sample_size: int = Field(default=50, ge=1, description="Staged recordings fetched back (all when fewer).")


@dg.asset_check(asset=legacy.staged_recordings, partitions_def=DAILY,
                description="Playback: up to 50 random staged recordings fetched back from the bucket; checksum, "
                            "content type and decodability verified (seed 000's audit playback test).")
def legacy_recordings_playback(
    context: dg.AssetCheckExecutionContext, config: PlaybackConfig, lake: Lake, recordings_s3: S3Resource,
) -> dg.AssetCheckResult:
    day = legacy.partition_day(context)  # type: ignore[arg-type]
    manifest = legacy.read_required(lake, paths.RECORDINGS_MANIFEST, day, "manifest.parquet", "staged_recordings")
    staged = manifest.filter(pl.col("status") == STAGED).to_dicts()
    sample = random.Random(f"playback/{day}").sample(staged, min(config.sample_size, len(staged)))
    s3 = recordings_s3.get_client()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda row: (row["recording_id"], playback_problems(s3, row)), sample))
    failed = {rid: problems for rid, problems in results if problems}
    return dg.AssetCheckResult(
        passed=not failed,
        metadata={"sampled": len(sample), "staged": len(staged), "failed": len(failed),
                  "failures": dg.MetadataValue.json(dict(list(failed.items())[:LISTED]))},
        description=f"{len(sample) - len(failed)} of {len(sample)} sampled recordings (of {len(staged)} staged) "
                    "came back intact and playable" + (f"; {len(failed)} did not (see failures)" if failed else ""),
    )


class CoverageConfig(dg.Config):
    warning_share: float | None = Field(
        default=None, ge=0, le=1, description="Warn when more than this share of the day's ingested records is on "
        "the fallback user or the default queue. Unset: env GENESYS_MAPPING_COVERAGE_WARN_SHARE, else 0.10.")


@dg.asset_check(asset=legacy.cloud_interactions, partitions_def=DAILY,
                description="Mapping coverage: share of ingested interactions on the fallback user / default queue "
                            "(metadata), WARN above the configured threshold.")
def legacy_mapping_coverage(
    context: dg.AssetCheckExecutionContext, config: CoverageConfig, lake: Lake,
) -> dg.AssetCheckResult:
    day = legacy.partition_day(context)  # type: ignore[arg-type]
    threshold = config.warning_share
    if threshold is None:
        threshold = env_number("GENESYS_MAPPING_COVERAGE_WARN_SHARE", 0.10, low=0, high=1)
    ledger = legacy.read_required(lake, paths.INGEST_LEDGER, day, "ledger.parquet", "cloud_interactions")
    ingested = ledger.filter(pl.col("outcome") != lc.REJECTED)
    with_agent = ingested.filter(pl.col("agent_mapping") != "none")
    with_queue = ingested.filter(pl.col("queue_mapping") != "none")
    fallback = with_agent.filter(pl.col("agent_mapping") == "fallback").height
    default = with_queue.filter(pl.col("queue_mapping") == "default").height
    agent_share = fallback / with_agent.height if with_agent.height else 0.0
    queue_share = default / with_queue.height if with_queue.height else 0.0
    wrapup_unmapped = ingested.filter(pl.col("wrapup_mapping") == "unmapped").height
    return dg.AssetCheckResult(
        passed=agent_share <= threshold and queue_share <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"fallback_user_share": round(agent_share, 4), "default_queue_share": round(queue_share, 4),
                  "on_fallback_user": fallback, "on_default_queue": default, "wrapup_unmapped": wrapup_unmapped,
                  "ingested": ingested.height, "warning_share": threshold},
        description=f"{agent_share:.1%} of records on the fallback user, {queue_share:.1%} on the default queue "
                    f"(warning above {threshold:.0%}); {wrapup_unmapped} wrap-up(s) unmapped",
    )
