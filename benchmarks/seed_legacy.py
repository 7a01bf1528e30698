"""Scenario 4's baseline: the PureConnect day normalised row by row, the way seed 000's extraction loop is written.

A DB-API cursor, one dict per row, ``.get()`` lookups into code tables, a ``set`` of keys for duplicates,
``zoneinfo`` for local-time rows, ``uuid5`` for the Cloud id, the customer's number HMAC'd per row, wrap-ups and
custom attributes joined through dicts, then ``pa.Table.from_pylist`` and ``pq.write_table`` (zstd). The same
rules as ``normalise_day`` where they matter for cost (day membership, duplicates, quarantine reasons, repairs).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from genesys_assets.lib.legacy_interactions import (
    CLOUD_DIRECTION,
    CONTACT_TYPE,
    DIRECTION_NAMES,
    INTERACTION_NAMESPACE,
    MEDIA_TYPE_NAMES,
)
from genesys_assets.lib.pii import AddressHasher

UTC = timezone.utc  # noqa: UP017 - seed style


def _parse(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromisoformat(str(value))


def _rows(con: sqlite3.Connection, sql: str) -> Any:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    for row in cur:
        yield dict(zip(names, row, strict=True))


def normalise_rows(db_path: Path, queries: dict[str, str], day: date, site_timezone: str, key: str,
                   out: Path) -> dict[str, int]:
    tz = ZoneInfo(site_timezone)
    hasher = AddressHasher(key)
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hi = lo + timedelta(days=1)
    con = sqlite3.connect(db_path)
    wrapups: dict[tuple, list[dict]] = {}
    for w in _rows(con, queries["InteractionWrapup"]):
        wrapups.setdefault((w["SiteID"], w["InteractionIDKey"].strip(), w["SeqNo"]), []).append(w)
    attributes: dict[tuple, dict[str, str]] = {}
    for a in _rows(con, queries["InteractionCustomAttributes"]):
        k = (a["SiteID"], a["InteractionIDKey"].strip(), a["SeqNo"])
        attributes.setdefault(k, {})[a.get("CustomAttributeName") or a.get("Name") or ""] = \
            a.get("CustomAttributeValue") or a.get("Value")
    recordings: dict[str, list[dict]] = {}
    for r in _rows(con, queries["IR_RecordingMedia"]):
        recordings.setdefault((r.get("QueueObjectIdKey") or "").strip(), []).append(r)

    processed: set[tuple] = set()
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for row in _rows(con, queries["InteractionSummary"]):
        ikey = (row.get("InteractionIDKey") or "").strip()
        k = (row.get("SiteID"), ikey, row.get("SeqNo"))
        raw_start, raw_end = row.get("StartDateTimeUTC"), row.get("TerminatedDateTimeUTC")
        start, end = _parse(raw_start), _parse(raw_end)
        local = row.get("StartDTOffset") is None
        if start is not None:
            start = start.replace(tzinfo=tz).astimezone(UTC) if local else start.replace(tzinfo=UTC)
        if end is not None:
            end = end.replace(tzinfo=tz).astimezone(UTC) if local else end.replace(tzinfo=UTC)
        if start is None or not (lo <= start < hi):
            continue
        reason = None
        if not ikey or row.get("SiteID") is None:
            reason = "missing_key"
        elif row.get("Direction") not in CLOUD_DIRECTION:
            reason = "unknown_direction"
        elif row.get("MediaType") not in CONTACT_TYPE:
            reason = "unknown_media_type"
        elif k in processed:
            reason = "duplicate_row"
        processed.add(k)
        legacy_id = f"{row.get('SiteID')}:{ikey}:{row.get('SeqNo')}"
        if reason is not None:
            rejected.append({"reason": reason, "x_legacy_id": legacy_id, "raw": json.dumps(row, default=str)})
            continue
        if end is None:
            end = start + timedelta(milliseconds=row.get("LineDuration") or 0)
        repaired = end < start
        if repaired:
            start, end = end, start
        wraps = wrapups.get(k, [])
        recs = recordings.get(ikey, [])
        duration_ms = int((end - start).total_seconds() * 1000)
        accepted.append({
            "id": str(uuid.uuid5(INTERACTION_NAMESPACE, legacy_id)), "x_legacy_id": legacy_id,
            "legacy_interaction_id_key": ikey, "site_id": row.get("SiteID"), "seq_no": row.get("SeqNo"),
            "legacy_interaction_id": row.get("InteractionID"), "day": day, "start_time": start, "end_time": end,
            "start_time_iso": start.isoformat(), "end_time_iso": end.isoformat(), "duration_ms": duration_ms,
            "duration_seconds": round(duration_ms / 1000), "raw_start": str(raw_start), "raw_end": str(raw_end),
            "local_time_converted": local, "end_before_start_repaired": repaired,
            "direction_code": row.get("Direction"), "legacy_direction": DIRECTION_NAMES.get(row.get("Direction")),
            "direction": CLOUD_DIRECTION.get(row.get("Direction")), "media_type_code": row.get("MediaType"),
            "legacy_media_type": MEDIA_TYPE_NAMES.get(row.get("MediaType")),
            "contact_type": CONTACT_TYPE.get(row.get("MediaType")),
            "reason_for_termination": "normal" if row.get("ConnectedDateTimeUTC") else "abandoned",
            "disposition_code": row.get("Disposition"),
            "agent_legacy_id": (row.get("LastLocalUserId") or "").strip() or None,
            "queue_legacy_id": (row.get("LastAssignedWorkgroupID") or "").strip() or None,
            "skill": (row.get("FirstAssignedAcdSkillSet") or "").strip() or None,
            "customer_hash": hasher.hash(row["RemoteID"]) if row.get("RemoteID") else None,
            "dnis": row.get("DNIS_LocalID"), "account_code": (row.get("AccountCode") or "").strip() or None,
            "wrapup_code": wraps[-1].get("WrapupCode") if wraps else None,
            "wrapup_category": wraps[-1].get("WrapupCategory") if wraps else None,
            "wrapup_codes": [w.get("WrapupCode") for w in wraps],
            "wait_ms": row.get("tQueueWait"), "ivr_ms": row.get("tIVRWait"), "alert_ms": row.get("tAlert"),
            "talk_ms": row.get("tConnected"), "hold_ms": row.get("tHeld"), "acw_ms": row.get("tACW"),
            "line_duration_ms": row.get("LineDuration"),
            "custom_attributes": json.dumps(attributes.get(k, {}), sort_keys=True),
            "recording_id": recs[0].get("RecordingId") if recs else None,
            "recording_uri": recs[0].get("MediaURI") if recs else None, "recording_count": len(recs),
            "schema_version": 1,
        })
    con.close()
    out.mkdir(parents=True, exist_ok=True)
    accepted.sort(key=lambda r: (r["start_time"], r["id"]))
    pq.write_table(pa.Table.from_pylist(accepted), out / "interactions.parquet", compression="zstd")
    pq.write_table(pa.Table.from_pylist(rejected) if rejected else pa.table({"reason": pa.array([], pa.string())}),
                   out / "quarantine.parquet", compression="zstd")
    return {"accepted": len(accepted), "rejected": len(rejected)}
