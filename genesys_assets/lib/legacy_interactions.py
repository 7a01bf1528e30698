"""PureConnect interactions → the canonical migration records (seed 001's schema plus seed 000's Cloud fields).

Pure Polars over one :class:`~genesys_assets.resources.pureconnect.LegacyDay`; no Dagster, no I/O. Every source
row of the day ends in exactly one place, so the day reconciles:

* **accepted**: a canonical record with a deterministic Cloud id (UUIDv5 over SiteID/InteractionIDKey/SeqNo, so a
  re-run yields the same ids) and the legacy id kept as ``x_legacy_id``;
* **quarantined**: a reason code and the raw row (customer number already hashed) — never dropped;
* **skipped_duplicate**: a byte-identical copy of a row already accepted (a double-imported history).

Timestamps: rows with ``StartDTOffset`` are UTC; rows without it hold the site's *local* wall clock and are
converted with the configured site timezone, or quarantined as ``ambiguous_timezone`` when none is configured
(seed 000: never assume UTC silently). Local times that DST makes ambiguous or impossible are quarantined too.
The raw timestamp strings are kept on every record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from genesys_assets.lib.pii import PHONE_ATTRIBUTE, AddressHasher

SCHEMA_VERSION = 1
UTC_US = pl.Datetime("us", "UTC")
# The project's namespace for Cloud ids of migrated PureConnect interactions (never change it: ids would move).
INTERACTION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:genesys-assets:pureconnect:interaction")

# InteractionSummary.Direction → legacy name, and the Cloud direction (intercoms are internal calls placed by a user).
DIRECTION_NAMES = {0: "unknown", 1: "inbound", 2: "outbound", 3: "intercom", 4: "intercom_outbound",
                   5: "intercom_inbound"}
CLOUD_DIRECTION = {1: "inbound", 2: "outbound", 3: "outbound", 4: "outbound", 5: "inbound"}
# InteractionSummary.MediaType → legacy name and Cloud contactType. 255 (unknown) has no contact type.
MEDIA_TYPE_NAMES = {255: "unknown", 0: "call", 1: "chat", 2: "sms", 4: "generic_object", 5: "email", 6: "callback",
                    7: "instant_question", 8: "web_collaboration", 11: "monitor", 21: "fax", 22: "work_item"}
CONTACT_TYPE = {0: "call", 1: "chat", 2: "sms", 4: "generic", 5: "email", 6: "callback", 7: "chat",
                8: "cobrowse", 11: "call", 21: "fax", 22: "workitem"}
# IR_RecordingMedia.MediaType is another code set than InteractionSummary's.
IR_MEDIA_TYPE = {1: "call", 2: "chat", 3: "email"}

# Quarantine reason codes, in precedence order (a row with several problems carries the first).
MISSING_KEY = "missing_key"
AMBIGUOUS_TIMEZONE = "ambiguous_timezone"
AMBIGUOUS_LOCAL_TIME = "ambiguous_local_time"
NONEXISTENT_LOCAL_TIME = "nonexistent_local_time"
MISSING_START = "missing_start"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
UNKNOWN_DIRECTION = "unknown_direction"
UNKNOWN_MEDIA_TYPE = "unknown_media_type"
END_BEFORE_START = "end_before_start"
UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
INVALID_DURATION = "invalid_duration"
DUPLICATE_ROW = "duplicate_row"  # outcome skipped_duplicate, not quarantined
QUARANTINED, SKIPPED_DUPLICATE = "quarantined", "skipped_duplicate"

_DATETIME_COLUMNS = ("StartDateTimeUTC", "InitiatedDateTimeUTC", "ConnectedDateTimeUTC", "TerminatedDateTimeUTC")
_KEY = ("InteractionIDKey", "SiteID", "SeqNo")
_PII_COLUMNS = ("RemoteID", "RemoteName")
_RAW_FORMAT = "%Y-%m-%d %H:%M:%S%.3f"
# Set by the PureConnect reader on rows whose datetime text does not parse ("Col='raw'; ..."); absent when all do.
UNPARSEABLE_COLUMN = "UnparseableTimestamps"
# Millisecond duration columns: negative, or longer than a day, cannot be a real interaction.
DURATION_COLUMNS = ("LineDuration", "tDialing", "tIVRWait", "tQueueWait", "tAlert", "tConnected", "tHeld",
                    "tConference", "tExternal", "tACW")
MAX_DURATION_MS = 86_400_000
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"
# The datetime columns normalise_day derives raw text and UTC for on every row (the others: rejects and recorded
# interactions only), and the columns an accepted row carries on to the canonical record and the recording links.
_DERIVED_FOR_ALL = ("StartDateTimeUTC", "TerminatedDateTimeUTC")
_ACCEPTED_COLUMNS = frozenset((
    *_KEY, "InteractionID", "StartDateTimeUTC", "StartDTOffset", "InitiatedDateTimeUTC", "ConnectedDateTimeUTC",
    "Direction", "MediaType", "DNIS_LocalID", "LastLocalUserId", "LastAssignedWorkgroupID",
    "FirstAssignedAcdSkillSet", "AccountCode", "LineDuration", "tIVRWait", "tQueueWait", "tAlert", "tConnected",
    "tHeld", "tACW", "Disposition", "customer_hash", "raw_StartDateTimeUTC", "raw_TerminatedDateTimeUTC",
    "local_time_only", "start_time", "end_time", "end_before_start_repaired", "x_legacy_id",
))

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date, "outcome": pl.String, "reason": pl.String, "detail": pl.String, "x_legacy_id": pl.String,
    "InteractionIDKey": pl.String, "SiteID": pl.Int32, "SeqNo": pl.Int16, "source_row": pl.Int64, "raw": pl.String,
}


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The half-open UTC day [00:00, next 00:00) as naive datetimes (Polars compares them to UTC columns)."""
    start = datetime.combine(day, dtime())
    return start, start + timedelta(days=1)


def partition_prefix(base: str, day: date) -> str:
    """``base/year=YYYY/month=MM/day=DD``: the lake's Hive-style daily layout."""
    return f"{base}/year={day:%Y}/month={day:%m}/day={day:%d}"


def validate_timezone(name: str | None) -> str | None:
    """The IANA zone, or None when not configured; a misspelt zone is an error, never a silent UTC."""
    if name is None or not name.strip():
        return None
    try:
        ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"PURECONNECT_SITE_TIMEZONE {name!r} is not an IANA timezone (e.g. America/New_York)") \
            from None
    return name.strip()


def legacy_id_expr() -> pl.Expr:
    """``SiteID:InteractionIDKey:SeqNo``: the legacy identity (InteractionIDKey alone repeats across sites)."""
    return pl.format("{}:{}:{}", pl.col("SiteID"), pl.col("InteractionIDKey").str.strip_chars(), pl.col("SeqNo"))


def cloud_ids(legacy_ids: pl.Series, namespace: uuid.UUID = INTERACTION_NAMESPACE) -> pl.Series:
    """UUIDv5 per legacy id, byte-identical to ``str(uuid.uuid5(namespace, id))``; null stays null.

    UUIDv5 is SHA-1 over the namespace's 16 bytes and the name's UTF-8, first 16 bytes, version nibble 5 and
    the RFC 4122 variant bits. SHA-1 is not a Polars expression, and per-row ``uuid5`` costs ~5 µs in Python
    (seconds a day), so DuckDB (already the warehouse engine) hashes the column and the layout is string slicing.
    """
    import duckdb

    with duckdb.connect() as con:
        con.register("names", legacy_ids.cast(pl.String).rename("name").to_frame().to_arrow())
        digests = con.sql("SELECT sha1($ns::BLOB || encode(name)) AS h FROM names",
                          params={"ns": namespace.bytes}).to_arrow_table()
    digest = pl.col("h")
    # Byte 8's high nibble keeps its two low bits under the variant bits 10: hex 0-f -> 8 9 a b 8 9 a b ...
    variant = digest.str.slice(16, 1).replace_strict(
        list("0123456789abcdef"), list("89ab89ab89ab89ab"), return_dtype=pl.String)
    frame = pl.from_arrow(digests)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(pl.concat_str(
        digest.str.slice(0, 8), pl.lit("-"), digest.str.slice(8, 4), pl.lit("-5"), digest.str.slice(13, 3),
        pl.lit("-"), variant, digest.str.slice(17, 3), pl.lit("-"), digest.str.slice(20, 12),
    ).alias(legacy_ids.name)).to_series()


def _hash_pii(frame: pl.DataFrame, hasher: AddressHasher) -> pl.DataFrame:
    """Replace the customer's number and name by keyed hashes before anything else sees the frame."""
    return frame.with_columns(
        hasher.hash_series(frame["RemoteID"]).alias("customer_hash"),
        hasher.hash_series(frame["RemoteName"]).alias("remote_name_hash"),
    ).drop(_PII_COLUMNS)


def _to_utc(col: str, tz: str | None) -> pl.Expr:
    """UTC for rows with an offset; the site zone's wall clock for local-time-only rows (null if no zone or if
    DST makes the local time ambiguous or impossible)."""
    utc = pl.col(col).dt.replace_time_zone("UTC")
    if tz is None:
        local = pl.lit(None, dtype=UTC_US)
    else:
        local = (pl.col(col).dt.replace_time_zone(tz, ambiguous="null", non_existent="null")
                 .dt.convert_time_zone("UTC"))
    return pl.when(pl.col("StartDTOffset").is_not_null()).then(utc).otherwise(local)


def assign_day(interactions: pl.DataFrame, day: date, site_timezone: str | None,
               source_row: pl.Series | None = None,
               derived: tuple[str, ...] = _DATETIME_COLUMNS) -> pl.DataFrame:
    """The rows of ``interactions`` that belong to ``day``, with UTC times and raw strings added.

    UTC rows belong by ``StartDateTimeUTC``; local-time-only rows by their converted start, or (when they cannot
    be converted) by the date of their raw local text, so each row belongs to exactly one day. Shared with the
    reconciliation check, which re-counts the source independently of the asset. ``source_row`` numbers the rows
    in the source's order (``LegacyDay.source_row``); None numbers them as they stand. ``derived``: the datetime
    columns that get ``raw_*`` text and ``*_utc`` columns (StartDateTimeUTC always does; normalise_day derives
    the others only for the rows that need them).
    """
    lo, hi = day_bounds(day)
    lo_utc, hi_utc = (pl.lit(v).dt.replace_time_zone("UTC") for v in (lo, hi))
    if source_row is not None and source_row.len() != interactions.height:
        raise ValueError(f"source_row has {source_row.len()} positions for {interactions.height} interactions")
    numbered = (interactions.with_row_index("source_row") if source_row is None
                else interactions.select(source_row.alias("source_row"), pl.all()))
    derived = tuple(dict.fromkeys(("StartDateTimeUTC", *derived)))
    frame = numbered.with_columns(
        *(pl.col(c).dt.strftime(_RAW_FORMAT).alias(f"raw_{c}") for c in derived),
        *(_to_utc(c, site_timezone).alias(f"{c}_utc") for c in derived),
        pl.col("StartDTOffset").is_null().alias("local_time_only"),
    ).with_columns(pl.col("source_row").cast(pl.Int64))
    converted = pl.col("StartDateTimeUTC_utc")
    naive_start = pl.col("StartDateTimeUTC")
    belongs = (pl.when(converted.is_not_null()).then((converted >= lo_utc) & (converted < hi_utc))
               .otherwise((naive_start >= pl.lit(lo)) & (naive_start < pl.lit(hi))))
    if UNPARSEABLE_COLUMN in frame.columns:  # an unparseable start belongs to the date its raw text names
        raw_date = pl.col(UNPARSEABLE_COLUMN).str.extract(r"StartDateTimeUTC='\s*(\d{4}-\d{2}-\d{2})", 1)
        belongs = pl.when(naive_start.is_null()).then(raw_date == day.isoformat()).otherwise(belongs)
    return frame.filter(belongs.fill_null(False))


@dataclass
class NormalisedDay:
    """What one day of PureConnect became."""

    day: date
    interactions: pl.DataFrame  # canonical records (accepted)
    rejects: pl.DataFrame  # quarantined and skipped duplicates (QUARANTINE_SCHEMA)
    recording_links: pl.DataFrame  # one row per recording of an accepted interaction
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def quarantined(self) -> pl.DataFrame:
        return self.rejects.filter(pl.col("outcome") == QUARANTINED)

    @property
    def skipped_duplicates(self) -> pl.DataFrame:
        return self.rejects.filter(pl.col("outcome") == SKIPPED_DUPLICATE)


def _duration_problem() -> pl.Expr:
    """The first duration column that is negative or longer than a day, as ``Col=value`` (null when none)."""
    out = pl.lit(None, dtype=pl.String)
    for c in reversed(DURATION_COLUMNS):
        bad = (pl.col(c) < 0) | (pl.col(c) > MAX_DURATION_MS)
        out = pl.when(bad.fill_null(False)).then(pl.format("{}={} ms", pl.lit(c), pl.col(c))).otherwise(out)
    return out


def _reason_expr(site_timezone: str | None, day_start: datetime, unparseable: bool) -> pl.Expr:
    key_missing = (pl.col("InteractionIDKey").is_null() | (pl.col("InteractionIDKey").str.strip_chars() == "")
                   | pl.col("SiteID").is_null() | pl.col("SeqNo").is_null())
    local_failed = pl.col("local_time_only") & pl.col("StartDateTimeUTC_utc").is_null()
    if site_timezone is None:
        tz_reason = pl.lit(AMBIGUOUS_TIMEZONE)
    else:
        # Polars gives null for both DST cases: tell them apart by whether the hour exists twice or not at all.
        earliest = pl.col("StartDateTimeUTC").dt.replace_time_zone(site_timezone, ambiguous="earliest",
                                                                   non_existent="null")
        tz_reason = pl.when(earliest.is_null()).then(pl.lit(NONEXISTENT_LOCAL_TIME)).otherwise(
            pl.lit(AMBIGUOUS_LOCAL_TIME))
    crosses_day = pl.col("end_before_start_repaired") & (pl.col("start_time") < pl.lit(day_start).dt.replace_time_zone(
        "UTC"))
    bad_text = pl.col(UNPARSEABLE_COLUMN).is_not_null() if unparseable else pl.lit(False)
    return (pl.when(key_missing).then(pl.lit(MISSING_KEY))
            .when(bad_text).then(pl.lit(UNPARSEABLE_TIMESTAMP))
            .when(local_failed).then(tz_reason)
            .when(pl.col("StartDateTimeUTC").is_null()).then(pl.lit(MISSING_START))
            .when(pl.col("conflicting_duplicate")).then(pl.lit(CONFLICTING_DUPLICATE))
            .when(~pl.col("Direction").is_in(list(CLOUD_DIRECTION))).then(pl.lit(UNKNOWN_DIRECTION))
            .when(~pl.col("MediaType").is_in(list(CONTACT_TYPE))).then(pl.lit(UNKNOWN_MEDIA_TYPE))
            .when(crosses_day).then(pl.lit(END_BEFORE_START))
            .when(pl.col("_duration_problem").is_not_null()).then(pl.lit(INVALID_DURATION))
            .otherwise(pl.lit(None, dtype=pl.String)))


def _detail_expr(site_timezone: str | None, unparseable: bool) -> pl.Expr:
    reason = pl.col("reason")
    bad_text = pl.col(UNPARSEABLE_COLUMN) if unparseable else pl.lit(None, dtype=pl.String)
    return (
        pl.when(reason == UNPARSEABLE_TIMESTAMP).then(pl.format("datetime text that does not parse: {}", bad_text))
        .when(reason == INVALID_DURATION).then(pl.format(
            "duration negative or over 24 h: {}", pl.col("_duration_problem")))
        .otherwise(
        pl.when(reason == AMBIGUOUS_TIMEZONE).then(pl.lit(
            "StartDTOffset is NULL (local time only) and no site timezone is configured; set "
            "PURECONNECT_SITE_TIMEZONE after confirming it with the compliance team"))
        .when(reason == AMBIGUOUS_LOCAL_TIME).then(pl.format(
            "local time {} occurs twice in {} (DST fall-back)", pl.col("raw_StartDateTimeUTC"),
            pl.lit(site_timezone or "")))
        .when(reason == NONEXISTENT_LOCAL_TIME).then(pl.format(
            "local time {} does not exist in {} (DST spring-forward)", pl.col("raw_StartDateTimeUTC"),
            pl.lit(site_timezone or "")))
        .when(reason == UNKNOWN_DIRECTION).then(pl.format("Direction code {}", pl.col("Direction")))
        .when(reason == UNKNOWN_MEDIA_TYPE).then(pl.format("MediaType code {}", pl.col("MediaType")))
        .when(reason == END_BEFORE_START).then(pl.format(
            "TerminatedDateTimeUTC {} before StartDateTimeUTC {}; the repaired start falls before the day",
            pl.col("raw_TerminatedDateTimeUTC"), pl.col("raw_StartDateTimeUTC")))
        .when(reason == CONFLICTING_DUPLICATE).then(pl.lit(
            "the same (SiteID, InteractionIDKey, SeqNo) holds rows that differ: none is trusted"))
        .when(reason == DUPLICATE_ROW).then(pl.lit("byte-identical copy of an accepted row; skipped once"))
        .when(reason == MISSING_KEY).then(pl.lit("InteractionIDKey, SiteID or SeqNo is missing"))
        .when(reason == MISSING_START).then(pl.lit("StartDateTimeUTC is missing"))
        .otherwise(pl.lit(None, dtype=pl.String)))
    )


def _raw_json(frame: pl.DataFrame, source_columns: list[str]) -> pl.Expr:
    """The source row as JSON (datetimes as their raw strings, customer number and name as hashes)."""
    fields = []
    for c in source_columns:
        if c in _PII_COLUMNS:
            continue
        if c in _DATETIME_COLUMNS:
            raw = pl.col(f"raw_{c}") if f"raw_{c}" in frame.columns else pl.col(c).dt.strftime(_RAW_FORMAT)
            fields.append(raw.alias(c))
        else:
            fields.append(pl.col(c))
    fields += [pl.col("customer_hash").alias("RemoteID_hmac"), pl.col("remote_name_hash").alias("RemoteName_hmac")]
    return pl.struct(fields).struct.json_encode()


def _wrapups(wrapups: pl.DataFrame) -> pl.DataFrame:
    """The final wrap-up segment's code and category per interaction, plus every code in segment order."""
    if wrapups.height == 0:
        return pl.DataFrame(schema={**{k: wrapups.schema[k] for k in _KEY}, "wrapup_code": pl.String,
                                    "wrapup_category": pl.String, "wrapup_codes": pl.List(pl.String)})
    # A stable sort, then the first of each run of equal (key, segment): unique(keep="first") without a hash.
    segment = [*_KEY, "WrapupSegmentID"]
    ordered = wrapups.sort(segment, maintain_order=True)
    repeat = pl.all_horizontal([pl.col(c).eq_missing(pl.col(c).shift(1)) for c in segment]).fill_null(False)
    ordered = ordered.filter(~repeat)
    return ordered.group_by(list(_KEY), maintain_order=True).agg(
        pl.col("WrapupCode").last().alias("wrapup_code"),
        pl.col("WrapupCategory").last().alias("wrapup_category"),
        pl.col("WrapupCode").alias("wrapup_codes"),
    )


PHONE_COLUMNS_ENV = "PURECONNECT_PHONE_CUSTOM_COLUMNS"


def phone_custom_columns(setting: str | None, columns: Iterable[str],
                         source: str = PHONE_COLUMNS_ENV) -> tuple[str, ...]:
    """``"CustomString2, CustomNum1"`` (``PURECONNECT_PHONE_CUSTOM_COLUMNS``) → the column names; unset → none. A
    name that is not one of the value columns among InteractionCustomAttributes' ``columns`` is an error naming
    ``source`` (where the user set it) and listing the columns."""
    names = tuple(dict.fromkeys(name.strip() for name in (setting or "").split(",") if name.strip()))
    _check_phone_columns(names, columns, source)
    return names


def _check_phone_columns(names: tuple[str, ...], columns: Iterable[str], source: str) -> None:
    available = [c for c in columns if c not in _KEY]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"{source} names {', '.join(unknown)}, which "
                         f"InteractionCustomAttributes does not have; its columns are {', '.join(available)}")


def _custom_attributes(custom: pl.DataFrame, hasher: AddressHasher, phone_columns: tuple[str, ...]) -> pl.DataFrame:
    """CustomNum/CustomString1..6 as one JSON object. A string written as a phone number (``tel:``, ``sip:`` or
    ``+`` and digits) is hashed; the columns a site keeps phone numbers in (``phone_columns``: the column names say
    nothing, only the site knows) are hashed whatever their values look like, a ``CustomNum`` becoming a string."""
    value_columns = [c for c in custom.columns if c not in _KEY]
    _check_phone_columns(phone_columns, custom.columns, "phone_columns")  # a library caller's own argument
    custom = custom.unique(subset=list(_KEY), keep="first")

    def hashed(column: str) -> pl.Series:
        if column not in phone_columns:
            return hasher.hash_if_phone(custom[column], PHONE_ATTRIBUTE)
        text = custom[column].cast(pl.String)
        return hasher.hash_where(text, text.str.len_chars() > 0)

    custom = custom.with_columns(hashed(c) for c in value_columns
                                 if c in phone_columns or custom.schema[c] == pl.String)
    return custom.select(*_KEY, pl.struct(value_columns).struct.json_encode().alias("custom_attributes"))


def link_recordings(recordings: pl.DataFrame, accepted: pl.DataFrame) -> pl.DataFrame:
    """Each recording to the accepted interaction it belongs to.

    IR_RecordingMedia is keyed by InteractionIDKey alone, so a key shared by two sites (or two SeqNos) matches
    several interactions: the recording goes to the one whose time span contains its RecordingDate, else the
    nearest start.
    """
    spans = accepted.select(
        "id", "x_legacy_id", "InteractionIDKey",
        pl.min_horizontal("start_time", "end_time", "InitiatedDateTimeUTC_utc").alias("_lo"),
        pl.max_horizontal("start_time", "end_time", "ConnectedDateTimeUTC_utc").alias("_hi"),
        pl.col("start_time").alias("_start"),
    )
    recs = recordings.with_columns(pl.col("RecordingDate").dt.replace_time_zone("UTC").alias("_at"))
    pairs = recs.join(spans, left_on="QueueObjectIdKey", right_on="InteractionIDKey", how="inner")
    pairs = pairs.with_columns(
        (~pl.col("_at").is_between(pl.col("_lo"), pl.col("_hi"))).alias("_outside"),
        (pl.col("_at") - pl.col("_start")).abs().alias("_distance"),
    ).sort(["RecordingId", "_outside", "_distance", "id"])
    chosen = pairs.unique(subset=["RecordingId"], keep="first")
    uri = pl.col("MediaURI")
    return chosen.select(
        pl.col("RecordingId").alias("recording_id"),
        pl.col("id").alias("interaction_id"),
        "x_legacy_id",
        pl.col("MediaType").replace_strict(IR_MEDIA_TYPE, default="unknown", return_dtype=pl.String)
        .alias("recording_media_type"),
        uri.alias("media_uri"),
        uri.str.extract(r"\.([A-Za-z0-9]{1,5})$", 1).str.to_lowercase().alias("recording_format"),
        pl.col("MediaKey").is_not_null().alias("encrypted_media_key"),
        pl.col("FileSize").alias("db_file_size"),
        pl.col("Duration").alias("db_duration_ms"),
        pl.col("_at").alias("recording_date"),
        pl.col("ExpirationDate").dt.replace_time_zone("UTC").alias("expiration_date"),
        pl.col("IsArchived").cast(pl.Boolean).alias("is_archived"),
        pl.col("Tags").alias("ir_tags"),
    ).sort(["interaction_id", "recording_date", "recording_id"])


def _flag_duplicates(frame: pl.DataFrame) -> pl.DataFrame:
    """Duplicates: identical copies are skipped once (``_extra_copy``); copies that differ are all untrusted
    (``conflicting_duplicate``). Rows are hashed only where their key repeats (a handful a day), not all rows.
    """
    repeated = pl.struct(list(_KEY)).is_duplicated()
    candidates = frame.filter(repeated)
    content_hash = pl.struct([c for c in frame.columns if c != "source_row"]).hash(seed=0)
    flags = candidates.select("source_row", content_hash.alias("_content"), *_KEY).select(
        "source_row",
        (pl.col("_content").n_unique().over(list(_KEY)) > 1).alias("conflicting_duplicate"),
        (pl.col("source_row").rank("ordinal").over(list(_KEY)) > 1).alias("_extra_copy"),
    )
    return frame.join(flags, on="source_row", how="left", maintain_order="left").with_columns(
        pl.col("conflicting_duplicate", "_extra_copy").fill_null(False))


def normalise_day(legacy: object, day: date, site_timezone: str | None, hasher: AddressHasher,
                  phone_columns: tuple[str, ...] = ()) -> NormalisedDay:
    """One day of PureConnect (a ``LegacyDay``) → canonical records, rejects and recording links; the custom
    attribute columns named in ``phone_columns`` hold phone numbers at this site and are hashed whole."""
    site_timezone = validate_timezone(site_timezone)
    source_columns = list(legacy.interactions.columns)  # type: ignore[attr-defined]
    day_start, _ = day_bounds(day)
    frame = assign_day(_hash_pii(legacy.interactions, hasher), day, site_timezone,  # type: ignore[attr-defined]
                       getattr(legacy, "source_row", None), derived=_DERIVED_FOR_ALL)
    source_rows = frame.height

    frame = _flag_duplicates(frame)

    start, end = pl.col("StartDateTimeUTC_utc"), pl.col("TerminatedDateTimeUTC_utc")
    end = pl.coalesce(end, start + pl.duration(milliseconds=pl.col("LineDuration").fill_null(0)))
    frame = frame.with_columns(
        (end < start).fill_null(False).alias("end_before_start_repaired"),
        pl.min_horizontal(start, end).alias("start_time"),
        pl.max_horizontal(start, end).alias("end_time"),
    )
    unparseable = UNPARSEABLE_COLUMN in frame.columns
    frame = frame.with_columns(_duration_problem().alias("_duration_problem"))
    frame = frame.with_columns(_reason_expr(site_timezone, day_start, unparseable).alias("reason"))
    duplicate = pl.col("_extra_copy") & ~pl.col("conflicting_duplicate") & pl.col("reason").is_null()
    frame = frame.with_columns(
        pl.when(duplicate).then(pl.lit(DUPLICATE_ROW)).otherwise(pl.col("reason")).alias("reason"),
        legacy_id_expr().alias("x_legacy_id"),
    )

    rejected = frame.filter(pl.col("reason").is_not_null())
    rejects = rejected.select(
        pl.lit(day).alias("day"),
        pl.when(pl.col("reason") == DUPLICATE_ROW).then(pl.lit(SKIPPED_DUPLICATE)).otherwise(pl.lit(QUARANTINED))
        .alias("outcome"),
        "reason", _detail_expr(site_timezone, unparseable).alias("detail"), "x_legacy_id", *_KEY, "source_row",
        _raw_json(rejected, source_columns).alias("raw"),
    ).cast(QUARANTINE_SCHEMA).sort("source_row")  # type: ignore[arg-type]

    accepted = _accepted_in_output_order(frame)
    keys = accepted.select(_KEY)
    found = (keys.join(_wrapups(legacy.wrapups), on=list(_KEY), how="left",  # type: ignore[attr-defined]
                       maintain_order="left")
             .join(_custom_attributes(legacy.custom_attributes, hasher, phone_columns),  # type: ignore[attr-defined]
                   on=list(_KEY), how="left", maintain_order="left"))
    accepted = accepted.hstack(found.drop(_KEY))
    # Recordings are a few per cent of interactions: their spans' UTC times are derived for those rows only.
    recorded = accepted.join(legacy.recordings.select(pl.col("QueueObjectIdKey").alias("InteractionIDKey")),  # type: ignore[attr-defined]
                             on="InteractionIDKey", how="semi").with_columns(
        *(_to_utc(c, site_timezone).alias(f"{c}_utc") for c in ("InitiatedDateTimeUTC", "ConnectedDateTimeUTC")))
    links = link_recordings(legacy.recordings, recorded)  # type: ignore[attr-defined]
    first_link = links.group_by("interaction_id").agg(
        pl.col("recording_id").first(), pl.col("media_uri").first().alias("recording_uri"),
        pl.col("recording_format").first(), pl.col("db_duration_ms").first().alias("recording_duration_ms"),
        pl.len().cast(pl.Int32).alias("recording_count"),
        pl.col("ir_tags").list.explode(keep_nulls=False, empty_as_null=False).unique().sort().alias("retention_tags"),
    )
    accepted = accepted.join(first_link, left_on="id", right_on="interaction_id", how="left", maintain_order="left")
    canonical = _canonical(accepted, day, site_timezone)
    linked = links.join(canonical.select("id"), left_on="interaction_id", right_on="id", how="semi")

    stats = {
        "source_rows": source_rows,
        "ingestable": canonical.height,
        "quarantined": rejects.filter(pl.col("outcome") == QUARANTINED).height,
        "skipped_duplicates": rejects.filter(pl.col("outcome") == SKIPPED_DUPLICATE).height,
        "end_before_start_repaired": int(canonical["end_before_start_repaired"].sum()),
        "local_time_converted": int(canonical["local_time_converted"].sum()),
        "neighbour_day_rows_ignored": legacy.interactions.height - source_rows,  # type: ignore[attr-defined]
        "recordings_linked": linked.height,
        "recordings_read": legacy.recordings.height,  # type: ignore[attr-defined]
    }
    for reason, count in rejects.group_by("reason").len().iter_rows():
        stats[f"reason_{reason}"] = count
    return NormalisedDay(day, canonical, rejects, linked, stats)


def _accepted_in_output_order(frame: pl.DataFrame) -> pl.DataFrame:
    """The accepted rows with their Cloud ids, sorted by (start_time, id): the canonical file's order.

    Sorted here, before the joins (which keep the left order), and gathered once with only the columns the
    canonical record and the recording links read: sorting the finished 45-column frame cost a second a million.
    """
    ok = frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"), "start_time", "x_legacy_id",
                      "reason").filter(pl.col("reason").is_null())
    # (start_time, id) is unique among accepted rows (one per legacy id), so the unstable sort is deterministic
    # (as the final sort it replaces was; two keys differing only in padding share an id there too).
    order = ok.select("_i", "start_time", cloud_ids(ok["x_legacy_id"]).alias("id")).sort(["start_time", "id"])
    used = [c for c in frame.columns if c in _ACCEPTED_COLUMNS]
    return frame.select(pl.col(used).gather(order["_i"])).with_columns(order["id"])


def _canonical(accepted: pl.DataFrame, day: date, site_timezone: str | None) -> pl.DataFrame:
    """The canonical columns, in a fixed order; ``accepted`` arrives sorted, so a re-run writes the same bytes."""
    empty_to_null = lambda c: pl.when(pl.col(c).str.strip_chars() == "").then(None).otherwise(pl.col(c))  # noqa: E731
    duration_ms = (pl.col("end_time") - pl.col("start_time")).dt.total_milliseconds()
    offset = pl.col("StartDTOffset")
    return accepted.select(
        "id", "x_legacy_id",
        pl.col("InteractionIDKey").str.strip_chars().alias("legacy_interaction_id_key"),
        pl.col("SiteID").alias("site_id"), pl.col("SeqNo").alias("seq_no"),
        pl.col("InteractionID").alias("legacy_interaction_id"),
        pl.lit(day).alias("day"),
        "start_time", "end_time",
        pl.col("start_time").dt.strftime(_ISO_FORMAT).alias("start_time_iso"),
        pl.col("end_time").dt.strftime(_ISO_FORMAT).alias("end_time_iso"),
        duration_ms.alias("duration_ms"),
        (duration_ms / 1000).round(0).cast(pl.Int64).alias("duration_seconds"),
        pl.col("raw_StartDateTimeUTC").alias("raw_start"), pl.col("raw_TerminatedDateTimeUTC").alias("raw_end"),
        # Offsets are seconds on this site; values beyond a day can only be milliseconds (the docs disagree).
        pl.when(offset.abs() > 86_400).then(offset // 1000).otherwise(offset).alias("start_offset_seconds"),
        pl.col("local_time_only").alias("local_time_converted"),
        pl.when(pl.col("local_time_only")).then(pl.lit(f"site_timezone:{site_timezone}"))
        .otherwise(pl.lit("utc_column")).alias("timezone_source"),
        "end_before_start_repaired",
        pl.col("Direction").alias("direction_code"),
        pl.col("Direction").replace_strict(DIRECTION_NAMES, return_dtype=pl.String).alias("legacy_direction"),
        pl.col("Direction").replace_strict(CLOUD_DIRECTION, return_dtype=pl.String).alias("direction"),
        pl.col("MediaType").alias("media_type_code"),
        pl.col("MediaType").replace_strict(MEDIA_TYPE_NAMES, return_dtype=pl.String).alias("legacy_media_type"),
        pl.col("MediaType").replace_strict(CONTACT_TYPE, return_dtype=pl.String).alias("contact_type"),
        pl.when(pl.col("ConnectedDateTimeUTC").is_not_null()).then(pl.lit("normal")).otherwise(pl.lit("abandoned"))
        .alias("reason_for_termination"),
        pl.col("Disposition").alias("disposition_code"),
        empty_to_null("LastLocalUserId").alias("agent_legacy_id"),
        empty_to_null("LastAssignedWorkgroupID").alias("queue_legacy_id"),
        empty_to_null("FirstAssignedAcdSkillSet").alias("skill"),
        "customer_hash",
        pl.col("DNIS_LocalID").alias("dnis"),
        empty_to_null("AccountCode").alias("account_code"),
        "wrapup_code", "wrapup_category", "wrapup_codes",
        pl.col("tQueueWait").alias("wait_ms"), pl.col("tIVRWait").alias("ivr_ms"), pl.col("tAlert").alias("alert_ms"),
        pl.col("tConnected").alias("talk_ms"), pl.col("tHeld").alias("hold_ms"), pl.col("tACW").alias("acw_ms"),
        pl.col("LineDuration").alias("line_duration_ms"),
        "custom_attributes",
        "recording_id", "recording_uri", "recording_format", "recording_duration_ms",
        pl.col("recording_count").fill_null(0),
        pl.col("retention_tags").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.lit(SCHEMA_VERSION).cast(pl.Int16).alias("schema_version"),
    )
