"""Canonical PureConnect records → migration-target payloads, batches with content-derived request ids, and the
posting loop that never loses or doubles a record.

* Payloads are built in Polars (joins with the id maps and the recordings manifest, then one JSON document per
  record with ``struct.json_encode``); records are ordered by (startTime, id) and cut into batches of 100.
* ``X-Request-ID`` = UUIDv5 of the batch body's SHA-256: a retried or replayed batch carries the same id, so the
  target answers the stored result instead of storing twice; a changed batch gets a new id.
* A 400 means an invalid record and nothing stored: the batch is split in halves until each invalid record
  stands alone, which is then quarantined with the target's message; every valid record is still posted.
* A 413 (body too large) is bisected the same way; a record too large on its own is quarantined as
  ``oversized_record`` (and records whose payload alone exceeds ``MAX_BODY_BYTES`` are never sent).
* A 403 for historical import stops the run with :class:`HistoricalImportDisabled`, which says which setting to
  enable; nothing has been stored for the rejected batch.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import polars as pl

from genesys_assets.lib.legacy_id_maps import AGENTS, QUEUES, WRAPUPS, IdMaps
from genesys_assets.lib.legacy_interactions import cloud_ids
from genesys_assets.lib.progress import Progress

log = logging.getLogger(__name__)

MAX_BATCH = 100
MAX_BODY_BYTES = 500_000
INTERACTIONS_PATH = "/api/v2/interactions"
SETTINGS_PATH = "/api/v2/interactions/settings"
BATCH_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:genesys-assets:pureconnect:ingest-batch")
SEGMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:genesys-assets:pureconnect:segment")
HISTORICAL_IMPORT_CODE = "historical.import.disabled"
ENABLE_HISTORICAL_IMPORT = (
    "Historical import is disabled on the migration target, so interactions with past timestamps are refused "
    "(403). Enable the 'allowHistoricalImport' setting (Genesys: the allow-historical-import flag of the Data "
    "Export configuration; API: PUT /api/v2/interactions/settings {\"allowHistoricalImport\": true}, which needs "
    "the migration:settings:edit permission), then re-run this day. Nothing was stored for it."
)
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"

# Ledger and cloud-quarantine outcomes.
CREATED, UPDATED, UNCHANGED, REJECTED, SKIPPED = "created", "updated", "unchanged", "rejected", "skipped"
UNMAPPED_QUEUE = "unmapped_queue"
INVALID_RECORD = "invalid_record"
TARGET_REJECTED = "target_rejected"
OVERSIZED_RECORD = "oversized_record"

LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date, "id": pl.String, "x_legacy_id": pl.String, "request_id": pl.String, "outcome": pl.String,
    "agent_mapping": pl.String, "queue_mapping": pl.String, "wrapup_mapping": pl.String,
    "agent_user_id": pl.String, "queue_id": pl.String, "recording_key": pl.String,
}
BATCH_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date, "run_id": pl.String, "request_id": pl.String, "records": pl.Int32, "http_status": pl.Int32,
    "outcome": pl.String, "replayed": pl.Boolean, "created": pl.Int32, "updated": pl.Int32,
    "unchanged": pl.Int32, "message": pl.String,
}
CLOUD_QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date, "outcome": pl.String, "reason": pl.String, "detail": pl.String, "id": pl.String,
    "x_legacy_id": pl.String, "payload": pl.String,
}


class HistoricalImportDisabled(RuntimeError):
    """The target refuses past timestamps until historical import is enabled."""


def _iso(col: str) -> pl.Expr:
    return pl.col(col).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")


def resolve_mappings(canonical: pl.DataFrame, maps: IdMaps, unmapped_queue_rule: str) -> pl.DataFrame:
    """Agent, queue and wrap-up Cloud ids by legacy id; unmapped agents → fallback user, unmapped queues → the
    default queue or ``skip`` (by rule). Never by phone number."""
    agents = maps.valid(AGENTS).rename({"legacy_id": "agent_legacy_id", "cloud_id": "_agent_id",
                                        "cloud_name": "_agent_name"})
    queues = maps.valid(QUEUES).rename({"legacy_id": "queue_legacy_id", "cloud_id": "_queue_id",
                                        "cloud_name": "_queue_name"})
    wrapups = maps.valid(WRAPUPS).rename({"legacy_id": "wrapup_code", "cloud_id": "wrapup_code_id",
                                          "cloud_name": "wrapup_code_name"})
    frame = (canonical.join(agents, on="agent_legacy_id", how="left")
             .join(queues, on="queue_legacy_id", how="left").join(wrapups, on="wrapup_code", how="left"))
    has_agent, has_queue = pl.col("agent_legacy_id").is_not_null(), pl.col("queue_legacy_id").is_not_null()
    default_ok = unmapped_queue_rule == "default_queue"
    return frame.with_columns(
        pl.when(~has_agent).then(pl.lit("none")).when(pl.col("_agent_id").is_not_null()).then(pl.lit("mapped"))
        .otherwise(pl.lit("fallback")).alias("agent_mapping"),
        pl.when(has_agent).then(pl.coalesce("_agent_id", pl.lit(maps.fallback_user_id))).alias("agent_user_id"),
        pl.when(has_agent).then(pl.coalesce("_agent_name", pl.lit(maps.fallback_user_name))).alias("agent_name"),
        pl.when(~has_queue).then(pl.lit("none")).when(pl.col("_queue_id").is_not_null()).then(pl.lit("mapped"))
        .otherwise(pl.lit("default" if default_ok else "skipped")).alias("queue_mapping"),
        pl.when(has_queue).then(pl.coalesce("_queue_id", pl.lit(maps.default_queue_id if default_ok else None)))
        .alias("queue_id"),
        pl.when(has_queue).then(pl.coalesce("_queue_name", pl.lit(maps.default_queue_name if default_ok else None)))
        .alias("queue_name"),
        pl.when(pl.col("wrapup_code").is_null()).then(pl.lit("none"))
        .when(pl.col("wrapup_code_id").is_not_null()).then(pl.lit("mapped")).otherwise(pl.lit("unmapped"))
        .alias("wrapup_mapping"),
    ).drop("_agent_id", "_agent_name", "_queue_id", "_queue_name")


def _recording_struct() -> pl.Expr:
    staged = pl.col("rec_status") == "staged"
    recording = pl.struct(
        pl.col("recording_id").alias("id"), pl.lit("call").alias("type"), pl.lit("complete").alias("status"),
        pl.format("s3://{}/{}", pl.col("rec_bucket"), pl.col("rec_key")).alias("url"),
        pl.col("rec_content_type").alias("contentType"), pl.col("rec_sha256").alias("sha256"),
        pl.col("rec_duration_ms").alias("duration"), pl.col("rec_tags").alias("retentionTags"),
    )
    return pl.when(staged).then(recording)


def _segments(resolved: pl.DataFrame, manifest: pl.DataFrame | None) -> pl.DataFrame:
    """Each interaction's segments: one per recording in the manifest (the canonical record's own recording first,
    keeping the segment id it always had), or one without a recording; with the staged recordings' keys and the
    quarantined ones' reasons. Every recording linked to the interaction is in its payload, not only the first."""
    rec = (manifest if manifest is not None else pl.DataFrame(schema={
        "recording_id": pl.String, "interaction_id": pl.String, "status": pl.String, "reason": pl.String,
        "bucket": pl.String, "key": pl.String, "content_type": pl.String, "sha256": pl.String,
        "duration_ms": pl.Int64, "tags": pl.String}))
    rec = rec.select(
        pl.col("interaction_id").alias("id"), pl.col("recording_id").alias("_rec_id"),
        pl.col("status").alias("rec_status"), pl.col("reason").alias("rec_reason"),
        pl.col("bucket").alias("rec_bucket"), pl.col("key").alias("rec_key"),
        pl.col("content_type").alias("rec_content_type"), pl.col("sha256").alias("rec_sha256"),
        pl.col("duration_ms").alias("rec_duration_ms"), pl.col("tags").alias("rec_tags"),
    )
    frame = (resolved.select("id", "recording_id", "contact_type", "start_time_iso", "end_time_iso")
             .join(rec, on="id", how="left")
             .sort(["id", pl.col("_rec_id") != pl.col("recording_id"), "_rec_id"], nulls_last=False))
    names = frame.select(pl.when(pl.int_range(pl.len()).over("id") == 0).then(pl.col("id"))
                         .otherwise(pl.format("{}:{}", "id", "_rec_id"))).to_series()
    segment_ids = cloud_ids(names, SEGMENT_NAMESPACE)
    staged = pl.col("rec_status") == "staged"
    return (frame.with_columns(segment_ids.alias("_segment_id"),
                               pl.col("_rec_id").alias("recording_id"))
            .group_by("id", maintain_order=True).agg(
                pl.struct(pl.col("_segment_id").alias("id"), pl.col("contact_type").alias("type"),
                          pl.col("start_time_iso").alias("start"), pl.col("end_time_iso").alias("end"),
                          _recording_struct().alias("recording")).alias("_segments"),
                pl.col("rec_key").filter(staged).str.join(",").alias("rec_key"),
                pl.col("rec_reason").drop_nulls().str.join("; ").alias("rec_reason"))
            .with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in ("rec_key", "rec_reason")))


def build_payloads(resolved: pl.DataFrame, manifest: pl.DataFrame | None) -> pl.DataFrame:
    """One JSON payload per record (column ``payload``), ordered by (startTime, id)."""
    frame = resolved.join(_segments(resolved, manifest), on="id", how="left", maintain_order="left")
    wrapup = pl.when(pl.col("wrapup_code_id").is_not_null()).then(
        pl.struct(pl.col("wrapup_code_id").alias("id"), pl.col("wrapup_code_name").alias("name")))
    agent = pl.when(pl.col("agent_user_id").is_not_null()).then(pl.struct(
        pl.lit("agent").alias("type"), pl.col("agent_user_id").alias("id"), pl.col("agent_name").alias("name"),
        wrapup.alias("wrapUpCode"), pl.col("agent_mapping").alias("mapping")))
    customer = pl.struct(
        pl.lit("customer").alias("type"), pl.lit(None, dtype=pl.String).alias("id"),
        pl.lit(None, dtype=pl.String).alias("name"),
        pl.lit(None, dtype=pl.Struct({"id": pl.String, "name": pl.String})).alias("wrapUpCode"),
        pl.lit(None, dtype=pl.String).alias("mapping"))
    queue = pl.when(pl.col("queue_id").is_not_null()).then(
        pl.struct(pl.col("queue_id").alias("id"), pl.col("queue_name").alias("name")))
    attributes = pl.struct(
        "x_legacy_id",
        pl.col("legacy_interaction_id_key").alias("x_legacy_interaction_id_key"),
        pl.col("site_id").alias("x_legacy_site_id"), pl.col("seq_no").alias("x_legacy_seq_no"),
        pl.col("raw_start").alias("x_raw_start_time"), pl.col("raw_end").alias("x_raw_end_time"),
        pl.col("start_offset_seconds").alias("x_raw_start_offset_seconds"),
        pl.col("timezone_source").alias("x_timezone_source"),
        pl.col("end_before_start_repaired").alias("x_end_before_start_repaired"),
        pl.col("agent_legacy_id").alias("x_legacy_agent_id"), pl.col("queue_legacy_id").alias("x_legacy_queue_id"),
        pl.col("wrapup_code").alias("x_legacy_wrapup_code"), pl.col("skill").alias("x_legacy_skill"),
        pl.col("disposition_code").alias("x_legacy_disposition"),
        pl.col("customer_hash").alias("x_customer_hash"),
        pl.col("rec_reason").alias("x_recording_quarantine_reason"),
    )
    payload = pl.struct(
        "id", "direction", pl.col("start_time_iso").alias("startTime"), pl.col("end_time_iso").alias("endTime"),
        pl.col("duration_seconds").alias("duration"), pl.col("contact_type").alias("contactType"),
        pl.col("reason_for_termination").alias("reasonForTermination"),
        queue.alias("queue"), pl.col("agent_user_id").alias("agentId"),
        pl.concat_list(agent, customer).list.drop_nulls().alias("participants"),
        pl.struct(queue.alias("queue"), pl.col("skill").alias("skill")).alias("routing"),
        pl.col("_segments").alias("segments"),
        attributes.alias("customAttributes"),
        pl.col("retention_tags").alias("retentionTags"),
    ).struct.json_encode()
    return frame.with_columns(payload.alias("payload")).sort(["start_time", "id"])


def invalid_records(payloads: pl.DataFrame) -> pl.DataFrame:
    """Records the target would refuse (id not a UUID, timestamps not ISO UTC, end before start), found before
    posting so a batch is not spent on them."""
    problem = (pl.when(~pl.col("id").str.contains(_UUID)).then(pl.lit("id is not a UUID"))
               .when(~pl.col("start_time_iso").fill_null("").str.contains(_ISO_UTC)).then(pl.lit("bad startTime"))
               .when(~pl.col("end_time_iso").fill_null("").str.contains(_ISO_UTC)).then(pl.lit("bad endTime"))
               .when(pl.col("end_time") < pl.col("start_time")).then(pl.lit("end before start")))
    return payloads.with_columns(problem.alias("problem")).filter(pl.col("problem").is_not_null())


def oversized_records(payloads: pl.DataFrame, max_bytes: int = MAX_BODY_BYTES) -> pl.DataFrame:
    """Records whose payload alone, in a one-record batch, exceeds ``max_bytes`` (the target would answer 413
    whatever the batch): quarantined as ``oversized_record`` before posting, with the size in ``problem``."""
    size = pl.col("payload").str.len_bytes() + len(batch_body([]))
    return payloads.with_columns(
        pl.format("payload of {} bytes exceeds the {}-byte request limit", size, pl.lit(max_bytes)).alias("problem"),
    ).filter(size > max_bytes)


def batch_body(payloads: list[str]) -> bytes:
    return b'{"interactions":[' + ",".join(payloads).encode() + b"]}"


def request_id(body: bytes) -> str:
    """The batch's X-Request-ID: derived from its contents, so a retry is recognised, never doubled."""
    return str(uuid.uuid5(BATCH_NAMESPACE, hashlib.sha256(body).hexdigest()))


def batches(payloads: list[str], max_batch: int = MAX_BATCH, max_bytes: int = MAX_BODY_BYTES) -> list[list[int]]:
    """Indices of ``payloads`` cut into batches of at most ``max_batch`` records and ``max_bytes`` bytes."""
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, p in enumerate(payloads):
        if current and (len(current) == max_batch or size + len(p) + 1 > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(i)
        size += len(p) + 1
    if current:
        out.append(current)
    return out


@dataclass
class PostOutcome:
    """Everything the posting loop learned: per-record outcomes and one row per request sent."""

    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (outcome, request id)
    rejected: dict[str, str] = field(default_factory=dict)  # id -> target's message
    reasons: dict[str, str] = field(default_factory=dict)  # rejected id -> quarantine reason code
    batches: list[dict[str, Any]] = field(default_factory=list)


Poster = Callable[[bytes, str], tuple[int, dict[str, Any], bool]]
"""(body, request id) -> (status, JSON answer, replayed); raises for 403 historical import."""


def post_records(ids: list[str], payloads: list[str], post: Poster, outcome: PostOutcome | None = None) -> PostOutcome:
    """Post ``payloads`` in batches; on 400 or 413 bisect until each refused record is alone and rejected."""
    outcome = outcome or PostOutcome()
    progress = Progress("Interaction records posted", log, len(payloads))
    for batch in batches(payloads):
        _post_batch([ids[i] for i in batch], [payloads[i] for i in batch], post, outcome)
        progress.advance(len(batch))
    return outcome


def _post_batch(ids: list[str], payloads: list[str], post: Poster, outcome: PostOutcome) -> None:
    body = batch_body(payloads)
    rid = request_id(body)
    status, answer, replayed = post(body, rid)
    counts = {k: int(answer.get(k) or 0) for k in (CREATED, UPDATED, UNCHANGED)} if status == 200 else {}
    outcome.batches.append({"request_id": rid, "records": len(ids), "http_status": status,
                            "outcome": "stored" if status == 200 else "rejected", "replayed": replayed,
                            "message": None if status == 200 else str(answer.get("message") or ""), **counts})
    if status == 200:
        by_id = {r.get("id"): r.get("status") for r in answer.get("results") or []}
        for i in ids:
            outcome.outcomes[i] = (by_id.get(i) or CREATED, rid)
        return
    if status not in (400, 413):
        raise RuntimeError(f"POST {INTERACTIONS_PATH} answered {status}: {answer.get('message')}")
    if len(ids) == 1:
        outcome.rejected[ids[0]] = f"the target answered {status}: {answer.get('message')}"
        outcome.reasons[ids[0]] = OVERSIZED_RECORD if status == 413 else TARGET_REJECTED
        outcome.outcomes[ids[0]] = (REJECTED, rid)
        return
    half = len(ids) // 2
    _post_batch(ids[:half], payloads[:half], post, outcome)
    _post_batch(ids[half:], payloads[half:], post, outcome)


def ledger_frame(day: date, payloads: pl.DataFrame, outcome: PostOutcome) -> pl.DataFrame:
    """The legacy → Cloud mapping with each record's outcome and batch (no wall-clock: re-runs compare equal)."""
    ids = list(outcome.outcomes)
    results = pl.DataFrame({"id": ids, "outcome": [outcome.outcomes[i][0] for i in ids],
                            "request_id": [outcome.outcomes[i][1] for i in ids]},
                           schema={"id": pl.String, "outcome": pl.String, "request_id": pl.String})
    frame = payloads.join(results, on="id", how="inner").with_columns(
        pl.lit(day).alias("day"), pl.col("rec_key").alias("recording_key"))
    return frame.select(list(LEDGER_SCHEMA)).cast(LEDGER_SCHEMA).sort("id")  # type: ignore[arg-type]


def decode_answer(content: bytes) -> dict[str, Any]:
    """The target's JSON answer (an empty or non-JSON body becomes a message)."""
    try:
        parsed = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        return {"message": content[:300].decode("utf-8", "replace")}
    return parsed if isinstance(parsed, dict) else {}
