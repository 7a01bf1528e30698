"""The watermark sensor against a sandbox site, and the pure transforms' edge cases."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import orjson
import polars as pl
import pytest

from genesys_assets.defs.legacy.sensors import pureconnect_watermark_sensor
from genesys_assets.lib import legacy_cloud as lc
from genesys_assets.lib import legacy_id_maps as idm
from genesys_assets.lib import legacy_interactions as li
from genesys_assets.lib.pii import AddressHasher
from genesys_assets.resources import pureconnect as pc
from genesys_assets.resources.pureconnect import PureConnectResource
from genesys_assets.sandbox.pureconnect_site import build_site

DAY = date(2026, 11, 3)


def _tick(resource: PureConnectResource, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, resources={"pureconnect": resource})
    result = pureconnect_watermark_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_sensor_requests_settled_days_once_and_late_rows_again(tmp_path: Path) -> None:
    site = build_site(tmp_path / "site", DAY - timedelta(days=1), DAY + timedelta(days=1), interactions_per_day=20)
    resource = PureConnectResource(uri=site.uri)
    first = _tick(resource, None)
    # The watermark is late on DAY+1: DAY-1 and DAY have settled, DAY+1 has not.
    assert [r.partition_key for r in first.run_requests] == [(DAY - timedelta(days=1)).isoformat(),
                                                             DAY.isoformat()]
    assert _tick(resource, first.cursor).run_requests == []
    with contextlib.closing(sqlite3.connect(site.db_path)) as con, con:  # a late row arrives for DAY-1
        con.execute("INSERT INTO InteractionSummary SELECT substr('9' || InteractionIDKey, 1, 18), SiteID, SeqNo, "
                    "InteractionID, StartDateTimeUTC, StartDTOffset, InitiatedDateTimeUTC, ConnectedDateTimeUTC, "
                    "TerminatedDateTimeUTC, Direction, ConnectionType, MediaType, RemoteID, RemoteName, DNIS_LocalID, "
                    "LastLocalUserId, LastAssignedWorkgroupID, FirstAssignedAcdSkillSet, AccountCode, LineDuration, "
                    "tDialing, tIVRWait, tQueueWait, tAlert, tConnected, tHeld, tConference, tExternal, tACW, nIVR, "
                    "nQueueWait, nTalk, nConference, nHeld, nTransfer, nExternal, Disposition FROM "
                    "InteractionSummary WHERE StartDTOffset IS NOT NULL AND StartDateTimeUTC LIKE ? LIMIT 1",
                    (f"{DAY - timedelta(days=1)}%",))
    late = _tick(resource, first.cursor)
    assert [r.partition_key for r in late.run_requests] == [(DAY - timedelta(days=1)).isoformat()]
    assert late.run_requests[0].tags["pureconnect/late"] == "true"
    previous = (DAY - timedelta(days=1)).isoformat()
    assert orjson.loads(late.cursor)[previous] == orjson.loads(first.cursor)[previous] + 1


def test_sensor_settings_come_from_the_environment_and_a_bad_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = build_site(tmp_path / "site", DAY - timedelta(days=1), DAY + timedelta(days=1), interactions_per_day=20)
    resource = PureConnectResource(uri=site.uri)
    monkeypatch.setenv("PURECONNECT_SENSOR_LOOKBACK_DAYS", "1")  # only the last settled day
    assert [r.partition_key for r in _tick(resource, None).run_requests] == [DAY.isoformat()]
    monkeypatch.setenv("PURECONNECT_SETTLE_MINUTES", str(24 * 60))  # a day must wait a whole day to settle
    assert [r.partition_key for r in _tick(resource, None).run_requests] == [(DAY - timedelta(days=1)).isoformat()]
    monkeypatch.setenv("PURECONNECT_SETTLE_MINUTES", "an hour")
    context = dg.build_sensor_context(resources={"pureconnect": resource})
    with pytest.raises(ValueError, match=r"PURECONNECT_SETTLE_MINUTES must be a number, got 'an hour'"):
        pureconnect_watermark_sensor(context)
    monkeypatch.setenv("PURECONNECT_SETTLE_MINUTES", "60")
    monkeypatch.setenv("PURECONNECT_SENSOR_LOOKBACK_DAYS", "0")
    with pytest.raises(ValueError, match=r"PURECONNECT_SENSOR_LOOKBACK_DAYS must be >= 1, got '0'"):
        pureconnect_watermark_sensor(context)


def test_sensor_skips_an_empty_site(tmp_path: Path) -> None:
    from genesys_assets.sandbox.pureconnect_site import create_empty_site

    site = create_empty_site(tmp_path / "empty")
    context = dg.build_sensor_context(resources={"pureconnect": PureConnectResource(uri=site.uri)})
    assert isinstance(pureconnect_watermark_sensor(context), dg.SkipReason)


# ---------------------------------------------------------------------------------------------------------
# normalise_day edge cases on hand-made rows
# ---------------------------------------------------------------------------------------------------------


def _row(key: str, start: str | None, end: str | None, offset: int | None = -18000, **kw: object) -> dict:
    row: dict = dict.fromkeys(pc.INTERACTION_SUMMARY_SCHEMA)
    ts = (lambda v: datetime.fromisoformat(v) if v else None)  # noqa: E731
    row.update(InteractionIDKey=key, SiteID=1, SeqNo=0, InteractionID=1, StartDateTimeUTC=ts(start),
               StartDTOffset=offset, InitiatedDateTimeUTC=ts(start), TerminatedDateTimeUTC=ts(end), Direction=1,
               ConnectionType=1, MediaType=0, RemoteID="+12125550199", LastLocalUserId="a", LineDuration=1000)
    row.update(kw)
    return row


def _day(rows: list[dict]) -> SimpleNamespace:
    recordings_schema = {**pc.IR_RECORDING_MEDIA_SCHEMA, "Tags": pl.List(pl.String)}
    return SimpleNamespace(
        interactions=pl.DataFrame(rows, schema=pc.INTERACTION_SUMMARY_SCHEMA),
        wrapups=pl.DataFrame(schema=pc.INTERACTION_WRAPUP_SCHEMA),
        custom_attributes=pl.DataFrame(schema=pc.INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA),
        recordings=pl.DataFrame(schema=recordings_schema))


def test_custom_attribute_strings_that_are_phone_numbers_are_hashed() -> None:
    day = _day([_row("K-1", "2026-11-03 10:00:00", "2026-11-03 10:05:00")])
    hasher = AddressHasher("k" * 32)
    custom = {c: None for c in pc.INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA}
    custom.update(InteractionIDKey="K-1", SiteID=1, SeqNo=0, CustomNum1=42, CustomString1="tel:+1 317 555 0177",
                  CustomString2="+13175550177", CustomString3="gold", CustomString4="11748334",
                  CustomString5="TEL:+13175550177")
    day.custom_attributes = pl.DataFrame([custom], schema=pc.INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA)
    record = li.normalise_day(day, DAY, "America/New_York", hasher).interactions.row(0, named=True)
    attributes = json.loads(record["custom_attributes"])
    assert attributes["CustomString1"] == attributes["CustomString2"] == hasher.hash("+13175550177")
    assert attributes["CustomString5"] == hasher.hash("+13175550177")  # TEL: is tel:, as in the raw pages
    assert (attributes["CustomNum1"], attributes["CustomString3"]) == (42, "gold")
    assert attributes["CustomString4"] == "11748334"  # digits alone are account numbers, as in Cloud attributes
    assert "555" not in record["custom_attributes"]


def test_the_columns_a_site_keeps_phone_numbers_in_are_hashed_whole() -> None:
    day = _day([_row("K-1", "2026-11-03 10:00:00", "2026-11-03 10:05:00")])
    hasher = AddressHasher("k" * 32)
    custom = {c: None for c in pc.INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA}
    custom.update(InteractionIDKey="K-1", SiteID=1, SeqNo=0, CustomNum1=3175550177, CustomNum2=42,
                  CustomString2="317-555-0177", CustomString3="", CustomString4="11748334")
    day.custom_attributes = pl.DataFrame([custom], schema=pc.INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA)
    columns = li.phone_custom_columns(" CustomString2, CustomNum1,CustomString3,CustomString5,CustomString2 ",
                                      pc.INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA)
    assert columns == ("CustomString2", "CustomNum1", "CustomString3", "CustomString5")
    record = li.normalise_day(day, DAY, "America/New_York", hasher, columns).interactions.row(0, named=True)
    attributes = json.loads(record["custom_attributes"])
    assert attributes["CustomString2"] == hasher.hash("317-555-0177")  # no tel: or +, but this site's phone column
    assert attributes["CustomNum1"] == hasher.hash("3175550177")
    assert (attributes["CustomString3"], attributes["CustomString5"]) == ("", None)  # nothing to hash
    assert (attributes["CustomNum2"], attributes["CustomString4"]) == (42, "11748334")  # other columns: as before
    assert "555" not in record["custom_attributes"]


def test_a_phone_column_the_table_does_not_have_is_an_error_naming_the_columns() -> None:
    day = _day([_row("K-1", "2026-11-03 10:00:00", "2026-11-03 10:05:00")])
    error = "CustomStrng2, which InteractionCustomAttributes does not have; its columns are CustomNum1"
    with pytest.raises(ValueError, match=error):  # the asset's check, before the day is read
        li.phone_custom_columns("CustomStrng2", pc.INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA)
    with pytest.raises(ValueError, match=error) as raised:  # and normalise_day's own, for any other caller
        li.normalise_day(day, DAY, "America/New_York", AddressHasher("k" * 32), ("CustomStrng2",))
    assert str(raised.value).startswith("phone_columns names CustomStrng2")  # its argument, not a setting it never read


def test_a_mapping_written_twice_or_listed_twice_maps_each_interaction_once() -> None:
    # Both rows were valid, and the join to the interactions doubled each one (two payloads, two ledger rows).
    user = "11111111-1111-4111-8111-111111111111"
    csv = pl.DataFrame({"legacy_id": ["a", "a", "b"], "cloud_id": [user, user, user],
                        "csv_name": ["John Doe", "John Doe ", "Jane"]})
    directory = idm.directory_frame([{"id": user, "name": "John Doe", "state": "active"}] * 2)
    checked = idm.validate_map(idm.AGENTS, csv, directory)
    assert checked.select("legacy_id", "status").rows() == [("a", "valid"), ("a", "invalid"), ("b", "valid")]
    assert checked["problem"][1].startswith("repeats an earlier row") and checked["csv_name"][0] == "John Doe"
    maps = idm.IdMaps(pl.concat([checked, idm.validate_map(idm.QUEUES, csv.clear(), directory),
                                 idm.validate_map(idm.WRAPUPS, csv.clear(), directory)]),
                      user, "John Doe", user, "Queue")
    rows = [_row(f"K-{i}", "2026-11-03 10:00:00", "2026-11-03 10:05:00", LastLocalUserId="a") for i in range(3)]
    canonical = li.normalise_day(_day(rows), DAY, "America/New_York", AddressHasher("k" * 32)).interactions
    resolved = lc.resolve_mappings(canonical, maps, "default_queue")
    assert resolved.height == 3 and resolved["agent_mapping"].to_list() == ["mapped"] * 3


def test_edge_rows_are_quarantined_with_their_reason() -> None:
    rows = [
        _row("K-ok", "2026-11-03 10:00:00", "2026-11-03 10:05:00"),
        _row("K-swap", "2026-11-03 12:00:00", "2026-11-03 11:59:00"),  # repaired, stays in the day
        _row("K-cross", "2026-11-03 00:01:00", "2026-11-02 23:58:00"),  # repaired start leaves the day
        _row(" ", "2026-11-03 10:00:00", "2026-11-03 10:01:00"),
        _row("K-conflict", "2026-11-03 09:00:00", "2026-11-03 09:01:00"),
        _row("K-conflict", "2026-11-03 09:00:00", "2026-11-03 09:02:00"),
        _row("K-dup", "2026-11-03 08:00:00", "2026-11-03 08:01:00"),
        _row("K-dup", "2026-11-03 08:00:00", "2026-11-03 08:01:00"),
        _row("K-ms", "2026-11-03 13:00:00", "2026-11-03 13:01:00", offset=-18_000_000),
    ]
    result = li.normalise_day(_day(rows), DAY, "America/New_York", AddressHasher("k" * 32))
    reasons = dict(zip(result.rejects["InteractionIDKey"], result.rejects["reason"], strict=True))
    assert reasons == {"K-cross": li.END_BEFORE_START, " ": li.MISSING_KEY, "K-conflict": li.CONFLICTING_DUPLICATE,
                       "K-dup": li.DUPLICATE_ROW}
    assert result.rejects.filter(pl.col("InteractionIDKey") == "K-conflict").height == 2
    ok = {r["legacy_interaction_id_key"]: r for r in result.interactions.to_dicts()}
    assert set(ok) == {"K-ok", "K-swap", "K-dup", "K-ms"}
    assert ok["K-swap"]["end_before_start_repaired"] and ok["K-swap"]["start_time"] < ok["K-swap"]["end_time"]
    assert ok["K-ms"]["start_offset_seconds"] == -18000  # milliseconds on the wire, seconds in the record
    assert ok["K-ok"]["raw_start"] == "2026-11-03 10:00:00.000"
    assert "+12125550199" not in result.rejects["raw"].str.join("").item()
    # Ids are deterministic and never the legacy id.
    again = li.normalise_day(_day(rows), DAY, "America/New_York", AddressHasher("k" * 32))
    assert again.interactions["id"].to_list() == result.interactions["id"].to_list()
    assert result.stats["source_rows"] == result.interactions.height + result.rejects.height


def test_local_times_that_dst_makes_ambiguous_or_impossible_are_quarantined() -> None:
    rows = [_row("K-fallback", "2026-11-01 01:30:00", "2026-11-01 01:40:00", offset=None),
            _row("K-springs", "2026-03-08 02:30:00", "2026-03-08 02:40:00", offset=None)]
    hasher = AddressHasher("k" * 32)
    fall = li.normalise_day(_day(rows), date(2026, 11, 1), "America/New_York", hasher)
    spring = li.normalise_day(_day(rows), date(2026, 3, 8), "America/New_York", hasher)
    assert fall.rejects["reason"].to_list() == [li.AMBIGUOUS_LOCAL_TIME]
    assert spring.rejects["reason"].to_list() == [li.NONEXISTENT_LOCAL_TIME]


# ---------------------------------------------------------------------------------------------------------
# id maps
# ---------------------------------------------------------------------------------------------------------


def test_mapping_rows_are_validated_against_the_directory(tmp_path: Path) -> None:
    good, gone = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    csv = tmp_path / "agents.csv"
    csv.write_text('legacy_agent_id,genesys_user_id,genesys_user_name\n'
                   f'"o\'brien#7",{good},"O\'Brien, Pat"\nstale,{gone},Gone\nbad,not-a-uuid,Bad\n'
                   f'twice,{good},A\ntwice,{gone},B\n', encoding="utf-8")
    directory = idm.directory_frame([{"id": good, "name": "Pat O'Brien", "state": "deleted"}])
    checked = idm.validate_map(idm.AGENTS, idm.read_mapping_csv(csv, idm.AGENTS), directory)
    status = {(r["legacy_id"], r["cloud_id"]): (r["status"], r["problem"]) for r in checked.to_dicts()}
    assert status[("o'brien#7", good)] == ("valid", None)  # special characters and deleted users survive
    assert status[("stale", gone)][1] == "cloud id not found in the directory"
    assert status[("bad", "not-a-uuid")][1] == "cloud id is not a UUID"
    assert status[("twice", good)][1] == "legacy id mapped to several cloud ids"
    assert checked.height == 5
    with pytest.raises(idm.MappingError, match="GENESYS_FALLBACK_USER"):
        idm.resolve_target(directory, "Historical Migration - Unknown Agent", "fallback user",
                           "GENESYS_FALLBACK_USER")
    with pytest.raises(idm.MappingError, match="missing"):
        idm.read_mapping_csv(tmp_path / "queues.csv", idm.QUEUES)
