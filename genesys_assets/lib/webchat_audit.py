"""Audit events of the archive: written to the lake (the system of record) and loaded into the warehouse.

An event is one JSON file under ``audit/events/source=<source>/day=<YYYY-MM-DD>/`` (one per completed run, never
overwritten), so the warehouse ``audit_events`` table can always be rebuilt from the lake. Loading is an upsert
by ``event_id``: loading the same day twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from genesys_assets.lib.warehouse import replace_rows

ARCHIVE_EXPORT_COMPLETED = "ARCHIVE_EXPORT_COMPLETED"
AUDIT_TABLE = "audit_events"

AUDIT_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("event_time", pa.timestamp("ms", tz="UTC")),
    ("source", pa.string()),
    ("day", pa.date32()),
    ("records", pa.int64()),
    ("bytes", pa.int64()),
    ("destination", pa.string()),
    ("data_classification", pa.string()),
    ("retention_directive", pa.string()),
    ("region", pa.string()),
    ("details", pa.string()),
])

_DDL = f"""CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
    event_id VARCHAR NOT NULL, event_type VARCHAR NOT NULL, event_time TIMESTAMPTZ NOT NULL,
    source VARCHAR NOT NULL, day DATE, records BIGINT, bytes BIGINT, destination VARCHAR,
    data_classification VARCHAR, retention_directive VARCHAR, region VARCHAR, details VARCHAR)"""


def audit_event(*, event_type: str, event_time: str, source: str, day: date, records: int, bytes_: int,
                destination: str, data_classification: str, retention_directive: str, region: str,
                details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One audit event (the fields the audit log line and the table share)."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "event_time": event_time,
        "source": source,
        "day": day.isoformat(),
        "records": records,
        "bytes": bytes_,
        "destination": destination,
        "data_classification": data_classification,
        "retention_directive": retention_directive,
        "region": region,
        "details": dict(details or {}),
    }


def audit_prefix(source: str, day: date) -> str:
    return f"audit/events/source={source}/day={day.isoformat()}"


def audit_path(event: Mapping[str, Any]) -> str:
    """Lake path of an event: sorted by time within its day, unique by id."""
    stamp = str(event["event_time"]).replace(":", "").replace("-", "").replace(".", "")
    return f"{audit_prefix(event['source'], date.fromisoformat(event['day']))}/{stamp}-{event['event_id']}.json"


def encode(event: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event)


def audit_log_line(event: Mapping[str, Any]) -> str:
    """The audit log line: one JSON object (event type, time, day, records, bytes, destination, ...)."""
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()


def events_table(events: Iterable[Mapping[str, Any]]) -> pa.Table:
    rows = []
    for e in events:
        rows.append({**{k: e.get(k) for k in AUDIT_SCHEMA.names if k != "details"},
                     "event_time": datetime.fromisoformat(str(e["event_time"])),
                     "day": date.fromisoformat(str(e["day"])),
                     "details": orjson.dumps(e.get("details") or {}).decode()})
    return pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA)


def upsert_events(connection: duckdb.DuckDBPyConnection, events: Iterable[Mapping[str, Any]]) -> int:
    """Insert events into ``audit_events`` (created if missing), replacing rows with the same ids."""
    table = events_table(events)
    connection.execute(_DDL)
    if table.num_rows == 0:
        return 0
    replace_rows(connection, AUDIT_TABLE, "event_id", table.column("event_id").to_pylist(), table)
    return table.num_rows
