"""The raw landing zone holds no clear customer number, and flattening a redacted page keeps the same hashes."""

from __future__ import annotations

import orjson

from genesys_assets.lib.pii import HASHED_PREFIX, AddressHasher
from genesys_assets.lib.raw_redaction import redact_page

KEY = "raw-redaction-test-key"
PHONE = "tel:+13175550142"
PAGE = {
    "conversations": [{
        "conversationId": "c1", "conversationStart": "2026-11-02T10:00:00.000Z",
        "participants": [{
            "participantId": "p1", "purpose": "customer", "participantName": "+1 317 555 0142",
            "attributes": {"callback": "+13175550142", "account": "12345678", "note": "VIP"},
            "sessions": [{
                "sessionId": "s1", "mediaType": "voice", "ani": PHONE, "dnis": "tel:+18005550100",
                "flow": {"flowId": "f1", "entryReason": "tel:+18005550100"},
                "segments": [{"segmentType": "wrapup", "wrapUpNote": "call back on 317 555 0142 please"}],
            }],
        }],
    }],
    "cursor": "abc",
}


def test_every_customer_number_is_hashed_and_the_rest_is_kept() -> None:
    hasher = AddressHasher(KEY)
    raw = orjson.dumps(PAGE)
    redacted = redact_page(raw, hasher)
    assert b"5550142" not in redacted and b"5550100" not in redacted
    page = orjson.loads(redacted)
    participant = page["conversations"][0]["participants"][0]
    session = participant["sessions"][0]
    assert session["ani"] == HASHED_PREFIX + hasher.hash(PHONE)
    assert session["flow"]["entryReason"].startswith(HASHED_PREFIX)
    assert participant["attributes"]["account"] == "12345678" and participant["attributes"]["note"] == "VIP"
    assert participant["attributes"]["callback"] == HASHED_PREFIX + hasher.hash("+13175550142")
    assert session["segments"][0]["wrapUpNote"] == "call back on [phone] please"
    assert page["cursor"] == "abc" and session["mediaType"] == "voice"


def test_redacting_twice_changes_nothing_and_hashes_pass_through_unchanged() -> None:
    hasher = AddressHasher(KEY)
    once = redact_page(orjson.dumps(PAGE), hasher)
    assert redact_page(once, hasher) == once
    hashed = orjson.loads(once)["conversations"][0]["participants"][0]["sessions"][0]["ani"]
    # Flattening hashes addresses again: a value hashed upstream comes out as the same hash, not a hash of it.
    assert hasher.hash(hashed) == hasher.hash(PHONE)
