"""The migration target: the batch ingest contract of seeds 000/001, persisted in SQLite.

**No public Genesys Cloud API creates historical interactions.** ``POST /api/v2/interactions`` is the seeds'
invented contract, kept as the project's migration target so the PureConnect migration has a real thing to
write to, replay against and reconcile with. Its rules (all enforced here):

- ``POST /api/v2/interactions`` with ``{"interactions": [...]}``, 1 to 100 records per request.
- ``X-Request-ID`` makes a request idempotent: the same id with the same body replays the first answer and
  stores nothing twice; the same id with a different body is a 409.
- 403 until historical import is enabled (``PUT /api/v2/interactions/settings {"allowHistoricalImport": true}``
  or the emulator's ``historical_import_enabled=True``); the setting is persisted like an org setting.
- 400 naming every invalid record (``id`` not a UUID, ``startTime``/``endTime`` not ISO-8601 UTC, end before
  start); nothing from that batch is stored.
- Records are keyed by ``id``: posting an id again replaces it (``updated``) or leaves it (``unchanged``), so a
  replayed day never doubles.
- ``GET /api/v2/interactions/{id}`` and ``GET /api/v2/interactions?pageSize&pageNumber[&interval=a/b]`` read back.

Permissions (chosen for the emulator, since the API is not real): ``migration:interaction:add`` (POST),
``migration:interaction:view`` (GET), ``migration:settings:edit`` (PUT settings), ``migration:settings:view``.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

MAX_BATCH = 100
PERMISSION_ADD = "migration:interaction:add"
PERMISSION_VIEW = "migration:interaction:view"
PERMISSION_SETTINGS_EDIT = "migration:settings:edit"
PERMISSION_SETTINGS_VIEW = "migration:settings:view"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|\+00:00)$")


@dataclass
class Answer:
    """An HTTP answer: status, JSON body, extra headers."""

    status: int
    body: dict
    headers: dict[str, str]


def _ts(value: object) -> datetime | None:
    if not isinstance(value, str) or not _ISO_UTC.match(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def validate_record(n: int, rec: object) -> list[dict]:
    """ErrorBody ``details`` for one record; empty when the record is valid."""
    if not isinstance(rec, dict):
        return [{"errorCode": "invalid.record", "fieldName": f"interactions[{n}]"}]
    problems = []
    rid = rec.get("id")
    ent = str(rid) if rid is not None else None
    if not isinstance(rid, str) or not _UUID.match(rid):
        problems.append({"errorCode": "invalid.id", "fieldName": f"interactions[{n}].id",
                         **({"entityId": ent} if ent else {})})
    start, end = _ts(rec.get("startTime")), _ts(rec.get("endTime"))
    for name, parsed in (("startTime", start), ("endTime", end)):
        if parsed is None:
            problems.append({"errorCode": "invalid.date", "fieldName": f"interactions[{n}].{name}",
                             **({"entityId": ent} if ent else {})})
    if start and end and end < start:
        problems.append({"errorCode": "end.before.start", "fieldName": f"interactions[{n}].endTime",
                         **({"entityId": ent} if ent else {})})
    return problems


class MigrationTarget:
    """The ingest store. Thread-safe; one SQLite file under the emulator's state dir."""

    def __init__(self, path: Path, historical_import_enabled: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS interactions (
                id TEXT PRIMARY KEY, start_time TEXT NOT NULL, record BLOB NOT NULL,
                request_id TEXT, imported_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS interactions_start ON interactions(start_time, id);
            CREATE TABLE IF NOT EXISTS requests (
                request_id TEXT PRIMARY KEY, body_sha256 TEXT NOT NULL, status INTEGER NOT NULL,
                answer BLOB NOT NULL, at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
        self._lock = threading.Lock()
        if historical_import_enabled:
            self.set_settings({"allowHistoricalImport": True})

    def close(self) -> None:
        self._db.close()

    # ----------------------------------------------------------------------------------------- settings

    def settings(self) -> dict:
        row = self._db.execute("SELECT value FROM settings WHERE key='allowHistoricalImport'").fetchone()
        return {"allowHistoricalImport": bool(row and row[0] == "true")}

    def set_settings(self, body: dict) -> dict:
        value = body.get("allowHistoricalImport")
        if not isinstance(value, bool):
            raise ValueError("allowHistoricalImport must be true or false")
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings VALUES ('allowHistoricalImport', ?)",
                             ("true" if value else "false",))
        return self.settings()

    # ----------------------------------------------------------------------------------------- ingest

    def ingest(self, raw_body: bytes, request_id: str | None) -> Answer:
        """Validate and store one batch; replay the stored answer for a known ``X-Request-ID``."""
        digest = hashlib.sha256(raw_body).hexdigest()
        with self._lock:
            if request_id:
                row = self._db.execute("SELECT body_sha256, status, answer FROM requests WHERE request_id=?",
                                       (request_id,)).fetchone()
                if row:
                    if row[0] != digest:
                        return Answer(409, _error(409, "conflict", f"X-Request-ID {request_id} was already used "
                                                  "with a different body; use a new request id"), {})
                    return Answer(row[1], orjson.loads(row[2]), {"X-Idempotent-Replay": "true"})
            answer = self._ingest(raw_body, request_id)
            if request_id and answer.status < 500 and answer.status != 403:
                # Failed validations are remembered too: replaying them must not store anything either.
                self._db.execute("INSERT INTO requests VALUES (?, ?, ?, ?, ?)",
                                 (request_id, digest, answer.status, orjson.dumps(answer.body), time.time()))
            return answer

    def _ingest(self, raw_body: bytes, request_id: str | None) -> Answer:
        if not self.settings()["allowHistoricalImport"]:
            return Answer(403, _error(
                403, "historical.import.disabled",
                "Historical import is disabled for this organization: interactions with past timestamps are "
                "refused. Enable it with PUT /api/v2/interactions/settings {\"allowHistoricalImport\": true} "
                "(permission migration:settings:edit), or start the sandbox with historical_import_enabled=True."),
                {})
        try:
            body = orjson.loads(raw_body)
        except orjson.JSONDecodeError:
            return Answer(400, _error(400, "bad.request", "The request body is not valid JSON"), {})
        records = body.get("interactions") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return Answer(400, _error(400, "bad.request", "Body must be {\"interactions\": [1..100 records]}"), {})
        if len(records) > MAX_BATCH:
            return Answer(400, _error(400, "batch.too.large",
                                      f"A batch holds at most {MAX_BATCH} interactions, got {len(records)}"), {})
        details: list[dict] = []
        errors: list[dict] = []
        seen: set[str] = set()
        for n, rec in enumerate(records):
            problems = validate_record(n, rec)
            rid = rec.get("id") if isinstance(rec, dict) else None
            if isinstance(rid, str) and rid in seen:
                problems.append({"errorCode": "duplicate.id", "fieldName": f"interactions[{n}].id",
                                 "entityId": rid})
            if isinstance(rid, str):
                seen.add(rid)
            if problems:
                details.extend(problems)
                errors.append(_error(400, "invalid.interaction", f"interactions[{n}] (id {rid!r}) is invalid: "
                                     + ", ".join(p["errorCode"] + " " + p["fieldName"] for p in problems)))
        if details:
            err = _error(400, "bad.request", f"{len(errors)} of {len(records)} interactions are invalid; nothing "
                         "from this batch was stored")
            err["details"] = details
            err["errors"] = errors
            return Answer(400, err, {})
        results = []
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for rec in records:
                blob = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
                old = self._db.execute("SELECT record FROM interactions WHERE id=?", (rec["id"],)).fetchone()
                if old is None:
                    outcome = "created"
                elif bytes(old[0]) == blob:
                    outcome = "unchanged"
                else:
                    outcome = "updated"
                if outcome != "unchanged":
                    self._db.execute("INSERT OR REPLACE INTO interactions VALUES (?, ?, ?, ?, ?)",
                                     (rec["id"], _ts(rec["startTime"]).isoformat(), blob,  # type: ignore[union-attr]
                                      request_id, now))
                results.append({"id": rec["id"], "status": outcome})
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        counts = {k: sum(1 for r in results if r["status"] == k) for k in ("created", "updated", "unchanged")}
        return Answer(200, {"requestId": request_id, "results": results, **counts}, {})

    # ----------------------------------------------------------------------------------------- read back

    def get(self, interaction_id: str) -> dict | None:
        row = self._db.execute("SELECT record FROM interactions WHERE id=?", (interaction_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def page(self, page_size: int, page_number: int, start_from: str | None = None,
             start_to: str | None = None) -> tuple[list[dict], int]:
        where, args = "", []
        if start_from and start_to:
            where, args = "WHERE start_time >= ? AND start_time < ?", [start_from, start_to]
        total = self._db.execute(f"SELECT count(*) FROM interactions {where}", args).fetchone()[0]
        rows = self._db.execute(f"SELECT record FROM interactions {where} ORDER BY start_time, id LIMIT ? OFFSET ?",
                                [*args, page_size, (page_number - 1) * page_size]).fetchall()
        return [orjson.loads(r[0]) for r in rows], total

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM interactions").fetchone()[0]


def refusal(batch_size: int, refused: list[tuple[int, object]]) -> dict:
    """The 400 the target answers when it refuses records of a batch (nothing from the batch is stored)."""
    err = _error(400, "bad.request", f"{len(refused)} of {batch_size} interactions are invalid; nothing from this "
                 "batch was stored")
    err["details"] = [{"errorCode": "record.refused", "fieldName": f"interactions[{n}]", "entityId": str(rid)}
                      for n, rid in refused]
    err["errors"] = [_error(400, "invalid.interaction", f"interactions[{n}] (id {rid!r}) is invalid: "
                            f"record.refused interactions[{n}]") for n, rid in refused]
    return err


def _error(status: int, code: str, message: str) -> dict:
    return {"message": message, "code": code, "status": status, "contextId": str(uuid.uuid4()), "details": [],
            "errors": []}
