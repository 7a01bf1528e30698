"""The sandbox PureConnect site: real schema, the reference export join, traps at their configured counts,
recording files that decode (or fail) as designed, determinism, and the mapping CSVs.

Trap counts are asserted *exactly*: the site assigns ``TrapRates.count(rate, n)`` items per trap per day
(disjoint, shuffled), so the only tolerance is the rounding inside ``count`` itself (±0.5 of an item, at least
one when the rate is positive). Each listed row is then checked against the database by the property that
defines the trap, and no unlisted row may show that property.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import sqlite3
import struct
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from pathlib import Path

import av
import pytest

from genesys_assets.sandbox import recordings as rec
from genesys_assets.sandbox.directory import build_directory
from genesys_assets.sandbox.pureconnect_site import (
    RECORDING_TRAPS,
    ROW_TRAPS,
    SPECIAL_CHARS,
    PureConnectSite,
    TrapRates,
    build_site,
)

DAYS = (date(2025, 3, 8), date(2025, 3, 9))  # 9 March 2025: New York springs forward
N = 150
TRAPS = TrapRates()

# Genesys's export sample, verbatim from reference/pureconnect-schema.md.
EXPORT_JOIN = """
SELECT isum.InteractionIDKey, isum.StartDateTimeUTC, rm.RecordingId, rm.MediaURI, rm.MediaType
FROM InteractionSummary isum
JOIN IR_RecordingMedia rm ON isum.InteractionIDKey = rm.QueueObjectIdKey
WHERE isum.StartDateTimeUTC >= ? AND isum.StartDateTimeUTC < ? AND rm.MediaType IN (1, 2, 3)
"""

REFERENCE_COLUMNS = {
    "InteractionSummary": [
        "InteractionIDKey", "SiteID", "SeqNo", "InteractionID", "StartDateTimeUTC", "StartDTOffset",
        "InitiatedDateTimeUTC", "ConnectedDateTimeUTC", "TerminatedDateTimeUTC", "Direction", "ConnectionType",
        "MediaType", "RemoteID", "RemoteName", "DNIS_LocalID", "LastLocalUserId", "LastAssignedWorkgroupID",
        "FirstAssignedAcdSkillSet", "AccountCode", "LineDuration", "tDialing", "tIVRWait", "tQueueWait", "tAlert",
        "tConnected", "tHeld", "tConference", "tExternal", "tACW", "nIVR", "nQueueWait", "nTalk", "nConference",
        "nHeld", "nTransfer", "nExternal", "Disposition",
    ],
    "InteractionWrapup": [
        "InteractionIDKey", "SiteID", "SeqNo", "SourceInteractionIDKey", "WrapupSegmentID", "WrapupCode",
        "WrapupCategory", "WrapupStartDateTimeUTC", "WrapupStartDTOffset", "UserID", "WorkgroupID",
        "WrapupRequired", "WrapupIncompleteReason", "tAcw", "tConnected", "tHold", "tSuspend", "nHold",
        "nSuspend", "nSupervisorRequest",
    ],
    "IR_RecordingMedia": [
        "RecordingId", "QueueObjectIdKey", "MediaType", "MediaURI", "MediaKey", "MediaStatus", "FileSize",
        "Duration", "RecordingDate", "RecordingDateOffset", "ExpirationDate", "IsArchived", "RecordingType",
        "RelatedRecordingId", "CallType", "Direction", "FromConnValue", "ToConnValue", "LineName",
        "InitiationPolicyName", "NumAttachments", "Version",
    ],
    "IR_TagMap": ["RecordingId", "TagId", "KeywordSetName"],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> PureConnectSite:
    return build_site(tmp_path_factory.mktemp("pc") / "site", DAYS[0], DAYS[-1], interactions_per_day=N)


def _rows(site: PureConnectSite, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    with contextlib.closing(site.connect()) as con:
        con.row_factory = sqlite3.Row
        return con.execute(sql, params).fetchall()


def _day_rows(site: PureConnectSite, day: date) -> list[sqlite3.Row]:
    return _rows(site, "SELECT * FROM InteractionSummary WHERE substr(InteractionIDKey, 11, 8) = ?",
                 (f"{day:%Y%m%d}",))


def _key(row: sqlite3.Row) -> tuple[str, int, int]:
    return row["InteractionIDKey"], row["SiteID"], row["SeqNo"]


def _ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")


# ---------------------------------------------------------------------------------------------------------
# Schema and the reference queries
# ---------------------------------------------------------------------------------------------------------


def test_tables_have_the_reference_columns(site: PureConnectSite) -> None:
    for table, expected in REFERENCE_COLUMNS.items():
        got = [r["name"] for r in _rows(site, f"PRAGMA table_info({table})")]
        assert got == expected, table
    ica = [r["name"] for r in _rows(site, "PRAGMA table_info(InteractionCustomAttributes)")]
    assert ica[:3] == ["InteractionIDKey", "SiteID", "SeqNo"] and "CustomNum1" in ica and "CustomString1" in ica
    kinds = {r["name"]: r["type"] for r in _rows(site, "SELECT name, type FROM sqlite_master")}
    assert kinds["CallDetail_viw"] == "view"
    types = {r["name"]: r["type"] for r in _rows(site, "PRAGMA table_info(InteractionSummary)")}
    assert types["InteractionIDKey"] == "char(18)" and types["SeqNo"] == "tinyint"
    assert types["RemoteID"] == "nvarchar(50)"


def test_reference_export_join_runs_unchanged(site: PureConnectSite) -> None:
    day = DAYS[1]
    lo, hi = f"{day} 00:00:00.000", f"{day + timedelta(days=1)} 00:00:00.000"
    got = sorted(tuple(r) for r in _rows(site, EXPORT_JOIN, (lo, hi)))
    # The same join, computed in Python from the raw tables.
    summary = _rows(site, "SELECT InteractionIDKey, StartDateTimeUTC FROM InteractionSummary")
    media = _rows(site, "SELECT RecordingId, QueueObjectIdKey, MediaURI, MediaType FROM IR_RecordingMedia")
    by_key: dict[str, list[sqlite3.Row]] = {}
    for m in media:
        by_key.setdefault(m["QueueObjectIdKey"], []).append(m)
    expected = sorted(
        (s["InteractionIDKey"], s["StartDateTimeUTC"], m["RecordingId"], m["MediaURI"], m["MediaType"])
        for s in summary if lo <= s["StartDateTimeUTC"] < hi
        for m in by_key.get(s["InteractionIDKey"], []) if m["MediaType"] in (1, 2, 3)
    )
    assert got == expected
    assert len(got) > N // 2
    assert {r[4] for r in got} == {1, 2, 3}  # calls, chats and emails all exported


def test_call_detail_view_shows_local_and_gmt(site: PureConnectSite) -> None:
    day = DAYS[1]
    traps = site.trap_rows(day)
    local_only = set(traps["local_time_only"])
    recreated = {(k, s) for k, s, _ in traps["seqno_recreated"]}  # the view has no SeqNo: skip those keys
    view = {(r["CallId"], r["SiteID"]): r for r in _rows(site, "SELECT * FROM CallDetail_viw")}
    checked = 0
    for row in _day_rows(site, day):
        if (row["InteractionIDKey"], row["SiteID"]) in recreated:
            continue
        v = view[(row["InteractionIDKey"], row["SiteID"])]
        if _key(row) in local_only:
            assert v["InitiatedDateTimeGmt"] is None
            assert v["InitiatedDate"] == row["InitiatedDateTimeUTC"]
        elif row["SeqNo"] == 0 and row["StartDTOffset"] is not None:
            assert v["InitiatedDateTimeGmt"] == row["InitiatedDateTimeUTC"]
            local = _ts(row["InitiatedDateTimeUTC"]) + timedelta(seconds=row["StartDTOffset"])
            assert _ts(v["InitiatedDate"]) == local
            assert row["StartDTOffset"] in (-18000, -14400)  # New York, seconds
            checked += 1
    assert checked > N // 2 and local_only


def test_datetimes_are_fixed_width_text(site: PureConnectSite) -> None:
    for r in _rows(site, "SELECT StartDateTimeUTC, TerminatedDateTimeUTC FROM InteractionSummary"):
        assert len(r["StartDateTimeUTC"]) == 23 and _ts(r["StartDateTimeUTC"])


# ---------------------------------------------------------------------------------------------------------
# Traps
# ---------------------------------------------------------------------------------------------------------


def _csv_map(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as f:
        return {row[0]: row[1] for row in list(csv.reader(f))[1:]}


@pytest.mark.parametrize("day", DAYS)
def test_row_traps_at_configured_counts_and_manifest_matches_db(site: PureConnectSite, day: date) -> None:
    manifest = {k: set(v) for k, v in site.trap_rows(day).items()}
    assert set(manifest) == set(ROW_TRAPS)
    for name in ROW_TRAPS:
        expected = TrapRates.count(getattr(TRAPS, name), N) * (2 if name == "key_collision" else 1)
        assert len(manifest[name]) == expected, name

    rows = _day_rows(site, day)
    keys = [_key(r) for r in rows]
    directory = build_directory(site.seed)
    user_ids = {u.id for u in directory.users}
    queue_ids = {q.id for q in directory.queues}
    wrapup_ids = {w.id for w in directory.wrapup_codes}
    agents = {k for k, v in _csv_map(site.agents_csv).items() if v in user_ids}
    queues = {k for k, v in _csv_map(site.queues_csv).items() if v in queue_ids}
    wrapups = {k for k, v in _csv_map(site.wrapups_csv).items() if v in wrapup_ids}
    wraps = _rows(site, "SELECT * FROM InteractionWrapup WHERE substr(InteractionIDKey, 11, 8) = ?",
                  (f"{day:%Y%m%d}",))

    def where(pred) -> set:
        return {_key(r) for r in rows if pred(r)}

    assert where(lambda r: r["StartDTOffset"] is None) == manifest["local_time_only"]
    assert where(lambda r: r["TerminatedDateTimeUTC"] < r["StartDateTimeUTC"]) == manifest["end_before_start"]
    sites_of: dict[str, set[int]] = {}
    for k, s, _ in keys:
        sites_of.setdefault(k, set()).add(s)
    assert {k for k in keys if len(sites_of[k[0]]) > 1} == manifest["key_collision"]
    pairs = {}
    for key in manifest["key_collision"]:
        pairs.setdefault(key[0], []).append(key)
    twins = [(a, b) for a, b in pairs.values()]
    by_key = {_key(r): r for r in rows}
    for a, b in twins:  # distinct interactions, not copies
        assert by_key[a]["StartDateTimeUTC"] != by_key[b]["StartDateTimeUTC"]
    tuples = [tuple(r) for r in rows]
    assert {t[:3] for t in tuples if tuples.count(t) == 2} == manifest["true_duplicate"]
    assert len(rows) == len(set(tuples)) + len(manifest["true_duplicate"])
    assert where(lambda r: r["SeqNo"] > 0) == manifest["seqno_recreated"]
    assert where(lambda r: r["LastLocalUserId"] and r["LastLocalUserId"] not in agents) == manifest["unmapped_agent"]
    assert where(lambda r: r["LastAssignedWorkgroupID"] and r["LastAssignedWorkgroupID"] not in queues) \
        == manifest["unmapped_queue"]
    assert {_key(w) for w in wraps if w["WrapupCode"] not in wrapups} == manifest["unmapped_wrapup"]
    special = where(lambda r: any(c in SPECIAL_CHARS for c in (r["LastLocalUserId"] or "")
                                  + (r["LastAssignedWorkgroupID"] or "")))
    assert special == manifest["special_char_id"]
    ids = "".join(r["LastLocalUserId"] + r["LastAssignedWorkgroupID"] for r in rows if _key(r) in special)
    assert {"#", "'"} & set(ids) and {"&", "/"} & set(ids)
    assert where(lambda r: r["Direction"] not in (1, 2, 3, 4, 5)
                 or r["MediaType"] not in (0, 1, 2, 4, 5, 6, 7, 8, 11, 21, 22)) == manifest["unknown_code"]
    # Both kinds of unmapped agent appear: legacy-only ids and directory users left out of the CSV.
    unmapped = {by_key[k]["LastLocalUserId"] for k in manifest["unmapped_agent"]}
    assert unmapped & set(directory.legacy_only_agents)
    assert unmapped & {u.legacy_agent_id for u in directory.agents if not u.in_mapping_csv}
    assert site.day_stats(day).summary_rows == len(rows)


def test_trap_rates_are_configurable(tmp_path: Path) -> None:
    rates = TrapRates(local_time_only=0.2, end_before_start=0.0, amr_nb=0.5, sasf=0.0)
    s = build_site(tmp_path, DAYS[0], DAYS[0], interactions_per_day=40, traps=rates)
    traps = s.trap_rows(DAYS[0])
    assert len(traps["local_time_only"]) == 8 and traps["end_before_start"] == []
    kinds = s.recording_kinds(DAYS[0])
    calls = sum(len(v) for k, v in kinds.items() if rec.RecordingKind(k) in rec.AUDIO_KINDS)
    assert len(kinds["amr_nb"]) == TrapRates.count(0.5, calls) and kinds["sasf"] == []
    with pytest.raises(ValueError):
        TrapRates(local_time_only=0.7, unmapped_agent=0.5)


# ---------------------------------------------------------------------------------------------------------
# Recordings
# ---------------------------------------------------------------------------------------------------------


def _media(site: PureConnectSite) -> dict[str, sqlite3.Row]:
    return {r["RecordingId"]: r for r in _rows(site, "SELECT * FROM IR_RecordingMedia")}


def _wav_fmt(data: bytes) -> tuple[int, int, int]:
    """(format tag, block align, declared data size) from a RIFF/WAVE header."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    pos, tag, align, size = 12, -1, -1, -1
    while pos + 8 <= len(data):
        cid, clen = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            tag, _, _, _, align = struct.unpack("<HHIIH", data[pos + 8:pos + 22])
        if cid == b"data":
            size = clen
            break
        pos += 8 + clen + (clen & 1)
    return tag, align, size


@pytest.mark.parametrize("day", DAYS)
def test_recording_kinds_at_configured_counts(site: PureConnectSite, day: date) -> None:
    kinds = site.recording_kinds(day)
    calls = sum(len(v) for k, v in kinds.items() if rec.RecordingKind(k) in rec.AUDIO_KINDS)
    assert calls > 50
    for name in RECORDING_TRAPS:
        assert len(kinds[name]) == TrapRates.count(getattr(TRAPS, name), calls), name
    for good in rec.PLAYABLE_KINDS:
        assert kinds[good.value], good  # every playable codec is present
    assert kinds["chat_xml"] and kinds["email_txt"]
    total = sum(len(v) for v in kinds.values())
    assert total == site.day_stats(day).recordings
    tagged = _rows(site, "SELECT tm.RecordingId, rm.RecordingDate, rm.ExpirationDate FROM IR_TagMap tm "
                         "JOIN IR_Tag t ON t.TagId = tm.TagId JOIN IR_RecordingMedia rm ON rm.RecordingId = "
                         "tm.RecordingId WHERE t.Name = 'Retention-7Y' AND substr(rm.QueueObjectIdKey, 11, 8) = ?",
                   (f"{day:%Y%m%d}",))
    assert len(tagged) == TrapRates.count(TRAPS.retention_7y, total)
    for r in tagged:
        assert _ts(r["ExpirationDate"]).year - _ts(r["RecordingDate"]).year == 7


def test_recording_files_decode_or_fail_as_designed(site: PureConnectSite) -> None:
    media = _media(site)
    seen: set[rec.RecordingKind] = set()
    for day in DAYS:
        for kind_name, ids in site.recording_kinds(day).items():
            kind = rec.RecordingKind(kind_name)
            for rid in ids:
                row = media[rid]
                uri = row["MediaURI"]
                assert uri.startswith("file:///")
                path = rec.resolve_media_uri(uri)
                assert path.is_relative_to(site.recordings_dir / "IRSERVER01" / "IRRecordings")
                expected_media = {rec.RecordingKind.CHAT_XML: 2, rec.RecordingKind.EMAIL_TXT: 3}.get(kind, 1)
                assert row["MediaType"] == expected_media
                seen.add(kind)
                if kind is rec.RecordingKind.MISSING:
                    assert not path.exists() and row["FileSize"] > 0
                    continue
                data = path.read_bytes()
                if kind in rec.PLAYABLE_KINDS or kind in rec.TRANSCODE_KINDS:
                    assert row["FileSize"] == len(data)
                    decoder, ms = rec.decode_duration_ms(path)
                    assert decoder == rec.DECODER[kind]
                    assert ms == row["Duration"] and 2000 <= ms <= 20100
                    if kind is rec.RecordingKind.AMR_NB:
                        assert data.startswith(b"#!AMR\n")
                    else:
                        tag, align, _ = _wav_fmt(data)
                        assert tag == {rec.RecordingKind.PCM16: 1, rec.RecordingKind.MULAW: 7,
                                       rec.RecordingKind.ALAW: 6, rec.RecordingKind.GSM610: 0x31,
                                       rec.RecordingKind.G726: 0x45}[kind]
                        if kind is rec.RecordingKind.GSM610:
                            assert align == 65 and b"fact" in data[:80]
                elif kind is rec.RecordingKind.SASF:
                    assert data.startswith(rec.SASF_MAGIC) and row["FileSize"] == len(data)
                    assert row["MediaKey"]
                    with pytest.raises(av.error.InvalidDataError):
                        rec.decode_duration_ms(path)
                elif kind is rec.RecordingKind.ZERO_BYTE:
                    assert data == b"" and row["FileSize"] > 0
                elif kind is rec.RecordingKind.TRUNCATED:
                    _, _, declared = _wav_fmt(data)
                    assert declared > len(data) - 44 and len(data) < row["FileSize"]
                    _, ms = rec.decode_duration_ms(path)
                    assert ms < row["Duration"]  # decodes short of what IR recorded
                elif kind is rec.RecordingKind.CHAT_XML:
                    assert ET.fromstring(data).tag == "chatTranscript" and row["FileSize"] == len(data)
                else:
                    assert data.startswith(b"From: ") and row["FileSize"] == len(data)
    assert seen == set(rec.RecordingKind)


def test_gsm610_wav_decodes_to_its_duration(tmp_path: Path) -> None:
    path = tmp_path / "gsm.wav"
    written = rec.write_recording(path, rec.RecordingKind.GSM610, "k", 3000)
    assert written.duration_ms == 3000
    decoder, ms = rec.decode_duration_ms(path)
    assert (decoder, ms) == ("gsm_ms", 3000)
    with av.open(str(path)) as c:
        assert c.streams.audio[0].sample_rate == 8000 and c.streams.audio[0].channels == 1


def test_resolve_media_uri_forms(tmp_path: Path) -> None:
    p = tmp_path / "a b#c.wav"
    assert rec.resolve_media_uri(p.as_uri()) == p
    assert rec.resolve_media_uri(str(p)) == p
    assert rec.resolve_media_uri(r"\\IRSERVER01\IRRecordings\x.wav") == Path("//IRSERVER01/IRRecordings/x.wav")


# ---------------------------------------------------------------------------------------------------------
# Determinism and incremental builds
# ---------------------------------------------------------------------------------------------------------


def _snapshot(site: PureConnectSite, day: date) -> tuple[dict, dict]:
    """Every row of ``day`` in every table (MediaURI relative to the root) and every file's sha256."""
    suffix = f"{day:%Y%m%d}"
    tables = {}
    root_uri = site.root.as_uri()
    with contextlib.closing(site.connect()) as con:
        for table, col in (("InteractionSummary", "InteractionIDKey"), ("InteractionWrapup", "InteractionIDKey"),
                           ("InteractionCustomAttributes", "InteractionIDKey"),
                           ("IR_RecordingMedia", "QueueObjectIdKey")):
            rows = con.execute(f"SELECT * FROM {table} WHERE substr({col}, 11, 8) = ?", (suffix,)).fetchall()
            tables[table] = sorted(tuple(v.replace(root_uri, "ROOT") if isinstance(v, str) else v for v in r)
                                   for r in rows)
        tables["IR_TagMap"] = sorted(con.execute(
            "SELECT tm.* FROM IR_TagMap tm JOIN IR_RecordingMedia rm ON rm.RecordingId = tm.RecordingId "
            "WHERE substr(rm.QueueObjectIdKey, 11, 8) = ?", (suffix,)).fetchall())
        tables["traps"] = sorted(con.execute("SELECT * FROM _sandbox_traps WHERE Day = ?", (day.isoformat(),)),
                                 key=repr)
    folder = site.recordings_dir / "IRSERVER01" / "IRRecordings" / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
    return tables, files


def test_same_seed_and_day_give_identical_rows_and_files(site: PureConnectSite, tmp_path: Path) -> None:
    day = DAYS[1]
    wider = build_site(tmp_path / "wider", day - timedelta(days=1), day + timedelta(days=1), interactions_per_day=N)
    assert _snapshot(wider, day) == _snapshot(site, day)
    other_seed = build_site(tmp_path / "other", day, day, seed=site.seed + 1, interactions_per_day=N)
    assert _snapshot(other_seed, day)[1] != _snapshot(site, day)[1]


def test_rebuild_is_a_no_op_and_new_params_rebuild_the_day(tmp_path: Path) -> None:
    day = DAYS[0]
    s = build_site(tmp_path, day, day, interactions_per_day=30)
    before = _snapshot(s, day)
    wav = next(p for p in s.recordings_dir.rglob("*.wav"))
    mtime = wav.stat().st_mtime_ns
    build_site(tmp_path, day, day, interactions_per_day=30)  # nothing rewritten: same files, same rows
    assert wav.stat().st_mtime_ns == mtime and _snapshot(s, day) == before
    s2 = build_site(tmp_path, day, day, interactions_per_day=20)
    assert s2.day_stats(day).interactions == 20
    assert build_site(tmp_path, day, day, interactions_per_day=30, force=True).day_stats(day).interactions == 30
    assert _snapshot(s, day) == before  # rebuilt from the same (seed, day): identical again
    assert PureConnectSite.open(tmp_path) == s


# ---------------------------------------------------------------------------------------------------------
# Mapping CSVs
# ---------------------------------------------------------------------------------------------------------


def test_mapping_csvs_have_deliberate_gaps_stale_rows_and_quoting(site: PureConnectSite) -> None:
    directory = build_directory(site.seed)
    user_ids = {u.id for u in directory.users}
    queue_ids = {q.id for q in directory.queues}
    wrapup_ids = {w.id for w in directory.wrapup_codes}
    for path, header, valid in (
        (site.agents_csv, ["legacy_agent_id", "genesys_user_id", "genesys_user_name"], user_ids),
        (site.queues_csv, ["legacy_queue_id", "genesys_queue_id", "genesys_queue_name"], queue_ids),
        (site.wrapups_csv, ["legacy_wrapup_code", "genesys_wrapup_code_id", "genesys_wrapup_code_name"], wrapup_ids),
    ):
        text = path.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == header
        body = rows[1:]
        assert len({r[0] for r in body}) == len(body)  # one row per legacy id
        stale = [r for r in body if r[1] not in valid]
        assert len(stale) == 1, path.name  # exactly one row points at a Cloud id that does not exist
        assert "," in stale[0][2] and '"' in stale[0][2]
        assert '""' in text  # embedded quotes doubled (RFC 4180)
    agents = _csv_map(site.agents_csv)
    for u in directory.agents:
        if not u.in_mapping_csv:
            assert u.legacy_agent_id not in agents or agents[u.legacy_agent_id] != u.id
    assert any("#" in a for a in agents) and any("'" in a for a in agents)
    assert not set(directory.legacy_only_agents[:-1]) & set(agents)
    queues = _csv_map(site.queues_csv)
    assert "Billing & Payments" in queues and "Fraud/Disputes" in queues
    assert all(q.legacy_workgroup not in queues for q in directory.routing_queues if not q.in_mapping_csv)
    assert "TECH-TICKET" not in _csv_map(site.wrapups_csv)
