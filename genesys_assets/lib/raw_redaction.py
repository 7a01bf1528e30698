"""Customer numbers out of the raw landing zone: each details page is redacted before it is landed.

The raw pages are the replayable record of a day, so they are kept as the API sent them except for personal
data: every address field (ani, dnis, addresses, flow entry reasons and transfer targets) and every attribute
value that looks like a phone number is replaced by its keyed hash, marked ``hmac:`` so flattening keeps it as
the hash instead of hashing it again; phone-number runs in free text become ``[phone]``. Flattening always reads
the redacted page, so a live run and a replay from the lake give the same rows.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from genesys_assets.lib.pii import (
    HASHED_PREFIX,
    PHONE_ATTRIBUTE_RE,
    PHONE_IN_TEXT,
    PHONE_REDACTED,
    PHONE_VALUE,
    AddressHasher,
)

ADDRESS_KEYS = frozenset({"ani", "dnis", "sessionDnis", "addressFrom", "addressTo", "addressOther", "addressSelf",
                          "calleeAddress", "callerAddress"})
FLOW_ADDRESS_KEYS = frozenset({"entryReason", "transferTargetAddress", "exitReason"})
TEXT_KEYS = frozenset({"wrapUpNote", "subject"})
_PHONE_IN_TEXT_RE = re.compile(PHONE_IN_TEXT)


def _hashed(value: Any, hasher: AddressHasher) -> Any:
    if not isinstance(value, str) or not value or value.startswith(HASHED_PREFIX):
        return value
    return HASHED_PREFIX + hasher.hash(value)


def _redact_attributes(attributes: Any, hasher: AddressHasher) -> Any:
    if not isinstance(attributes, dict):
        return attributes
    return {k: _hashed(v, hasher) if isinstance(v, str) and PHONE_ATTRIBUTE_RE.match(v) else v
            for k, v in attributes.items()}


def _redact(node: Any, hasher: AddressHasher, key: str | None = None) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ADDRESS_KEYS or (key == "flow" and k in FLOW_ADDRESS_KEYS):
                out[k] = _hashed(v, hasher)
            elif k == "participantName" and isinstance(v, str) and PHONE_VALUE.match(v):
                out[k] = _hashed(v, hasher)  # a customer's participant name is often just the number
            elif k in TEXT_KEYS and isinstance(v, str):
                out[k] = _PHONE_IN_TEXT_RE.sub(PHONE_REDACTED, v)
            elif k == "attributes":
                out[k] = _redact_attributes(v, hasher)
            else:
                out[k] = _redact(v, hasher, k)
        return out
    if isinstance(node, list):
        return [_redact(item, hasher, key) for item in node]
    return node


def redact_page(raw: bytes, hasher: AddressHasher) -> bytes:
    """A details-job result page with its personal data hashed; everything else as the API sent it."""
    return orjson.dumps(_redact(orjson.loads(raw), hasher))
