"""Checks of webchat_archive: nothing lost (count), nothing damaged or leaked (integrity), bodies complete.

Not blocking: the only downstream asset is the warehouse copy of the audit trail, which must record every
completed export, including one whose check fails (a failed check is an ERROR on the day, visible in the UI).
"""

from datetime import date

import dagster as dg

from genesys_assets.defs.partitions import DAILY
from genesys_assets.lib.webchat_archive import fetch_messages_ids, read_manifest, verify_day
from genesys_assets.lib.webchat_record import query_body
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.settings import GENESYS_API_POOL

ASSET = dg.AssetKey("webchat_archive")
#: Conversations whose message ids are compared with Genesys by the messages-complete check.
MESSAGES_SAMPLE = 20


@dg.asset_check(asset=ASSET, partitions_def=DAILY, pool=GENESYS_API_POOL,
                description="Archived conversations = web messaging conversations that started in the day "
                "(sync details query totalHits).")
def webchat_archive_count(
    context: dg.AssetCheckExecutionContext, genesys: GenesysCloudResource, lake: Lake
) -> dg.AssetCheckResult:
    day = date.fromisoformat(context.partition_key)
    manifest = read_manifest(lake, day)
    archived = int(manifest["records"]) if manifest else -1
    expected = genesys.get_client().details_query_total_hits(query_body(day))
    description = (f"no archive manifest for {day}: webchat_archive has not completed this day" if manifest is None
                   else f"{archived} conversations archived, {expected} web messaging conversations started that day")
    return dg.AssetCheckResult(passed=archived == expected, description=description,
                               metadata={"archived": archived, "expected": expected, "difference": archived - expected})


@dg.asset_check(asset=ASSET, partitions_def=DAILY,
                description="Every file decompresses fully, every line parses, keys ⊆ the allow-list, no duplicate "
                "ids, sha256 and counts match the manifest.")
def webchat_archive_integrity(context: dg.AssetCheckExecutionContext, lake: Lake) -> dg.AssetCheckResult:
    result = verify_day(lake, date.fromisoformat(context.partition_key))
    return dg.AssetCheckResult(passed=result.ok, description=(
        f"{result.files} file(s), {result.records} records: {len(result.problems)} problem(s)"
        + (f", first: {result.problems[0]}" if result.problems else "")), metadata={
        "files": result.files, "records": result.records, "bytes": result.bytes, "bytes_raw": result.bytes_raw,
        "problems": dg.MetadataValue.json(result.problems[:50]), "problem_count": len(result.problems),
    })


@dg.asset_check(asset=ASSET, partitions_def=DAILY, pool=GENESYS_API_POOL,
                description=f"For a deterministic sample of {MESSAGES_SAMPLE} conversations, the archived message ids "
                "equal the ids the conversation lists in Genesys Cloud.")
def webchat_archive_messages_complete(
    context: dg.AssetCheckExecutionContext, genesys: GenesysCloudResource, lake: Lake
) -> dg.AssetCheckResult:
    sample = verify_day(lake, date.fromisoformat(context.partition_key), sample_size=MESSAGES_SAMPLE).sample
    client = genesys.get_client()
    mismatched = []
    for record in sample:
        listed = set(fetch_messages_ids(client, record["id"]))
        archived = {m.get("id") for m in record.get("messages") or []}
        if listed != archived or len(record.get("messages") or []) != len(listed):
            mismatched.append({"id": record["id"], "listed": len(listed),
                               "archived": len(record.get("messages") or [])})
    return dg.AssetCheckResult(passed=not mismatched, description=(
        f"{len(sample) - len(mismatched)} of {len(sample)} sampled conversations have every message Genesys "
        "lists"), metadata={
        "sampled": len(sample), "mismatched": dg.MetadataValue.json(mismatched),
    })
