"""Data-quality rules of the analytics tables: integrity, schema drift, wrap-up totals, previews.

Pure Polars/PyArrow functions, no Dagster: the asset checks call them on the lake's partitions.

* **Integrity**: every row inside its day, no duplicate keys, start <= end; computed lazily so a day is scanned
  in streaming batches, not loaded.
* **Schema drift**: ``DayFlattener`` lists every undeclared key it saw, including real SDK fields the lake does not
  output (``participants[].sessions[].sessionDnis``...). Only keys the SDK models do not know are drift;
  ``SDK_FIELDS`` is the key set of PureCloudPlatformClientV2's Analytics* models (a test holds it to the SDK).
* **Wrap-up totals**: the aggregates query counts a session's ``tAcw`` on the day it was *emitted* (the end of the
  wrap-up), while ``wrapup_facts`` holds the conversations that *started* on the day. So the facts are compared
  by ``segment_end`` inside the day, over this day's and the previous day's partitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl
import pyarrow as pa

from genesys_assets.lib.analytics_plan import day_bounds

# Keys of the SDK models (PureCloudPlatformClientV2 269.0.0), by the level ``DayFlattener`` reports them at.
SDK_FIELDS: dict[str, frozenset[str]] = {
    "conversations[]": frozenset({
        "accessAttributes", "associatedConversationId", "conferenceStart", "consultationConversationIds",
        "conversationEnd", "conversationId", "conversationInitiator", "conversationStart", "customerParticipation",
        "divisionIds", "evaluations", "externalTag", "inactivityTimeout", "knowledgeBaseIds",
        "mediaStatsMinConversationMos", "mediaStatsMinConversationRFactor", "originatingDirection",
        "originatingSocialMediaPublic", "participants", "resolutions", "selfServed", "surveys"}),
    "conversations[].participants[]": frozenset({
        "attributes", "externalContactId", "externalOrganizationId", "flaggedReason", "participantId",
        "participantName", "purpose", "screenRecording", "sessions", "teamId", "userId"}),
    "conversations[].participants[].sessions[]": frozenset({
        "activeSkillIds", "acwSkipped", "addressFrom", "addressOther", "addressSelf", "addressTo",
        "agentAssistantId", "agentBullseyeRing", "agentGroups", "agentOwned", "ani", "assignerId", "authenticated",
        "bargedParticipantId", "bcc", "callbackNumbers", "callbackScheduledTime", "callbackUserName", "cc",
        "cleared", "coachedParticipantId", "cobrowseRole", "cobrowseRoomId", "deliveryPushed", "deliveryStatus",
        "deliveryStatusChangeDate", "destinationAddresses", "detectedSpeechEnd", "detectedSpeechStart",
        "direction", "dispositionAnalyzer", "dispositionName", "dnis", "edgeId", "eligibleAgentCounts",
        "engagementSource", "errorCodeDescription", "extendedDeliveryStatus", "flow", "flowInType", "flowOutType",
        "journeyActionId", "journeyActionMapId", "journeyActionMapVersion", "journeyCustomerId",
        "journeyCustomerIdType", "journeyCustomerSessionId", "journeyCustomerSessionIdType", "mediaBridgeId",
        "mediaCount", "mediaEndpointStats", "mediaType", "messageType", "metrics", "monitoredParticipantId",
        "outboundCampaignId", "outboundContactId", "outboundContactListId", "peerId", "proposedAgents",
        "protocolCallId", "provider", "recording", "remote", "remoteNameDisplayable", "removedSkillIds",
        "requestedRoutings", "roomId", "routingRing", "routingRule", "routingRuleType", "screenMonitoredUserId",
        "screenShareAddressSelf", "screenShareRoomId", "scriptId", "segments", "selectedAgentId",
        "selectedAgentRank", "sessionDnis", "sessionId", "sharingScreen", "skillExpressionId", "skipEnabled",
        "snippetRecording", "timeoutSeconds", "usedRouting", "videoAddressSelf", "videoRoomId",
        "waitingInteractionCounts"}),
    "conversations[].participants[].sessions[].segments[]": frozenset({
        "audioMuted", "conference", "destinationConversationId", "destinationSessionId", "disconnectType",
        "errorCode", "groupId", "properties", "q850ResponseCodes", "queueId", "requestedLanguageId",
        "requestedRoutingSkillIds", "requestedRoutingUserIds", "scoredAgents", "segmentEnd", "segmentStart",
        "segmentType", "sipResponseCodes", "sourceConversationId", "sourceSessionId", "subject", "videoMuted",
        "wrapUpCode", "wrapUpNote", "wrapUpTags"}),
    "conversations[].participants[].sessions[].metrics[]": frozenset({"emitDate", "name", "value"}),
    "conversations[].participants[].sessions[].flow": frozenset({
        "endingLanguage", "entryReason", "entryType", "exitReason", "flowId", "flowName", "flowType", "flowVersion",
        "issuedCallback", "outcomes", "recognitionFailureReason", "startingLanguage", "transferTargetAddress",
        "transferTargetName", "transferType"}),
}

# Optional keys that are normally on every record: a record without one is counted as drift (a warning).
# API key -> (lake table, column); read from Parquet null counts, so no data is scanned.
EXPECTED_OPTIONAL: dict[str, tuple[str, str]] = {
    "conversationEnd": ("conversations", "conversation_end"),
    "divisionIds": ("conversations", "division_ids"),
    "originatingDirection": ("conversations", "originating_direction"),
    "conversationInitiator": ("conversations", "conversation_initiator"),
    "participants[].purpose": ("participants", "purpose"),
    "sessions[].mediaType": ("sessions", "media_type"),
    "sessions[].direction": ("sessions", "direction"),
    "segments[].segmentEnd": ("segments", "segment_end"),
}
# Keys a record cannot do without; the flattener fills a missing participant or session id with "".
REQUIRED_IDS: dict[str, tuple[str, str]] = {
    "participants[].participantId": ("participants", "participant_id"),
    "sessions[].sessionId": ("sessions", "session_id"),
}

# Per table: (unique key, timestamp that must lie inside the day, (start, end) pairs that must be ordered).
TABLE_RULES: dict[str, tuple[tuple[str, ...], str, tuple[tuple[str, str], ...]]] = {
    "conversations": (("conversation_id",), "conversation_start", (("conversation_start", "conversation_end"),)),
    "participants": (("conversation_id", "participant_id"), "conversation_start", ()),
    "sessions": (("conversation_id", "participant_id", "session_id"), "conversation_start", ()),
    "segments": (("conversation_id", "participant_id", "session_id", "segment_start", "segment_type"),
                 "conversation_start", (("segment_start", "segment_end"),)),
    "wrapup_facts": (("conversation_id", "participant_id", "session_id", "segment_start"), "conversation_start",
                     (("segment_start", "segment_end"),)),
}


def split_unknown_fields(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """(drift: keys the SDK does not know, known: real SDK fields the lake simply does not output)."""
    drift, known = [], []
    for path in sorted(set(paths)):
        parent, _, key = path.rpartition(".")
        (known if key in SDK_FIELDS.get(parent, frozenset()) else drift).append(path)
    return drift, known


def integrity_report(lf: pl.LazyFrame, table: str, day: date, *, sample: int = 5) -> dict[str, Any]:
    """Rows outside the day, duplicate keys and start > end of one table's day, with example conversation ids."""
    key, ts, ordered = TABLE_RULES[table]
    lo, hi = day_bounds(day)
    outside = ~pl.col(ts).is_between(pl.lit(lo), pl.lit(hi), closed="left") | pl.col(ts).is_null()
    disorder = pl.lit(False)
    for start, end in ordered:
        disorder = disorder | (pl.col(end).is_not_null() & (pl.col(start) > pl.col(end)))
    flags = lf.select(pl.col("conversation_id"), outside.alias("_outside"), disorder.alias("_disorder"))
    counts = flags.select(pl.len().alias("rows"), pl.col("_outside").sum().alias("outside"),
                          pl.col("_disorder").sum().alias("disorder")).collect(engine="streaming").row(0, named=True)
    dup = (lf.group_by(list(key)).agg(pl.len().alias("_n")).filter(pl.col("_n") > 1))
    dup_stats = dup.select(pl.len().alias("keys"), (pl.col("_n") - 1).sum().alias("extra")).collect(
        engine="streaming").row(0, named=True)

    def examples(flag: str) -> list[str]:
        if not counts[flag.removeprefix("_")]:
            return []
        return flags.filter(pl.col(flag)).select("conversation_id").head(sample).collect()["conversation_id"].to_list()

    dup_examples = (dup.select("conversation_id").head(sample).collect()["conversation_id"].to_list()
                    if dup_stats["keys"] else [])
    return {
        "rows": int(counts["rows"]), "outside_day": int(counts["outside"] or 0),
        "start_after_end": int(counts["disorder"] or 0), "duplicate_keys": int(dup_stats["keys"] or 0),
        "duplicate_rows": int(dup_stats["extra"] or 0), "examples_outside_day": examples("_outside"),
        "examples_start_after_end": examples("_disorder"), "examples_duplicate": dup_examples,
    }


def missing_optional_counts(null_counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """``{api key: records without it}`` for the normally-present optional keys (from per-column null counts)."""
    out = {}
    for api_key, (table, column) in EXPECTED_OPTIONAL.items():
        n = int(null_counts.get(table, {}).get(column, 0))
        if n:
            out[api_key] = n
    return out


def missing_required_ids(lfs: Mapping[str, pl.LazyFrame], sample: int = 10) -> dict[str, list[str]]:
    """``{api key: conversation ids}`` of participants / sessions that arrived without their id."""
    out: dict[str, list[str]] = {}
    for api_key, (table, column) in REQUIRED_IDS.items():
        lf = lfs.get(table)
        if lf is None:
            continue
        ids = (lf.filter(pl.col(column) == "").select("conversation_id").unique(maintain_order=True)
               .head(sample).collect()["conversation_id"].to_list())
        if ids:
            out[api_key] = ids
    return out


def aggregate_totals(answer: Mapping[str, Any], metric: str = "tAcw") -> dict[str, tuple[int, int]]:
    """``{wrap-up code id: (count, sum ms)}`` of ``metric`` from an aggregates answer grouped by wrapUpCode."""
    out: dict[str, tuple[int, int]] = {}
    for result in answer.get("results") or []:
        code = (result.get("group") or {}).get("wrapUpCode")
        if not code:
            continue  # sessions without a wrap-up code
        count = total = 0
        for bucket in result.get("data") or []:
            for m in bucket.get("metrics") or []:
                if m.get("metric") == metric:
                    stats = m.get("stats") or {}
                    count += int(stats.get("count") or 0)
                    total += round(float(stats.get("sum") or 0))
        if count:
            prev = out.get(code, (0, 0))
            out[code] = (prev[0] + count, prev[1] + total)
    return out


def facts_totals(facts: Sequence[pl.LazyFrame], day: date) -> dict[str, tuple[int, int]]:
    """``{wrap-up code id: (count, sum t_acw_ms)}`` of the wrap-ups that ended inside ``day``."""
    lo, hi = day_bounds(day)
    if not facts:
        return {}
    frame = (pl.concat([f.select("wrap_up_code_id", "segment_end", "t_acw_ms") for f in facts])
             .filter(pl.col("segment_end").is_between(pl.lit(lo), pl.lit(hi), closed="left")
                     & pl.col("wrap_up_code_id").is_not_null() & pl.col("t_acw_ms").is_not_null())
             .group_by(pl.col("wrap_up_code_id").cast(pl.String))
             .agg(pl.len().alias("n"), pl.col("t_acw_ms").sum().alias("ms"))
             .collect(engine="streaming"))
    return {r["wrap_up_code_id"]: (int(r["n"]), int(r["ms"])) for r in frame.iter_rows(named=True)}


def compare_totals(facts: Mapping[str, tuple[int, int]], aggregates: Mapping[str, tuple[int, int]]
                   ) -> list[dict[str, Any]]:
    """One row per code where the facts and the aggregates disagree (count or summed milliseconds)."""
    rows = []
    for code in sorted(set(facts) | set(aggregates)):
        f, a = facts.get(code, (0, 0)), aggregates.get(code, (0, 0))
        if f != a:
            rows.append({"wrap_up_code_id": code, "facts_count": f[0], "aggregates_count": a[0],
                         "facts_t_acw_ms": f[1], "aggregates_t_acw_ms": a[1]})
    return rows


def markdown_preview(table: pa.Table | pl.DataFrame, rows: int = 5, width: int = 40) -> str:
    """The first rows as a Markdown table (values cut to ``width`` characters)."""
    df = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    df = df.head(rows)

    def cell(v: Any) -> str:
        text = "" if v is None else str(v)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines)


def schema_markdown(schema: pa.Schema) -> str:
    """An Arrow schema as a Markdown list (type and nullability per column)."""
    return "\n".join(f"- `{f.name}`: `{f.type}`{'' if f.nullable else ' (not null)'}" for f in schema)
