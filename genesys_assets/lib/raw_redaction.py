"""Customer numbers out of the raw landing zone: each details page is redacted before it is landed.

The raw pages are the replayable record of a day, so they are kept as the API sent them except for personal
data: every address field (ani, dnis, addresses, remotes, callback numbers, e-mail recipients, flow entry reasons
and transfer targets) and every attribute value or display name that looks like a phone number is replaced by
its keyed hash, marked ``hmac:`` so flattening keeps it as the hash instead of hashing it again; phone-number
runs in free text become ``[phone]``. Flattening always reads the redacted page, so a live run and a replay from
the lake give the same rows.

The rules apply by key name at any depth (flow keys only in an object under ``flow``), so unexpected nesting
is still redacted. Why two walks: visiting all ~150,000 nodes of a 1,000-conversation page one by one in Python
cost more than parsing and serialising it. The fast walk visits only the objects where the Analytics API puts
objects (``_API_SHAPE``) and never iterates over an object's values; it is used only when it provably reached
every object of the page: as many as there are ``{`` bytes in the raw page (each object has one, so a ``{``
inside a string only costs the fallback). Otherwise the generic walk visits everything. Both collect the
objects to rewrite, and one rule, applied a batch of objects and a distinct value at a time, rewrites them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import chain, compress, filterfalse, repeat
from types import NoneType
from typing import Any, TypeAlias

import orjson

from genesys_assets.lib.pii import (
    HASHED_PREFIX,
    PHONE_ATTRIBUTE_RE,
    PHONE_IN_TEXT,
    PHONE_KEY_RE,
    PHONE_REDACTED,
    AddressHasher,
    is_hashed,
    is_phone_name,
    is_phone_under_phone_key,
)

ADDRESS_KEYS = frozenset({"ani", "dnis", "sessionDnis", "addressFrom", "addressTo", "addressOther", "addressSelf",
                          "calleeAddress", "callerAddress", "remote", "screenShareAddressSelf", "videoAddressSelf"})
# AnalyticsSession keys holding a list of addresses (callback numbers, e-mail recipients): each string hashed.
ADDRESS_LIST_KEYS = frozenset({"callbackNumbers", "destinationAddresses", "cc", "bcc"})
# Display names the API fills from the caller: hashed when they are just the number, as participantName is.
NAME_KEYS = frozenset({"participantName", "remoteNameDisplayable", "callbackUserName"})
FLOW_ADDRESS_KEYS = frozenset({"entryReason", "transferTargetAddress"})
# A flow's exit reason is a code (TRANSFER, DISCONNECT...): hashed only when it is a number, as names are.
FLOW_NAME_KEYS = frozenset({"exitReason"})
TEXT_KEYS = frozenset({"wrapUpNote", "subject"})
_PHONE_IN_TEXT_RE = re.compile(PHONE_IN_TEXT)

# Keys whose value the rule may rewrite; in a flow object the flow address keys too.
_REWRITTEN = ADDRESS_KEYS | ADDRESS_LIST_KEYS | TEXT_KEYS | NAME_KEYS | {"attributes"}
_FLOW_REWRITTEN = _REWRITTEN | FLOW_ADDRESS_KEYS | FLOW_NAME_KEYS
# Keys whose nested objects/lists are not walked into: addresses are hashed only when they are strings,
# attributes one level deep.
_NOT_WALKED = ADDRESS_KEYS | {"attributes"}
_FLOW_NOT_WALKED = _NOT_WALKED | FLOW_ADDRESS_KEYS

_Shape: TypeAlias = dict[str, "_Shape"]
# Where the Analytics API nests objects (PureCloudPlatformClientV2 AnalyticsConversation, AnalyticsParticipant,
# AnalyticsSession, AnalyticsConversationSegment, AnalyticsFlow): key -> the keys nested in the objects under it.
# ``attributes`` objects are reached through the rule itself. Lists of scalars need no visit: the rule never
# changes a list item, and a list holding an object leaves that object unreached, so the count falls back.
_API_SHAPE: _Shape = {
    "conversations": {
        "participants": {
            "sessions": {
                "segments": {"properties": {}, "scoredAgents": {}},
                "metrics": {},
                "flow": {"outcomes": {}},
                "mediaEndpointStats": {},
                "proposedAgents": {},
                "agentGroups": {},
            },
        },
        "evaluations": {},
        "surveys": {},
        "resolutions": {},
    },
}


_Level: TypeAlias = tuple[list[dict[str, Any]], bool]


def _values(objects: list[dict[str, Any]], key: str) -> list[Any]:
    """``key``'s value in each object, ``None`` where it is missing."""
    return list(map(dict.get, objects, repeat(key)))


def _learn(distinct: set[Any], seen: dict[str, str], rule: Callable[[str], str]) -> bool:
    """Each new string's result into ``seen`` (it maps to itself when it stays); whether any of them changes."""
    for value in distinct.difference(seen):
        if type(value) is str:
            seen[value] = rule(value)
    return not all(seen.get(v, v) is v for v in distinct)


class _PageRedactor:
    """Redacts one parsed page in place, a batch of objects at a time.

    Each distinct value is looked at once per page (a caller's number is on every session of the call, the same
    names and attributes on every conversation); the per-object steps run in C (``map``/``filterfalse``).
    """

    __slots__ = ("_addresses", "_attribute_values", "_hashed", "_hasher", "_names", "_phone_key_values", "_texts")

    def __init__(self, hasher: AddressHasher) -> None:
        self._hasher = hasher
        self._hashed: dict[str, str] = {}
        # Per rule: a string value -> what it becomes (itself when it stays).
        self._addresses: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._texts: dict[str, str] = {}
        self._attribute_values: dict[str, str] = {}
        self._phone_key_values: dict[str, str] = {}

    def redact(self, page: Any, raw: bytes) -> None:
        levels = self._api_shaped_levels(page, raw)
        if levels is None:
            levels = self._all_objects(page)
        for hits, flow in levels:
            self._rewrite(hits, flow)

    # -- finding the objects ---------------------------------------------------------------------------------

    def _api_shaped_levels(self, page: Any, raw: bytes) -> list[_Level] | None:
        """The objects with a key to rewrite, by depth, if the API-shaped walk reaches every object of the page."""
        if type(page) is not dict or not isinstance(raw, bytes | bytearray):
            return None
        levels: list[_Level] = []
        reached = self._reach([page], _API_SHAPE, False, levels)
        return levels if reached == raw.count(b"{") else None

    def _reach(self, nodes: list[Any], shape: _Shape, flow: bool, levels: list[_Level]) -> int:
        """How many objects are among ``nodes`` (all under one key) and nested in them per ``shape``."""
        objects = nodes if set(map(type, nodes)) == {dict} else [n for n in nodes if type(n) is dict]
        hits = list(filterfalse((_FLOW_REWRITTEN if flow else _REWRITTEN).isdisjoint, objects))
        reached = len(objects)
        if hits:
            levels.append((hits, flow))
            reached += list(map(type, _values(hits, "attributes"))).count(dict)  # redacted by the rule
        for key, nested_shape in shape.items():
            values = _values(objects, key)
            kinds = set(map(type, values))
            if kinds <= {list, NoneType}:
                nested = list(chain.from_iterable(filter(None, values)))
            elif kinds <= {dict, NoneType}:
                nested = [v for v in values if v is not None]
            else:  # scalars (nothing nested) or a mix
                nested = [*chain.from_iterable(v for v in values if type(v) is list),
                          *(v for v in values if type(v) is dict)]
            if nested:
                reached += self._reach(nested, nested_shape, key == "flow", levels)
        return reached

    def _all_objects(self, page: Any) -> list[_Level]:
        """The objects with a key to rewrite, at any depth: the fallback for pages not shaped like the API's."""
        plain: list[dict[str, Any]] = []
        flows: list[dict[str, Any]] = []
        stack: list[tuple[Any, bool]] = [(page, False)] if type(page) is dict or type(page) is list else []
        while stack:
            node, flow = stack.pop()
            if type(node) is list:  # a list passes its key on: an object in a list under flow is a flow
                stack.extend((item, flow) for item in node if type(item) is dict or type(item) is list)
                continue
            (flows if flow else plain).append(node)
            not_walked = _FLOW_NOT_WALKED if flow else _NOT_WALKED
            stack.extend((value, key == "flow") for key, value in node.items()
                         if (type(value) is dict or type(value) is list) and key not in not_walked)
        return [(list(filterfalse(_REWRITTEN.isdisjoint, plain)), False),
                (list(filterfalse(_FLOW_REWRITTEN.isdisjoint, flows)), True)]

    # -- the rule --------------------------------------------------------------------------------------------

    def _rewrite(self, hits: list[dict[str, Any]], flow: bool) -> None:
        """The rule for the own keys of objects holding a rewritten key (nested objects are other batches')."""
        rewritten = _FLOW_REWRITTEN if flow else _REWRITTEN
        for key in set(chain.from_iterable(map(rewritten.intersection, hits))):
            values = _values(hits, key)
            # Only truthy values can change: empty strings and the like stay as they are.
            holders, values = list(compress(hits, values)), list(compress(values, values))
            if key in ADDRESS_KEYS or (flow and key in FLOW_ADDRESS_KEYS):
                self._replace(holders, values, key, self._addresses, self._address)
            elif key in ADDRESS_LIST_KEYS:
                self._address_lists([v for v in values if type(v) is list])
            elif key == "attributes":
                self._attributes([a for a in values if type(a) is dict])
            elif key in NAME_KEYS or (flow and key in FLOW_NAME_KEYS):  # a participant name is often just the number
                self._replace(holders, values, key, self._names, self._name)
            else:
                self._replace(holders, values, key, self._texts, self._text)

    @staticmethod
    def _replace(holders: list[dict[str, Any]], values: list[Any], key: str, seen: dict[str, str],
                 rule: Callable[[str], str]) -> None:
        """``key``'s string value (``values``) in each holder replaced by ``rule``'s result; other values stay."""
        try:
            distinct = set(values)
        except TypeError:  # an object or a list as the value: never rewritten
            kept = [(h, v) for h, v in zip(holders, values, strict=True) if type(v) is str]
            holders, values = [h for h, _ in kept], [v for _, v in kept]
            distinct = set(values)
        if not _learn(distinct, seen, rule):  # e.g. no participant name is a number
            return
        for holder, out in zip(holders, map(seen.get, values, values), strict=True):
            holder[key] = out

    def _address_lists(self, lists: list[list[Any]]) -> None:
        """Each non-empty string item hashed in place; other items (objects are walked on their own) stay."""
        for items in lists:
            items[:] = [self._address(v) if type(v) is str and v else v for v in items]

    def _attributes(self, attributes: list[dict[str, Any]]) -> None:
        """String values of attribute objects that are phone numbers (``pii.is_phone_attribute``) hashed; nested
        values are not looked into. Each distinct value and key is judged once; only when some key names a phone
        number are the objects walked again, for that key's values (each distinct one judged once too)."""
        seen = self._attribute_values
        values = list(chain.from_iterable(map(dict.values, attributes)))
        try:
            distinct = set(values)
        except TypeError:  # an object or a list among the values
            distinct = {v for v in values if type(v) is str}
        if _learn(distinct, seen, self._attribute):
            for a in attributes:
                for key, value in a.items():
                    if type(value) is str:
                        a[key] = seen[value]
        keys = set(chain.from_iterable(map(dict.keys, attributes)))
        for key in (k for k in keys if PHONE_KEY_RE.search(k)):  # JSON object keys are strings
            holders = [a for a in attributes if key in a]
            self._replace(holders, _values(holders, key), key, self._phone_key_values, self._under_phone_key)

    def _hash(self, value: str) -> str:
        """``hmac:`` + keyed hash of a non-empty string that is not a hash already."""
        out = self._hashed.get(value)
        if out is None:
            out = self._hashed[value] = HASHED_PREFIX + self._hasher.hash(value)
        return out

    def _address(self, value: str) -> str:
        return value if is_hashed(value) else self._hash(value)

    def _attribute(self, value: str) -> str:
        return self._hash(value) if PHONE_ATTRIBUTE_RE.match(value) else value

    def _under_phone_key(self, value: str) -> str:
        return self._hash(value) if is_phone_under_phone_key(value) else value

    def _name(self, value: str) -> str:
        return self._hash(value) if is_phone_name(value) else value  # pii.marked_hash_if_phone, with the cache

    @staticmethod
    def _text(value: str) -> str:
        return _PHONE_IN_TEXT_RE.sub(PHONE_REDACTED, value)


def redact_page(raw: bytes, hasher: AddressHasher) -> bytes:
    """A details-job result page with its personal data hashed; everything else as the API sent it."""
    page = orjson.loads(raw)
    _PageRedactor(hasher).redact(page, raw)
    return orjson.dumps(page)
