"""Conversation details: parsing, flattening, dedup, day membership, wrap-up facts and the streamed day files."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genesys_assets.lib import conversation_details
from genesys_assets.lib.conversation_details import (
    ROW_GROUP_SIZE,
    DayFlattener,
    MissingRequiredFieldError,
    flatten,
    parse_page,
    wrapup_facts,
)
from genesys_assets.lib.pii import AddressHasher, is_phone_attribute, normalize_address
from genesys_assets.lib.raw_redaction import redact_page
from genesys_assets.lib.schemas import TABLE_SCHEMAS, WRAPUP_FACTS_SCHEMA
from genesys_assets.sandbox.conversations import ConversationStore

DAY = date(2024, 3, 5)
KEY = b"test-hmac-key"
PHONE = "tel:+13175550142"
PHONE_DIGITS = "3175550142"
DNIS = "tel:+18005550100"
DIVISION = "div-home"


# ------------------------------------------------------------------------------------------------ fixtures

def seg(start: str, end: str | None, kind: str, **extra: object) -> dict:
    out: dict = {"segmentStart": start, "segmentType": kind, **extra}
    if end:
        out["segmentEnd"] = end
    return out


def conversation(cid: str, start: str, end: str | None = None, *, code: str = "code-sale",
                 agent_segments: list[dict] | None = None, **extra: object) -> dict:
    """A voice conversation shaped like AnalyticsConversation: customer, ACD, one agent with a wrap-up."""
    agent_segments = agent_segments if agent_segments is not None else [
        seg(start, "2024-03-05T10:05:00.000Z", "interact", queueId="q-1"),
        seg("2024-03-05T10:05:00.000Z", "2024-03-05T10:06:00.000Z", "wrapup", queueId="q-1", wrapUpCode=code,
            wrapUpNote="call back on +1 317 555 0142 please"),
    ]
    conv = {
        "conversationId": cid, "conversationStart": start, "originatingDirection": "inbound",
        "conversationInitiator": "customer", "divisionIds": [DIVISION], "mediaStatsMinConversationMos": 4.21,
        "participants": [
            {"participantId": f"{cid}-c", "participantName": "+1 (317) 555-0142", "purpose": "customer",
             "attributes": {"intent": "billing", "callback": "tel:+13175550142"},
             "sessions": [{"sessionId": f"{cid}-cs", "mediaType": "voice", "direction": "inbound",
                           "ani": PHONE, "dnis": DNIS, "recording": True,
                           "segments": [seg(start, end, "interact")]}]},
            {"participantId": f"{cid}-q", "participantName": "Support", "purpose": "acd",
             "sessions": [{"sessionId": f"{cid}-qs", "mediaType": "voice", "direction": "inbound",
                           "ani": PHONE, "dnis": DNIS,
                           "metrics": [{"name": "nOffered", "value": 1, "emitDate": start},
                                       {"name": "tAcd", "value": 4000, "emitDate": start}],
                           "segments": [seg(start, start, "interact", queueId="q-1")]}]},
            {"participantId": f"{cid}-a", "participantName": "Ada Agent", "purpose": "agent", "userId": "user-ada",
             "sessions": [{"sessionId": f"{cid}-as", "mediaType": "voice", "direction": "inbound",
                           "ani": PHONE, "dnis": DNIS,
                           "metrics": [
                               {"name": "tAlert", "value": 3000, "emitDate": start},
                               {"name": "tAnswered", "value": 7000, "emitDate": start},
                               {"name": "nConnected", "value": 1, "emitDate": start},
                               {"name": "tTalk", "value": 240000, "emitDate": start},
                               {"name": "tHeld", "value": 10000, "emitDate": start},
                               {"name": "tHeld", "value": 5000, "emitDate": start},  # two holds: summed
                               {"name": "tAcw", "value": 60000, "emitDate": start},
                               {"name": "tHandle", "value": 315000, "emitDate": start},
                               {"name": "tSomethingNew", "value": 1, "emitDate": start},  # not pivoted
                           ],
                           "segments": agent_segments}]},
        ],
        **extra,
    }
    if end:
        conv["conversationEnd"] = end
    return conv


def page(convs: list[dict], cursor: str | None = "next") -> bytes:
    body: dict = {"conversations": convs, "dataAvailabilityDate": "2024-03-07T00:00:00.000Z"}
    if cursor:
        body["cursor"] = cursor
    return orjson.dumps(body)


def flat_of(*pages: bytes, day: date = DAY):
    return flatten([parse_page(p) for p in pages], day, KEY)


@pytest.fixture(scope="module")
def emulator_pages(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """20 realistic pages (20,000 conversations) from the sandbox tenant, 1,000 per page like the API."""
    store = ConversationStore(tmp_path_factory.mktemp("tenant"), seed=11, conversations_per_day=20_000)
    try:
        data = store.day(DAY)
        rows = [data.raw(i) for i in range(len(data))]
    finally:
        store.close()
    return [b'{"conversations":[' + b",".join(rows[i:i + 1000]) + b'],"cursor":"c' + str(i).encode() + b'"}'
            for i in range(0, len(rows), 1000)]


@pytest.fixture(scope="module")
def day_output(emulator_pages: list[bytes], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("day")
    with DayFlattener(DAY, out / "work", KEY, batch_conversations=5_000) as flattener:
        flattener.add_pages(emulator_pages)
        result = flattener.finish(out / "out")
    return result, out / "out"


# ------------------------------------------------------------------------------------------------- parsing

def test_parse_page_is_one_row_per_conversation_with_cursor_and_map_attributes() -> None:
    t = parse_page(page([conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z")], "abc"))
    assert t.num_rows == 1
    assert t.schema.metadata[b"cursor"] == b"abc"
    assert t.schema.metadata[b"parse_path"] == b"fast"
    attrs = t.column("participants")[0].as_py()[0]["attributes"]
    assert dict(attrs) == {"intent": "billing", "callback": "tel:+13175550142"}
    assert t.schema.field("conversationStart").type == pa.timestamp("us", tz="UTC")


def test_empty_and_last_pages_parse() -> None:
    assert parse_page(b"").num_rows == 0
    assert parse_page(page([], cursor=None)).num_rows == 0
    assert parse_page(b'{"dataAvailabilityDate":"2024-03-07T00:00:00Z"}').num_rows == 0


def test_schema_drift_unknown_keys_missing_keys_and_attribute_types_do_not_crash() -> None:
    c1 = conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z", brandNewField={"x": [1, 2]})
    c1["participants"][0]["sessions"][0]["newSessionThing"] = 42
    c1["participants"][0]["attributes"] = {"intent": "billing", "visits": 3, "vip": True, "score": 4.5,
                                           "gone": None, "blob": {"a": 1}}
    c2 = conversation("c2", "2024-03-05T11:00:00.000Z")  # no end, ongoing
    del c2["originatingDirection"], c2["mediaStatsMinConversationMos"], c2["divisionIds"]
    c2["participants"][0]["attributes"] = {"visits": "three"}  # same key, another type on the same page
    t = parse_page(page([c1, c2]))
    assert t.schema.metadata[b"parse_path"] == b"conform"  # type conflict: the lossless path, not a crash
    attrs = [dict(p[0]["attributes"]) for p in t.column("participants").to_pylist()]
    assert attrs[0] == {"intent": "billing", "visits": "3", "vip": "true", "score": "4.5", "blob": '{"a":1}'}
    assert attrs[1] == {"visits": "three"}
    flat = flatten(t, DAY, KEY)
    conv = flat.conversations.to_pylist()
    assert [c["conversation_id"] for c in conv] == ["c1", "c2"]
    assert conv[1]["originating_direction"] is None and conv[1]["conversation_end"] is None


def test_unknown_keys_alone_stay_on_the_fast_path_and_are_listed() -> None:
    c1 = conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z", brandNewField="x")
    c1["participants"][2]["sessions"][0]["segments"][0]["segmentNovelty"] = 7
    t = parse_page(page([c1]))
    assert t.schema.metadata[b"parse_path"] == b"fast"
    unknown = json.loads(t.schema.metadata[b"unknown_fields"])
    assert "conversations[].brandNewField" in unknown
    assert "conversations[].participants[].sessions[].segments[].segmentNovelty" in unknown
    assert flatten(t, DAY, KEY).segments.num_rows == 4


def test_wrongly_typed_known_field_is_coerced() -> None:
    c1 = conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z", externalTag=12345)
    c1["participants"][2]["sessions"][0]["metrics"][0]["value"] = "3000"
    flat = flat_of(page([c1]))
    assert flat.conversations.column("external_tag").to_pylist() == ["12345"]
    assert flat.sessions.column("t_alert_ms").to_pylist()[2] == 3000


def test_missing_required_key_fails_with_the_conversation_id() -> None:
    bad = conversation("c-bad", "2024-03-05T10:00:00.000Z")
    del bad["conversationStart"]
    with pytest.raises(MissingRequiredFieldError, match="c-bad"):
        flat_of(page([bad]))


# ---------------------------------------------------------------------------------------------- flattening

def test_metrics_are_pivoted_summed_and_null_when_absent() -> None:
    flat = flat_of(page([conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z")]))
    by_purpose = {s["participant_id"][-1]: s for s in flat.sessions.to_pylist()}
    agent, acd, customer = by_purpose["a"], by_purpose["q"], by_purpose["c"]
    assert (agent["t_handle_ms"], agent["t_talk_ms"], agent["t_acw_ms"], agent["t_held_ms"]) == (
        315000, 240000, 60000, 15000)
    assert (agent["t_alert_ms"], agent["t_answered_ms"], agent["n_connected"]) == (3000, 7000, 1)
    assert agent["n_transferred"] is None and agent["t_ivr_ms"] is None
    assert (acd["n_offered"], acd["t_acd_ms"], acd["t_handle_ms"]) == (1, 4000, None)
    assert all(v is None for k, v in customer.items() if k.startswith(("t_", "n_")))
    assert "tSomethingNew" not in flat.sessions.column_names


def test_day_filter_keeps_starts_in_the_half_open_day_and_counts_neighbours() -> None:
    convs = [
        conversation("prev-day", "2024-03-04T23:50:00.000Z", "2024-03-05T00:10:00.000Z"),  # neighbour
        conversation("at-midnight", "2024-03-05T00:00:00.000Z", "2024-03-05T00:10:00.000Z"),
        conversation("crosses", "2024-03-05T23:50:00.000Z", "2024-03-06T00:20:00.000Z"),  # belongs here
        conversation("next-day", "2024-03-06T00:00:00.000Z", "2024-03-06T00:05:00.000Z"),  # excluded bound
    ]
    flat = flat_of(page(convs))
    assert flat.conversations.column("conversation_id").to_pylist() == ["at-midnight", "crosses"]
    assert flat.conversations_in == 4 and flat.dropped_neighbours == 2
    for table in (flat.participants, flat.sessions, flat.segments):
        assert set(table.column("conversation_id").to_pylist()) == {"at-midnight", "crosses"}
    # The crosser is in the next day's job too; there it is a neighbour.
    assert flat_of(page(convs), day=date(2024, 3, 6)).conversations.column("conversation_id").to_pylist() == [
        "next-day"]


def test_conversation_dedup_keeps_the_most_complete_version_whatever_the_page_order() -> None:
    start = "2024-03-05T10:00:00.000Z"
    early = conversation("dup", start, None, agent_segments=[seg(start, None, "interact", queueId="q-1")],
                         externalTag="early")
    final = conversation("dup", start, "2024-03-05T10:06:00.000Z", externalTag="final")
    for order in ([early, final], [final, early]):
        flat = flat_of(page([order[0]]), page([order[1]]))
        assert flat.conversations.column("external_tag").to_pylist() == ["final"]
        assert flat.duplicate_conversations == 1
        assert flat.segments.num_rows == 4  # the surviving version's segments only
        assert flat.participants.num_rows == 3 and flat.sessions.num_rows == 3


def test_exact_ties_go_to_the_later_page() -> None:
    start, end = "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z"
    a = conversation("tie", start, end, externalTag="first-page")
    b = conversation("tie", start, end, externalTag="second-page")
    assert flat_of(page([a]), page([b])).conversations.column("external_tag").to_pylist() == ["second-page"]


def test_segment_dedup_within_a_session() -> None:
    start = "2024-03-05T10:00:00.000Z"
    segments = [seg(start, "2024-03-05T10:05:00.000Z", "interact", queueId="q-1"),
                seg(start, "2024-03-05T10:05:00.000Z", "interact", queueId="q-1"),  # duplicate key
                seg(start, "2024-03-05T10:01:00.000Z", "hold", queueId="q-1"),  # same start, other type: kept
                seg("2024-03-05T10:05:00.000Z", "2024-03-05T10:06:00.000Z", "wrapup", wrapUpCode="code-sale")]
    flat = flat_of(page([conversation("c1", start, "2024-03-05T10:06:00.000Z", agent_segments=segments)]))
    agent = [s for s in flat.segments.to_pylist() if s["participant_id"] == "c1-a"]
    assert [s["segment_type"] for s in agent] == ["interact", "hold", "wrapup"]
    assert flat.duplicate_segments == 1
    assert flat.conversations.column("segment_count").to_pylist() == [5]


def test_flat_tables_have_the_explicit_schemas() -> None:
    flat = flat_of(page([conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z")]))
    for name, table in flat.tables().items():
        assert table.schema.equals(TABLE_SCHEMAS[name], check_metadata=False), name


# ------------------------------------------------------------------------------------------ personal data

def test_addresses_are_hashed_with_the_key_and_normalised() -> None:
    flat = flat_of(page([conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z")]))
    hasher = AddressHasher(KEY)
    s = flat.sessions.to_pylist()[0]
    assert s["ani_hash"] == hasher.hash(PHONE) == hasher.hash("+1 (317) 555-0142")
    assert s["dnis_hash"] == hasher.hash(DNIS)
    assert AddressHasher(b"other-key").hash(PHONE) != s["ani_hash"]
    assert normalize_address("TEL:+1 317-555-0142") == "+13175550142"
    p = flat.participants.to_pylist()[0]
    assert p["participant_name"] == hasher.hash("+1 (317) 555-0142")  # a caller-id name that is a number
    assert dict(p["attributes"])["callback"] == hasher.hash(PHONE)
    assert flat.segments.to_pylist()[-1]["wrap_up_note"] == "call back on [phone] please"


# (key, value, is a phone number): by the value's own form, or by a key that names a phone number.
PHONE_ATTRIBUTE_CASES = [
    ("callbackNumber", "317-555-0142", True), ("callback", "(317) 555 0142", True),
    ("customer_phone", "3175550142", True),
    ("MSISDN", "447700900142", True), ("ANI", "317.555.0142", True), ("customerAni", "3175550142", True),
    ("customerANI", "3175550142", True), ("dnis", "8005550100", True), ("intent", "+13175550142", True),
    ("accountNumber", "31755501", False), ("company", "3175550142", False), ("callbackDate", "2026-12-03", False),
    ("mobile", "n/a", False), ("Animal", "3175550142", False), ("phone", "hmac:" + "0" * 32, False),
    ("ANIMAL", "3175550142", False), ("company", "3175550142", False), ("botANIcal", "3175550142", False),
    ("callback-number", "3175550142", True), ("Callback Number", "3175550142", True),
    ("ANI_ID", "3175550142", True), ("aniNumber", "3175550142", True), ("AniNumber", "3175550142", True),
    ("phoneVerifiedDate", "2026-12-03", False), ("phoneVerifiedAt", "2026-12-03T10:00:00Z", False),
]


def test_attribute_phone_numbers_are_the_same_in_python_and_polars() -> None:
    """The raw landing judges attributes in Python, the flattening in Polars: one rule, the same answers."""
    keys, values, expected = (list(column) for column in zip(*PHONE_ATTRIBUTE_CASES, strict=True))
    assert [is_phone_attribute(k, v) for k, v in zip(keys, values, strict=True)] == expected
    hasher = AddressHasher(KEY)
    hashed = hasher.hash_phone_attributes(pl.Series(keys), pl.Series(values)).to_list()
    assert [h != v for h, v in zip(hashed, values, strict=True)] == expected
    assert hashed[0] == hasher.hash("317-555-0142")


def test_a_phone_number_under_a_phone_key_is_hashed_in_the_lake() -> None:
    c = conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z")
    c["participants"][0]["attributes"] = {"callbackNumber": "317-555-0142", "accountNumber": "31755501"}
    attrs = dict(flat_of(page([c])).participants.to_pylist()[0]["attributes"])
    assert attrs == {"accountNumber": "31755501", "callbackNumber": AddressHasher(KEY).hash("317-555-0142")}


def test_a_landed_page_keeps_its_hashed_attributes_in_the_lake() -> None:
    """Production flattens the redacted page: the lake holds the raw landing's ``hmac:`` value, never the number."""
    c = conversation("c1", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z")
    c["participants"][0]["attributes"] = {"callbackNumber": "317-555-0142", "accountNumber": "31755501"}
    landed = redact_page(page([c]), AddressHasher(KEY))
    attrs = dict(flat_of(landed).participants.to_pylist()[0]["attributes"])
    assert attrs == {"accountNumber": "31755501", "callbackNumber": "hmac:" + AddressHasher(KEY).hash("317-555-0142")}


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def test_no_clear_phone_number_anywhere_in_the_written_files(tmp_path: Path) -> None:
    convs = [conversation(f"c{i}", f"2024-03-05T1{i}:00:00.000Z", "2024-03-05T19:06:00.000Z") for i in range(3)]
    with DayFlattener(DAY, tmp_path / "work", KEY) as f:
        f.add_page(page(convs))
        result = f.finish(tmp_path / "out")
    assert result.rows["conversations"] == 3
    files = [p for ps in result.files.values() for p in ps]
    digits = {PHONE_DIGITS, "18005550100", "555-0142", "555 0142"}
    for path in files:
        raw = path.read_bytes()
        assert not any(d.encode() in raw for d in digits), path
        decoded = json.dumps(pq.read_table(path).to_pylist(), default=str)  # and decompressed
        assert not any(d in decoded for d in digits), path
        assert not any(d in s for row in pq.read_table(path).to_pylist() for s in _strings(row) for d in digits)


# ------------------------------------------------------------------------------------------- wrap-up facts

LABELS = pl.DataFrame({
    "wrap_up_code_id": ["code-sale", "code-sale", "code-spam"],
    "wrap_up_code_label": ["Sale", "Purchase", "Spam"],
    "valid_from": [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 5, 12, tzinfo=UTC),
                   datetime(2024, 1, 1, tzinfo=UTC)],
    "valid_to": [datetime(2024, 3, 5, 12, tzinfo=UTC), None, datetime(2024, 3, 6, tzinfo=UTC)],  # spam: deleted
})


def test_wrapup_facts_fields_and_labels_as_of_the_conversation() -> None:
    convs = [conversation("morning", "2024-03-05T10:00:00.000Z", "2024-03-05T10:06:00.000Z"),
             conversation("evening", "2024-03-05T13:00:00.000Z", "2024-03-05T13:06:00.000Z"),
             conversation("spam", "2024-03-05T14:00:00.000Z", "2024-03-05T14:06:00.000Z", code="code-spam"),
             conversation("unknown", "2024-03-05T15:00:00.000Z", "2024-03-05T15:06:00.000Z", code="code-new")]
    facts = wrapup_facts(flat_of(page(convs)), LABELS)
    assert facts.schema.equals(WRAPUP_FACTS_SCHEMA)
    rows = {r["conversation_id"]: r for r in facts.to_pylist()}
    assert rows["morning"]["wrap_up_code_label"] == "Sale"  # label before the rename
    assert rows["evening"]["wrap_up_code_label"] == "Purchase"  # renamed: same id, new label
    assert rows["evening"]["wrap_up_code_id"] == rows["morning"]["wrap_up_code_id"] == "code-sale"
    assert rows["spam"]["wrap_up_code_label"] == "Spam"  # deleted since, still its historical label
    assert rows["unknown"]["wrap_up_code_id"] == "code-new" and rows["unknown"]["wrap_up_code_label"] is None
    m = rows["morning"]
    assert m["participant_id"] == "morning-a" and m["user_id"] == "user-ada" and m["queue_id"] == "q-1"
    assert (m["media_type"], m["direction"], m["division_id"]) == ("voice", "inbound", DIVISION)
    assert (m["t_acw_ms"], m["t_handle_ms"], m["schema_version"]) == (60000, 315000, 1)
    assert m["segment_start"] == datetime(2024, 3, 5, 10, 5, tzinfo=UTC)
    assert m["conversation_start"] == datetime(2024, 3, 5, 10, tzinfo=UTC)
    assert wrapup_facts(flat_of(page(convs)), None).column("wrap_up_code_label").null_count == 4


def test_a_segment_without_its_start_or_type_is_dropped_and_its_siblings_kept() -> None:
    start = "2024-03-05T10:00:00.000Z"
    agent = [seg(start, "2024-03-05T10:05:00.000Z", "interact", queueId="q-1"),
             {"segmentEnd": "2024-03-05T10:06:00.000Z", "segmentType": "wrapup"},  # no segmentStart
             {"segmentStart": "2024-03-05T10:06:00.000Z", "segmentEnd": "2024-03-05T10:07:00.000Z"}]  # no type
    flat = flat_of(page([conversation("partial", start, "2024-03-05T10:07:00.000Z", agent_segments=agent),
                         conversation("whole", start, "2024-03-05T10:06:00.000Z")]))
    segments = pl.from_arrow(flat.segments)
    per_conversation = dict(segments.group_by("conversation_id").len().iter_rows())
    assert per_conversation == {"partial": 3, "whole": 4}  # customer + ACD + the agent's one complete segment
    counts = dict(zip(flat.conversations.column("conversation_id").to_pylist(),
                      flat.conversations.column("segment_count").to_pylist(), strict=True))
    assert counts == per_conversation
    assert flat.incomplete_segments == 2 and flat.duplicate_segments == 0


def test_a_day_counts_its_incomplete_segments_across_batches(tmp_path: Path) -> None:
    start = "2024-03-05T10:00:00.000Z"
    headless = [seg(start, "2024-03-05T10:05:00.000Z", "interact"),
                {"segmentEnd": "2024-03-05T10:06:00.000Z", "segmentType": "wrapup"}]
    convs = [conversation(f"c{i}", start, "2024-03-05T10:06:00.000Z", agent_segments=headless) for i in range(5)]
    with DayFlattener(DAY, tmp_path / "work", KEY, batch_conversations=2) as f:
        f.add_page(page(convs[:3]))
        f.add_page(page(convs[3:]))
        result = f.finish(tmp_path / "out")
    assert result.incomplete_segments == 5 and result.counts["incomplete_segments"] == 5
    assert result.rows["segments"] == 5 * 3 and result.rows["conversations"] == 5


def test_wrapup_facts_of_a_batch_without_wrapups_is_empty_with_the_schema() -> None:
    abandoned = [conversation("abandoned", "2024-03-05T10:00:00.000Z", "2024-03-05T10:01:00.000Z",
                              agent_segments=[seg("2024-03-05T10:00:00.000Z", "2024-03-05T10:01:00.000Z", "alert")])]
    for labels in (LABELS, None):
        facts = wrapup_facts(flat_of(page(abandoned)), labels)
        assert facts.num_rows == 0 and facts.schema.equals(WRAPUP_FACTS_SCHEMA)


def test_wrapup_facts_schema_is_dictionary_encoded_and_utc() -> None:
    dicts = {f.name for f in WRAPUP_FACTS_SCHEMA if pa.types.is_dictionary(f.type)}
    assert dicts == {"media_type", "direction", "wrap_up_code_id", "wrap_up_code_label", "queue_id", "division_id"}
    for name in ("conversation_start", "segment_start", "segment_end"):
        assert WRAPUP_FACTS_SCHEMA.field(name).type == pa.timestamp("us", tz="UTC")
    assert WRAPUP_FACTS_SCHEMA.field("wrap_up_code_id").nullable
    assert not WRAPUP_FACTS_SCHEMA.field("media_type").nullable


# ---------------------------------------------------------------------------------------- streaming the day

def test_day_files_schema_row_groups_compression(day_output) -> None:
    result, out = day_output
    assert result.conversations_in == 20_000 == result.rows["conversations"]
    assert result.rows["segments"] > ROW_GROUP_SIZE  # so row groups are really cut
    for name, schema in TABLE_SCHEMAS.items():
        files = sorted((out / name).glob("*.parquet"))
        assert files == result.files[name] and len(files) == 1  # one file per table per day
        meta = pq.ParquetFile(files[0]).metadata
        assert meta.num_rows == result.rows[name]
        assert all(meta.row_group(i).num_rows == ROW_GROUP_SIZE for i in range(meta.num_row_groups - 1))
        assert meta.row_group(0).column(0).compression == "ZSTD"
        assert pq.read_schema(files[0]).equals(schema, check_metadata=False), name
        assert pq.read_schema(files[0]).metadata[b"genesys_assets.schema_version"] == b"1"
    # The emulator's truth: every wrapup segment is one fact, every conversation once.
    segments = pl.read_parquet(out / "segments")
    facts = pl.read_parquet(out / "wrapup_facts")
    assert facts.height == segments.filter(pl.col("segment_type") == "wrapup").height
    assert pl.read_parquet(out / "conversations")["conversation_id"].n_unique() == 20_000
    assert not list(out.parent.glob("work/parts-*"))  # the part files are cleaned up


def test_day_dedups_across_pages_and_drops_neighbours(emulator_pages: list[bytes], tmp_path: Path) -> None:
    extra = page([conversation("prev", "2024-03-04T23:59:00.000Z", "2024-03-05T00:03:00.000Z")])
    pages = [*emulator_pages[:3], emulator_pages[1], extra]  # a retried page and a neighbour
    with DayFlattener(DAY, tmp_path / "work", KEY, batch_conversations=1_000) as f:
        f.add_pages(pages)
        r = f.finish(tmp_path / "out")
    assert r.conversations_in == 4_001 and r.dropped_neighbours == 1 and r.duplicate_conversations == 1_000
    assert r.rows["conversations"] == 3_000
    segs = pl.read_parquet(r.files["segments"])
    assert segs.select("conversation_id", "participant_id", "session_id", "segment_start", "segment_type"
                       ).is_duplicated().sum() == 0


def test_rerunning_a_day_writes_identical_bytes(emulator_pages: list[bytes], tmp_path: Path) -> None:
    digests = []
    for run in range(2):
        with DayFlattener(DAY, tmp_path / f"w{run}", KEY) as f:
            f.add_pages(emulator_pages[:2])
            r = f.finish(tmp_path / f"o{run}")
        digests.append({n: [p.read_bytes() for p in ps] for n, ps in r.files.items()})
    assert digests[0] == digests[1]


def _day(pages: list[bytes], work: Path, **kwargs):
    with DayFlattener(DAY, work / "work", KEY, **kwargs) as f:
        f.add_pages(pages)
        result = f.finish(work / "out")
    return result, {n: [p.read_bytes() for p in ps] for n, ps in result.files.items()}


def test_a_repeat_of_an_already_written_conversation_rewrites_the_day_to_the_same_bytes(
        emulator_pages: list[bytes], tmp_path: Path) -> None:
    pages = [*emulator_pages[:6], emulator_pages[0]]  # page 0 again, five 1,000-conversation batches later
    far, far_bytes = _day(pages, tmp_path / "far", batch_conversations=1_000)
    whole, whole_bytes = _day(pages, tmp_path / "whole", batch_conversations=10_000)  # one batch: no rewrite
    assert far.rewritten and not whole.rewritten
    assert far_bytes == whole_bytes
    assert far.duplicate_conversations == whole.duplicate_conversations == 1_000
    assert far.rows["conversations"] == 6_000
    # Exact ties go to the later page: page 0's conversations now come last.
    ids = pl.read_parquet(far.files["conversations"])["conversation_id"]
    page0 = [c["conversationId"] for c in orjson.loads(emulator_pages[0])["conversations"]]
    assert ids.n_unique() == 6_000 and ids.tail(1_000).to_list() == page0
    assert not list((tmp_path / "far" / "work").glob("parts-*"))


def test_a_rewrite_picking_survivors_in_several_partitions_writes_the_same_bytes(
        emulator_pages: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = [*emulator_pages[:6], emulator_pages[0]]
    _, whole_bytes = _day(pages, tmp_path / "whole", batch_conversations=10_000)
    monkeypatch.setattr("genesys_assets.lib.conversation_details._SELECT_ROWS", 1_500)  # 5 hash partitions
    parted, parted_bytes = _day(pages, tmp_path / "parted", batch_conversations=1_000)
    assert parted.rewritten and parted_bytes == whole_bytes
    assert parted.duplicate_conversations == 1_000


def test_a_rewrite_of_a_day_without_wrap_ups_writes_an_empty_wrapup_table(tmp_path: Path) -> None:
    talk = [seg("2024-03-05T10:00:00.000Z", "2024-03-05T10:05:00.000Z", "interact", queueId="q-1")]
    convs = [conversation(f"c-{i}", "2024-03-05T10:00:00.000Z", "2024-03-05T10:10:00.000Z", agent_segments=talk)
             for i in range(3)]
    pages = [page([c]) for c in convs] + [page([convs[0]])]  # c-0 again, after it was written
    _, whole_bytes = _day(pages, tmp_path / "whole", batch_conversations=10_000)
    far, far_bytes = _day(pages, tmp_path / "far", batch_conversations=1)
    assert far.rewritten and far_bytes == whole_bytes
    assert far.rows["wrapup_facts"] == 0 and far.rows["conversations"] == 3


def test_a_page_larger_than_a_batch_is_flattened_a_batch_at_a_time(emulator_pages: list[bytes], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """At page size 10,000 (the emulator's maximum) memory must follow the batch, not the page: same bytes."""
    rows = [c for raw in emulator_pages[:3] for c in orjson.loads(raw)["conversations"]]
    big_page = [page(rows)]  # one page of 3,000 conversations
    _, whole_bytes = _day(big_page, tmp_path / "whole", batch_conversations=10_000)
    flattened: list[int] = []
    real = conversation_details._flatten_frames

    def spy(table, *args, **kwargs):  # type: ignore[no-untyped-def]
        flattened.append(table.num_rows)
        return real(table, *args, **kwargs)

    monkeypatch.setattr(conversation_details, "_flatten_frames", spy)
    sliced, sliced_bytes = _day(big_page, tmp_path / "sliced", batch_conversations=1_200)
    assert flattened == [1_200, 1_200, 600]
    assert sliced_bytes == whole_bytes and not sliced.rewritten
    assert sliced.rows["conversations"] == 3_000


def test_a_repeat_on_the_next_pages_is_dropped_without_a_rewrite(emulator_pages: list[bytes],
                                                                 tmp_path: Path) -> None:
    pages = [*emulator_pages[:4], emulator_pages[3], emulator_pages[4]]  # a retried page, the held batch's
    r, _ = _day(pages, tmp_path, batch_conversations=1_000)
    assert not r.rewritten and r.duplicate_conversations == 1_000 and r.rows["conversations"] == 5_000


def test_big_tables_roll_over_into_several_files(emulator_pages: list[bytes], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    one, _ = _day(emulator_pages[:3], tmp_path / "one")
    monkeypatch.setattr("genesys_assets.lib.conversation_details.TARGET_FILE_BYTES", 1)  # every row group a file
    many, _ = _day(emulator_pages[:3], tmp_path / "many")
    for name in TABLE_SCHEMAS:
        groups = [pq.ParquetFile(f).metadata.num_row_groups for f in many.files[name]]
        assert groups == [1] * len(groups)
        assert len(groups) == -(-one.rows[name] // ROW_GROUP_SIZE) or one.rows[name] == 0
        assert pl.read_parquet(many.files[name]).equals(pl.read_parquet(one.files[name]))
        assert [f.name for f in many.files[name]] == [f"part-{i:05d}.parquet" for i in range(len(groups))]


def test_only_the_tables_asked_for_are_written(emulator_pages: list[bytes], tmp_path: Path) -> None:
    r, _ = _day(emulator_pages[:2], tmp_path, tables=["wrapup_facts"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["wrapup_facts"]
    assert r.rows["wrapup_facts"] > 0
    with pytest.raises(ValueError, match="unknown table"):
        DayFlattener(DAY, tmp_path / "w2", KEY, tables=["wrapups"])


def test_a_batch_of_no_conversations_is_refused(tmp_path: Path) -> None:
    """A batch size below 1 would never flatten a page: refused up front, not a hang."""
    with pytest.raises(ValueError, match="batch_conversations must be at least 1, got 0"):
        DayFlattener(DAY, tmp_path / "w", KEY, batch_conversations=0)
    assert not (tmp_path / "w").exists()


def test_abandoning_a_day_leaves_no_files(emulator_pages: list[bytes], tmp_path: Path) -> None:
    with (pytest.raises(RuntimeError, match="boom"),
          DayFlattener(DAY, tmp_path / "work", KEY, batch_conversations=1_000) as f):
        f.add_pages(emulator_pages[:4])  # batches written, files open
        raise RuntimeError("boom")
    assert not list((tmp_path / "work").rglob("*.parquet*")) and not list((tmp_path / "work").glob("parts-*"))


def test_a_failing_write_fails_the_day_with_its_error_and_leaves_no_files(
        emulator_pages: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self, frame) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("genesys_assets.lib.conversation_details._ParquetSink.write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _day(emulator_pages[:4], tmp_path, batch_conversations=1_000)
    assert not (tmp_path / "out").exists() and not list((tmp_path / "work").glob("parts-*"))


def test_a_write_failing_while_later_batches_wait_for_the_writer_still_fails_the_day(
        emulator_pages: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = {"n": 0}
    real_write = conversation_details._ParquetSink.write

    def full_on_the_third_batch(self, frame) -> None:
        if self.name == "conversations":
            writes["n"] += 1
            if writes["n"] == 3:
                raise OSError(28, "No space left on device")
        real_write(self, frame)

    monkeypatch.setattr(conversation_details._ParquetSink, "write", full_on_the_third_batch)
    with pytest.raises(OSError, match="No space left"):
        _day(emulator_pages[:4], tmp_path, batch_conversations=100)
    assert writes["n"] == 3  # batches queued behind the failed one are never written
    assert not (tmp_path / "out").exists() and not list((tmp_path / "work").glob("parts-*"))


def test_the_batches_queued_for_the_writer_are_bounded(emulator_pages: list[bytes], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    queued: list[int] = []
    stalled = threading.Event()
    real_submit, real_parts = DayFlattener._write_batch, DayFlattener._write_parts

    def slow_writer(self, frames) -> None:
        if not stalled.is_set():
            stalled.set()
            time.sleep(1.0)  # the first batch stalls the writer while the flattening fills the queue
        real_parts(self, frames)

    def watch(self, frames) -> None:
        real_submit(self, frames)
        queued.append(len(self._writes))

    monkeypatch.setattr(DayFlattener, "_write_parts", slow_writer)
    monkeypatch.setattr(DayFlattener, "_write_batch", watch)
    result, _ = _day(emulator_pages[:2], tmp_path, batch_conversations=100)
    assert max(queued) == conversation_details.WRITER_QUEUE_BATCHES  # used, and never more: memory stays flat
    assert result.rows["conversations"] == 2_000


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_during(fn) -> int:
    peak, stop = [_rss()], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    try:
        fn()
    finally:
        stop.set()
        t.join()
    return peak[0]


def test_memory_does_not_grow_with_the_number_of_pages(emulator_pages: list[bytes], tmp_path: Path) -> None:
    def run(n: int) -> None:
        with DayFlattener(DAY, tmp_path / f"w{n}", KEY, batch_conversations=2_000) as f:
            for i in range(n):
                f.add_page(emulator_pages[i % len(emulator_pages)])
            f.finish(tmp_path / f"o{n}")

    run(2)  # warm up allocators and imports
    base = _rss()
    small = _peak_rss_during(lambda: run(4)) - base
    large = _peak_rss_during(lambda: run(20)) - base
    # 5x the pages (~74 MB of JSON): a non-streaming flattener would hold several times that.
    assert large < max(2 * small, small + 96 * 2**20), (small >> 20, large >> 20)


def test_the_written_id_set_finds_every_added_hash_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    from genesys_assets.lib.conversation_details import _SortedHashes

    monkeypatch.setattr(_SortedHashes, "_MIN_TAIL", 64)  # merge the tail into the sorted array every few batches
    rng = random.Random(5)
    written: list[int] = []
    ids = _SortedHashes()
    for batch in range(60):
        new = [rng.getrandbits(64) for _ in range(50)]
        assert not ids.contains_any(pl.Series(new, dtype=pl.UInt64))
        if written:
            repeat = [*new[:49], rng.choice(written)]  # one hash written batches ago, in the sorted part or the tail
            assert ids.contains_any(pl.Series(repeat, dtype=pl.UInt64)), batch
        ids.add(pl.Series(new, dtype=pl.UInt64))
        written.extend(new)
    assert ids.contains_any(pl.Series([min(written), max(written)], dtype=pl.UInt64))


@pytest.mark.parametrize("pattern", ["tail", "head", "middle_runs", "scattered", "none", "all", "unsorted"])
def test_dropping_losing_versions_keeps_exactly_the_other_rows(pattern: str) -> None:
    from genesys_assets.lib.conversation_details import _MAX_KEPT_SLICES, _without_versions

    rng = random.Random(pattern)
    seq = sorted(rng.choice(range(100, 160)) for _ in range(400))  # child rows: several per version, some none
    if pattern == "unsorted":
        rng.shuffle(seq)
    versions = [*sorted(set(seq)), 999]  # 999: a loser with no rows in this table
    losers = {"tail": versions[-12:], "head": versions[:5], "none": [], "all": versions,
              "middle_runs": versions[10:14] + versions[30:33],
              "scattered": versions[::2], "unsorted": versions[3:9]}[pattern]
    table = pa.table({"_seq": pa.array(seq, pa.int64()), "row": pa.array(range(len(seq)), pa.int64()),
                      "tags": pa.array([[str(s)] * (s % 3) for s in seq], pa.list_(pa.string()))})
    kept = _without_versions(table, pl.Series(sorted(losers), dtype=pl.Int64))
    assert kept.to_pylist() == [r for r in table.to_pylist() if r["_seq"] not in set(losers)]
    slices = {"tail": 1, "head": 1, "middle_runs": 3}.get(pattern)
    if slices:  # runs of losers: zero-copy slices of the rows, not a copy
        assert kept.column("row").num_chunks == slices <= _MAX_KEPT_SLICES
        assert kept.column("row").chunk(0).buffers()[1].address == table.column("row").chunk(0).buffers()[1].address
