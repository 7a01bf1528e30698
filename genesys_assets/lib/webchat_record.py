"""Web messaging archive records: the one declared allow-list, the stripping rule and the record builder.

Seed 002's field set is the contract of the archive: a conversation becomes one JSON object with ``id``,
``type``, ``startTime``, ``endTime``, ``mediaType``, ``participants`` (``id``, ``type``, ``name``) and its
``messages`` (``id``, ``timestamp``, ``direction``, ``text``, ``media`` references). Everything else the API
returns (routing ids, queue and user references, addresses, attributes, debug or drift fields) is stripped.

``ALLOW_LIST`` is the single declaration of that field set: ``strip`` applies it to any object, and
``keys_outside`` proves a stored line obeys it (the integrity check). The builder maps the real API shapes onto
the seed's names; its output still goes through ``strip``, so a mapping mistake cannot leak a field. An
attachment's URL is kept without the signature or token a presigned URL carries (``unsigned_url``).

Where the fields come from (the real Genesys Cloud API, PureCloudPlatformClientV2 269 models):

- conversation and participants: a details-job result (``AnalyticsConversation``): ``conversationId``,
  ``conversationStart``/``End``, ``participants[].participantId``/``purpose``/``participantName``;
- message ids: ``GET /api/v2/conversations/messages/{id}`` → ``participants[].messages[].messageId``;
- bodies: ``POST .../messages/bulk`` → ``MessageData``: ``id``, ``timestamp``, ``direction``; the text is
  ``normalizedMessage.text`` and attachments are ``normalizedMessage.content[].attachment`` (the SDK model has
  no ``textBody``/``media``; a ``textBody`` is still read if an older API version sends one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from genesys_assets.lib.pii import AddressHasher, marked_hash_if_phone
from genesys_assets.resources.genesys_cloud_client import parse_genesys_datetime

#: The archive's field set. A dict value is the allow-list of a nested object (or of each object of a list);
#: ``None`` means a scalar kept as is.
AllowList = Mapping[str, "AllowList | None"]
ALLOW_LIST: AllowList = {
    "id": None,
    "type": None,
    "startTime": None,
    "endTime": None,
    "mediaType": None,
    "participants": {"id": None, "type": None, "name": None},
    "messages": {
        "id": None,
        "timestamp": None,
        "direction": None,
        "text": None,
        "media": {"id": None, "url": None, "mediaType": None, "name": None, "contentLengthBytes": None},
    },
}

MEDIA_TYPE = "message"
MESSAGE_TYPE = "webmessaging"
#: Genesys accepts at most this many message ids per bulk request.
BULK_MAX_IDS = 1000
#: Rejection code of an API answer whose shape is not what the archive contract reads.
UNEXPECTED_TYPE = "unexpected_type"
#: Rejection code of a conversation without the start time that decides its day.
MISSING_START = "missing_conversation_start"


class UnexpectedApiShape(ValueError):
    """An API page holds a value of the wrong type where the archive reads a field: the day is rejected with
    ``reason`` (never archived with a silently coerced or dropped value)."""

    def __init__(self, detail: str, reason: str = UNEXPECTED_TYPE) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _require(value: Any, kinds: type | tuple[type, ...], what: str, optional: bool = False) -> None:
    if (value is None and optional) or isinstance(value, kinds):
        return
    # The type only, never the value: a message text or a participant name may hold a customer's phone number.
    raise UnexpectedApiShape(f"{what} is {type(value).__name__}, expected "
                             f"{kinds.__name__ if isinstance(kinds, type) else '/'.join(k.__name__ for k in kinds)}")


def strip(value: Any, allow: AllowList = ALLOW_LIST) -> Any:
    """``value`` with every key outside ``allow`` removed, recursively (lists are stripped element-wise)."""
    if isinstance(value, list):
        return [strip(item, allow) for item in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, nested in allow.items():
        if key in value:
            item = value[key]
            out[key] = strip(item, nested) if nested is not None and item is not None else item
    return out


def keys_outside(value: Any, allow: AllowList = ALLOW_LIST, path: str = "") -> list[str]:
    """Dotted paths of keys in ``value`` that the allow-list does not declare (empty when it complies)."""
    if isinstance(value, list):
        found: list[str] = []
        for item in value:
            found += keys_outside(item, allow, path + "[]")
        return found
    if not isinstance(value, Mapping):
        return []
    found = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in allow:
            found.append(where)
        elif allow[key] is not None and item is not None:
            if not isinstance(item, Mapping | list):
                found.append(where + " (scalar where an object is declared)")
            else:
                found += keys_outside(item, allow[key], where)  # type: ignore[arg-type]
    return found


# ------------------------------------------------------------------------------------------------ queries

def day_interval(day: date) -> str:
    """The half-open UTC day ``[00:00, 24:00)`` as a Genesys interval."""
    end = day + timedelta(days=1)
    return f"{day.isoformat()}T00:00:00.000Z/{end.isoformat()}T00:00:00.000Z"


def _segment_filters() -> list[dict[str, Any]]:
    # mediaType and messageType are segment dimensions: in conversationFilters Genesys would ignore them.
    return [{"type": "and", "predicates": [
        {"type": "dimension", "dimension": "mediaType", "operator": "matches", "value": MEDIA_TYPE},
        {"type": "dimension", "dimension": "messageType", "operator": "matches", "value": MESSAGE_TYPE},
    ]}]


def query_body(day: date) -> dict[str, Any]:
    """The day's web messaging conversations, for both the async details job (which also returns neighbours
    with activity in the day) and the sync count query (``totalHits``: those that *started* in the day)."""
    return {"interval": day_interval(day), "order": "asc", "orderBy": "conversationStart",
            "segmentFilters": _segment_filters()}


def started_in_day(conversation: Mapping[str, Any], day: date) -> bool:
    """A conversation belongs to the UTC day of its start (async jobs return midnight-crossers twice).

    Without a readable start its day is unknown: the day is rejected rather than the conversation skipped."""
    _require(conversation, Mapping, "a details-job conversation")
    start = parse_genesys_datetime(conversation.get("conversationStart"))
    if start is None:
        raise UnexpectedApiShape(f"conversation {conversation.get('conversationId')!r} has no ISO-8601 "
                                 "conversationStart, so its day is unknown", reason=MISSING_START)
    return start.date() == day


def is_web_messaging(conversation: Mapping[str, Any]) -> bool:
    """True when some session is a web messaging session (the job filter should make this always true)."""
    return any(
        s.get("mediaType") == MEDIA_TYPE and s.get("messageType") == MESSAGE_TYPE
        for p in conversation.get("participants") or []
        for s in p.get("sessions") or []
    )


# ------------------------------------------------------------------------------------------------ messages

def message_ids(conversation_messages: Mapping[str, Any]) -> list[str]:
    """Every message id listed by ``GET /api/v2/conversations/messages/{id}``, once, in listing order."""
    seen: dict[str, None] = {}
    for participant in conversation_messages.get("participants") or []:
        for message in participant.get("messages") or []:
            mid = message.get("messageId")
            if isinstance(mid, str) and mid:
                seen.setdefault(mid, None)
    return list(seen)


def chunks(items: Sequence[str], size: int = BULK_MAX_IDS) -> Iterator[list[str]]:
    """``items`` in consecutive chunks of at most ``size`` (bulk requests take ≤ 1,000 ids)."""
    if size < 1:
        raise ValueError("chunk size must be positive")
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


#: Parameter names that make a URL a credential: AWS SigV4/SigV2 (``X-Amz-*``, ``Signature``, ``AWSAccessKeyId``),
#: CloudFront (``Key-Pair-Id``, ``Policy``), Azure SAS (``sig``, ``sas``), Google Cloud Storage (``X-Goog-*``,
#: ``GoogleAccessId``), Akamai (``hdnts``), and any name with a token, credential, key, secret, password, auth or
#: code in it. Matching by part, not by a list of names: a name that merely contains one (``design``, ``monkey``)
#: costs a harmless query, never a leak.
_SIGNING_PREFIXES = ("x-amz-", "x-goog-")
_SIGNING_PARTS = ("sig", "sas", "token", "credential", "key", "secret", "passw", "pwd", "auth", "code")
_SIGNING_NAMES = frozenset({"policy", "googleaccessid", "hdnts"})
# A parameter name: what precedes "=" after the start, "?", "&", ";" or "#" (so "#/route?access_token=" counts).
_PARAMETER_NAME = re.compile(r"(?:^|[?&;#])([^=?&;#]*)=")
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)[^/?#]*@")


def _signs(name: str) -> bool:
    name = unquote(name).strip().lower()
    return (name.startswith(_SIGNING_PREFIXES) or name in _SIGNING_NAMES
            or any(part in name for part in _SIGNING_PARTS))


def unsigned_url(url: Any) -> Any:
    """An attachment's address without what would let anyone fetch it: a presigned URL is a bearer credential
    until it expires (an STS token in ``X-Amz-Security-Token``), and the archive is kept for years. A URL with a
    signature, token or key in its query or fragment loses both (the rest only qualifies the signature), and any
    user:password@ goes. A URL that cannot be parsed keeps only what precedes its query. Anything else is kept
    exactly as it came."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: what follows cannot be told safe
        return _USERINFO.sub(r"\1", url.split("?", 1)[0].split("#", 1)[0])
    netloc = parts.netloc.rpartition("@")[2]
    signed = any(_signs(m.group(1)) for m in _PARAMETER_NAME.finditer(f"{parts.query}#{parts.fragment}"))
    if not signed and netloc == parts.netloc:
        return url
    query, fragment = ("", "") if signed else (parts.query, parts.fragment)
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _media_reference(attachment: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": attachment.get("id"),
        "url": unsigned_url(attachment.get("url")),
        "mediaType": attachment.get("mime") or attachment.get("mediaType"),
        "name": attachment.get("filename"),
        "contentLengthBytes": attachment.get("contentSizeBytes"),
    }


def message_record(entity: Mapping[str, Any]) -> dict[str, Any]:
    """One ``MessageData`` from the bulk endpoint → the archive's message (id, timestamp, direction, text, media)."""
    _require(entity, Mapping, "a bulk message entity")
    normalized = entity.get("normalizedMessage") or {}
    _require(normalized, Mapping, f"normalizedMessage of message {entity.get('id')!r}")
    text = normalized.get("text")
    if text is None:
        text = entity.get("textBody")
    _require(text, str, f"text of message {entity.get('id')!r}", optional=True)
    media = [
        _media_reference(content["attachment"])
        for content in normalized.get("content") or []
        if isinstance(content, Mapping) and isinstance(content.get("attachment"), Mapping)
    ]
    media += [_media_reference({"mime": m.get("mediaType"), "filename": m.get("name"),
                                "contentSizeBytes": m.get("contentLengthBytes"), **m})
              for m in entity.get("media") or [] if isinstance(m, Mapping)]
    direction = entity.get("direction") or normalized.get("direction")
    return {
        "id": entity.get("id"),
        "timestamp": entity.get("timestamp"),
        "direction": direction.lower() if isinstance(direction, str) else direction,
        "text": text,
        "media": media,
    }


def build_record(conversation: Mapping[str, Any], messages: Sequence[Mapping[str, Any]],
                 hasher: AddressHasher) -> dict[str, Any]:
    """The archive line of one conversation: details-job conversation + its bulk messages, stripped.

    A participant name that is a phone number is stored as its hash, as in the analytics participants table.

    Messages are ordered by (timestamp, id) so the same conversation always gives the same bytes. A conversation
    that is not an object, or participants that are not a list of objects, raise :class:`UnexpectedApiShape`.
    """
    _require(conversation, Mapping, "a details-job conversation")
    _require(conversation.get("participants"), list, "participants", optional=True)
    for p in conversation.get("participants") or []:
        _require(p, Mapping, f"a participant of conversation {conversation.get('conversationId')!r}")
    ordered = sorted((message_record(m) for m in messages),
                     key=lambda m: (str(m.get("timestamp") or ""), str(m.get("id") or "")))
    record = {
        "id": conversation.get("conversationId"),
        "type": MESSAGE_TYPE,
        "startTime": conversation.get("conversationStart"),
        "endTime": conversation.get("conversationEnd"),
        "mediaType": MEDIA_TYPE,
        "participants": [
            {"id": p.get("participantId"), "type": p.get("purpose"), "name": (
                marked_hash_if_phone(name, hasher) if isinstance(name := p.get("participantName"), str) else name)}
            for p in conversation.get("participants") or []
        ],
        "messages": ordered,
    }
    return strip(record)
