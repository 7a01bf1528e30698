"""The bad-input catalogue (issue #7): every class of bad input, legacy side and API side, ends quarantined with a
reason code or clearly rejected with one, and is counted.

Most tests drive the pure functions of ``genesys_assets/lib`` with hand-built bad rows, files and pages; one
sandbox test proves the quarantine counts land in the legacy reconciliation check. ``CATALOGUE`` is the table
for the README (``test_catalogue_is_complete`` keeps it honest: every test it names exists here).
"""

from __future__ import annotations

import uuid
import wave
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pytest

from genesys_assets.lib import legacy_cloud as lc
from genesys_assets.lib import legacy_id_maps as idm
from genesys_assets.lib import legacy_interactions as li
from genesys_assets.lib import recordings_staging as rs
from genesys_assets.lib import webchat_record as wr
from genesys_assets.lib.conversation_details import parse_page
from genesys_assets.lib.pii import AddressHasher
from genesys_assets.resources import pureconnect as pc
from genesys_assets.sandbox.genesys_emulator import MAX_BODY_BYTES as TARGET_LIMIT
from genesys_assets.sandbox.migration_target import MigrationTarget

DAY = date(2026, 11, 3)
TZ = "America/New_York"
HASHER = AddressHasher("k" * 32)
USER, FALLBACK, QUEUE, DEFAULT_QUEUE = (f"{n}{n}{n}{n}{n}{n}{n}{n}-1111-4111-8111-111111111111" for n in "1234")
MODULE = "genesys_assets_tests/reliability/test_bad_input_catalogue.py"

#: class → reason code (or outcome) → test. The README's bad-input table.
CATALOGUE: tuple[tuple[str, str, str], ...] = (
    ("legacy: missing key columns", li.MISSING_KEY, "test_legacy_row_classes_are_quarantined_with_their_code"),
    ("legacy: unparseable timestamp text", li.UNPARSEABLE_TIMESTAMP,
     "test_unparseable_timestamp_text_is_quarantined_not_fatal"),
    ("legacy: local time, no site timezone", li.AMBIGUOUS_TIMEZONE, "test_local_time_without_timezone"),
    ("legacy: local time ambiguous / nonexistent (DST)",
     f"{li.AMBIGUOUS_LOCAL_TIME} / {li.NONEXISTENT_LOCAL_TIME}", "test_local_time_dst_gaps"),
    ("legacy: end before start, leaving the day", li.END_BEFORE_START,
     "test_legacy_row_classes_are_quarantined_with_their_code"),
    ("legacy: negative or absurd (> 24 h) duration", li.INVALID_DURATION,
     "test_negative_or_absurd_durations_are_quarantined"),
    ("legacy: duplicate key, rows differ", li.CONFLICTING_DUPLICATE,
     "test_legacy_row_classes_are_quarantined_with_their_code"),
    ("legacy: duplicate key, identical rows", f"{li.DUPLICATE_ROW} (skipped)",
     "test_legacy_row_classes_are_quarantined_with_their_code"),
    ("legacy: unknown direction code", li.UNKNOWN_DIRECTION, "test_legacy_row_classes_are_quarantined_with_their_code"),
    ("legacy: unknown media type code", li.UNKNOWN_MEDIA_TYPE,
     "test_legacy_row_classes_are_quarantined_with_their_code"),
    ("legacy: ids with characters (' # \" \\) the target could refuse", "accepted (UUIDv5 id, JSON-escaped)",
     "test_ids_with_special_characters_are_accepted_by_the_target"),
    ("mapping: agent not mapped", "fallback user (agent_mapping=fallback)", "test_unmapped_agent_queue_wrapup"),
    ("mapping: queue not mapped (rule skip)", lc.UNMAPPED_QUEUE, "test_unmapped_agent_queue_wrapup"),
    ("mapping: wrap-up not mapped", "wrapup_mapping=unmapped", "test_unmapped_agent_queue_wrapup"),
    ("target: record invalid before posting", lc.INVALID_RECORD, "test_invalid_and_target_rejected_records"),
    ("target: record refused by the target (400)", lc.TARGET_REJECTED, "test_invalid_and_target_rejected_records"),
    ("target: oversized record (413 / over the body limit)", lc.OVERSIZED_RECORD,
     "test_oversized_record_is_quarantined_not_retried_forever"),
    ("recording: zero-byte file", rs.ZERO_BYTE, "test_bad_recording_files"),
    ("recording: truncated WAV", rs.TRUNCATED, "test_bad_recording_files"),
    ("recording: SASF secure audio", rs.SASF, "test_bad_recording_files"),
    ("recording: codec not decodable", rs.UNDECODABLE, "test_bad_recording_files"),
    ("recording: not audio (magic bytes)", rs.UNKNOWN_FORMAT, "test_bad_recording_files"),
    ("recording: missing on disk", rs.MISSING_FILE, "test_bad_recording_files"),
    ("recording: longer than the database says", rs.DURATION_MISMATCH, "test_bad_recording_files"),
    ("api (webchat): conversation not an object / text not a string", wr.UNEXPECTED_TYPE,
     "test_webchat_unexpected_types_are_rejected_with_a_code"),
    ("api (analytics): field of the wrong type", "parse_path=conform (value nulled)",
     "test_analytics_page_with_unexpected_types_falls_back"),
    ("all legacy classes: counted in reconciliation", "legacy_reconciliation balance 0",
     "test_sandbox_quarantine_lands_in_reconciliation"),
)


def catalogue_table() -> str:
    """``CATALOGUE`` as a Markdown table."""
    lines = ["| Bad input | Reason code / outcome | Test |", "|---|---|---|"]
    lines += [f"| {cls} | `{code}` | `{test}` |" for cls, code, test in CATALOGUE]
    return "\n".join(lines)


def test_catalogue_is_complete() -> None:
    print("\n" + catalogue_table())
    names = set(globals())
    assert {test for _, _, test in CATALOGUE} <= names
    assert len({cls for cls, _, _ in CATALOGUE}) >= 15


# ---------------------------------------------------------------------------------------------------------
# legacy rows
# ---------------------------------------------------------------------------------------------------------


def _row(key: str, start: str | None = "2026-11-03 10:00:00", end: str | None = "2026-11-03 10:05:00",
         offset: int | None = -18000, **kw: object) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(pc.INTERACTION_SUMMARY_SCHEMA)
    ts = (lambda v: datetime.fromisoformat(v) if v else None)  # noqa: E731
    row.update(InteractionIDKey=key, SiteID=1, SeqNo=0, InteractionID=1, StartDateTimeUTC=ts(start),
               StartDTOffset=offset, InitiatedDateTimeUTC=ts(start), TerminatedDateTimeUTC=ts(end), Direction=1,
               ConnectionType=1, MediaType=0, RemoteID="+12125550199", LastLocalUserId="agent-1",
               LastAssignedWorkgroupID="queue-1", LineDuration=300_000, tConnected=250_000)
    row.update(kw)
    return row


def _day(interactions: pl.DataFrame | list[dict[str, Any]]) -> SimpleNamespace:
    frame = (interactions if isinstance(interactions, pl.DataFrame)
             else pl.DataFrame(interactions, schema=pc.INTERACTION_SUMMARY_SCHEMA))
    return SimpleNamespace(
        interactions=frame,
        wrapups=pl.DataFrame(schema=pc.INTERACTION_WRAPUP_SCHEMA),
        custom_attributes=pl.DataFrame(schema=pc.INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA),
        recordings=pl.DataFrame(schema={**pc.IR_RECORDING_MEDIA_SCHEMA, "Tags": pl.List(pl.String)}))


def _reasons(result: li.NormalisedDay) -> dict[str, str]:
    return dict(zip(result.rejects["InteractionIDKey"].fill_null("<null>"), result.rejects["reason"], strict=True))


def _balanced(result: li.NormalisedDay) -> None:
    assert result.stats["source_rows"] == result.interactions.height + result.rejects.height
    assert result.stats["quarantined"] + result.stats["skipped_duplicates"] == result.rejects.height
    assert result.rejects["detail"].is_not_null().all()


def test_legacy_row_classes_are_quarantined_with_their_code() -> None:
    rows = [
        _row("K-ok"),
        _row(" "), _row("K-noseq", SeqNo=None),
        _row("K-cross", "2026-11-03 00:01:00", "2026-11-02 23:58:00"),
        _row("K-conflict"), _row("K-conflict", end="2026-11-03 10:06:00"),
        _row("K-dup"), _row("K-dup"),
        _row("K-dir", Direction=0), _row("K-dir9", Direction=9),
        _row("K-media", MediaType=255), _row("K-media3", MediaType=3),
    ]
    result = li.normalise_day(_day(rows), DAY, TZ, HASHER)
    reasons = _reasons(result)
    assert reasons == {
        " ": li.MISSING_KEY, "K-noseq": li.MISSING_KEY, "K-cross": li.END_BEFORE_START,
        "K-conflict": li.CONFLICTING_DUPLICATE, "K-dup": li.DUPLICATE_ROW, "K-dir": li.UNKNOWN_DIRECTION,
        "K-dir9": li.UNKNOWN_DIRECTION, "K-media": li.UNKNOWN_MEDIA_TYPE, "K-media3": li.UNKNOWN_MEDIA_TYPE,
    }
    assert set(result.interactions["legacy_interaction_id_key"]) == {"K-ok", "K-dup"}
    assert result.stats["reason_conflicting_duplicate"] == 2 and result.stats["skipped_duplicates"] == 1
    _balanced(result)


def test_local_time_without_timezone() -> None:
    rows = [_row("K-local", offset=None), _row("K-utc")]
    result = li.normalise_day(_day(rows), DAY, None, HASHER)
    assert _reasons(result) == {"K-local": li.AMBIGUOUS_TIMEZONE}
    assert "PURECONNECT_SITE_TIMEZONE" in result.rejects["detail"].item()
    _balanced(result)


def test_local_time_dst_gaps() -> None:
    rows = [_row("K-fall", "2026-11-01 01:30:00", "2026-11-01 01:40:00", offset=None),
            _row("K-spring", "2026-03-08 02:30:00", "2026-03-08 02:40:00", offset=None)]
    fall = li.normalise_day(_day(rows), date(2026, 11, 1), TZ, HASHER)
    spring = li.normalise_day(_day(rows), date(2026, 3, 8), TZ, HASHER)
    assert _reasons(fall) == {"K-fall": li.AMBIGUOUS_LOCAL_TIME}
    assert _reasons(spring) == {"K-spring": li.NONEXISTENT_LOCAL_TIME}


def test_negative_or_absurd_durations_are_quarantined() -> None:
    rows = [
        _row("K-ok"),
        _row("K-neg-talk", tConnected=-5),
        _row("K-neg-line", LineDuration=-1),
        _row("K-day-plus", LineDuration=li.MAX_DURATION_MS + 1),
        _row("K-hold", tHeld=li.MAX_DURATION_MS * 3),
        _row("K-edge", LineDuration=li.MAX_DURATION_MS, tConnected=0),  # exactly a day: still plausible
        _row("K-null", LineDuration=None, tConnected=None),  # unknown is not invalid
    ]
    result = li.normalise_day(_day(rows), DAY, TZ, HASHER)
    assert _reasons(result) == {k: li.INVALID_DURATION for k in ("K-neg-talk", "K-neg-line", "K-day-plus", "K-hold")}
    details = dict(zip(result.rejects["InteractionIDKey"], result.rejects["detail"], strict=True))
    assert "tConnected=-5 ms" in details["K-neg-talk"] and "LineDuration=-1 ms" in details["K-neg-line"]
    assert "tHeld=" in details["K-hold"]
    assert set(result.interactions["legacy_interaction_id_key"]) == {"K-ok", "K-edge", "K-null"}
    assert result.stats["reason_invalid_duration"] == 4
    _balanced(result)


def _text_table(rows: list[dict[str, Any]]) -> pa.Table:
    """InteractionSummary as SQLite hands it over when datetimes are stored as text."""
    columns: dict[str, list[Any]] = {c: [] for c in pc.INTERACTION_SUMMARY_SCHEMA}
    for row in rows:
        for c in columns:
            v = row.get(c)
            columns[c].append(v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v)
    return pa.table({c: pa.array(v, type=pa.string() if c in li._DATETIME_COLUMNS else None)
                     for c, v in columns.items()})


def test_unparseable_timestamp_text_is_quarantined_not_fatal() -> None:
    rows = [_row("K-ok"), _row("K-end-na"), _row("K-start-bad"), _row("K-other-day")]
    table = _text_table(rows)
    start = table.column("StartDateTimeUTC").to_pylist()
    end = table.column("TerminatedDateTimeUTC").to_pylist()
    end[1] = "N/A"
    start[2] = "2026-11-03 25:61:00"  # the right day, an impossible time
    start[3] = "2026-11-04 99:00:00"  # another day's text: not this day's row
    table = table.set_column(table.schema.get_field_index("StartDateTimeUTC"), "StartDateTimeUTC", pa.array(start))
    table = table.set_column(table.schema.get_field_index("TerminatedDateTimeUTC"), "TerminatedDateTimeUTC",
                             pa.array(end))
    with pytest.raises(pl.exceptions.InvalidOperationError):  # without the flag a bad value stays an error
        pc._normalise(table, pc.INTERACTION_SUMMARY_SCHEMA)
    frame = pc._normalise(table, pc.INTERACTION_SUMMARY_SCHEMA, flag_unparseable=True)
    assert frame[li.UNPARSEABLE_COLUMN].to_list() == [
        None, "TerminatedDateTimeUTC='N/A'", "StartDateTimeUTC='2026-11-03 25:61:00'",
        "StartDateTimeUTC='2026-11-04 99:00:00'"]
    result = li.normalise_day(_day(frame), DAY, TZ, HASHER)
    assert _reasons(result) == {"K-end-na": li.UNPARSEABLE_TIMESTAMP, "K-start-bad": li.UNPARSEABLE_TIMESTAMP}
    raw = dict(zip(result.rejects["InteractionIDKey"], result.rejects["raw"], strict=True))
    assert "25:61:00" in raw["K-start-bad"] and "N/A" in raw["K-end-na"]  # the bad text is kept
    assert result.stats["neighbour_day_rows_ignored"] == 1
    _balanced(result)
    # The reconciliation re-count (assign_day) sees the same rows, so the day still balances.
    assert li.assign_day(frame, DAY, TZ).height == result.stats["source_rows"]
    # A clean frame keeps the schema it always had.
    clean = pc._normalise(_text_table(rows[:1]), pc.INTERACTION_SUMMARY_SCHEMA, flag_unparseable=True)
    assert li.UNPARSEABLE_COLUMN not in clean.columns


# ---------------------------------------------------------------------------------------------------------
# mapping and the migration target
# ---------------------------------------------------------------------------------------------------------


def _maps() -> idm.IdMaps:
    maps = pl.DataFrame([
        {"kind": idm.AGENTS, "legacy_id": "agent-1", "cloud_id": USER, "csv_name": "Agent One",
         "directory_name": "Agent One", "directory_state": "active", "status": "valid", "problem": None},
        {"kind": idm.QUEUES, "legacy_id": "queue-1", "cloud_id": QUEUE, "csv_name": "Sales",
         "directory_name": "Sales", "directory_state": "active", "status": "valid", "problem": None},
    ], schema=idm.MAP_SCHEMA)
    return idm.IdMaps(maps, FALLBACK, "Migration Fallback", DEFAULT_QUEUE, "Default")


def _payloads(rows: list[dict[str, Any]], rule: str = "default_queue") -> pl.DataFrame:
    canonical = li.normalise_day(_day(rows), DAY, TZ, HASHER).interactions
    return lc.build_payloads(lc.resolve_mappings(canonical, _maps(), rule), None)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[MigrationTarget]:
    store = MigrationTarget(tmp_path / "target.sqlite", historical_import_enabled=True)
    yield store
    store.close()


def _poster(store: MigrationTarget, limit: int = TARGET_LIMIT) -> lc.Poster:
    """The emulator's POST /api/v2/interactions, including its 413 over ``limit`` bytes."""

    def post(body: bytes, request_id: str) -> tuple[int, dict[str, Any], bool]:
        if len(body) > limit:
            return 413, {"message": f"The request body exceeds {limit} bytes"}, False
        answer = store.ingest(body, request_id)
        return answer.status, answer.body, answer.headers.get("X-Idempotent-Replay") == "true"

    return post


def test_ids_with_special_characters_are_accepted_by_the_target(target: MigrationTarget) -> None:
    key = "K'#\"\\1 é"
    payloads = _payloads([_row(key, LastLocalUserId="ag'ent#2", LastAssignedWorkgroupID="q\"ueue#9")])
    assert lc.invalid_records(payloads).height == 0
    (record,) = payloads.to_dicts()
    assert record["x_legacy_id"] == f"1:{key}:0" and record["id"] != record["x_legacy_id"]
    outcome = lc.post_records([record["id"]], [record["payload"]], _poster(target))
    assert outcome.outcomes[record["id"]][0] == lc.CREATED and not outcome.rejected
    stored = target.get(record["id"])
    assert stored is not None
    attributes = stored["customAttributes"]
    assert attributes["x_legacy_id"] == f"1:{key}:0"
    assert (attributes["x_legacy_agent_id"], attributes["x_legacy_queue_id"]) == ("ag'ent#2", "q\"ueue#9")


def test_every_recording_of_an_interaction_reaches_its_payload_and_the_ledger(target: MigrationTarget) -> None:
    # A recorded transfer has two IR_RecordingMedia rows; only the first was linked in the payload, so the
    # second was staged to S3 and referenced by nothing (seed 000's orphaned-recording trap).
    canonical = li.normalise_day(_day([_row("K-two"), _row("K-none")]), DAY, TZ, HASHER).interactions
    two = canonical.filter(pl.col("legacy_interaction_id_key") == "K-two")["id"].item()
    canonical = canonical.with_columns(pl.when(pl.col("id") == two).then(pl.lit("R-a")).alias("recording_id"))

    def recording(rid: str, status: str, reason: str | None = None) -> dict[str, Any]:
        return {"day": DAY, "recording_id": rid, "interaction_id": two, "bucket": "b", "key": f"k/{rid}",
                "content_type": "audio/wav", "sha256": rid * 4, "duration_ms": 1000, "tags": "t", "status": status,
                "reason": reason}

    manifest = pl.DataFrame([recording("R-b", rs.STAGED), recording("R-a", rs.STAGED),
                             recording("R-c", rs.QUARANTINED, "unsupported_codec")], schema=rs.MANIFEST_SCHEMA)
    payloads = lc.build_payloads(lc.resolve_mappings(canonical, _maps(), "default_queue"), manifest)
    records = {r["legacy_interaction_id_key"]: r for r in payloads.to_dicts()}
    segments = orjson.loads(records["K-two"]["payload"])["segments"]
    assert [(s["recording"] or {}).get("id") for s in segments] == ["R-a", "R-b", None]
    # The first segment keeps the id a single recording always had; the others are named by their recording.
    assert [s["id"] for s in segments] == [str(uuid.uuid5(lc.SEGMENT_NAMESPACE, name))
                                           for name in (two, f"{two}:R-b", f"{two}:R-c")]
    assert orjson.loads(records["K-two"]["payload"])["customAttributes"]["x_recording_quarantine_reason"] == (
        "unsupported_codec")
    (alone,) = orjson.loads(records["K-none"]["payload"])["segments"]
    assert alone["recording"] is None and alone["id"] == str(uuid.uuid5(lc.SEGMENT_NAMESPACE, records["K-none"]["id"]))
    outcome = lc.post_records(payloads["id"].to_list(), payloads["payload"].to_list(), _poster(target))
    ledger = lc.ledger_frame(DAY, payloads, outcome)
    assert ledger.height == 2
    assert ledger.filter(pl.col("id") == two)["recording_key"].item() == "k/R-a,k/R-b"
    stored = target.get(two)
    assert stored is not None and [s["recording"]["url"] for s in stored["segments"][:2]] == ["s3://b/k/R-a",
                                                                                            "s3://b/k/R-b"]


def test_agents_sharing_a_number_each_map_to_their_own_user() -> None:
    # Seed 001's trap: a shared line or hunt-group number is not an agent's identity; only the legacy user id is.
    other = "55555555-1111-4111-8111-111111111111"
    shared = {"RemoteID": "+12125550100", "DNIS_LocalID": "+18005550100"}
    rows = [_row("K-1", LastLocalUserId="agent-1", **shared), _row("K-2", LastLocalUserId="agent-2", **shared),
            _row("K-3", LastLocalUserId=None, **shared)]
    canonical = li.normalise_day(_day(rows), DAY, TZ, HASHER).interactions
    maps = _maps()
    maps = idm.IdMaps(pl.concat([maps.maps, pl.DataFrame([{
        "kind": idm.AGENTS, "legacy_id": "agent-2", "cloud_id": other, "csv_name": "Agent Two",
        "directory_name": "Agent Two", "directory_state": "active", "status": "valid", "problem": None}],
        schema=idm.MAP_SCHEMA)]), FALLBACK, "Migration Fallback", DEFAULT_QUEUE, "Default")
    resolved = {r["legacy_interaction_id_key"]: r for r in lc.resolve_mappings(canonical, maps, "skip").to_dicts()}
    assert (resolved["K-1"]["agent_user_id"], resolved["K-2"]["agent_user_id"]) == (USER, other)
    assert (resolved["K-3"]["agent_mapping"], resolved["K-3"]["agent_user_id"]) == ("none", None)


def test_unmapped_agent_queue_wrapup() -> None:
    rows = [_row("K-mapped"), _row("K-agent", LastLocalUserId="ghost"),
            _row("K-queue", LastAssignedWorkgroupID="nowhere")]
    canonical = li.normalise_day(_day(rows), DAY, TZ, HASHER).interactions.with_columns(
        pl.lit("WC-UNKNOWN").alias("wrapup_code"))
    resolved = {r["legacy_interaction_id_key"]: r for r in
                lc.resolve_mappings(canonical, _maps(), "skip").to_dicts()}
    assert (resolved["K-agent"]["agent_mapping"], resolved["K-agent"]["agent_user_id"]) == ("fallback", FALLBACK)
    assert (resolved["K-mapped"]["agent_mapping"], resolved["K-mapped"]["agent_user_id"]) == ("mapped", USER)
    assert (resolved["K-queue"]["queue_mapping"], resolved["K-queue"]["queue_id"]) == ("skipped", None)
    assert {r["wrapup_mapping"] for r in resolved.values()} == {"unmapped"}
    # The asset quarantines "skipped" queues as unmapped_queue; with the default rule they go to the default queue.
    default = lc.resolve_mappings(canonical, _maps(), "default_queue").filter(
        pl.col("legacy_interaction_id_key") == "K-queue")
    assert default.select("queue_mapping", "queue_id").row(0) == ("default", DEFAULT_QUEUE)


def test_invalid_and_target_rejected_records(target: MigrationTarget) -> None:
    payloads = _payloads([_row("K-1"), _row("K-2", start="2026-11-03 11:00:00", end="2026-11-03 11:01:00"),
                          _row("K-3", start="2026-11-03 12:00:00", end="2026-11-03 12:01:00")])
    broken = payloads.with_columns(
        pl.when(pl.col("legacy_interaction_id_key") == "K-2").then(pl.lit("yesterday"))
        .otherwise(pl.col("start_time_iso")).alias("start_time_iso"))
    invalid = lc.invalid_records(broken)
    assert invalid["legacy_interaction_id_key"].to_list() == ["K-2"] and invalid["problem"].item() == "bad startTime"
    # A record only the target can see is wrong (here: a tampered id) is bisected out and rejected alone.
    docs = payloads["payload"].to_list()
    bad = orjson.loads(docs[1])
    bad["id"] = "not-a-uuid"
    docs[1] = orjson.dumps(bad).decode()
    ids = payloads["id"].to_list()
    outcome = lc.post_records(ids, docs, _poster(target))
    assert outcome.reasons == {ids[1]: lc.TARGET_REJECTED}
    assert "400" in outcome.rejected[ids[1]] and outcome.outcomes[ids[1]][0] == lc.REJECTED
    assert {outcome.outcomes[i][0] for i in (ids[0], ids[2])} == {lc.CREATED}
    assert target.count() == 2


def test_oversized_record_is_quarantined_not_retried_forever(target: MigrationTarget) -> None:
    payloads = _payloads([_row("K-small"), _row("K-big", start="2026-11-03 11:00:00", end="2026-11-03 11:01:00",
                                                 FirstAssignedAcdSkillSet="x" * (lc.MAX_BODY_BYTES + 10))])
    oversized = lc.oversized_records(payloads)
    assert oversized["legacy_interaction_id_key"].to_list() == ["K-big"]
    assert "exceeds the 500000-byte request limit" in oversized["problem"].item()
    # Were it posted anyway (a lower limit on the target), the 413 isolates it and every other record is stored.
    ids, docs = payloads["id"].to_list(), payloads["payload"].to_list()
    outcome = lc.post_records(ids, docs, _poster(target, limit=100_000))
    big = payloads.filter(pl.col("legacy_interaction_id_key") == "K-big")["id"].item()
    assert outcome.reasons == {big: lc.OVERSIZED_RECORD} and "413" in outcome.rejected[big]
    assert target.count() == 1
    # Two records that only fit one at a time: the 413 on the pair is bisected, both stored.
    half = [orjson.dumps({**orjson.loads(d), "x_pad": "p" * 60_000}).decode() for d in docs[:1]] * 2
    pair = lc.post_records(["a", "b"], half, _poster(target, limit=100_000))
    assert [b["http_status"] for b in pair.batches] == [413, 200, 200] and not pair.rejected


# ---------------------------------------------------------------------------------------------------------
# recordings
# ---------------------------------------------------------------------------------------------------------


def _wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * int(seconds * rate))
    return path


def test_bad_recording_files(tmp_path: Path) -> None:
    settings = rs.StagingSettings(bucket="staging")
    good = _wav(tmp_path / "good.wav", 2.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(_wav(tmp_path / "long.wav", 5.0).read_bytes()[:20_000])  # header says 5 s, data ~1.2 s
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "secure.sasf").write_bytes(b"SASF" + bytes(4096))
    (tmp_path / "note.wav").write_bytes(b"this is not audio at all, just text" * 10)
    (tmp_path / "garbage.amr").write_bytes(b"#!AMR\n" + bytes(range(256)) * 4)
    cases = {
        "missing.wav": (None, rs.MISSING_FILE), "empty.wav": (None, rs.ZERO_BYTE),
        "cut.wav": (5000, rs.TRUNCATED), "secure.sasf": (None, rs.SASF), "note.wav": (None, rs.UNKNOWN_FORMAT),
        "garbage.amr": (None, rs.UNDECODABLE), "good.wav": (500, rs.DURATION_MISMATCH),
    }
    for name, (db_ms, reason) in cases.items():
        with pytest.raises(rs.RecordingProblem) as problem:
            rs.probe(tmp_path / name, db_ms, settings)
        assert problem.value.reason == reason, name
        assert problem.value.detail
    assert rs.probe(good, 2000, settings).duration_ms == 2000
    # Through the stager: a manifest row, quarantined with the code, nothing uploaded (no S3 needed).
    link = {"recording_id": "R1", "interaction_id": "I1", "x_legacy_id": "1:K:0",
            "media_uri": str(tmp_path / "secure.sasf"), "db_duration_ms": 1000}
    row = rs.stage_recording(None, link, DAY, settings).row
    assert (row["status"], row["reason"], row["key"]) == (rs.QUARANTINED, rs.SASF, None)
    assert set(row) == set(rs.MANIFEST_SCHEMA)


# ---------------------------------------------------------------------------------------------------------
# API pages
# ---------------------------------------------------------------------------------------------------------

_CONVERSATION = {"conversationId": "c-1", "conversationStart": "2026-11-03T10:00:00.000Z",
                 "conversationEnd": "2026-11-03T10:05:00.000Z",
                 "participants": [{"participantId": "p-1", "purpose": "customer", "participantName": "x"}]}
_MESSAGE = {"id": "m-1", "timestamp": "2026-11-03T10:01:00.000Z", "direction": "Inbound",
            "normalizedMessage": {"text": "hello"}}


@pytest.mark.parametrize(("conversation", "messages", "what"), [
    (["not", "an", "object"], [], "a details-job conversation"),
    ("c-1", [], "a details-job conversation"),
    ({**_CONVERSATION, "participants": "p-1"}, [], "participants"),
    ({**_CONVERSATION, "participants": ["p-1"]}, [], "a participant"),
    (_CONVERSATION, [{**_MESSAGE, "normalizedMessage": {"text": {"rich": True}}}], "text of message 'm-1'"),
    (_CONVERSATION, [{**_MESSAGE, "normalizedMessage": {"text": 42}}], "text of message 'm-1'"),
    (_CONVERSATION, [{**_MESSAGE, "normalizedMessage": None, "textBody": ["a"]}], "text of message 'm-1'"),
    (_CONVERSATION, [{**_MESSAGE, "normalizedMessage": "hello"}], "normalizedMessage"),
    (_CONVERSATION, ["m-1"], "a bulk message entity"),
])
def test_webchat_unexpected_types_are_rejected_with_a_code(conversation: Any, messages: list[Any], what: str) -> None:
    with pytest.raises(wr.UnexpectedApiShape) as rejected:
        wr.build_record(conversation, messages, HASHER)
    assert rejected.value.reason == wr.UNEXPECTED_TYPE
    assert str(rejected.value).startswith(f"{wr.UNEXPECTED_TYPE}: {what}")
    # The well-typed record still builds, with a null text allowed.
    ok = wr.build_record(_CONVERSATION, [_MESSAGE, {**_MESSAGE, "id": "m-2", "normalizedMessage": {}}], HASHER)
    assert [m["text"] for m in ok["messages"]] == ["hello", None]


def test_webchat_day_filter_rejects_a_non_object_conversation() -> None:
    assert wr.started_in_day(_CONVERSATION, DAY)
    with pytest.raises(wr.UnexpectedApiShape, match=wr.UNEXPECTED_TYPE):
        wr.started_in_day("c-1", DAY)  # type: ignore[arg-type]


@pytest.mark.parametrize("start", [None, "", "yesterday", 1730000000000])
def test_webchat_day_filter_rejects_a_conversation_without_a_readable_start(start: Any) -> None:
    # Skipped as a "neighbour", it would have been left out of the archive with only a count to show for it.
    conversation = {**_CONVERSATION, "conversationStart": start}
    with pytest.raises(wr.UnexpectedApiShape) as rejected:
        wr.started_in_day(conversation, DAY)
    assert rejected.value.reason == wr.MISSING_START
    assert repr(_CONVERSATION["conversationId"]) in str(rejected.value)


def test_webchat_rejections_name_the_type_never_the_value() -> None:
    # A message text or a participant name can hold a customer's phone number; the error reaches the event log.
    phone = "+13175550100"
    for conversation, messages in (
        (_CONVERSATION, [{**_MESSAGE, "normalizedMessage": {"text": [f"call me on {phone}"]}}]),
        ({**_CONVERSATION, "participants": [phone]}, []),
        ({**_CONVERSATION, "participants": {"name": phone}}, []),
    ):
        with pytest.raises(wr.UnexpectedApiShape) as rejected:
            wr.build_record(conversation, messages, HASHER)
        assert phone not in str(rejected.value) and "13175550100" not in str(rejected.value)


def test_analytics_page_with_unexpected_types_falls_back() -> None:
    good = {"conversationId": "c-1", "conversationStart": "2026-11-03T10:00:00.000Z",
            "participants": [{"participantId": "p-1", "purpose": "agent", "sessions": []}]}
    bad = {"conversationId": "c-2", "conversationStart": 12345,
           "participants": [{"participantId": 7, "purpose": ["x"], "sessions": "nope"}]}
    table = parse_page(orjson.dumps({"conversations": [good, bad], "cursor": "next"}))
    assert table.schema.metadata[b"parse_path"] == b"conform"
    assert table.column("conversationId").to_pylist() == ["c-1", "c-2"]  # no conversation is dropped
    assert table.column("conversationStart").to_pylist()[1] is None  # the conflicting value is nulled
    assert table.column("conversationStart").to_pylist()[0] is not None
    clean = parse_page(orjson.dumps({"conversations": [good], "cursor": "next"}))
    assert clean.schema.metadata[b"parse_path"] == b"fast"


# ---------------------------------------------------------------------------------------------------------
# the sandbox: quarantines are counted in reconciliation
# ---------------------------------------------------------------------------------------------------------


def test_sandbox_quarantine_lands_in_reconciliation(endpoints: Any, tmp_path: Path) -> None:
    from genesys_assets.lib import legacy_lake as paths
    from genesys_assets.resources.lake import Lake
    from genesys_assets_tests.reliability.platform import DAY as SANDBOX_DAY
    from genesys_assets_tests.reliability.platform import run_domain
    from genesys_assets_tests.support import failure_text

    maps = run_domain(endpoints, tmp_path, "legacy", unpartitioned=True)
    assert maps.success, failure_text(maps)
    result = run_domain(endpoints, tmp_path, "legacy", SANDBOX_DAY)
    assert result.success, failure_text(result)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    recon = checks["legacy_reconciliation"]
    meta = {k: v.value for k, v in recon.metadata.items()}
    assert recon.passed, meta
    assert meta["balance"] == 0 and meta["quarantined"] > 0
    lake = Lake(base_uri=str(tmp_path / "lake"))
    prefix = li.partition_prefix(paths.quarantine_base("interactions"), SANDBOX_DAY)
    rejects = pl.from_arrow(lake.read_parquet(f"{prefix}/quarantine.parquet"))
    assert isinstance(rejects, pl.DataFrame)
    known = {li.MISSING_KEY, li.UNPARSEABLE_TIMESTAMP, li.AMBIGUOUS_TIMEZONE, li.AMBIGUOUS_LOCAL_TIME,
             li.NONEXISTENT_LOCAL_TIME, li.MISSING_START, li.CONFLICTING_DUPLICATE, li.UNKNOWN_DIRECTION,
             li.UNKNOWN_MEDIA_TYPE, li.END_BEFORE_START, li.INVALID_DURATION, li.DUPLICATE_ROW}
    assert rejects.height > 0 and set(rejects["reason"]) <= known
    assert meta["quarantined"] + meta["skipped_duplicates"] >= rejects.height
