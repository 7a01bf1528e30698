"""Conversation details: parse details-job result pages into Arrow and flatten them into the lake's tables.

Pure functions and one streaming helper, no Dagster. The asset calls them page by page.

Why it is shaped this way (DESIGN.md, "Performance shape"): naive Polars (``from_dicts``, ``read_ndjson``) and
Python loops over dicts are slower than parsing straight into Arrow. So a page is parsed by ``pyarrow.json``
with an explicit schema and a block larger than the page (one C++ pass, no Python objects). The nesting is
exploded in Arrow (zero-copy below the keys) and the rows stay in Arrow up to the Parquet writer; Polars computes
the dedup, metrics, hashing and wrap-up joins on only the columns they read, and pyarrow writes the Parquet files
with the explicit schemas.

Decisions worth knowing:

* **Schema drift.** Unknown keys are tolerated (listed in the table metadata, never fatal); missing optional keys
  become null. ``participants[].attributes`` is a string map with dynamic keys: it comes out as
  ``map<string, string>``. Values that are not strings (numbers, booleans) are coerced to their JSON text
  (``12``, ``12.5``, ``true``), nested objects/arrays to compact JSON text, and null values are dropped. A page
  whose attributes (or any declared field) do not fit the fast path is re-read through a lossless, slower
  "conform" path (orjson + a schema walk) instead of crashing.
* **Day membership.** A conversation belongs to the UTC day of its ``conversationStart`` (half-open
  ``[day, day+1)``). Details jobs also return neighbours with activity in the day; they are dropped and counted.
* **Dedup.** The same conversation can arrive more than once (overlapping windows, retried pages). The surviving
  version is the greatest by (``conversationEnd`` with null lowest, number of distinct segments, arrival order):
  a finished conversation beats an unfinished one, a later end beats an earlier one, a more complete one beats a
  less complete one, and only exact ties fall back to "the later page wins". Its participants, sessions and
  segments follow it (child rows carry the version's ordinal). Within a version, segments are unique on
  (conversation_id, participant_id, session_id, segment_start, segment_type); the first occurrence is kept. A
  segment without a start or type has no such key: it is left out and counted (``incomplete_segments``).
* **Personal data.** Session addresses (ANI, DNIS, addressFrom/To: phone numbers, e-mail, messaging ids) are
  kept only as HMAC-SHA256 hashes under a caller-supplied key (first 128 bits, hex), after normalising
  (``tel:``/``sip:`` prefixes, spacing, case) so the same number always hashes the same. DNIS is hashed too:
  on outbound calls it *is* the customer's number. A participant name or attribute value that looks like a phone
  number is replaced by its hash; phone-number-like runs in free text (wrap-up notes, e-mail subjects) are
  redacted. Flow entry reasons and transfer target addresses (which carry numbers) are not output at all.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from genesys_assets.lib.pii import (
    PHONE_IN_TEXT,
    PHONE_REDACTED,
    AddressHasher,
    as_hasher,
)
from genesys_assets.lib.schemas import (
    CONVERSATION_STRUCT,
    METRICS,
    PAGE_SCHEMA,
    SCHEMA_VERSION,
    TABLE_SCHEMAS,
    WRAPUP_FACTS_SCHEMA,
    WRAPUP_LABELS_SCHEMA,
)

__all__ = [
    "ROW_GROUP_SIZE",
    "TARGET_FILE_BYTES",
    "ConversationDetailsError",
    "DayFlattener",
    "DayResult",
    "FlatTables",
    "MissingRequiredFieldError",
    "flatten",
    "parse_page",
    "wrapup_facts",
]

ROW_GROUP_SIZE = 100_000
TARGET_FILE_BYTES = 256 * 1024 * 1024  # upper end of the 128-256 MB target; a day smaller than this is one file
PARQUET_COMPRESSION = "zstd"
# Values a Parquet column writer takes in one step (pyarrow's default is 1,024): the benchmark day's row groups
# written in 32k-value steps cost ~10 % less CPU for the same bytes (pages are still cut at 20k rows / 1 MiB).
PARQUET_WRITE_BATCH_SIZE = 32_768
TABLES = ("conversations", "participants", "sessions", "segments", "wrapup_facts")
# Batches waiting for (or in) the writer thread. With one, the flattening stood still while a 100k-row group was
# encoded: 1.66 of the 2 cores busy on average at 100k; 1.71 with two, 1.75-1.77 with three or five, +10-25 MiB of
# peak (alternating runs, benchmarks/README.md).
WRITER_QUEUE_BATCHES = 3
_SELECT_ROWS = 250_000  # conversation versions sorted at once when picking the survivors (memory bound)

ATTRIBUTES_TYPE = pa.map_(pa.string(), pa.string())
_KV = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
_PL_PARTICIPANTS: pl.DataType  # set below, once the parsed schema is known


class ConversationDetailsError(ValueError):
    """A page or table cannot be turned into conversation rows."""


class MissingRequiredFieldError(ConversationDetailsError):
    """A conversation lacks a key the pipeline cannot do without (conversationId, conversationStart)."""

    def __init__(self, conversation_id: str | None, field_name: str) -> None:
        super().__init__(f"conversation {conversation_id or '<no conversationId>'} has no {field_name}")
        self.conversation_id = conversation_id
        self.field_name = field_name


# ================================================================================================= parsing

_FAST_PARSE = pj.ParseOptions(explicit_schema=PAGE_SCHEMA, unexpected_field_behavior="infer")


def _with_attributes(participant: pa.StructType, typ: pa.DataType) -> pa.StructType:
    fields = [participant.field(i) for i in range(participant.num_fields)]
    return pa.struct([*fields, pa.field("attributes", typ)])


_PARTICIPANT_STRUCT: pa.StructType = CONVERSATION_STRUCT.field("participants").type.value_type
_CONFORM_PARTICIPANT = _with_attributes(_PARTICIPANT_STRUCT, _KV)
_CONFORM_CONVERSATION = pa.struct([
    *(CONVERSATION_STRUCT.field(i) for i in range(CONVERSATION_STRUCT.num_fields - 1)),
    pa.field("participants", pa.list_(_CONFORM_PARTICIPANT)),
])
_CONFORM_PAGE_SCHEMA = pa.schema([
    ("conversations", pa.list_(_CONFORM_CONVERSATION)), ("cursor", pa.string()),
    ("dataAvailabilityDate", pa.string()),
])
_CONFORM_PARSE = pj.ParseOptions(explicit_schema=_CONFORM_PAGE_SCHEMA, unexpected_field_behavior="ignore")
# What parse_page returns: one row per conversation, API names, attributes as a string map.
PARSED_CONVERSATION_SCHEMA = pa.schema([
    *(CONVERSATION_STRUCT.field(i) for i in range(CONVERSATION_STRUCT.num_fields - 1)),
    pa.field("participants", pa.list_(_with_attributes(_PARTICIPANT_STRUCT, ATTRIBUTES_TYPE))),
])


_PL_PARTICIPANTS = pl.from_arrow(PARSED_CONVERSATION_SCHEMA.empty_table()).schema["participants"]  # type: ignore[union-attr]


class _Unfit(Exception):
    """The fast parse succeeded but produced something only the conform path represents faithfully."""


def _read(raw: bytes | memoryview, options: pj.ParseOptions) -> pa.Table:
    block = 1 << max(20, (len(raw) + 1024).bit_length())  # a block larger than the page: one pass, no splits
    return pj.read_json(pa.BufferReader(pa.py_buffer(raw)),  # zero-copy over the caller's bytes
                        read_options=pj.ReadOptions(block_size=block, use_threads=False), parse_options=options)


_WHITESPACE = b" \t\r\n"


def _trimmed(raw: bytes) -> memoryview:
    """``raw.strip()`` without copying a page of tens of megabytes (a landed NDJSON line ends in a newline);
    a pretty-printed page is compacted, since the block parser needs one object per line."""
    lo, hi = 0, len(raw)
    while lo < hi and raw[lo] in _WHITESPACE:
        lo += 1
    while hi > lo and raw[hi - 1] in _WHITESPACE:
        hi -= 1
    view = memoryview(raw)[lo:hi]
    if lo < hi and (raw.find(b"\n", lo, hi) >= 0 or raw.find(b"\r", lo, hi) >= 0):
        return memoryview(orjson.dumps(orjson.loads(view)))
    return view


def _unknown_paths(actual: pa.DataType, expected: pa.DataType, path: str, out: list[str]) -> None:
    """Field paths present in the parsed type but not declared (schema drift, reported not fatal)."""
    if pa.types.is_struct(actual) and pa.types.is_struct(expected):
        names = {expected.field(i).name for i in range(expected.num_fields)}
        for i in range(actual.num_fields):
            f = actual.field(i)
            sub = f"{path}.{f.name}" if path else f.name
            if f.name not in names:
                if f.name != "attributes" or not path.endswith("participants[]"):
                    out.append(sub)
            else:
                _unknown_paths(f.type, expected.field(f.name).type, sub, out)
    elif pa.types.is_list(actual) and pa.types.is_list(expected):
        _unknown_paths(actual.value_type, expected.value_type, path + "[]", out)


def _list_values(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(offsets starting at 0, values) of a list array, honouring slicing."""
    offsets = arr.offsets
    first = offsets[0].as_py()
    values = arr.values.slice(first, offsets[-1].as_py() - first)
    return pc.subtract(offsets, pa.scalar(first, offsets.type)), values


def _struct_children(arr: pa.StructArray) -> list[pa.Array]:
    return [arr.field(i) for i in range(arr.type.num_fields)] if arr.offset == 0 else arr.flatten()


def _as_attribute_text(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type) or pa.types.is_null(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type):
        return pc.cast(arr, pa.string())  # 12 -> "12", true -> "true": the value's JSON text
    raise _Unfit(f"attribute values of type {arr.type}")


def _struct_to_map(attrs: pa.Array | None, length: int) -> pa.Array:
    """An inferred ``attributes`` struct (one field per key seen on the page) -> ``map<string, string>``."""
    if attrs is None or pa.types.is_null(attrs.type):
        return pa.nulls(length, ATTRIBUTES_TYPE)
    if not pa.types.is_struct(attrs.type):
        raise _Unfit(f"attributes of type {attrs.type}")
    names = [attrs.type.field(i).name for i in range(attrs.type.num_fields)]
    if not names:
        offsets = pa.array([0] * (length + 1), pa.int32())
        return pa.MapArray.from_arrays(offsets, pa.array([], pa.string()), pa.array([], pa.string()),
                                       mask=attrs.is_null())
    children = [_as_attribute_text(c) for c in _struct_children(attrs)]
    parent_valid = attrs.is_valid()
    valid = [pc.and_(c.is_valid(), parent_valid) for c in children]
    # (row, key) of every present value, then row-major order: each row's keys by name.
    rows = pa.concat_arrays([pc.indices_nonzero(v).cast(pa.int64()) for v in valid])
    keys = pa.concat_arrays([pa.array([k] * pc.sum(v.cast(pa.int64())).as_py(), pa.int64())
                             for k, v in enumerate(valid)])
    # Each row's keys sorted by name: the map's bytes then never depend on which page a conversation arrived in
    # (the inferred struct's field order does), so re-runs with another page size write identical files.
    rank = pa.array(sorted(range(len(names)), key=lambda k: (names[k], k)), pa.int64())
    key_rank = pc.take(pc.sort_indices(rank), keys)
    order = pc.sort_indices(pa.table({"r": rows, "k": key_rank}), sort_keys=[("r", "ascending"), ("k", "ascending")])
    rows, keys = rows.take(order), keys.take(order)
    counts = valid[0].cast(pa.int32())
    for v in valid[1:]:
        counts = pc.add(counts, v.cast(pa.int32()))
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(counts).cast(pa.int32())])
    all_values = pa.concat_arrays(children)  # key-major: value (row r, key k) is at k * length + r
    values = all_values.take(pc.add(pc.multiply(keys, length), rows))
    key_names = pa.array(names, pa.string()).take(keys)
    return pa.MapArray.from_arrays(offsets, key_names, values, mask=attrs.is_null())


def _kv_to_map(kv: pa.Array) -> pa.Array:
    offsets, values = _list_values(kv)
    keys, items = _struct_children(values)
    return pa.MapArray.from_arrays(offsets, keys, items, mask=kv.is_null())


def _normalise_participants(participants: pa.Array, conform: bool) -> pa.Array:
    """Rebuild ``participants`` with ``attributes`` as a map, in the declared field order."""
    participants = participants.combine_chunks() if isinstance(participants, pa.ChunkedArray) else participants
    offsets, values = _list_values(participants)
    by_name = dict(zip([values.type.field(i).name for i in range(values.type.num_fields)],
                       _struct_children(values), strict=True))
    attrs = by_name.get("attributes")
    attributes = _kv_to_map(attrs) if conform else _struct_to_map(attrs, len(values))
    target: pa.StructType = PARSED_CONVERSATION_SCHEMA.field("participants").type.value_type
    children = []
    for i in range(target.num_fields):
        f = target.field(i)
        child = attributes if f.name == "attributes" else by_name[f.name]
        children.append(child if child.type == f.type else child.cast(f.type))  # drops undeclared (drift) fields
    rebuilt = pa.StructArray.from_arrays(children, fields=list(target), mask=values.is_null())
    return pa.ListArray.from_arrays(offsets, rebuilt, type=pa.list_(target), mask=participants.is_null())


def _conversations_table(page: pa.Table, conform: bool) -> pa.Table:
    col = page.column("conversations").combine_chunks() if page.num_rows else None
    if col is None or len(col) == 0 or col.null_count == len(col):
        return PARSED_CONVERSATION_SCHEMA.empty_table()
    _, convs = _list_values(col)
    by_name = dict(zip([convs.type.field(i).name for i in range(convs.type.num_fields)],
                       _struct_children(convs), strict=True))
    arrays = []
    for f in PARSED_CONVERSATION_SCHEMA:
        child = _normalise_participants(by_name[f.name], conform) if f.name == "participants" else by_name[f.name]
        arrays.append(child if child.type == f.type else child.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=PARSED_CONVERSATION_SCHEMA)


# ---- the conform path: lossless, slower, only for pages the fast path cannot represent ----------------

def _text(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _conform_ts(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    try:
        dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _conform(v: Any, typ: pa.DataType) -> Any:
    """Coerce a decoded JSON value to ``typ``; drop unknown keys; impossible values become null."""
    if v is None:
        return None
    if pa.types.is_struct(typ):
        if not isinstance(v, dict):
            return None
        out = {}
        for i in range(typ.num_fields):
            f = typ.field(i)
            x = v.get(f.name)
            if x is not None:
                out[f.name] = _conform(x, f.type)
        return out
    if pa.types.is_list(typ):
        if typ == _KV:  # participants[].attributes: a string map, values coerced to their JSON text
            if not isinstance(v, dict):
                return None
            return [{"key": str(k), "value": _text(x)} for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))
                    if x is not None]  # sorted by key, as the fast path does
        if not isinstance(v, list):
            return None
        return [_conform(x, typ.value_type) for x in v]
    if pa.types.is_string(typ):
        return _text(v)
    if pa.types.is_timestamp(typ):
        return _conform_ts(v)
    if pa.types.is_boolean(typ):
        if isinstance(v, bool):
            return v
        return {"true": True, "false": False}.get(str(v).strip().lower())
    if pa.types.is_integer(typ):
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        try:
            x = float(v)
        except (TypeError, ValueError):
            return None
        return round(x) if math.isfinite(x) else None
    if pa.types.is_floating(typ):
        try:
            x = float(v)
        except (TypeError, ValueError):
            return None
        return x if math.isfinite(x) else None
    return None


def _unknown_keys(v: Any, typ: pa.DataType, path: str, out: set[str]) -> None:
    """Undeclared keys of a decoded page, by the same paths ``_unknown_paths`` gives on the fast path."""
    if isinstance(v, list) and pa.types.is_list(typ):
        for x in v:
            _unknown_keys(x, typ.value_type, path + "[]", out)
    elif isinstance(v, dict) and pa.types.is_struct(typ):
        names = {typ.field(i).name for i in range(typ.num_fields)}
        for k, x in v.items():
            if k in names:
                _unknown_keys(x, typ.field(k).type, f"{path}.{k}", out)
            elif k != "attributes" or not path.endswith("participants[]"):
                out.add(f"{path}.{k}")


def _conform_page(raw: bytes | memoryview) -> tuple[pa.Table, list[str]]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConversationDetailsError(f"result page is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConversationDetailsError("result page is not a JSON object")
    unknown: set[str] = set()
    _unknown_keys(doc.get("conversations"), PAGE_SCHEMA.field("conversations").type, "conversations", unknown)
    cleaned = {
        "conversations": _conform(doc.get("conversations"), _CONFORM_PAGE_SCHEMA.field("conversations").type),
        "cursor": doc.get("cursor") if isinstance(doc.get("cursor"), str) else None,
        "dataAvailabilityDate": _text(doc["dataAvailabilityDate"]) if doc.get("dataAvailabilityDate") else None,
    }
    return _read(orjson.dumps(cleaned), _CONFORM_PARSE), sorted(unknown)


def parse_page(raw: bytes) -> pa.Table:
    """Parse one details-job result page (``{"conversations": [...], "cursor", ...}``) into Arrow.

    One row per conversation, API field names, ``participants[].attributes`` as ``map<string, string>``.
    ``schema.metadata`` carries ``cursor``, ``dataAvailabilityDate``, ``unknown_fields`` (JSON list of drift
    paths) and ``parse_path`` (``fast`` or ``conform``). Type conflicts never raise: see the module docstring.
    """
    raw = _trimmed(raw if isinstance(raw, bytes) else bytes(raw))
    if not raw:
        return PARSED_CONVERSATION_SCHEMA.empty_table()
    path = "fast"
    unknown: list[str] = []
    try:
        page = _read(raw, _FAST_PARSE)
        if page.num_rows != 1:
            raise ConversationDetailsError(f"expected one result page object, got {page.num_rows}")
        _unknown_paths(page.schema.field("conversations").type, PAGE_SCHEMA.field("conversations").type,
                       "conversations", unknown)
        table = _conversations_table(page, conform=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, _Unfit):
        page, unknown = _conform_page(raw)
        path = "conform"
        table = _conversations_table(page, conform=True)
    meta = {
        b"cursor": (page.column("cursor")[0].as_py() or "") if page.num_rows else "",
        b"dataAvailabilityDate": (page.column("dataAvailabilityDate")[0].as_py() or "") if page.num_rows else "",
        b"unknown_fields": json.dumps(unknown),
        b"parse_path": path,
    }
    return table.replace_schema_metadata({k: str(v).encode() for k, v in meta.items()})


# ============================================================================================== flattening

@dataclass
class FlatTables:
    """The four conversation tables of one day (explicit schemas) and what flattening did to get them."""

    conversations: pa.Table
    participants: pa.Table
    sessions: pa.Table
    segments: pa.Table
    conversations_in: int = 0
    dropped_neighbours: int = 0
    duplicate_conversations: int = 0
    duplicate_segments: int = 0
    incomplete_segments: int = 0

    def tables(self) -> dict[str, pa.Table]:
        return {"conversations": self.conversations, "participants": self.participants,
                "sessions": self.sessions, "segments": self.segments}


@dataclass
class _Frames:
    """Arrow tables of one batch, child rows tagged with ``_seq`` (the ordinal of their conversation version)."""

    conversations: pa.Table
    participants: pa.Table
    sessions: pa.Table
    segments: pa.Table
    conversations_in: int
    dropped_neighbours: int
    duplicate_segments: int
    incomplete_segments: int


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return lo, lo + timedelta(days=1)


def _col(name: str) -> pl.Expr:
    return pl.col(name)


def _explode(keys: pa.Table, lst: pa.Array | pa.ChunkedArray) -> tuple[pa.Table, dict[str, pa.Array]]:
    """One level of nesting down, in Arrow: the parent keys repeated per element, and the elements' fields.

    Zero-copy for the (deep) element data; only the small key columns are gathered. Exploding nested data in
    Polars instead copies every level below at every level.
    """
    arr = lst.combine_chunks() if isinstance(lst, pa.ChunkedArray) else lst
    parent = pc.list_parent_indices(arr)
    values = arr.flatten()
    children = dict(zip(values.type.names, _struct_children(values), strict=True))
    return keys.take(parent), children


def _table(keys: pa.Table, cols: dict[str, pa.Array]) -> pa.Table:
    for name, col in cols.items():
        keys = keys.append_column(name, col)
    return keys


def _collect(plan: pl.LazyFrame) -> pl.DataFrame:
    """Run a plan over one batch's rows on Polars' in-memory engine: ``collect()``'s default picks the streaming
    engine, which for a batch's few thousand rows cost ~2x the CPU of the in-memory one (measured)."""
    return plan.collect(engine="in-memory")


def _polars(table: pa.Table, columns: Iterable[str] | None = None) -> pl.DataFrame:
    """A Polars frame of (some of) an Arrow table's columns: only what Polars computes on is converted."""
    out = pl.from_arrow(table if columns is None else table.select(list(columns)))
    assert isinstance(out, pl.DataFrame)
    return out


def _series(col: pa.ChunkedArray | pa.Array) -> pl.Series:
    out = pl.from_arrow(col)
    assert isinstance(out, pl.Series)
    return out


def _arrow(s: pl.Series) -> pa.Array:
    return s.to_arrow(compat_level=pl.CompatLevel.oldest())


def _ordinals(start: int, stop: int) -> pa.Array:
    """``start, start + 1, ..., stop - 1`` as int64, built natively (``pa.array(range(...))`` walks Python ints:
    ~0.7 ms for a batch's 7k sessions, 55x this)."""
    return _arrow(pl.int_range(start, stop, dtype=pl.Int64, eager=True))


def _flatten_frames(table: pa.Table | pl.DataFrame, day: date, hasher: AddressHasher, seq_start: int = 0) -> _Frames:
    """Flatten one batch of parsed conversations (no cross-batch dedup: see ``_select_versions``)."""
    if isinstance(table, pl.DataFrame):
        table = table.with_columns(pl.col("participants").cast(_PL_PARTICIPANTS)).to_arrow().cast(
            PARSED_CONVERSATION_SCHEMA)
    table = table.combine_chunks()
    n_in = table.num_rows
    cid = table.column("conversationId").combine_chunks()
    start = table.column("conversationStart").combine_chunks()
    for name, col in (("conversationId", cid), ("conversationStart", start)):
        if col.null_count:
            first = pc.index(col.is_null(), True).as_py()
            raise MissingRequiredFieldError(cid[first].as_py(), name)
    lo, hi = _day_bounds(day)
    keep = pc.and_(pc.greater_equal(start, pa.scalar(lo, start.type)), pc.less(start, pa.scalar(hi, start.type)))
    dropped = n_in - pc.sum(keep.cast(pa.int64())).as_py() if n_in else 0
    seq = _ordinals(seq_start, seq_start + n_in)
    keys = pa.table({"conversation_id": cid, "conversation_start": start, "_seq": seq, "_keep": keep})

    pkeys, p = _explode(keys, table.column("participants"))
    pid = pc.fill_null(p["participantId"], "")  # a participant without an id still owns its sessions
    skeys, s = _explode(pkeys.append_column("participant_id", pid), p["sessions"])
    sid = pc.fill_null(s["sessionId"], "")
    srow = _ordinals(0, len(sid))
    gkeys, g = _explode(skeys.append_column("session_id", sid), s["segments"])
    mrows, m = _explode(pa.table({"_srow": srow, "_keep": skeys.column("_keep")}), s["metrics"])

    # The rows stay in Arrow from the parse to the writer; Polars sees only the columns it computes on (converting
    # every column to Polars and back cost ~0.8 CPU-s per 100k conversations, measured).
    def kept(t: pa.Table) -> pa.Table:
        return (t.filter(t.column("_keep")) if dropped else t).drop_columns("_keep")  # neighbours are rare

    metrics = _metric_columns(_polars(_table(mrows, m)), len(sid))
    sessions = kept(_table(skeys, {**{k: s[k] for k in s if k not in ("segments", "metrics")},
                                   **{c.name: _arrow(c) for c in metrics}}))
    segments = kept(_table(gkeys, g))
    # A segment without a start or type has no key in the segments table. The API always sends both: filtering
    # anyway copied every segment row. Those dropped are counted (the raw landing keeps them).
    complete = pc.and_(pc.is_valid(segments.column("segmentStart")), pc.is_valid(segments.column("segmentType")))
    n_segments = segments.num_rows
    if not pc.all(complete).as_py():
        segments = segments.filter(complete)
    incomplete = n_segments - segments.num_rows

    seg_key = ["_seq", "participant_id", "session_id", "segmentStart", "segmentType"]
    n_seg = segments.num_rows
    firsts = (_polars(segments, seg_key).with_row_index("_row")
              .unique(subset=seg_key, keep="first", maintain_order=True).get_column("_row"))
    if firsts.len() < n_seg:
        segments = segments.take(_arrow(firsts))
    dup_segments = n_seg - segments.num_rows

    # The four address columns are hashed in one pass over their distinct values (see AddressHasher.hash_arrays).
    addresses = (("ani", "ani_hash"), ("dnis", "dnis_hash"), ("addressFrom", "address_from_hash"),
                 ("addressTo", "address_to_hash"))
    hashed = hasher.hash_arrays([sessions.column(src) for src, _ in addresses])
    flow = sessions.column("flow")
    sessions = _renamed(sessions, {
        "conversation_id": "conversation_id", "conversation_start": "conversation_start", "_seq": "_seq",
        "participant_id": "participant_id", "sessionId": "session_id", "mediaType": "media_type",
        "messageType": "message_type", "direction": "direction",
        **{dst: h for (_, dst), h in zip(addresses, hashed, strict=True)},
        "recording": "recording", "edgeId": "edge_id", "usedRouting": "used_routing",
        "selectedAgentId": "selected_agent_id", "outboundCampaignId": "outbound_campaign_id",
        "provider": "provider", "acwSkipped": "acw_skipped",
        **{dst: pc.struct_field(flow, src) for src, dst in (
            ("flowId", "flow_id"), ("flowName", "flow_name"), ("flowType", "flow_type"),
            ("flowVersion", "flow_version"), ("entryType", "flow_entry_type"), ("exitReason", "flow_exit_reason"),
            ("transferType", "flow_transfer_type"))},
        **{col: col for col in METRICS.values()},
    })

    parts = kept(_table(pkeys, {k: p[k] for k in p if k != "sessions"}))
    parts = _renamed(parts, {
        "conversation_id": "conversation_id", "conversation_start": "conversation_start", "_seq": "_seq",
        "participantId": "participant_id",
        "participant_name": _arrow(hasher.hash_if_phone(_series(parts.column("participantName")))),
        "purpose": "purpose", "userId": "user_id", "externalContactId": "external_contact_id",
        "externalOrganizationId": "external_organization_id", "teamId": "team_id",
        "flaggedReason": "flagged_reason", "screenRecording": "screen_recording",
        "attributes": _hash_phone_attributes(parts.column("attributes"), hasher),
    })

    def redacted(col: str) -> pa.Array:
        return _arrow(_series(segments.column(col)).str.replace_all(PHONE_IN_TEXT, PHONE_REDACTED))

    segments = _renamed(segments, {
        "conversation_id": "conversation_id", "conversation_start": "conversation_start", "_seq": "_seq",
        "participant_id": "participant_id", "session_id": "session_id", "segmentStart": "segment_start",
        "segmentEnd": "segment_end", "segmentType": "segment_type", "queueId": "queue_id",
        "wrapUpCode": "wrap_up_code", "wrap_up_note": redacted("wrapUpNote"), "wrapUpTags": "wrap_up_tags",
        "disconnectType": "disconnect_type", "errorCode": "error_code", "conference": "conference",
        "subject": redacted("subject"),
    })

    seg_counts = (_series(segments.column("_seq")) - seq_start).alias("row").value_counts()
    segment_count = pl.zeros(n_in, pl.Int32, eager=True).scatter(seg_counts.get_column("row"),
                                                                 seg_counts.get_column("count").cast(pl.Int32))
    conv_cols = {f.name: table.column(f.name) for f in PARSED_CONVERSATION_SCHEMA if f.name != "participants"}
    conv_cols["participant_count"] = pc.fill_null(pc.list_value_length(table.column("participants")), 0).cast(
        pa.int32())
    conv_cols["segment_count"] = _arrow(segment_count)
    conv_cols["_seq"] = seq
    conv_cols["_keep"] = keep
    conversations = _renamed(kept(pa.table(conv_cols)), {
        "conversationId": "conversation_id", "conversationStart": "conversation_start",
        "conversationEnd": "conversation_end", "originatingDirection": "originating_direction",
        "conversationInitiator": "conversation_initiator", "customerParticipation": "customer_participation",
        "divisionIds": "division_ids", "externalTag": "external_tag",
        "mediaStatsMinConversationMos": "media_stats_min_conversation_mos",
        "mediaStatsMinConversationRFactor": "media_stats_min_conversation_r_factor",
        "originatingSocialMediaPublic": "originating_social_media_public", "selfServed": "self_served",
        "associatedConversationId": "associated_conversation_id", "participant_count": "participant_count",
        "_seq": "_seq", "segment_count": "segment_count",
    })
    return _Frames(conversations, parts, sessions, segments, n_in, dropped, dup_segments, incomplete)


def _renamed(table: pa.Table, columns: dict[str, str | pa.Array | pa.ChunkedArray]) -> pa.Table:
    """The output columns in order: ``{source name: output name}``, or ``{output name: computed column}``."""
    names, arrays = [], []
    for key, value in columns.items():
        if isinstance(value, str):
            names.append(value)
            arrays.append(table.column(key))
        else:
            names.append(key)
            arrays.append(value)
    return pa.Table.from_arrays(arrays, names=names)


def _metric_columns(metrics: pl.DataFrame, sessions: int) -> list[pl.Series]:
    """Session metrics (long: ``_srow``, ``name``, ``value``) -> one column per metric over ``sessions`` rows.

    A metric emitted more than once in a session is summed; one never emitted is null. Each (metric, session)
    sum lands in its cell of one metric-major array, and the columns are slices of it: a pivot and a join back
    cost ~10x more a batch (measured).
    """
    cells = (metrics.filter(_col("name").is_in(list(METRICS)))
             .select((_col("name").replace_strict(list(METRICS), range(len(METRICS)), return_dtype=pl.Int64)
                      * sessions + _col("_srow")).alias("cell"), "value")
             .group_by("cell").agg(_col("value").sum()))
    flat = pl.repeat(None, len(METRICS) * sessions, dtype=pl.Int64, eager=True)
    flat = flat.scatter(cells.get_column("cell"), cells.get_column("value"))
    return [flat.slice(k * sessions, sessions).alias(col) for k, col in enumerate(METRICS.values())]


def _hash_phone_attributes(attributes: pa.ChunkedArray | pa.Array, hasher: AddressHasher) -> pa.Array:
    """Attribute values that are phone numbers (``pii.is_phone_attribute``) are replaced by their hash."""
    arr = attributes.combine_chunks() if isinstance(attributes, pa.ChunkedArray) else attributes
    offsets, entries = _list_values(arr)
    keys, items = _struct_children(entries)
    values = _series(items)
    hashed = hasher.hash_phone_attributes(_series(keys), values)
    if hashed is values:
        return arr
    return pa.MapArray.from_arrays(offsets, keys, _arrow(hashed).cast(pa.string()),
                                   mask=arr.is_null() if arr.null_count else None)


def _winners(keys: _ArrowLog, versions: int) -> pl.DataFrame:
    """``_seq`` of each conversation's surviving version across the day's written version keys.

    In hash partitions of conversation ids of at most ``_SELECT_ROWS`` versions, one pass over the (small) keys
    each: sorting a whole million-conversation day at once was the day's memory peak (+350 MiB at 1M, measured),
    and a conversation's versions all fall in one partition, so the survivors are the same.
    """
    passes = max(1, math.ceil(versions / _SELECT_ROWS))
    chosen = [pl.DataFrame({"_seq": []}, schema={"_seq": pl.Int64})]
    for k in range(passes):
        frames = []
        for df in keys.frames():
            frames.append(df if passes == 1 else df.filter(pl.col("conversation_id").hash(seed=0) % passes == k))
        if frames:
            chosen.append(_select_versions(pl.concat(frames).lazy()).collect())
    return pl.concat(chosen)


def _select_versions(conversations: pl.LazyFrame) -> pl.LazyFrame:
    """``_seq`` of the surviving version of each conversation (see the module docstring for the order)."""
    return (conversations.select("conversation_id", "conversation_end", "segment_count", "_seq")
            .sort(["conversation_id", "conversation_end", "segment_count", "_seq"], nulls_last=False)
            .unique(subset="conversation_id", keep="last", maintain_order=True)
            .select("_seq"))


_VERSION_KEY = ("conversation_id", "conversation_end", "segment_count", "_seq")


def _keep_versions(frames: dict[str, pa.Table], winners: pl.DataFrame) -> dict[str, pa.Table]:
    """Each table's rows of the surviving versions (``winners``' ``_seq``), in order.

    A batch loses few versions (a repeated page's worth): each table drops their rows (``_without_versions``).
    """
    seq = frames["conversations"].column("_seq")
    if len(seq) == 0:
        return frames
    lo, hi = (s.as_py() for s in pc.min_max(seq).values())
    mine = _arrow(winners.get_column("_seq").filter(winners.get_column("_seq").is_between(lo, hi)))
    if len(mine) == len(seq):
        return frames  # every version here survives (the losers are in the other batch)
    losers = _series(seq.filter(pc.invert(pc.is_in(seq, value_set=mine)))).sort()
    return {name: _without_versions(t, losers) for name, t in frames.items()}


_MAX_KEPT_SLICES = 16


def _without_versions(table: pa.Table, losers: pl.Series) -> pa.Table:
    """``table``'s rows whose ``_seq`` is not one of ``losers`` (sorted).

    A batch's rows are in ``_seq`` order and its losers come in runs (a repeated page's tail loses to the next
    page), so the rows kept are a few zero-copy slices; filtering copied every column of every table, ~3.5 % of
    the day's CPU (measured). Rows out of order, or losers scattered, take the filter (a hash lookup a row).
    """
    seq = _series(table.column("_seq"))
    if losers.len() == 0 or seq.len() == 0:
        return table
    if seq.is_sorted():
        starts = seq.search_sorted(losers, side="left").to_list()
        ends = seq.search_sorted(losers, side="right").to_list()
        kept: list[tuple[int, int]] = []
        at = 0
        for start, end in zip(starts, ends, strict=True):
            if start > at:
                kept.append((at, start))
                if len(kept) > _MAX_KEPT_SLICES:
                    break
            at = max(at, end)
        else:
            if at < seq.len():
                kept.append((at, seq.len()))
            if len(kept) <= _MAX_KEPT_SLICES:
                return pa.concat_tables([table.slice(a, b - a) for a, b in kept]) if kept else table.slice(0, 0)
    return table.filter(pc.invert(pc.is_in(table.column("_seq"), value_set=_arrow(losers))))


# ------------------------------------------------------------------------------------- Arrow conversion

def _to_arrow_array(col: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(typ):
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(pa.string())
        if not pa.types.is_string(arr.type):
            arr = arr.cast(pa.string())
        return pc.dictionary_encode(arr).cast(typ)
    if pa.types.is_map(typ):
        if pa.types.is_map(arr.type):
            return arr.cast(typ)
        if pa.types.is_null(arr.type):
            return pa.nulls(len(arr), typ)
        offsets, values = _list_values(arr)
        keys, items = _struct_children(values)
        return pa.MapArray.from_arrays(offsets, keys.cast(pa.string()), items.cast(pa.string()),
                                       mask=arr.is_null() if arr.null_count else None)
    if pa.types.is_list(typ) and pa.types.is_large_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_type))
    return arr.cast(typ) if arr.type != typ else arr


def _plain(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its dictionary columns as plain strings (what the sink buffers before a row group)."""
    return pa.schema([pa.field(f.name, pa.string(), f.nullable) if pa.types.is_dictionary(f.type) else f
                      for f in schema], metadata=schema.metadata)


def _to_schema(frame: pl.DataFrame | pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast to an explicit output schema (string views -> string, dictionaries, map), checking non-nullables."""
    # Polars' oldest Arrow level gives large strings, which narrow to strings without copying their bytes (its
    # string views are rebuilt: ~2.5x slower, measured).
    tbl = frame.to_arrow(compat_level=pl.CompatLevel.oldest()) if isinstance(frame, pl.DataFrame) else frame
    arrays = []
    for f in schema:
        arr = _to_arrow_array(tbl.column(f.name), f.type)
        if not f.nullable and arr.null_count:
            raise ConversationDetailsError(f"{arr.null_count} null value(s) in non-nullable column {f.name}")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def _encode_dictionaries(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A ``_plain`` table -> ``schema``: each dictionary column encoded over the whole table (first appearance)."""
    arrays = [_to_arrow_array(table.column(f.name), f.type) if pa.types.is_dictionary(f.type)
              else table.column(f.name) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _finish_frames(fr: _Frames) -> FlatTables:
    winners = _collect(_select_versions(_polars(fr.conversations, _VERSION_KEY).lazy()))
    kept = _keep_versions({"conversations": fr.conversations, "participants": fr.participants,
                           "sessions": fr.sessions, "segments": fr.segments}, winners)
    return FlatTables(
        **{name: _to_schema(df, TABLE_SCHEMAS[name]) for name, df in kept.items()},
        conversations_in=fr.conversations_in, dropped_neighbours=fr.dropped_neighbours,
        duplicate_conversations=fr.conversations.num_rows - winners.height,
        duplicate_segments=fr.duplicate_segments, incomplete_segments=fr.incomplete_segments,
    )


def flatten(conversations: pa.Table | pl.DataFrame | Iterable[pa.Table], day: date,
            hmac_key: bytes | str | AddressHasher) -> FlatTables:
    """Flatten parsed conversations (``parse_page`` output, one or many pages) into the day's four tables.

    In memory: for a whole day use :class:`DayFlattener`, which streams. Pages given as an iterable are in
    arrival order (later pages win exact ties in dedup).
    """
    if not isinstance(conversations, pa.Table | pl.DataFrame):
        tables = [t.replace_schema_metadata(None) for t in conversations]
        conversations = pa.concat_tables(tables) if tables else PARSED_CONVERSATION_SCHEMA.empty_table()
    frames = _flatten_frames(conversations, day, as_hasher(hmac_key))
    return _finish_frames(frames)


# ============================================================================================ wrap-up facts

def _prepare_labels(labels: pl.DataFrame | pa.Table | None) -> pl.DataFrame | None:
    """Normalise the wrap-up code dimension to ``WRAPUP_LABELS_SCHEMA`` (accepts id/name/label aliases)."""
    if labels is None:
        return None
    df = labels if isinstance(labels, pl.DataFrame) else pl.from_arrow(labels)
    assert isinstance(df, pl.DataFrame)
    aliases = {"id": "wrap_up_code_id", "name": "wrap_up_code_label", "label": "wrap_up_code_label"}
    df = df.rename({k: v for k, v in aliases.items() if k in df.columns and v not in df.columns})
    far_past = datetime(1970, 1, 1, tzinfo=UTC)
    cols = []
    for name in ("valid_from", "valid_to"):
        if name not in df.columns:
            cols.append(pl.lit(far_past if name == "valid_from" else None, pl.Datetime("us", "UTC")).alias(name))
            continue
        c = pl.col(name)
        dtype = df.schema[name]
        if dtype == pl.Date:
            c = c.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        elif isinstance(dtype, pl.Datetime):
            c = c.dt.replace_time_zone("UTC") if dtype.time_zone is None else c.dt.convert_time_zone("UTC")
            c = c.dt.cast_time_unit("us")
        cols.append(c.alias(name))
    df = df.with_columns(cols).with_columns(pl.col("valid_from").fill_null(far_past))
    return df.select([f.name for f in WRAPUP_LABELS_SCHEMA]).with_columns(
        pl.col("wrap_up_code_id").cast(pl.String), pl.col("wrap_up_code_label").cast(pl.String))


def _wrapup_frame(conv: pl.DataFrame, parts: pl.DataFrame, sess: pl.DataFrame, segs: pl.DataFrame,
                  labels: pl.DataFrame | None) -> pl.DataFrame:
    """One row per wrap-up segment, joined within its conversation version (``_seq`` when present).

    One lazy plan, collected once (see ``_collect``): run eagerly, its ~20 steps each paid Polars' per-query cost,
    and a batch's wrap-up facts took ~1.7x the CPU (measured).
    """
    vkey = ["_seq"] if "_seq" in segs.columns else ["conversation_id"]
    w = segs.lazy().filter(pl.col("segment_type") == "wrapup").select(
        *vkey, *([] if vkey == ["conversation_id"] else ["conversation_id"]), "participant_id", "session_id",
        "queue_id", pl.col("wrap_up_code").alias("wrap_up_code_id"), "segment_start", "segment_end")
    s = sess.lazy().select(*vkey, "participant_id", "session_id", "media_type", "direction", "t_acw_ms",
                           "t_handle_ms").unique(subset=[*vkey, "participant_id", "session_id"], keep="first",
                                                 maintain_order=True)
    p = parts.lazy().select(*vkey, "participant_id", "user_id").unique(
        subset=[*vkey, "participant_id"], keep="first", maintain_order=True)
    c = conv.lazy().select(*vkey, "conversation_start", pl.col("division_ids").list.first().alias("division_id"))
    w = (w.join(s, on=[*vkey, "participant_id", "session_id"], how="left", maintain_order="left")
          .join(p, on=[*vkey, "participant_id"], how="left", maintain_order="left")
          .join(c, on=vkey, how="left", maintain_order="left")
          .with_columns(pl.col("media_type").fill_null("unknown"))
          .with_row_index("_w"))
    if labels is not None and labels.height:
        lab = labels.lazy()
        as_of = (w.select("_w", "wrap_up_code_id", "conversation_start")
                 .join(lab, on="wrap_up_code_id", how="inner")
                 .filter((pl.col("valid_from") <= pl.col("conversation_start"))
                         & (pl.col("valid_to").is_null() | (pl.col("conversation_start") < pl.col("valid_to"))))
                 .sort("_w", "valid_from")
                 .unique(subset="_w", keep="last", maintain_order=True)
                 .select("_w", "wrap_up_code_label"))
        # Before the dimension's first version of a code, its earliest known name (as the dimension does).
        earliest = (lab.sort("valid_from").unique(subset="wrap_up_code_id", keep="first", maintain_order=True)
                    .select("wrap_up_code_id", pl.col("valid_from").alias("_first"),
                            pl.col("wrap_up_code_label").alias("_earliest")))
        w = (w.join(as_of, on="_w", how="left", maintain_order="left")
              .join(earliest, on="wrap_up_code_id", how="left", maintain_order="left")
              .with_columns(pl.when(pl.col("wrap_up_code_label").is_null()
                                    & (pl.col("conversation_start") < pl.col("_first")))
                            .then(pl.col("_earliest")).otherwise(pl.col("wrap_up_code_label"))
                            .alias("wrap_up_code_label"))
              .drop("_first", "_earliest"))
    else:
        w = w.with_columns(pl.lit(None, pl.String).alias("wrap_up_code_label"))
    return w.with_columns(pl.lit(SCHEMA_VERSION, pl.Int16).alias("schema_version")).drop("_w").pipe(_collect)


_WRAPUP_INPUTS = {  # the columns _wrapup_frame reads, by table
    "conversations": ("_seq", "conversation_start", "division_ids"),
    "participants": ("_seq", "participant_id", "user_id"),
    "sessions": ("_seq", "participant_id", "session_id", "media_type", "direction", "t_acw_ms", "t_handle_ms"),
    "segments": ("_seq", "conversation_id", "participant_id", "session_id", "queue_id", "wrap_up_code",
                 "segment_start", "segment_end", "segment_type"),
}


def _batch_wrapup_facts(frames: dict[str, pa.Table], labels: pl.DataFrame | None) -> pa.Table:
    """A batch's wrap-up facts (``_seq`` kept): only the columns the joins read go to Polars."""
    segments = frames["segments"]
    wrapups = segments.filter(pc.equal(segments.column("segment_type"), "wrapup"))
    inputs = {name: _polars(wrapups if name == "segments" else frames[name], cols)
              for name, cols in _WRAPUP_INPUTS.items()}
    out = _wrapup_frame(inputs["conversations"], inputs["participants"], inputs["sessions"], inputs["segments"],
                        labels)
    return out.to_arrow(compat_level=pl.CompatLevel.oldest())


def wrapup_facts(flat: FlatTables, labels: pl.DataFrame | pa.Table | None = None) -> pa.Table:
    """``WRAPUP_FACTS_SCHEMA`` rows for the day: the immutable code id plus its label as of the conversation.

    ``labels`` is the wrap-up code dimension (``WRAPUP_LABELS_SCHEMA``, or the wrapup_dimension frame with
    ``name``): one row per version with valid_from / valid_to. The label is the version valid at
    ``conversation_start`` (a deleted code's versions stay, so it keeps its historical label); before the first
    version, the earliest name; null for a code the dimension has never seen. Codes are never checked against
    today's configuration, and the id is kept whatever the label.
    """
    frames = [pl.from_arrow(t).with_columns(pl.col(pl.Categorical).cast(pl.String))  # type: ignore[union-attr]
              for t in (flat.conversations, flat.participants, flat.sessions, flat.segments)]
    out = _wrapup_frame(*frames, _prepare_labels(labels))  # type: ignore[arg-type]
    return _to_schema(out, WRAPUP_FACTS_SCHEMA)


# ============================================================================================== streaming

class _ParquetSink:
    """Writes one table as 100k-row row groups into files of at most about ``TARGET_FILE_BYTES``, atomically.

    Rows arrive as plain strings and each row group is dictionary-encoded on its own rows, so the dictionaries
    (so the bytes) depend only on the group's rows, never on how the input happened to be batched. Until a row
    group is full its rows wait in an uncompressed Arrow IPC spool file beside the output (a memory copy to write
    and to read back), not in memory: five tables' worth of partial row groups were ~115 MiB of the peak at 100k.
    """

    def __init__(self, folder: Path, name: str, schema: pa.Schema) -> None:
        self.folder, self.name = folder, name
        self.schema = schema.with_metadata({**(schema.metadata or {}),
                                            b"genesys_assets.table": name.encode(),
                                            b"genesys_assets.schema_version": str(SCHEMA_VERSION).encode()})
        self.plain = _plain(schema)
        self.dict_columns = [f.name for f in schema if pa.types.is_dictionary(f.type)]
        self._spool: _ArrowLog | None = None
        self._buffered = 0
        self._out: pa.NativeFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self.files: list[Path] = []
        self.rows = 0
        self.bytes = 0

    def write(self, frame: pl.DataFrame | pa.Table) -> None:
        """Append rows (any column order; ``_seq`` and other extra columns are ignored)."""
        table = _to_schema(frame, self.plain)
        if table.num_rows == 0:
            return
        self._spooled(table)
        if self._buffered >= ROW_GROUP_SIZE:
            self._flush_groups(final=False)

    def _spooled(self, table: pa.Table) -> None:
        if self._spool is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._spool = _ArrowLog(self.folder / ".spool.arrows", buffer_bytes=1 << 20)
        self._spool.append(table)
        self._buffered += table.num_rows

    def _flush_groups(self, *, final: bool) -> None:
        """Write the spool's full row groups (and, when ``final``, the last partial one); re-spool the rest."""
        spool, self._spool, self._buffered = self._spool, None, 0
        assert spool is not None
        spool.close()
        data = spool.read_all()
        spool.path.unlink()
        full = data.num_rows if final else data.num_rows - data.num_rows % ROW_GROUP_SIZE
        for start in range(0, full, ROW_GROUP_SIZE):
            self._write_group(data.slice(start, min(ROW_GROUP_SIZE, full - start)))
        if full < data.num_rows:
            self._spooled(data.slice(full))

    def _write_group(self, rows: pa.Table) -> None:
        group = _encode_dictionaries(rows, self.schema)
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            final = self.folder / f"part-{len(self.files):05d}.parquet"
            self._tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
            self.files.append(final)
            self._out = pa.OSFile(str(self._tmp), "wb")
            self._writer = pq.ParquetWriter(
                self._out, self.schema, compression=PARQUET_COMPRESSION, use_dictionary=self.dict_columns,
                write_statistics=True, store_schema=True, write_batch_size=PARQUET_WRITE_BATCH_SIZE)
        self._writer.write_table(group, row_group_size=ROW_GROUP_SIZE)
        self.rows += group.num_rows
        assert self._out is not None
        if self._out.tell() >= TARGET_FILE_BYTES:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._out is not None and self._tmp is not None
        self._out.close()
        final = self.files[-1]
        os.replace(self._tmp, final)
        self.bytes += final.stat().st_size
        self._writer, self._out, self._tmp = None, None, None

    def close(self) -> None:
        if self._spool is not None:
            self._flush_groups(final=True)
        if self._writer is None and not self.files:  # an empty day still gets a (schema-only) file
            self.folder.mkdir(parents=True, exist_ok=True)
            final = self.folder / "part-00000.parquet"
            tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
            pq.write_table(self.schema.empty_table(), tmp, compression=PARQUET_COMPRESSION)
            os.replace(tmp, final)
            self.files.append(final)
            self.bytes += final.stat().st_size
        self._close_file()

    def abandon(self) -> None:
        """Close open files without finishing them (they are removed with the work directory)."""
        if self._spool is not None:
            self._spool.close()
        if self._writer is not None:
            self._writer.close()
        if self._out is not None:
            self._out.close()
        self._spool, self._writer, self._out = None, None, None


@dataclass
class DayResult:
    """What a day's flattening did: counts for reconciliation and metadata, and the files written."""

    day: date
    pages: int = 0
    conversations_in: int = 0
    dropped_neighbours: int = 0
    duplicate_conversations: int = 0
    duplicate_segments: int = 0
    # Segment rows on the pages without a segmentStart or segmentType, left out (the raw landing keeps them); like
    # duplicate_segments, counted per version received, so a conversation sent twice counts twice.
    incomplete_segments: int = 0
    conform_pages: int = 0
    unknown_fields: list[str] = field(default_factory=list)
    rewritten: bool = False  # a conversation came again after its first version was written: see DayFlattener
    rows: dict[str, int] = field(default_factory=dict)
    bytes_written: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def conversations(self) -> int:
        return self.rows.get("conversations", 0)

    @property
    def counts(self) -> dict[str, int]:
        """The conversations that came in and what was dropped or merged on the way to the tables (manifest and
        metadata)."""
        return {"conversations_in": self.conversations_in, "dropped_neighbours": self.dropped_neighbours,
                "duplicate_conversations": self.duplicate_conversations,
                "duplicate_segments": self.duplicate_segments, "incomplete_segments": self.incomplete_segments}


class DayFlattener:
    """Flatten a day page by page into its Parquet tables, with memory flat in the day's size.

    Three stages overlap on their own threads: pages are parsed (``parse_threads`` at once, in order), every
    ``batch_conversations`` conversations are flattened on the caller's thread, and a writer thread (up to
    ``WRITER_QUEUE_BATCHES`` batches queued for it) streams each batch into the tables' Parquet files (100k-row row
    groups, each dictionary-encoded on its own rows so the bytes never depend on batching; zstd; a new file past
    ``TARGET_FILE_BYTES``) under ``work_dir``.

    Dedup without a second pass: a batch is held back until the next one is flattened, and the versions of both
    are resolved together (the module docstring's order), so a conversation repeated on the next page or two (a
    retried page, an overlapping window edge) never reaches the files twice. A repeat of a conversation that is
    already written is detected by 64-bit hashes of the written ids (a collision only costs a needless rewrite);
    then ``finish`` picks the survivors across the day from the written version keys and rewrites the tables from the
    written files (``DayResult.rewritten``).
    Both paths write the same bytes. ``finish(out_dir)`` moves the files into ``out_dir/<table>/``; nothing is
    written to ``out_dir`` before it. Measured with ``python -m benchmarks``.
    """

    def __init__(self, day: date, work_dir: str | Path, hmac_key: bytes | str | AddressHasher, *,
                 labels: pl.DataFrame | pa.Table | None = None, tables: Iterable[str] | None = None,
                 batch_conversations: int = 2_000, parse_threads: int = 2) -> None:
        self.tables = TABLES if tables is None else tuple(tables)
        unknown_tables = set(self.tables) - set(TABLES)
        if unknown_tables:
            raise ValueError(f"unknown table(s) {sorted(unknown_tables)}; known: {TABLES}")
        if batch_conversations < 1:
            raise ValueError(f"batch_conversations must be at least 1, got {batch_conversations}")
        self.day = day
        self.work_dir = Path(work_dir)
        self.parts_dir = self.work_dir / f"parts-{day.isoformat()}"
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)  # a crashed earlier attempt: start clean, parts are not resumable
        self.parts_dir.mkdir(parents=True)
        self.hasher = as_hasher(hmac_key)
        self.labels = _prepare_labels(labels)
        self.batch_conversations = batch_conversations
        self.result = DayResult(day=day)
        self._parse_pool = ThreadPoolExecutor(max_workers=parse_threads, thread_name_prefix="parse")
        self._parse_ahead = parse_threads
        self._write_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write")
        self._writes: deque[Future[None]] = deque()
        self._write_failed = False
        self._sinks = {name: _ParquetSink(self.parts_dir / name, name, TABLE_SCHEMAS[name]) for name in self.tables}
        # What a rewrite needs (see finish): each written row's version, and each written version's key.
        self._seq_logs = {name: _ArrowLog(self.parts_dir / f"{name}.seq.arrows") for name in self.tables}
        self._keys_log = _ArrowLog(self.parts_dir / "keys.arrows", compression="lz4")
        self._pending: deque[Future[pa.Table]] = deque()
        self._parsed: list[pa.Table] = []
        self._parsed_rows = 0
        self._held: dict[str, pl.DataFrame] | None = None
        self._written_ids = _SortedHashes()
        self._seq = 0
        self._unknown: set[str] = set()
        self._finished = False

    # ---- input ----------------------------------------------------------------------------------------
    def add_page(self, raw: bytes) -> None:
        """Queue one raw result page."""
        self._check_open()
        self.result.pages += 1
        self._pending.append(self._parse_pool.submit(parse_page, raw))
        while len(self._pending) > self._parse_ahead:
            self._accept(self._pending.popleft().result())

    def add_pages(self, pages: Iterable[bytes]) -> None:
        for raw in pages:
            self.add_page(raw)

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("DayFlattener.finish() was already called")

    def _accept(self, table: pa.Table) -> None:
        meta = table.schema.metadata or {}
        if meta.get(b"parse_path") == b"conform":
            self.result.conform_pages += 1
        if meta.get(b"unknown_fields"):
            self._unknown.update(json.loads(meta[b"unknown_fields"]))
        self._parsed.append(table.replace_schema_metadata(None))
        self._parsed_rows += table.num_rows
        while self._parsed_rows >= self.batch_conversations:
            self._flatten_batch()

    # ---- batches --------------------------------------------------------------------------------------
    def _flatten_batch(self) -> None:
        """Flatten the first ``batch_conversations`` parsed conversations (or all, if fewer): a page larger than a
        batch (page size 10,000, say) is flattened a batch at a time, so the flattening's working memory follows
        the batch; the parsed page itself is freed with its last slice."""
        if not self._parsed:
            return
        parsed = pa.concat_tables(self._parsed)
        batch, rest = parsed.slice(0, self.batch_conversations), parsed.slice(self.batch_conversations)
        del parsed
        self._parsed, self._parsed_rows = ([rest] if rest.num_rows else []), rest.num_rows
        fr = _flatten_frames(batch, self.day, self.hasher, seq_start=self._seq)
        self._seq += batch.num_rows
        del batch  # freed before this batch waits for the writer (a page cut across batches goes with its last slice)
        r = self.result
        r.conversations_in += fr.conversations_in
        r.dropped_neighbours += fr.dropped_neighbours
        r.duplicate_segments += fr.duplicate_segments
        r.incomplete_segments += fr.incomplete_segments
        frames = {"conversations": fr.conversations, "participants": fr.participants, "sessions": fr.sessions,
                  "segments": fr.segments}
        if "wrapup_facts" in self.tables:
            frames["wrapup_facts"] = _batch_wrapup_facts(frames, self.labels)
        self._admit(frames)

    def _admit(self, new: dict[str, pa.Table]) -> None:
        """Resolve the new batch's versions against the held one, then write the held one and hold the new."""
        held = self._held
        keys = [_polars(f["conversations"], _VERSION_KEY) for f in (held, new) if f is not None]
        versions = sum(k.height for k in keys)
        winners = _collect(_select_versions(pl.concat(keys).lazy()))
        if winners.height < versions:
            self.result.duplicate_conversations += versions - winners.height
            held = _keep_versions(held, winners) if held is not None else None
            new = _keep_versions(new, winners)
        if self._written_ids.contains_any(_id_hashes(new["conversations"])):
            self.result.rewritten = True  # a version of one of these is already in the files: finish() rewrites
        if held is not None:
            self._write_batch(held)
        self._held = new

    def _write_batch(self, frames: dict[str, pa.Table]) -> None:
        self._written_ids.add(_id_hashes(frames["conversations"]))
        while len(self._writes) >= WRITER_QUEUE_BATCHES:  # a bounded queue: memory stays flat
            self._writes.popleft().result()
        self._writes.append(self._write_pool.submit(self._write_parts, frames))

    def _write_parts(self, frames: dict[str, pa.Table]) -> None:
        """(writer thread) The batch's rows into the sinks; ``_seq`` and version keys aside, for a rewrite.

        After a failed batch the ones queued behind it write nothing: the day is failing (its error surfaces at the
        next hand-over), and the sinks are in no state to take more rows."""
        if self._write_failed:
            return
        try:
            for name in self.tables:
                table = frames[name]
                self._sinks[name].write(table)
                self._seq_logs[name].append(table.select(["_seq"]))
            self._keys_log.append(frames["conversations"].select(list(_VERSION_KEY)))
        except BaseException:
            self._write_failed = True
            raise

    def _wait_write(self) -> None:
        while self._writes:
            self._writes.popleft().result()

    # ---- the day --------------------------------------------------------------------------------------
    def finish(self, out_dir: str | Path) -> DayResult:
        """Flush the last batches, rewrite the tables if a repeat reached written rows, and move the files into
        ``out_dir``; return the counts."""
        self._check_open()
        while self._pending:
            self._accept(self._pending.popleft().result())
        while self._parsed:
            self._flatten_batch()
        if self._held is not None:
            self._write_batch(self._held)
            self._held = None
        self._wait_write()
        self._finished = True
        self._shutdown_pools()
        r = self.result
        r.unknown_fields = sorted(self._unknown)
        for sink in self._sinks.values():
            sink.close()
        for log in (*self._seq_logs.values(), self._keys_log):
            log.close()
        sinks = self._rewritten_sinks() if r.rewritten else self._sinks
        out = Path(out_dir)
        for name in self.tables:
            sink = sinks[name]
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            r.files[name] = [folder / f.name for f in sink.files]
            for src, dst in zip(sink.files, r.files[name], strict=True):
                os.replace(src, dst)
            r.rows[name] = sink.rows
            r.bytes_written[name] = sink.bytes
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return r

    def _rewritten_sinks(self) -> dict[str, _ParquetSink]:
        """The day's survivors picked across all batches, each table streamed again from its written files."""
        r = self.result
        versions = self._seq
        winners = _winners(self._keys_log, versions)
        r.duplicate_conversations = r.conversations_in - r.dropped_neighbours - winners.height
        alive = _alive(winners, versions)
        sinks = {}
        for name in self.tables:
            sink = _ParquetSink(self.parts_dir / "rewritten" / name, name, TABLE_SCHEMAS[name])
            for batch in _surviving_rows(self._sinks[name].files, self._seq_logs[name], alive):
                sink.write(batch)
            sink.close()
            sinks[name] = sink
        return sinks

    def close(self) -> None:
        """Abandon the day: stop the threads and remove the work files."""
        self._finished = True
        try:
            self._shutdown_pools(cancel=True)
            for sink in self._sinks.values():
                sink.abandon()
            for log in (*self._seq_logs.values(), self._keys_log):
                log.close()
        finally:
            shutil.rmtree(self.parts_dir, ignore_errors=True)

    def _shutdown_pools(self, cancel: bool = False) -> None:
        for pool in (self._parse_pool, self._write_pool):
            pool.shutdown(cancel_futures=cancel)

    def __enter__(self) -> DayFlattener:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._finished:
            self.close()


class _SortedHashes:
    """A set of 64-bit hashes: one sorted array, binary-searched, and a small unsorted tail, scanned.

    The tail is merged in once it holds a quarter of the sorted array (at least 64k), so checking a batch against
    the day's written ids no longer scans every written id: that scan grew with the square of the day (1.7 s of
    a 1M-conversation day, measured).
    """

    _MIN_TAIL = 65_536
    _TOP = 2**64 - 1  # kept last in the sorted array, so every binary search lands inside it (a hash equal to it
    # is reported present: like any collision, that costs a needless rewrite, never a lost row)

    def __init__(self) -> None:
        self._sorted = pl.Series("h", [self._TOP], pl.UInt64)
        self._tail = pl.Series("h", [], pl.UInt64)

    def add(self, hashes: pl.Series) -> None:
        self._tail.append(hashes)
        if self._tail.len() >= max(self._MIN_TAIL, self._sorted.len() // 4):
            merged = self._sorted.to_frame().merge_sorted(self._tail.sort().to_frame(), key="h")
            self._sorted, self._tail = merged.get_column("h").rechunk(), pl.Series("h", [], pl.UInt64)

    def contains_any(self, hashes: pl.Series) -> bool:
        if self._tail.is_in(hashes.implode()).any():
            return True
        return bool((self._sorted.gather(self._sorted.search_sorted(hashes)) == hashes).any())


def _id_hashes(conversations: pa.Table) -> pl.Series:
    """64-bit hashes of the ids: 8 bytes a written conversation to remember (a set of the ids was ~70 MiB at 1M)."""
    return _series(conversations.column("conversation_id")).hash(seed=0).alias("h")


def _surviving_rows(files: list[Path], seq_log: _ArrowLog, alive: pl.Series) -> Iterator[pa.Table]:
    """The written rows of surviving versions, in order: each file's record batches beside their ``_seq``."""
    # A table empty all day (no wrap-ups, say) has a log with a schema and no batches.
    seq = pl.concat([pl.DataFrame(schema={"_seq": pl.Int64}), *seq_log.frames()]).get_column("_seq")
    offset = 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_SIZE):
            mask = alive.gather(seq.slice(offset, batch.num_rows)).to_arrow()
            offset += batch.num_rows
            yield pa.Table.from_batches([batch]).filter(mask)


class _ArrowLog:
    """An append-only Arrow IPC stream of tables in one work file (a sink's spool, the rewrite's logs).

    One open stream per kind instead of a file per batch: the per-batch files cost ~5 ms of the writer thread a
    batch (~0.5 CPU-s per 100k conversations, measured). Writes are buffered: a batch is ~100 small Arrow buffers,
    each its own write() unbuffered (the spool's writes took ~1.6x the CPU, measured). Read back with ordinary
    reads (a memory map would count the whole file in the process's RSS).
    """

    def __init__(self, path: Path, compression: str | None = None, buffer_bytes: int = 1 << 16) -> None:
        self.path = path
        self._options = pa.ipc.IpcWriteOptions(compression=compression)
        self._buffer_bytes = buffer_bytes
        self._file: pa.NativeFile | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def append(self, table: pa.Table) -> None:
        if self._writer is None:
            self._file = pa.BufferedOutputStream(pa.OSFile(str(self.path), "wb"), self._buffer_bytes)
            self._writer = pa.ipc.new_stream(self._file, table.schema, options=self._options)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            assert self._file is not None
            self._writer.close()
            self._file.close()  # flushes, and closes the file under it
            self._writer, self._file = None, None

    def read_all(self) -> pa.Table:
        with pa.OSFile(str(self.path)) as source:
            return pa.ipc.open_stream(source).read_all()

    def frames(self) -> Iterator[pl.DataFrame]:
        if not self.path.exists():
            return
        with pa.OSFile(str(self.path)) as source:
            for batch in pa.ipc.open_stream(source):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame


def _alive(winners: pl.DataFrame, versions: int) -> pl.Series:
    """Bitmap over ``_seq`` (``versions`` conversation versions seen): True for each surviving version."""
    return pl.zeros(versions, dtype=pl.Boolean, eager=True).scatter(winners.get_column("_seq"), True)
