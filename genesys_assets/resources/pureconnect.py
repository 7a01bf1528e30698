"""PureConnect (CIC) reporting database: read one UTC day of interactions straight into Arrow/Polars.

One resource for every backend, one code path: connectorx reads SQL Server (``mssql://``), Oracle
(``oracle://``) and the sandbox's SQLite file (``sqlite:///abs/path/I3_IC.sqlite``) into Arrow, then the rows
are cast to one fixed Polars schema per table, so callers never see backend differences.

URI forms (connectorx)::

    mssql://user:password@host:1433/I3_IC          # add ?encrypt=true / ?trusted_connection=true as needed
    oracle://user:password@host:1521/SERVICE_NAME
    sqlite:///absolute/path/to/I3_IC.sqlite          # the sandbox

Why the queries look the way they do
------------------------------------
* **One query per table** (InteractionSummary, InteractionWrapup, InteractionCustomAttributes,
  IR_RecordingMedia, IR_TagMap+IR_Tag). The dependent tables are semi-joined to InteractionSummary with the
  same window predicate (``EXISTS``), so the database does the join and nothing is fetched twice.
* **Literals, not parameters.** connectorx has no bind parameters, so the window bounds are rendered as
  dialect-correct timestamp literals from :class:`datetime` objects only (``'YYYY-MM-DD HH:MM:SS.fff'`` text
  for SQLite, ``CONVERT(datetime2, '...T...', 126)`` for SQL Server, ``TIMESTAMP '...'`` for Oracle). No
  caller-supplied string is ever formatted into SQL.
* **The day** is half-open in UTC: ``[day 00:00, day+1 00:00)`` on ``StartDateTimeUTC``.
* **Local-time-only rows.** Older rows carry ``StartDTOffset`` NULL and a *local* wall-clock time in the UTC
  columns. Such a row is found by a widened window (``local_time_window_hours`` either side, default 14 h, the
  largest UTC offset in use), so a day's read also returns neighbouring days' local-only rows. The caller
  converts them with the configured site timezone (or quarantines them if none is configured) and keeps those
  that fall in its day; :attr:`LegacyDay.local_time_rows` flags them.
* **SQLite reads the day by rowid, in parallel** (the sandbox; SQL Server and Oracle plan for themselves). The
  OR of the window predicate makes SQLite walk ``IX_InteractionSummary_Start`` and fetch each row from the
  table in index order: one random page read per row, and the local-time term reads every row of the widened
  window again to test ``StartDTOffset`` (12 s of SQLite time for a million rows). One covering-index query
  first finds the window's rowid span and count; the rows are then read in rowid order, by a plain rowid range
  when the window's rows fill most of the span (rows are stored roughly in the order they happen), else by
  ``rowid IN`` the covering index's rowids, in ``sqlite_partitions`` rowid ranges that connectorx reads on
  parallel connections, while the dependent tables are read on a second thread. Wrap-ups and custom attributes
  are read by rowid from a join of those summary rows to their key index (:meth:`PureConnectResource.
  sqlite_day_queries`), not by ``EXISTS`` per dependent row: the same rows in the same order, without a scan of
  the whole dependent table and a random summary-row read per row. :attr:`LegacyDay.source_row`
  gives each row its position in the order SQLite's own plan returns them (the day's rows by start, then the
  neighbours' local-time rows by start, ties by rowid), so ``source_row`` in the quarantine (and so every output
  byte) does not depend on the access path.
* **Secrets.** The password in the URI never appears in ``repr``, logs or exceptions: errors are re-raised as
  :class:`PureConnectError` with the URI redacted and without the original exception chained.

Datetime columns come back as naive ``Datetime("us")``: they are UTC except on local-time-only rows, which is
exactly the ambiguity the caller must resolve, so the resource does not pretend otherwise.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg
import polars as pl
import pyarrow as pa
from pydantic import Field

from genesys_assets.lib.legacy_interactions import UNPARSEABLE_COLUMN

SQLITE, MSSQL, ORACLE = "sqlite", "mssql", "oracle"
_SCHEMES = {"sqlite": SQLITE, "mssql": MSSQL, "sqlserver": MSSQL, "oracle": ORACLE}

_DT = pl.Datetime("us")
_TEXT = pl.String
INTERACTION_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "InteractionIDKey": _TEXT, "SiteID": pl.Int32, "SeqNo": pl.Int16, "InteractionID": pl.Int64,
    "StartDateTimeUTC": _DT, "StartDTOffset": pl.Int32, "InitiatedDateTimeUTC": _DT, "ConnectedDateTimeUTC": _DT,
    "TerminatedDateTimeUTC": _DT, "Direction": pl.Int16, "ConnectionType": pl.Int16, "MediaType": pl.Int16,
    "RemoteID": _TEXT, "RemoteName": _TEXT, "DNIS_LocalID": _TEXT, "LastLocalUserId": _TEXT,
    "LastAssignedWorkgroupID": _TEXT, "FirstAssignedAcdSkillSet": _TEXT, "AccountCode": _TEXT,
    "LineDuration": pl.Int64,
    **{c: pl.Int64 for c in ("tDialing", "tIVRWait", "tQueueWait", "tAlert", "tConnected", "tHeld", "tConference",
                             "tExternal", "tACW")},
    **{c: pl.Int32 for c in ("nIVR", "nQueueWait", "nTalk", "nConference", "nHeld", "nTransfer", "nExternal")},
    "Disposition": pl.Int16,
}
INTERACTION_WRAPUP_SCHEMA: dict[str, pl.DataType] = {
    "InteractionIDKey": _TEXT, "SiteID": pl.Int32, "SeqNo": pl.Int16, "SourceInteractionIDKey": _TEXT,
    "WrapupSegmentID": pl.Int32, "WrapupCode": _TEXT, "WrapupCategory": _TEXT, "WrapupStartDateTimeUTC": _DT,
    "WrapupStartDTOffset": pl.Int32, "UserID": _TEXT, "WorkgroupID": _TEXT, "WrapupRequired": pl.Int16,
    "WrapupIncompleteReason": _TEXT,
    **{c: pl.Int64 for c in ("tAcw", "tConnected", "tHold", "tSuspend")},
    **{c: pl.Int32 for c in ("nHold", "nSuspend", "nSupervisorRequest")},
}
# What read_day takes of InteractionWrapup: the migration uses the segments' codes and categories only (the last
# segment's, and every code in segment order); the other 14 columns were a fifth of the day's read, unread.
WRAPUP_READ_COLUMNS = ("InteractionIDKey", "SiteID", "SeqNo", "WrapupSegmentID", "WrapupCode", "WrapupCategory")
WRAPUP_READ_SCHEMA: dict[str, pl.DataType] = {c: INTERACTION_WRAPUP_SCHEMA[c] for c in WRAPUP_READ_COLUMNS}
CUSTOM_ATTRIBUTE_COUNT = 6
INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA: dict[str, pl.DataType] = {
    "InteractionIDKey": _TEXT, "SiteID": pl.Int32, "SeqNo": pl.Int16,
    **{f"CustomNum{i}": pl.Int64 for i in range(1, CUSTOM_ATTRIBUTE_COUNT + 1)},
    **{f"CustomString{i}": _TEXT for i in range(1, CUSTOM_ATTRIBUTE_COUNT + 1)},
}
IR_RECORDING_MEDIA_SCHEMA: dict[str, pl.DataType] = {
    "RecordingId": _TEXT, "QueueObjectIdKey": _TEXT, "MediaType": pl.Int16, "MediaURI": _TEXT, "MediaKey": _TEXT,
    "MediaStatus": pl.Int16, "FileSize": pl.Int64, "Duration": pl.Int64, "RecordingDate": _DT,
    "RecordingDateOffset": pl.Int32, "ExpirationDate": _DT, "IsArchived": pl.Int16, "RecordingType": pl.Int16,
    "RelatedRecordingId": _TEXT, "CallType": pl.Int16, "Direction": pl.Int16, "FromConnValue": _TEXT,
    "ToConnValue": _TEXT, "LineName": _TEXT, "InitiationPolicyName": _TEXT, "NumAttachments": pl.Int32,
    "Version": pl.Int32,
}
IR_TAGS_SCHEMA: dict[str, pl.DataType] = {
    "RecordingId": _TEXT, "TagId": pl.Int32, "TagName": _TEXT, "KeywordSetName": _TEXT,
}
_GUID_COLUMNS = ("RecordingId", "RelatedRecordingId")
_TABLE_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "InteractionSummary": INTERACTION_SUMMARY_SCHEMA, "InteractionWrapup": WRAPUP_READ_SCHEMA,
    "InteractionCustomAttributes": INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA,
    "IR_RecordingMedia": IR_RECORDING_MEDIA_SCHEMA, "IR_Tag": IR_TAGS_SCHEMA,
}


class PureConnectError(RuntimeError):
    """A failed PureConnect read. The message names the backend and host, never the password."""


# ``scheme://user:password@host/...``: the password runs to the last "@" that a "/" still follows (the host and
# database), so a password with an unencoded "/", "?" or "#" cannot hide from redaction behind ``urlsplit``, which
# ends the host at the first "/". A URI with no path after the "@" (``sa:pw@host``) falls back to the last "@",
# unless what follows ``host:`` is a port and a path (``db:1433/I3_IC?user=a@b`` has no password there). The user
# name may hold an "@" itself (Azure SQL's ``admin@myserver`` logins).
_USERINFO_HOSTED = re.compile(r"^([A-Za-z][\w+.-]*://[^:/?#]*:)(.*)@(?=.*/)")
_USERINFO_ANY = re.compile(r"^([A-Za-z][\w+.-]*://[^:/?#]*:)(.*)@")
_PORT_AND_PATH = re.compile(r"\d+[/?#]")
_QUERY_PASSWORD = re.compile(r"(?i)((?:password|pwd)=)([^&;]*)")
_URI_FORMS = "mssql://user:password@host:1433/I3_IC, oracle://user:password@host:1521/SERVICE or sqlite:///path"


def _userinfo(uri: str) -> re.Match[str] | None:
    """``scheme://user:`` and the password of ``uri``, or None when it has no password before its host."""
    hosted = _USERINFO_HOSTED.match(uri)
    if hosted and not ("@" in hosted.group(1) and _PORT_AND_PATH.match(hosted.group(2))):
        return hosted  # (a user@host:1433/db?x=a@b/c has an "@" in its user part and a port, not a password)
    loose = _USERINFO_ANY.match(uri)
    return None if loose is None or _PORT_AND_PATH.match(loose.group(2)) else loose


def redact_uri(uri: str) -> str:
    """``uri`` with the password (and any ``password=``/``pwd=`` query value) replaced by ``***``."""
    if "://" not in uri:  # no telling where a password would be
        return "<a PureConnect URI without '://'>"
    userinfo = _userinfo(uri)
    redacted = f"{userinfo.group(1)}***@{uri[userinfo.end():]}" if userinfo else uri
    return _QUERY_PASSWORD.sub(r"\1***", redacted)


def _secrets_of(uri: str) -> list[str]:
    userinfo = _userinfo(uri)
    found = [userinfo.group(2)] if userinfo else []
    found += [m.group(2) for m in _QUERY_PASSWORD.finditer(uri)]
    found = [s for s in found if s]
    return sorted({*found, *(unquote(s) for s in found)}, key=len, reverse=True)  # longest first: no partial leak


def backend_of(uri: str) -> str:
    """``sqlite`` / ``mssql`` / ``oracle`` from the URI scheme, once the URI is one a driver can read as meant:
    a server URI names a host and a database, and its password has no unencoded "/", "?" or "#" (a driver would
    end the host there and connect somewhere else). These errors never quote the URI: it may not be redactable."""
    if "://" not in uri:
        raise PureConnectError(f"the PureConnect URI has no '://'; write it as {_URI_FORMS}")
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise PureConnectError(f"unsupported PureConnect URI scheme {scheme!r} in {redact_uri(uri)}; "
                               "use mssql://, oracle:// or sqlite:///")
    backend = _SCHEMES[scheme]
    if backend == SQLITE:
        return backend
    hosted = _USERINFO_HOSTED.match(uri)
    if hosted and any(c in hosted.group(2) for c in "/?#"):
        raise PureConnectError("the password in the PureConnect URI has a '/', '?' or '#' that is not "
                               "percent-encoded: encode it (urllib.parse.quote(password, safe='')), e.g. '/' as %2F")
    try:  # checked here: connectorx panics (a Rust backtrace on stderr) on a URI without them
        parts = urlsplit(uri)
        named = bool(parts.hostname) and bool(parts.path.strip("/"))
    except ValueError:
        named = False
    if not named:
        raise PureConnectError(f"the PureConnect URI names no host or no database; write it as {_URI_FORMS}")
    return backend


def timestamp_literal(value: datetime, backend: str) -> str:
    """A timestamp literal for ``backend``, rendered from a :class:`datetime` (never from a string).

    Aware values are converted to UTC first; the database columns are naive UTC.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"timestamp_literal needs a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    ms = f"{value.microsecond // 1000:03d}"
    if backend == SQLITE:
        return f"'{value:%Y-%m-%d %H:%M:%S}.{ms}'"  # text compares correctly in this fixed-width format
    if backend == MSSQL:
        return f"CONVERT(datetime2, '{value:%Y-%m-%dT%H:%M:%S}.{ms}', 126)"  # ISO 8601: language-independent
    if backend == ORACLE:
        return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S}.{ms}'"
    raise PureConnectError(f"unknown backend {backend!r}")


@dataclass(frozen=True)
class DayWindow:
    """The UTC day and the widened window used to find local-time-only rows."""

    day: date
    start: datetime  # naive UTC, inclusive
    end: datetime  # naive UTC, exclusive
    local_start: datetime
    local_end: datetime

    @classmethod
    def of(cls, day: date, local_hours: int) -> DayWindow:
        start = datetime.combine(day, dtime())
        end = start + timedelta(days=1)
        pad = timedelta(hours=local_hours)
        return cls(day, start, end, start - pad, end + pad)

    def in_day(self, col: str, backend: str) -> str:
        """``col`` within the UTC day (half-open)."""
        return _half_open(col, self.start, self.end, backend)

    def in_widened(self, col: str, backend: str) -> str:
        """``col`` within the widened window (half-open)."""
        return _half_open(col, self.local_start, self.local_end, backend)

    def predicate(self, alias: str, backend: str) -> str:
        """Rows of the day, plus local-time-only rows (StartDTOffset NULL) in the widened window."""
        col = f"{alias}.StartDateTimeUTC"
        return (f"(({self.in_day(col, backend)}) OR ({alias}.StartDTOffset IS NULL "
                f"AND {self.in_widened(col, backend)}))")


def _half_open(col: str, lo: datetime, hi: datetime, backend: str) -> str:
    return f"{col} >= {timestamp_literal(lo, backend)} AND {col} < {timestamp_literal(hi, backend)}"


def _columns(schema: dict[str, pl.DataType], alias: str) -> str:
    """The select list of ``schema``'s columns on table ``alias``."""
    return ", ".join(f"{alias}.{c}" for c in schema)


def _key_join(left: str, right: str) -> str:
    """``left`` and ``right`` hold the same interaction: InteractionSummary's key (SiteID, SeqNo included)."""
    return " AND ".join(f"{left}.{c} = {right}.{c}" for c in ("InteractionIDKey", "SiteID", "SeqNo"))


@dataclass(frozen=True)
class LegacyDay:
    """One UTC day read from PureConnect: a Polars frame per table, fixed schemas.

    ``interactions`` may hold rows of neighbouring days whose ``StartDTOffset`` is NULL (local time only);
    ``local_time_rows`` selects them. ``recordings`` carries a ``Tags`` list column (IR tag names); ``wrapups``
    only the :data:`WRAPUP_READ_COLUMNS`.
    """

    window: DayWindow
    interactions: pl.DataFrame
    wrapups: pl.DataFrame
    custom_attributes: pl.DataFrame
    recordings: pl.DataFrame
    tags: pl.DataFrame
    queries: tuple[str, ...]  # the SQL that ran (every statement of a partitioned read), for metadata and tests
    # Each ``interactions`` row's position in the source's order (SQLite reads rowid ranges, not in that order);
    # None: the frame's own order.
    source_row: pl.Series | None = None

    @property
    def local_time_rows(self) -> pl.Expr:
        return pl.col("StartDTOffset").is_null()


def _normalise(table: pa.Table, schema: dict[str, pl.DataType], *, flag_unparseable: bool = False) -> pl.DataFrame:
    """Backend-neutral frame: names matched case-insensitively (Oracle upper-cases), fixed dtypes.

    With ``flag_unparseable`` (InteractionSummary), datetime text that does not parse becomes NULL and the row
    gets ``UnparseableTimestamps`` (``Col='raw'; ...``) so the day quarantines it as ``unparseable_timestamp``
    instead of failing; the column is only added when some row needs it. Otherwise a bad value is an error.
    """
    if table.num_columns == 0:
        return pl.DataFrame(schema=schema)
    # One chunk per column: a partitioned read arrives as several record batches, the columns this adds as
    # literals as one, and Polars 2.1 was seen to panic ("assertion failed: i < self.len()") formatting columns
    # chunked differently from one another (the legacy ids in legacy_reconciliation).
    frame = pl.from_arrow(table, rechunk=True)
    assert isinstance(frame, pl.DataFrame)
    by_lower = {c.lower(): c for c in frame.columns}
    exprs = []
    failures: list[pl.Expr] = []
    for name, dtype in schema.items():
        src = by_lower.get(name.lower())
        if src is None:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        col, current = pl.col(src), frame.schema[src]
        if dtype == _DT:
            if current == pl.String:
                col = col.str.strip_chars().str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us",
                                                            strict=not flag_unparseable)
                failures.append(pl.when(pl.col(src).is_not_null() & col.is_null())
                                .then(pl.format("{}='{}'", pl.lit(name), pl.col(src))))
            elif isinstance(current, pl.Datetime) and current.time_zone is not None:
                col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        elif dtype == _TEXT and current != pl.String:
            col = col.cast(pl.String)
        elif dtype != _TEXT and current == pl.String:  # empty SQLite results type expressions as text
            col = col.cast(pl.Float64).cast(dtype, strict=True)
        if name in _GUID_COLUMNS:
            col = col.cast(pl.String).str.to_uppercase()
        exprs.append(col.cast(dtype, strict=True).alias(name))
    if flag_unparseable and failures:
        flags = pl.concat_str(failures, separator="; ", ignore_nulls=True)
        flagged = frame.select(*exprs, pl.when(flags != "").then(flags).alias(UNPARSEABLE_COLUMN))
        return flagged if flagged[UNPARSEABLE_COLUMN].is_not_null().any() else flagged.drop(UNPARSEABLE_COLUMN)
    return frame.select(exprs)


def read_arrow(uri: str, sql: str | list[str]) -> pa.Table:
    """Run one query through connectorx (the single place SQL reaches a database; tests count calls here).

    A list of statements (partitions of one query) is read on parallel connections into one table.
    """
    import connectorx as cx

    return cx.read_sql(uri, sql, return_type="arrow")


_ROWID, _IN_DAY = "_rowid", "_in_day"  # SQLite partition reads only: the plan's order without re-sorting


def _plan_positions(table: pa.Table) -> tuple[pa.Table, pl.Series]:
    """The rows as read, and each row's position in the order SQLite's MULTI-INDEX OR plan returns them (the
    day's rows by (start, rowid), then the widened window's local-time rows by (start, rowid)).

    Positions, not a re-sort: gathering 39 columns of a million rows costs more than the read of a column. The
    plan order is a frame sort carrying each row's read index, inverted by one scatter (``arg_sort_by`` and a
    second ``arg_sort`` cost 0.55 s against 0.16 s on the benchmark's 1M-row site day, measured).
    """
    keys = pl.from_arrow(table.select([_IN_DAY, "StartDateTimeUTC", _ROWID]))
    assert isinstance(keys, pl.DataFrame)
    read_index = (keys.with_row_index("_read")
                  .sort([_IN_DAY, "StartDateTimeUTC", _ROWID], descending=[True, False, False])
                  .get_column("_read"))
    order = pl.zeros(keys.height, pl.Int64, eager=True).scatter(
        read_index, pl.int_range(keys.height, dtype=pl.Int64, eager=True)).alias("source_row")
    return table.drop_columns([_ROWID, _IN_DAY]), order


class PureConnectResource(dg.ConfigurableResource):
    """The PureConnect ``I3_IC`` reporting database (SQL Server, Oracle, or the sandbox SQLite file)."""

    uri: str = Field(description="connectorx URI: mssql://user:pass@host:1433/I3_IC, oracle://..., "
                                 "or sqlite:///abs/path/I3_IC.sqlite (pass dg.EnvVar('PURECONNECT_URI') live)")
    local_time_window_hours: int = Field(
        default=14, ge=0, le=48,
        description="How far either side of the UTC day to look for rows with StartDTOffset NULL (local time).",
    )
    sqlite_partitions: int = Field(
        default=2, ge=1, le=16,
        description="SQLite only: rowid ranges InteractionSummary is read in, on parallel connections.",
    )

    # -- secrets stay out of every representation ----------------------------------------------------------
    def __repr_args__(self):  # pydantic repr/str
        for name, value in super().__repr_args__():
            yield name, (redact_uri(value) if name == "uri" and isinstance(value, str) else value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__repr_args__())
        return f"{type(self).__name__}({args})"

    def __str__(self) -> str:
        return self.__repr__()

    @property
    def backend(self) -> str:
        return backend_of(self.uri)

    @property
    def redacted_uri(self) -> str:
        return redact_uri(self.uri)

    def _scrub(self, text: str) -> str:
        text = text.replace(self.uri, self.redacted_uri)
        for secret in _secrets_of(self.uri):
            text = text.replace(secret, "***")
        return text

    def _query(self, sql: str | list[str], what: str) -> pa.Table:
        backend = self.backend
        if backend == SQLITE and not Path(self.uri.split("://", 1)[1].split("?", 1)[0]).is_file():
            # connectorx would wait out its pool timeout (~30 s) before saying the file is not there.
            raise PureConnectError(f"PureConnect sqlite database {self.redacted_uri} does not exist")
        try:
            return read_arrow(self.uri, sql)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # connectorx: RuntimeError, or a Rust panic (PanicException is a BaseException)
            message = self._scrub(f"{type(exc).__name__}: {exc}")
        # Raised outside the except block: the original exception (which may quote the URI) is not chained.
        if "Timed out in bb8" in message or "timed out waiting for connection" in message.lower():
            message += (" (no connection within the driver's ~30 s pool timeout: check the host, the port and that "
                        "a firewall lets this machine reach the database)")
        raise PureConnectError(f"PureConnect {backend} query for {what} failed on {self.redacted_uri}: {message}")

    # -- reads ---------------------------------------------------------------------------------------------
    def day_queries(self, day: date) -> dict[str, str]:
        """The five SQL statements :meth:`read_day` runs for ``day`` (exposed for review and tests)."""
        backend = self.backend
        window = DayWindow.of(day, self.local_time_window_hours)
        isum = window.predicate("s", backend)

        def keyed(alias: str) -> str:
            return f"EXISTS (SELECT 1 FROM InteractionSummary s WHERE {_key_join('s', alias)} AND {isum})"

        recording_exists = (f"EXISTS (SELECT 1 FROM InteractionSummary s WHERE s.InteractionIDKey = "
                            f"rm.QueueObjectIdKey AND {isum})")
        return {
            "InteractionSummary": f"SELECT {_columns(INTERACTION_SUMMARY_SCHEMA, 's')} FROM InteractionSummary s "
                                  f"WHERE {isum}",
            "InteractionWrapup": f"SELECT {_columns(WRAPUP_READ_SCHEMA, 'w')} FROM InteractionWrapup w "
                                 f"WHERE {keyed('w')}",
            "InteractionCustomAttributes": f"SELECT {_columns(INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA, 'a')} "
                                           f"FROM InteractionCustomAttributes a WHERE {keyed('a')}",
            "IR_RecordingMedia": f"SELECT {_columns(IR_RECORDING_MEDIA_SCHEMA, 'rm')} FROM IR_RecordingMedia rm "
                                 f"WHERE {recording_exists}",
            "IR_Tag": "SELECT tm.RecordingId, t.TagId, t.Name AS TagName, tm.KeywordSetName FROM IR_TagMap tm "
                      "JOIN IR_Tag t ON t.TagId = tm.TagId WHERE EXISTS (SELECT 1 FROM IR_RecordingMedia rm "
                      f"WHERE rm.RecordingId = tm.RecordingId AND {recording_exists})",
        }

    def _sqlite_window_ranges(self, day: date, partitions: int) -> tuple[list[str], str] | None:
        """SQLite: the rowid clauses (one per range) that cover the day's widened window and the one clause for
        the whole span, or None when the window is empty.

        One covering-index query finds the window's rowid span and count; a range is a plain ``rowid BETWEEN``
        when the window's rows fill most of the span (a range scan reads fewer pages than a seek per row), else
        ``rowid IN`` the covering index's rowids of that range.
        """
        if self.backend != SQLITE:
            raise PureConnectError("rowid partitions exist only for the sqlite backend")
        widened = DayWindow.of(day, self.local_time_window_hours).in_widened("StartDateTimeUTC", SQLITE)
        span = pl.from_arrow(self._query(
            f"SELECT ifnull(min(rowid), 0) AS lo, ifnull(max(rowid), -1) AS hi, count(*) AS n "
            f"FROM InteractionSummary WHERE {widened}", "InteractionSummary rowid span"))
        assert isinstance(span, pl.DataFrame)
        lo, hi, rows = (int(v) for v in span.row(0))
        if rows == 0:
            return None
        dense = 2 * rows >= hi - lo + 1

        def clause(a: int, b: int) -> str:
            return (f"s.rowid BETWEEN {a} AND {b}" if dense else
                    f"s.rowid IN (SELECT rowid FROM InteractionSummary WHERE {widened} AND rowid BETWEEN {a} AND {b})")

        step = -(-(hi - lo + 1) // max(1, partitions))
        return [clause(a, min(hi, a + step - 1)) for a in range(lo, hi + 1, step)], clause(lo, hi)

    def sqlite_day_queries(self, day: date, partitions: int | None = None) -> dict[str, str | list[str]]:
        """SQLite: what :meth:`read_day` runs: :meth:`day_queries` with InteractionSummary in rowid ranges and
        the keyed tables (wrap-ups, custom attributes) driven by those ranges.

        InteractionSummary is one statement per rowid range (``partitions``, default ``sqlite_partitions``), each
        returning the plain day query's rows of its range plus ``_rowid`` and ``_in_day`` (see
        :func:`_plan_positions`); an empty window gives the plain queries, InteractionSummary's as a one-item list.

        ``day_queries`` tests each wrap-up row's key against InteractionSummary (``EXISTS``): a full scan of the
        dependent table and, per row, an index seek plus a random read of the summary row for the window test.
        Here the window's summary rows are scanned by rowid, joined to the dependent table's key index (which
        covers the join, rowids included), and the matching rows are read by rowid: the same rows, in the same
        (rowid) order, as ``day_queries`` returns.
        """
        found = self._sqlite_window_ranges(day, self.sqlite_partitions if partitions is None else partitions)
        queries: dict[str, str | list[str]] = dict(self.day_queries(day))
        if found is None:
            queries["InteractionSummary"] = [queries["InteractionSummary"]]
            return queries
        ranges, in_span = found
        window = DayWindow.of(day, self.local_time_window_hours)
        predicate = window.predicate("s", SQLITE)
        in_day = f"({window.in_day('s.StartDateTimeUTC', SQLITE)})"
        head = (f"SELECT {_columns(INTERACTION_SUMMARY_SCHEMA, 's')}, s.rowid AS {_ROWID}, {in_day} AS {_IN_DAY} "
                f"FROM InteractionSummary s NOT INDEXED WHERE ")
        queries["InteractionSummary"] = [f"{head}{where} AND {predicate}" for where in ranges]
        for table, alias, schema in (("InteractionWrapup", "w", WRAPUP_READ_SCHEMA),
                                     ("InteractionCustomAttributes", "a", INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA)):
            keyed = (f"SELECT k.rowid FROM InteractionSummary s NOT INDEXED JOIN {table} k ON {_key_join('k', 's')} "
                     f"WHERE {in_span} AND {predicate}")
            queries[table] = (f"SELECT {_columns(schema, alias)} FROM {table} {alias} WHERE {alias}.rowid IN "
                              f"({keyed}) ORDER BY {alias}.rowid")
        return queries

    def _read_table(self, name: str, sql: str | list[str]) -> tuple[pl.DataFrame, pl.Series | None]:
        table, positions = self._query(sql, name), None
        if _ROWID in table.column_names:
            table, positions = _plan_positions(table)
        return _normalise(table, _TABLE_SCHEMAS[name], flag_unparseable=name == "InteractionSummary"), positions

    def read_day(self, day: date) -> LegacyDay:
        """The day's interactions and their wrap-ups, custom attributes, recordings and IR tags."""
        if not isinstance(day, date) or isinstance(day, datetime):
            raise TypeError("read_day needs a datetime.date")
        queries: dict[str, str | list[str]] = (self.sqlite_day_queries(day) if self.backend == SQLITE
                                               else dict(self.day_queries(day)))
        # InteractionSummary on one thread (itself on parallel connections), the dependent tables on another:
        # connectorx and Polars release the GIL.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pureconnect") as pool:
            first = pool.submit(self._read_table, "InteractionSummary", queries["InteractionSummary"])
            rest = pool.submit(lambda: {n: self._read_table(n, q) for n, q in queries.items()
                                        if n != "InteractionSummary"})
            summary, source_row = first.result()
            frames = {"InteractionSummary": summary, **{n: f for n, (f, _) in rest.result().items()}}
        tags = frames["IR_Tag"]
        tag_lists = tags.group_by("RecordingId").agg(pl.col("TagName").unique().sort().alias("Tags"))
        recordings = (frames["IR_RecordingMedia"].join(tag_lists, on="RecordingId", how="left")
                      .with_columns(pl.col("Tags").fill_null(pl.lit([], dtype=pl.List(pl.String)))))
        return LegacyDay(
            window=DayWindow.of(day, self.local_time_window_hours),
            interactions=frames["InteractionSummary"], wrapups=frames["InteractionWrapup"],
            custom_attributes=frames["InteractionCustomAttributes"], recordings=recordings, tags=tags,
            queries=tuple(sql for q in queries.values() for sql in ([q] if isinstance(q, str) else q)),
            source_row=source_row,
        )

    def watermark(self) -> datetime | None:
        """The newest UTC ``StartDateTimeUTC`` (local-time-only rows excluded), for the legacy sensor."""
        backend = self.backend
        if backend == SQLITE:  # an empty MAX() has no type for connectorx's SQLite reader; ORDER BY keeps it
            sql = ("SELECT StartDateTimeUTC AS Watermark FROM InteractionSummary WHERE StartDTOffset IS NOT NULL "
                   "ORDER BY StartDateTimeUTC DESC LIMIT 1")
        else:
            sql = "SELECT MAX(StartDateTimeUTC) AS Watermark FROM InteractionSummary WHERE StartDTOffset IS NOT NULL"
        frame = _normalise(self._query(sql, "watermark"), {"Watermark": _DT})
        if frame.height == 0 or frame["Watermark"][0] is None:
            return None
        return frame["Watermark"][0].replace(tzinfo=UTC)

    def day_counts(self, start: date, end: date) -> pl.DataFrame:
        """Rows per UTC day in ``[start, end]`` (UTC rows only): lets the sensor notice late-arriving rows."""
        backend = self.backend
        lo = timestamp_literal(datetime.combine(start, dtime()), backend)
        hi = timestamp_literal(datetime.combine(end + timedelta(days=1), dtime()), backend)
        day_expr = {SQLITE: "substr(StartDateTimeUTC, 1, 10)", MSSQL: "CAST(StartDateTimeUTC AS date)",
                    ORACLE: "TRUNC(StartDateTimeUTC)"}[backend]
        sql = (f"SELECT {day_expr} AS Day, COUNT(*) AS Rows FROM InteractionSummary WHERE StartDTOffset IS NOT NULL"
               f" AND StartDateTimeUTC >= {lo} AND StartDateTimeUTC < {hi} GROUP BY {day_expr}")
        frame = pl.from_arrow(self._query(sql, "day counts"))
        assert isinstance(frame, pl.DataFrame)
        frame.columns = [c.capitalize() if c.lower() in ("day", "rows") else c for c in frame.columns]
        day = pl.col("Day")
        day = day.str.to_date("%Y-%m-%d") if frame.schema["Day"] == pl.String else day.cast(pl.Date)
        return frame.select(day.alias("day"), pl.col("Rows").cast(pl.Int64).alias("rows")).sort("day")

    def ping(self) -> dict[str, object]:
        """Connect, run a trivial query, and prove InteractionSummary is readable without reading a row
        (``genesys-assets doctor``); raises :class:`PureConnectError` saying which step failed."""
        backend = self.backend
        sql = "SELECT 1 AS ok FROM DUAL" if backend == ORACLE else "SELECT 1 AS ok"
        started = time.perf_counter()
        self._query(sql, "ping")
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        try:  # connected; now is it the reporting database? (no rows read)
            self._query("SELECT COUNT(*) AS n FROM InteractionSummary WHERE 1 = 0", "InteractionSummary")
        except PureConnectError as exc:
            raise PureConnectError(
                f"connected to {self.redacted_uri}, but InteractionSummary cannot be read there: PURECONNECT_URI must "
                f"name the Interaction Center reporting database (I3_IC by default) and a login that may read it. {exc}"
            ) from None
        return {"backend": backend, "uri": self.redacted_uri, "latency_ms": latency_ms}
