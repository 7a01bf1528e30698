"""The raw landing zone holds no clear customer number, and flattening a redacted page keeps the same hashes.

``redact_page`` walks only the API's shape when it can prove that shape holds every object of the page, and
everything otherwise; both must give exactly the bytes of the original generic walk (kept below as the
reference), on realistic sandbox pages, on pages with every field the SDK models know, and on drifted pages.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import orjson
import polars as pl
import pytest
from PureCloudPlatformClientV2 import models as sdk

from genesys_assets.lib import pii, raw_redaction
from genesys_assets.lib.pii import HASHED_PREFIX, AddressHasher, is_hashed
from genesys_assets.lib.raw_redaction import redact_page
from genesys_assets.sandbox.conversations import ConversationStore

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


# -- the reference: the generic walk as it was before the fast path (only the pii names qualified) ------------

_REF_ADDRESS_KEYS = frozenset({"ani", "dnis", "sessionDnis", "addressFrom", "addressTo", "addressOther",
                               "addressSelf", "calleeAddress", "callerAddress", "remote", "screenShareAddressSelf",
                               "videoAddressSelf"})
_REF_ADDRESS_LIST_KEYS = frozenset({"callbackNumbers", "destinationAddresses", "cc", "bcc"})
_REF_NAME_KEYS = frozenset({"participantName", "remoteNameDisplayable", "callbackUserName"})
_REF_FLOW_ADDRESS_KEYS = frozenset({"entryReason", "transferTargetAddress"})
_REF_TEXT_KEYS = frozenset({"wrapUpNote", "subject"})
_REF_PHONE_IN_TEXT_RE = re.compile(pii.PHONE_IN_TEXT)


def _ref_hashed(value: Any, hasher: AddressHasher) -> Any:
    if not isinstance(value, str) or not value or is_hashed(value):
        return value
    return HASHED_PREFIX + hasher.hash(value)


def _ref_redact_attributes(attributes: Any, hasher: AddressHasher) -> Any:
    if not isinstance(attributes, dict):
        return attributes
    return {k: _ref_hashed(v, hasher) if isinstance(v, str) and pii.is_phone_attribute(k, v) else v
            for k, v in attributes.items()}


def _ref_redact(node: Any, hasher: AddressHasher, key: str | None = None) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in _REF_ADDRESS_KEYS or (key == "flow" and k in _REF_FLOW_ADDRESS_KEYS):
                out[k] = _ref_hashed(v, hasher)
            elif k in _REF_ADDRESS_LIST_KEYS and isinstance(v, list):
                out[k] = [_ref_hashed(item, hasher) if isinstance(item, str) else _ref_redact(item, hasher, k)
                          for item in v]
            elif ((k in _REF_NAME_KEYS or (key == "flow" and k == "exitReason")) and isinstance(v, str)
                  and pii.PHONE_VALUE.match(v)):
                out[k] = _ref_hashed(v, hasher)
            elif k in _REF_TEXT_KEYS and isinstance(v, str):
                out[k] = _REF_PHONE_IN_TEXT_RE.sub(pii.PHONE_REDACTED, v)
            elif k == "attributes":
                out[k] = _ref_redact_attributes(v, hasher)
            else:
                out[k] = _ref_redact(v, hasher, k)
        return out
    if isinstance(node, list):
        return [_ref_redact(item, hasher, key) for item in node]
    return node


def reference_redact_page(raw: bytes, hasher: AddressHasher) -> bytes:
    return orjson.dumps(_ref_redact(orjson.loads(raw), hasher))


# -- helpers ---------------------------------------------------------------------------------------------------

def takes_fast_path(raw: bytes) -> bool:
    redactor = raw_redaction._PageRedactor(AddressHasher(KEY))
    return redactor._api_shaped_levels(orjson.loads(raw), raw) is not None


def assert_same_as_reference(page: Any, *, fast: bool | None = None) -> bytes:
    """Redacts ``page`` both ways; the bytes must be identical (and the path the one expected, if given)."""
    hasher = AddressHasher(KEY)
    raw = page if isinstance(page, bytes | bytearray) else orjson.dumps(page)
    redacted = redact_page(raw, hasher)
    assert redacted == reference_redact_page(raw, hasher)
    if fast is not None:
        assert takes_fast_path(raw) is fast
    return redacted


def objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from objects(v)
    elif isinstance(node, list):
        for v in node:
            yield from objects(v)


def session_of(page: dict[str, Any]) -> dict[str, Any]:
    return page["conversations"][0]["participants"][0]["sessions"][0]


@pytest.fixture(scope="module")
def sandbox_pages(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Realistic unredacted pages (what the asset sees), 1,000 conversations each like the API."""
    store = ConversationStore(tmp_path_factory.mktemp("tenant"), seed=7, conversations_per_day=4_000)
    try:
        data = store.day(date(2026, 3, 9))
        rows = [data.raw(i) for i in range(len(data))]
    finally:
        store.close()
    return [b'{"conversations":[' + b",".join(rows[i:i + 1000]) + b'],"cursor":"c' + str(i).encode() + b'"}'
            for i in range(0, len(rows), 1000)]


# -- behaviour -------------------------------------------------------------------------------------------------

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
    assert participant["participantName"] == HASHED_PREFIX + hasher.hash("+1 317 555 0142")
    assert session["segments"][0]["wrapUpNote"] == "call back on [phone] please"
    assert page["cursor"] == "abc" and session["mediaType"] == "voice"
    assert takes_fast_path(raw)


def test_redacting_twice_changes_nothing_and_hashes_pass_through_unchanged() -> None:
    hasher = AddressHasher(KEY)
    once = redact_page(orjson.dumps(PAGE), hasher)
    assert redact_page(once, hasher) == once
    hashed = orjson.loads(once)["conversations"][0]["participants"][0]["sessions"][0]["ani"]
    # Flattening hashes addresses again: a value hashed upstream comes out as the same hash, not a hash of it.
    assert hasher.hash(hashed) == hasher.hash(PHONE)


@pytest.mark.parametrize("key", sorted(raw_redaction.ADDRESS_KEYS))
def test_each_address_key_is_hashed_in_a_session(key: str) -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    session_of(page)[key] = "sip:+1 (317) 555-0199@carrier.example"
    redacted = assert_same_as_reference(page, fast=True)
    assert b"555-0199" not in redacted
    assert session_of(orjson.loads(redacted))[key] == HASHED_PREFIX + AddressHasher(KEY).hash(
        "sip:+1 (317) 555-0199@carrier.example")


@pytest.mark.parametrize("key", sorted(raw_redaction.ADDRESS_LIST_KEYS))
def test_each_item_of_an_address_list_is_hashed(key: str) -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    session_of(page)[key] = ["+1 317 555 0199", "", "tel:+13175550188"]
    redacted = assert_same_as_reference(page, fast=True)
    assert b"555 0199" not in redacted and b"5550188" not in redacted
    hasher = AddressHasher(KEY)
    assert session_of(orjson.loads(redacted))[key] == [
        HASHED_PREFIX + hasher.hash("+1 317 555 0199"), "", HASHED_PREFIX + hasher.hash("tel:+13175550188")]


@pytest.mark.parametrize("key", sorted(raw_redaction.NAME_KEYS - {"participantName"}))
def test_callback_display_names_are_hashed_when_they_are_numbers(key: str) -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    session_of(page)[key] = "+1 317 555 0199"
    session = session_of(orjson.loads(assert_same_as_reference(page, fast=True)))
    assert session[key] == HASHED_PREFIX + AddressHasher(KEY).hash("+1 317 555 0199")
    session_of(page)[key] = "Jane Doe"
    assert session_of(orjson.loads(assert_same_as_reference(page, fast=True)))[key] == "Jane Doe"


@pytest.mark.parametrize("key", sorted(raw_redaction.FLOW_ADDRESS_KEYS))
def test_flow_keys_are_hashed_only_in_a_flow(key: str) -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    session = session_of(page)
    session["flow"][key] = "tel:+13175550177"
    session["segments"][0][key] = "tel:+13175550188"  # not in a flow: an entry reason elsewhere is not an address
    session["flow"]["outcomes"] = [{"flowOutcomeId": "o1", key: "tel:+13175550166"}]  # under outcomes, not flow
    redacted = orjson.loads(assert_same_as_reference(page, fast=True))
    session = session_of(redacted)
    assert session["flow"][key].startswith(HASHED_PREFIX)
    assert session["segments"][0][key] == "tel:+13175550188"
    assert session["flow"]["outcomes"][0][key] == "tel:+13175550166"


def test_a_flow_exit_reason_is_kept_unless_it_is_a_number() -> None:
    # Hashed as an address, every flow_exit_reason in the lake was an hmac instead of TRANSFER or DISCONNECT.
    page = orjson.loads(orjson.dumps(PAGE))
    session_of(page)["flow"]["exitReason"] = "TRANSFER"
    assert session_of(orjson.loads(assert_same_as_reference(page, fast=True)))["flow"]["exitReason"] == "TRANSFER"
    session_of(page)["flow"]["exitReason"] = "tel:+1 317 555 0177"
    redacted = session_of(orjson.loads(assert_same_as_reference(page, fast=True)))["flow"]["exitReason"]
    assert redacted == HASHED_PREFIX + AddressHasher(KEY).hash("+13175550177")


def test_objects_in_a_list_under_flow_are_flows() -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    session_of(page)["flow"] = [{"flowId": "f1", "exitReason": "tel:+13175550155"}, [{"entryReason": "+1555"}]]
    redacted = assert_same_as_reference(page)
    assert b"5550155" not in redacted and b'"+1555"' not in redacted


@pytest.mark.parametrize(("name", "hashed"), [
    ("+1 317 555 0142", True), ("tel:+13175550142", True), ("Mobile Number, Georgia", False), ("", False),
    ("12 Main St", False), (None, False), (42, False)])
def test_participant_name_is_hashed_only_when_it_is_a_number(name: Any, hashed: bool) -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    page["conversations"][0]["participants"][0]["participantName"] = name
    out = orjson.loads(assert_same_as_reference(page, fast=True))["conversations"][0]["participants"][0]
    assert (out["participantName"] != name) is hashed


def test_attributes_phone_values_hashed_other_values_and_nesting_kept() -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    attributes = {"cb": "tel:+44 20 3555 0100", "sip": "sip:+13175550142@x", "acct": "12345678", "n": 7,
                  "empty": "", "flag": True, "hashed": "hmac:abc", "nested": {"ani": "tel:+13175550142"},
                  "list": ["+13175550142"]}
    page["conversations"][0]["participants"][0]["attributes"] = attributes
    page["conversations"][0]["participants"].append({"participantId": "p2", "attributes": ["+13175550142"]})
    out = orjson.loads(assert_same_as_reference(page))["conversations"][0]["participants"]
    assert out[0]["attributes"]["cb"].startswith(HASHED_PREFIX) and out[0]["attributes"]["sip"].startswith("hmac:")
    assert {k: out[0]["attributes"][k] for k in ("acct", "n", "empty", "flag", "hashed", "nested", "list")} == {
        k: attributes[k] for k in ("acct", "n", "empty", "flag", "hashed", "nested", "list")}
    assert out[1]["attributes"] == ["+13175550142"]


def test_a_phone_number_under_a_phone_key_is_hashed_an_account_number_is_not() -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    attributes = {"callbackNumber": "317-555-0142", "customerAni": "(317) 555 0142", "accountNumber": "31755501",
                  "callbackDate": "2026-12-03", "mobile": 3175550142}
    page["conversations"][0]["participants"][0]["attributes"] = attributes
    # The same value again on another participant: judged once, the verdict still follows the key it is under.
    page["conversations"][0]["participants"].append(
        {"participantId": "p2", "attributes": {"accountNumber": "317-555-0142", "callback-number": "317-555-0142"}})
    participants = orjson.loads(assert_same_as_reference(page))["conversations"][0]["participants"]
    out = participants[0]["attributes"]
    assert out["callbackNumber"] == HASHED_PREFIX + AddressHasher(KEY).hash("317-555-0142")
    assert out["customerAni"] == HASHED_PREFIX + AddressHasher(KEY).hash("(317) 555 0142")
    assert {k: out[k] for k in ("accountNumber", "callbackDate", "mobile")} == {
        "accountNumber": "31755501", "callbackDate": "2026-12-03", "mobile": 3175550142}
    assert participants[-1]["attributes"] == {"accountNumber": "317-555-0142",
                                              "callback-number": out["callbackNumber"]}


def test_text_keys_lose_phone_runs_anywhere_and_non_strings_are_walked() -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    segment = session_of(page)["segments"][0]
    segment["subject"] = "Re: call +44 20 3555 0100 / 0800-555-0100"
    page["conversations"][0]["wrapUpNote"] = "ring 3175550142"  # not where the API puts it: still redacted
    segment["wrapUpNote"] = {"ani": "tel:+13175550142", "text": "3175550142"}
    redacted = assert_same_as_reference(page)
    out = orjson.loads(redacted)
    assert session_of(out)["segments"][0]["subject"] == "Re: call [phone] / [phone]"
    assert out["conversations"][0]["wrapUpNote"] == "ring [phone]"
    assert session_of(out)["segments"][0]["wrapUpNote"]["ani"].startswith(HASHED_PREFIX)


def test_address_values_that_are_not_strings_stay_as_they_are() -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    session = session_of(page)
    hashed = HASHED_PREFIX + AddressHasher(KEY).hash("+13175550100")
    session.update(ani=None, dnis=18005550100, addressFrom="", addressTo=True, addressOther={"x": 1},
                   addressSelf=["tel:+1"], sessionDnis=hashed)
    out = session_of(orjson.loads(assert_same_as_reference(page)))
    assert (out["ani"], out["dnis"], out["addressFrom"], out["addressTo"], out["sessionDnis"]) == (
        None, 18005550100, "", True, hashed)


@pytest.mark.parametrize("value", ["hmac:+13175550102", "hmac:0123", "HMAC:" + "a" * 32, "hmac:" + "a" * 33])
def test_a_source_value_that_only_looks_hashed_is_hashed(value: str) -> None:
    # Trusting any "hmac:" prefix landed the number behind it in clear, and the lake's *_hash column held it.
    page = orjson.loads(orjson.dumps(PAGE))
    session_of(page)["ani"] = value
    out = session_of(orjson.loads(assert_same_as_reference(page)))
    hasher = AddressHasher(KEY)
    assert out["ani"] == HASHED_PREFIX + hasher.hash(value) and "13175550102" not in out["ani"]
    assert hasher.hash(out["ani"]) == hasher.hash(value)  # the lake's hash of the landed value: the same key
    assert "13175550102" not in hasher.hash_series(pl.Series([value])).item()  # the lake and legacy paths


def test_unknown_nesting_anywhere_is_still_redacted_through_the_generic_walk() -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    conversation, session = page["conversations"][0], session_of(page)
    conversation["newThing"] = {"deeper": [{"ani": "tel:+13175550101", "flow": {"transferTargetAddress": "+1555"}}]}
    session["metrics"] = [{"name": "nOffered", "value": {"callerAddress": "tel:+13175550102"}}]
    session["segments"] = [[{"wrapUpNote": "3175550103"}]]  # a list of lists
    page["aggregations"] = {"addressTo": "tel:+13175550104"}
    redacted = assert_same_as_reference(page, fast=False)
    for n in (b"5550101", b"5550102", b"5550103", b"5550104", b'"+1555"'):
        assert n not in redacted


def test_a_brace_in_a_string_only_costs_the_fallback() -> None:
    page = orjson.loads(orjson.dumps(PAGE))
    page["conversations"][0]["participants"][0]["attributes"]["context"] = '{"ani": "tel:+13175550142"}'
    assert_same_as_reference(page, fast=False)


@pytest.mark.parametrize("page", [[PAGE, {"ani": PHONE}], None, "tel:+13175550142", 3, {}, [], {"conversations": {}},
                                  {"conversations": [None, 1, "x", {}]}, {"conversations": [{"participants": {}}]}])
def test_odd_pages_match_the_reference(page: Any) -> None:
    assert_same_as_reference(page)


def test_the_api_shape_is_walked_with_the_rule_s_semantics() -> None:
    """The count proof needs each object reached once, with the rule the generic walk gives it."""
    def keys(shape: dict[str, Any]) -> Iterator[str]:
        for k, nested in shape.items():
            yield k
            yield from keys(nested)
    shape_keys = list(keys(raw_redaction._API_SHAPE))
    assert "attributes" not in shape_keys
    assert not set(shape_keys) & (raw_redaction._FLOW_NOT_WALKED | raw_redaction._FLOW_REWRITTEN)


# -- every field the SDK models know, filled with numbers -------------------------------------------------------

def _sdk_value(swagger_type: str, depth: int) -> Any:
    if swagger_type.startswith("list["):
        item = _sdk_value(swagger_type[5:-1], depth)
        return [item, _sdk_value(swagger_type[5:-1], depth)]
    if swagger_type.startswith("dict("):
        return {"callback": "+1 317 555 0142", "account": "12345678", "intent": "billing"}
    return {"str": "tel:+13175550142", "datetime": "2026-11-02T10:00:00.000Z", "date": "2026-11-02", "bool": True,
            "int": 1, "float": 1.5, "object": "x"}.get(swagger_type) or _sdk_object(swagger_type, depth + 1)


def _sdk_object(model: str, depth: int = 0) -> dict[str, Any]:
    """A JSON object with every attribute of the SDK model (and of the models nested in it)."""
    assert depth < 8, model
    instance = getattr(sdk, model)()
    return {instance.attribute_map[a]: _sdk_value(t, depth) for a, t in instance.swagger_types.items()}


@pytest.mark.parametrize("conversation_model", ["AnalyticsConversation", "AnalyticsConversationWithoutAttributes"])
def test_every_sdk_field_is_on_the_fast_path_and_redacted_like_the_reference(conversation_model: str) -> None:
    page = _sdk_object("AnalyticsConversationAsyncQueryResponse")
    page["conversations"] = [_sdk_object(conversation_model), _sdk_object(conversation_model)]
    redacted = orjson.loads(assert_same_as_reference(page, fast=True))
    conversation = redacted["conversations"][0]
    participant = conversation["participants"][0]
    session = participant["sessions"][0]
    for key in raw_redaction.ADDRESS_KEYS & session.keys():
        assert session[key].startswith(HASHED_PREFIX)
    for key in raw_redaction.FLOW_ADDRESS_KEYS:
        assert session["flow"][key].startswith(HASHED_PREFIX)
    assert participant["participantName"].startswith(HASHED_PREFIX)
    for key in raw_redaction.ADDRESS_LIST_KEYS & session.keys():  # callback numbers, e-mail recipients
        assert session[key] and all(v.startswith(HASHED_PREFIX) for v in session[key]), key
    for key in raw_redaction.NAME_KEYS & session.keys():
        assert session[key].startswith(HASHED_PREFIX), key
    assert {"callbackNumbers", "remote", "callbackUserName"} <= session.keys()  # the SDK still has them
    assert session["segments"][0]["wrapUpNote"] == session["segments"][0]["subject"] == "tel:[phone]"
    if "attributes" in participant:
        assert participant["attributes"]["callback"].startswith(HASHED_PREFIX)


# -- realistic pages, as they are and drifted ------------------------------------------------------------------

def test_sandbox_pages_are_byte_identical_to_the_reference_on_the_fast_path(sandbox_pages: list[bytes]) -> None:
    for raw in sandbox_pages:
        redacted = assert_same_as_reference(raw, fast=True)
        numbers = {o[k] for o in objects(orjson.loads(raw)) for k in raw_redaction.ADDRESS_KEYS & o.keys()
                   if o[k].startswith("tel:")}
        assert numbers and not any(n.encode() in redacted for n in numbers)


_DRIFTS = ("phone_name", "phone_attribute", "text", "flow_key", "nested_unknown", "scalar_to_object",
           "list_in_list", "brace_in_string", "hashed_value", "empty_value", "flow_as_list", "address_object")


def _drift(page: dict[str, Any], rng: random.Random) -> None:
    """One random schema drift or personal value, at a random object of the page."""
    target = rng.choice(list(objects(page)))
    number = f"+1 317 555 {rng.randrange(10_000):04d}"
    key = rng.choice(sorted(target))
    match rng.choice(_DRIFTS):
        case "phone_name":
            target["participantName"] = number
        case "phone_attribute":
            target.setdefault("attributes", {})["cb"] = "tel:" + number
        case "text":
            target[rng.choice(sorted(raw_redaction.TEXT_KEYS))] = f"call {number} or {number}"
        case "flow_key":
            target.setdefault("flow", {})[rng.choice(sorted(raw_redaction.FLOW_ADDRESS_KEYS))] = number
        case "nested_unknown":
            target["drift"] = {"x": [{"ani": number, "flow": [{"entryReason": number}]}]}
        case "scalar_to_object":
            target[key] = {"dnis": number, "wrapUpNote": number}
        case "list_in_list":
            target[key] = [[{"addressTo": number}], target[key]]
        case "brace_in_string":
            target[key] = "{" + str(target[key])
        case "hashed_value":
            target[rng.choice(sorted(raw_redaction.ADDRESS_KEYS))] = "hmac:" + number
        case "empty_value":
            target[rng.choice([*sorted(raw_redaction.ADDRESS_KEYS), "participantName", "attributes"])] = rng.choice(
                ["", None, {}, [], 0])
        case "flow_as_list":
            target["flow"] = [{"exitReason": number}, {"transferTargetAddress": number}]
        case "address_object":
            target[rng.choice(sorted(raw_redaction.ADDRESS_KEYS))] = {"ani": number}


def test_drifted_sandbox_pages_are_byte_identical_to_the_reference(sandbox_pages: list[bytes]) -> None:
    rng = random.Random(20261102)
    base = orjson.loads(sandbox_pages[0])
    base["conversations"] = base["conversations"][:40]
    fast = 0
    for _ in range(300):
        page = orjson.loads(orjson.dumps(base))
        for _ in range(rng.randrange(1, 4)):
            _drift(page, rng)
        raw = orjson.dumps(page)
        assert_same_as_reference(raw)
        fast += takes_fast_path(raw)
    assert 0 < fast < 300  # both paths were exercised


def test_pages_not_as_orjson_writes_them_match_too(sandbox_pages: list[bytes]) -> None:
    """The API's bytes are not orjson's: spaces, escapes, key order; the output is orjson's either way."""
    page = orjson.loads(sandbox_pages[1])
    page["conversations"] = page["conversations"][:50]
    page["conversations"][0]["participants"][0]["participantName"] = "Jos\u00e9 \u260e +1 317 555 0142"
    for raw in (json.dumps(page, indent=1).encode(), json.dumps(page, ensure_ascii=True).encode(),
                json.dumps(page, sort_keys=True, separators=(",", ":")).encode()):
        assert_same_as_reference(raw)
        assert_same_as_reference(bytearray(raw))
