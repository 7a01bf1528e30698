"""A PureConnect (CIC) site on this machine: the ``I3_IC`` reporting tables in SQLite, Interaction Recorder
files on disk, and the migration team's mapping CSVs, all deterministic from (seed, day).

Why it looks the way it does
----------------------------
* **Real names and types.** Tables, columns and declared types follow the PureConnect Data Dictionary
  (``reference/pureconnect-schema.md``), so a query written for a real site (Genesys's export join, with ``?``
  parameters through :mod:`sqlite3`) runs unchanged here. SQLite keeps the declared types (``char(18)``,
  ``tinyint``, ``uniqueidentifier`` ...) as written and applies its affinity rules; connectorx reads them as
  int/text/timestamp.
* **Datetimes** are text ``'YYYY-MM-DD HH:MM:SS.fff'`` (datetime2(3) rendered), so ``>=``/``<`` on them is a
  correct range comparison.
* **Two concessions to connectorx**, whose SQLite reader maps declared types by name and cannot type a NULL in
  a column whose declared type it does not know: the ``datetime2(3)`` columns are declared ``datetime`` (a real
  SQL Server type, read as timestamps), and the always-NULL ``RelatedRecordingId`` is ``char(36)`` rather than
  ``uniqueidentifier`` (``RecordingId``, never NULL, keeps ``uniqueidentifier``). Comparisons are unchanged:
  the stored values are text either way.
* **Site timezone** is America/New_York. ``StartDTOffset`` (and ``WrapupStartDTOffset``,
  ``RecordingDateOffset``) are **seconds** (the Data Dictionary: "offset to server local time [in seconds]"),
  ``local = UTC + offset``, e.g. -18000 in winter and -14400 in summer.
* **Durations**: InteractionSummary ``t*`` and ``LineDuration`` are milliseconds (as the reference says);
  ``IR_RecordingMedia.Duration`` is **milliseconds** too here (the reference only says ``int``), measured by
  decoding the file, and ``FileSize`` is the byte size on disk, except for the deliberately broken files.
* **Keys.** ``InteractionIDKey`` is the 10-digit InteractionID followed by the day ``YYYYMMDD``. There is **no
  primary key** on InteractionSummary (a real site has one on (InteractionIDKey, SiteID, SeqNo)); dropping it
  is what lets the sandbox hold *true duplicate* rows, as a double-imported history does.
* **Incremental and idempotent.** Each day is generated from its own RNG stream ``(seed, day)``; the database
  records which days were built with which parameters (``_sandbox_days``), so building a wider range only adds
  the new days, and rebuilding the same range is a no-op. A day built with other parameters is replaced.

The traps (seeds 000/001), at exact, configurable counts
--------------------------------------------------------
Row traps are assigned to disjoint interactions of each day: ``count = round(rate x interactions_per_day)``
(at least 1 when the rate is positive). :meth:`PureConnectSite.trap_rows` returns exactly which rows carry
which trap, keyed ``(InteractionIDKey, SiteID, SeqNo)``:

``local_time_only``
    Older imported rows: ``StartDTOffset`` is NULL and every datetime column (``StartDateTimeUTC``,
    ``Initiated/Connected/TerminatedDateTimeUTC``, ``WrapupStartDateTimeUTC``) holds the site's **local**
    wall-clock time, not UTC. ``CallDetail_viw`` shows ``InitiatedDate`` local and ``InitiatedDateTimeGmt``
    NULL. The row belongs to the UTC day it was generated for, but its text may sort into the previous date.
``end_before_start``
    ``TerminatedDateTimeUTC`` earlier than ``StartDateTimeUTC`` (clock skew on the end stamp).
``key_collision``
    The same ``InteractionIDKey`` on SiteID 1 and SiteID 2: two distinct interactions, both listed. Only the
    first has a recording; ``IR_RecordingMedia`` is keyed by InteractionIDKey alone, so the reference join
    returns that recording for both rows (disambiguate by ``RecordingDate`` inside the interaction).
``true_duplicate``
    An InteractionSummary row stored twice, byte-identical (listed once; its wrap-up/attribute/recording rows
    are not doubled).
``seqno_recreated``
    An interaction persisted and recreated: a second row with the same key and site and ``SeqNo`` 1 (the
    listed row). Legitimate (the key includes SeqNo): the migration must *not* treat it as a duplicate.
``unmapped_agent`` / ``unmapped_queue`` / ``unmapped_wrapup``
    ``LastLocalUserId`` / ``LastAssignedWorkgroupID`` / ``WrapupCode`` absent from the mapping CSVs (alternating
    legacy-only ids and directory entries with ``in_mapping_csv`` False; the stale CSV rows point at them too).
``special_char_id``
    An agent id with ``'`` or ``#``, or a workgroup with ``&`` or ``/`` (mapped, so they must survive).
``unknown_code``
    ``Direction`` 0 (unknown) or 9 (undefined), or ``MediaType`` 255 (unknown) or 13 (undefined).

All other rows use mapped, plain ids, so a row shows a mapping or special-character trap only if listed.
Recording kinds (see :mod:`.recordings`) are assigned the same way over each day's call recordings;
:meth:`PureConnectSite.recording_kinds` lists every recording by kind. The same manifest is written to
``traps/<day>.json`` after each day is built.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import random
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from genesys_assets.lib.files import atomic_write
from genesys_assets.sandbox import recordings as rec
from genesys_assets.sandbox.directory import DEFAULT_SEED, Directory, build_directory, stable_id

SITE_TIMEZONE = "America/New_York"
DB_FILENAME = "I3_IC.sqlite"
GENERATOR_VERSION = 1
SITE_IDS = (1, 2)
SPECIAL_CHARS = frozenset("'#&/")
IR_SERVER_SHARE = ("IRSERVER01", "IRRecordings")  # UNC-like: \\IRSERVER01\IRRecordings\YYYY\MM\DD\...
RETENTION_TAG = "Retention-7Y"

RowKey = tuple[str, int, int]  # (InteractionIDKey, SiteID, SeqNo)

_NAMESPACE = uuid.UUID("0c6b1c8e-3f0e-4f52-8d2a-51b2c4d9e7a3")

# ---------------------------------------------------------------------------------------------------------
# Schema (declared types as on SQL Server; SQLite keeps them as affinities)
# ---------------------------------------------------------------------------------------------------------

INTERACTION_SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("InteractionIDKey", "char(18) NOT NULL"),
    ("SiteID", "smallint NOT NULL"),
    ("SeqNo", "tinyint NOT NULL DEFAULT 0"),
    ("InteractionID", "bigint NOT NULL"),
    ("StartDateTimeUTC", "datetime NOT NULL"),
    ("StartDTOffset", "int NULL"),  # NOT NULL on a real site; NULL marks the local-time-only rows
    ("InitiatedDateTimeUTC", "datetime NULL"),
    ("ConnectedDateTimeUTC", "datetime NULL"),
    ("TerminatedDateTimeUTC", "datetime NULL"),
    ("Direction", "tinyint NOT NULL"),
    ("ConnectionType", "tinyint NOT NULL"),
    ("MediaType", "tinyint NOT NULL"),
    ("RemoteID", "nvarchar(50) NULL"),
    ("RemoteName", "nvarchar(50) NULL"),
    ("DNIS_LocalID", "nvarchar(50) NULL"),
    ("LastLocalUserId", "nvarchar(50) NULL"),
    ("LastAssignedWorkgroupID", "nvarchar(100) NULL"),
    ("FirstAssignedAcdSkillSet", "nvarchar(100) NULL"),
    ("AccountCode", "nvarchar(50) NULL"),
    ("LineDuration", "int NULL"),
    *((c, "int NULL") for c in ("tDialing", "tIVRWait", "tQueueWait", "tAlert", "tConnected", "tHeld",
                                 "tConference", "tExternal", "tACW")),
    *((c, "int NULL") for c in ("nIVR", "nQueueWait", "nTalk", "nConference", "nHeld", "nTransfer", "nExternal")),
    ("Disposition", "tinyint NULL"),
)
INTERACTION_WRAPUP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("InteractionIDKey", "char(18) NOT NULL"),
    ("SiteID", "smallint NOT NULL"),
    ("SeqNo", "tinyint NOT NULL DEFAULT 0"),
    ("SourceInteractionIDKey", "char(18) NULL"),
    ("WrapupSegmentID", "smallint NOT NULL"),
    ("WrapupCode", "nvarchar(50) NULL"),
    ("WrapupCategory", "nvarchar(50) NULL"),
    ("WrapupStartDateTimeUTC", "datetime NULL"),
    ("WrapupStartDTOffset", "int NULL"),
    ("UserID", "nvarchar(50) NULL"),
    ("WorkgroupID", "nvarchar(100) NULL"),
    ("WrapupRequired", "tinyint NULL"),
    ("WrapupIncompleteReason", "nvarchar(50) NULL"),
    *((c, "int NULL") for c in ("tAcw", "tConnected", "tHold", "tSuspend", "nHold", "nSuspend",
                                 "nSupervisorRequest")),
)
CUSTOM_ATTRIBUTE_COUNT = 6
INTERACTION_CUSTOM_ATTRIBUTES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("InteractionIDKey", "char(18) NOT NULL"),
    ("SiteID", "smallint NOT NULL"),
    ("SeqNo", "tinyint NOT NULL DEFAULT 0"),
    *((f"CustomNum{i}", "int NULL") for i in range(1, CUSTOM_ATTRIBUTE_COUNT + 1)),
    *((f"CustomString{i}", "nvarchar(50) NULL") for i in range(1, CUSTOM_ATTRIBUTE_COUNT + 1)),
)
IR_RECORDING_MEDIA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("RecordingId", "uniqueidentifier NOT NULL PRIMARY KEY"),
    ("QueueObjectIdKey", "varchar(36) NOT NULL"),
    ("MediaType", "smallint NOT NULL"),
    ("MediaURI", "nvarchar(1024) NULL"),
    ("MediaKey", "nvarchar(256) NULL"),
    ("MediaStatus", "tinyint NULL"),
    ("FileSize", "int NULL"),
    ("Duration", "int NULL"),
    ("RecordingDate", "datetime NULL"),
    ("RecordingDateOffset", "int NULL"),
    ("ExpirationDate", "datetime NULL"),
    ("IsArchived", "tinyint NULL"),
    ("RecordingType", "smallint NULL"),
    ("RelatedRecordingId", "char(36) NULL"),
    ("CallType", "smallint NULL"),
    ("Direction", "smallint NULL"),
    ("FromConnValue", "nvarchar(255) NULL"),
    ("ToConnValue", "nvarchar(255) NULL"),
    ("LineName", "nvarchar(50) NULL"),
    ("InitiationPolicyName", "nvarchar(255) NULL"),
    ("NumAttachments", "int NULL"),
    ("Version", "int NULL"),
)
IR_TAG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TagId", "int NOT NULL PRIMARY KEY"),
    ("Name", "nvarchar(100) NOT NULL"),
    ("Description", "nvarchar(255) NULL"),
)
IR_TAG_MAP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("RecordingId", "uniqueidentifier NOT NULL"),
    ("TagId", "int NOT NULL"),
    ("KeywordSetName", "nvarchar(100) NULL"),
)
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "InteractionSummary": INTERACTION_SUMMARY_COLUMNS,
    "InteractionWrapup": INTERACTION_WRAPUP_COLUMNS,
    "InteractionCustomAttributes": INTERACTION_CUSTOM_ATTRIBUTES_COLUMNS,
    "IR_RecordingMedia": IR_RECORDING_MEDIA_COLUMNS,
    "IR_Tag": IR_TAG_COLUMNS,
    "IR_TagMap": IR_TAG_MAP_COLUMNS,
}

# (TagId, Name, Description): the IR tags a QM team would have set up.
IR_TAGS: tuple[tuple[int, str, str], ...] = (
    (1, RETENTION_TAG, "Retain 7 years (financial compliance)"),
    (2, "QA-Sample", "Selected for quality evaluation"),
    (3, "Complaint", "Customer complaint"),
    (4, "PCI-Paused", "Recording paused for card details"),
    (5, "Legal-Hold", "Do not purge: legal hold"),
    (6, "Keyword-Cancel", "Speech analytics: cancellation language spotted"),
)


def _local(col: str) -> str:
    # The site's local time for a UTC column; local-only rows already hold local time.
    return (f"CASE WHEN isum.StartDTOffset IS NULL THEN isum.{col} ELSE "
            f"strftime('%Y-%m-%d %H:%M:%f', isum.{col}, printf('%+d seconds', isum.StartDTOffset)) END")


def _gmt(col: str) -> str:
    return f"CASE WHEN isum.StartDTOffset IS NULL THEN NULL ELSE isum.{col} END"


_CALLDETAIL_VIEW = f"""
CREATE VIEW CallDetail_viw AS
SELECT
    isum.InteractionIDKey AS CallId,
    isum.SiteID AS SiteID,
    CASE isum.ConnectionType WHEN 1 THEN 'External' WHEN 2 THEN 'Intercom' ELSE 'Unknown' END AS CallType,
    CASE isum.Direction WHEN 1 THEN 'Inbound' WHEN 2 THEN 'Outbound' WHEN 3 THEN 'Intercom'
        ELSE 'Unknown' END AS CallDirection,
    isum.MediaType AS InteractionType,
    isum.LastLocalUserId AS LocalUserId,
    isum.RemoteID AS RemoteNumber,
    isum.RemoteName AS RemoteName,
    isum.DNIS_LocalID AS DNIS,
    isum.LastAssignedWorkgroupID AS AssignedWorkGroup,
    {_local("InitiatedDateTimeUTC")} AS InitiatedDate,
    {_gmt("InitiatedDateTimeUTC")} AS InitiatedDateTimeGmt,
    {_local("ConnectedDateTimeUTC")} AS ConnectedDate,
    {_gmt("ConnectedDateTimeUTC")} AS ConnectedDateTimeGmt,
    {_local("TerminatedDateTimeUTC")} AS TerminatedDate,
    {_gmt("TerminatedDateTimeUTC")} AS TerminatedDateTimeGmt,
    isum.LineDuration / 1000 AS LineDurationSeconds,
    isum.tConnected / 1000 AS CallDurationSeconds,
    isum.tHeld / 1000 AS HoldDurationSeconds,
    isum.tACW / 1000 AS tACWSeconds,
    isum.AccountCode AS AccountCode,
    isum.Disposition AS DispositionCode,
    {", ".join(f"ica.CustomNum{i} AS CustomNum{i}" for i in range(1, CUSTOM_ATTRIBUTE_COUNT + 1))},
    {", ".join(f"ica.CustomString{i} AS CustomString{i}" for i in range(1, CUSTOM_ATTRIBUTE_COUNT + 1))}
FROM InteractionSummary isum
LEFT JOIN InteractionCustomAttributes ica
    ON ica.InteractionIDKey = isum.InteractionIDKey AND ica.SiteID = isum.SiteID AND ica.SeqNo = isum.SeqNo
"""

_META_DDL = (
    "CREATE TABLE IF NOT EXISTS _sandbox_site (Name text PRIMARY KEY, Value text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _sandbox_days (Day text PRIMARY KEY, Fingerprint text NOT NULL, "
    "Interactions int NOT NULL, SummaryRows int NOT NULL, Recordings int NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _sandbox_traps (Day text NOT NULL, Trap text NOT NULL, "
    "InteractionIDKey char(18) NULL, SiteID smallint NULL, SeqNo tinyint NULL, RecordingId uniqueidentifier NULL)",
    "CREATE INDEX IF NOT EXISTS _sandbox_traps_day ON _sandbox_traps (Day, Trap)",
)


def _schema_ddl() -> list[str]:
    ddl = [f"CREATE TABLE IF NOT EXISTS {name} (\n    "
           + ",\n    ".join(f"{col} {decl}" for col, decl in cols) + "\n)" for name, cols in TABLES.items()]
    ddl += [
        "CREATE INDEX IF NOT EXISTS IX_InteractionSummary_Start ON InteractionSummary (StartDateTimeUTC)",
        "CREATE INDEX IF NOT EXISTS IX_InteractionSummary_Key ON InteractionSummary (InteractionIDKey, SiteID, SeqNo)",
        "CREATE INDEX IF NOT EXISTS IX_InteractionWrapup_Key ON InteractionWrapup (InteractionIDKey, SiteID, SeqNo)",
        "CREATE INDEX IF NOT EXISTS IX_ICA_Key ON InteractionCustomAttributes (InteractionIDKey, SiteID, SeqNo)",
        "CREATE INDEX IF NOT EXISTS IX_IR_RecordingMedia_QO ON IR_RecordingMedia (QueueObjectIdKey)",
        "CREATE INDEX IF NOT EXISTS IX_IR_TagMap_Rec ON IR_TagMap (RecordingId)",
    ]
    return ddl


# ---------------------------------------------------------------------------------------------------------
# Trap rates
# ---------------------------------------------------------------------------------------------------------

ROW_TRAPS = ("local_time_only", "end_before_start", "key_collision", "true_duplicate", "seqno_recreated",
             "unmapped_agent", "unmapped_queue", "unmapped_wrapup", "special_char_id", "unknown_code")
RECORDING_TRAPS = ("amr_nb", "g726", "sasf", "zero_byte", "truncated", "missing")


@dataclass(frozen=True)
class TrapRates:
    """How often each trap appears. Row traps are fractions of a day's interactions; recording traps are
    fractions of a day's call recordings; ``retention_7y`` is the share of recordings tagged Retention-7Y.
    Each group is assigned to disjoint items, so each group must sum to at most 1."""

    local_time_only: float = 0.03
    end_before_start: float = 0.01
    key_collision: float = 0.01
    true_duplicate: float = 0.01
    seqno_recreated: float = 0.005
    unmapped_agent: float = 0.04
    unmapped_queue: float = 0.03
    unmapped_wrapup: float = 0.02
    special_char_id: float = 0.04
    unknown_code: float = 0.01
    amr_nb: float = 0.04
    g726: float = 0.03
    sasf: float = 0.03
    zero_byte: float = 0.01
    truncated: float = 0.01
    missing: float = 0.01
    retention_7y: float = 0.10

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"TrapRates.{f.name} must be within [0, 1], got {v}")
        for group in (ROW_TRAPS, RECORDING_TRAPS):
            if sum(getattr(self, n) for n in group) > 1.0:
                raise ValueError(f"TrapRates {group} sum to more than 1")

    @staticmethod
    def count(rate: float, population: int) -> int:
        """The exact number of items that carry a trap of ``rate`` among ``population``."""
        if rate <= 0 or population <= 0:
            return 0
        return min(population, max(1, round(rate * population)))


# ---------------------------------------------------------------------------------------------------------
# The site
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayStats:
    day: date
    interactions: int  # generated interactions (interactions_per_day)
    summary_rows: int  # InteractionSummary rows (+ collision twins, recreated SeqNos, duplicate copies)
    recordings: int  # IR_RecordingMedia rows


@dataclass(frozen=True)
class PureConnectSite:
    """A built sandbox site under ``root``. Open an existing one with :meth:`open`."""

    root: Path
    seed: int = DEFAULT_SEED
    timezone: str = SITE_TIMEZONE

    @classmethod
    def open(cls, root: Path) -> PureConnectSite:
        root = Path(root).resolve()
        with contextlib.closing(sqlite3.connect(root / DB_FILENAME)) as con:
            meta = dict(con.execute("SELECT Name, Value FROM _sandbox_site").fetchall())
        return cls(root, int(meta["seed"]), meta["timezone"])

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILENAME

    @property
    def uri(self) -> str:
        """The connection URI for :class:`~genesys_assets.resources.pureconnect.PureConnectResource`."""
        return "sqlite://" + quote(self.db_path.as_posix())

    @property
    def recordings_dir(self) -> Path:
        return self.root / "recordings"

    @property
    def traps_dir(self) -> Path:
        """``traps/<day>.json``: the manifest of each built day, for consumers outside Python."""
        return self.root / "traps"

    @property
    def mappings_dir(self) -> Path:
        return self.root / "mappings"

    @property
    def agents_csv(self) -> Path:
        return self.mappings_dir / "agents.csv"

    @property
    def queues_csv(self) -> Path:
        return self.mappings_dir / "queues.csv"

    @property
    def wrapups_csv(self) -> Path:
        return self.mappings_dir / "wrapups.csv"

    @property
    def directory(self) -> Directory:
        return build_directory(self.seed)

    def connect(self) -> sqlite3.Connection:
        """A read-only connection (the export join and tests use it with ``?`` parameters)."""
        return sqlite3.connect(f"{self.db_path.as_uri()}?mode=ro", uri=True)

    def days(self) -> list[date]:
        with contextlib.closing(self.connect()) as con:
            return [date.fromisoformat(d) for (d,) in con.execute("SELECT Day FROM _sandbox_days ORDER BY Day")]

    def day_stats(self, day: date) -> DayStats:
        with contextlib.closing(self.connect()) as con:
            row = con.execute("SELECT Interactions, SummaryRows, Recordings FROM _sandbox_days WHERE Day = ?",
                              (day.isoformat(),)).fetchone()
        if row is None:
            raise KeyError(f"{day} is not built in {self.root}")
        return DayStats(day, *row)

    def trap_rows(self, day: date) -> dict[str, list[RowKey]]:
        """Every row trap of ``day`` (all names in :data:`ROW_TRAPS`, empty lists included)."""
        out: dict[str, list[RowKey]] = {name: [] for name in ROW_TRAPS}
        with contextlib.closing(self.connect()) as con:
            for trap, key, site, seq in con.execute(
                "SELECT Trap, InteractionIDKey, SiteID, SeqNo FROM _sandbox_traps "
                "WHERE Day = ? AND RecordingId IS NULL ORDER BY rowid", (day.isoformat(),),
            ):
                out[trap].append((key, site, seq))
        return out

    def recording_kinds(self, day: date) -> dict[str, list[str]]:
        """Every recording of ``day`` by :class:`~.recordings.RecordingKind` value -> RecordingIds."""
        out: dict[str, list[str]] = {k.value: [] for k in rec.RecordingKind}
        with contextlib.closing(self.connect()) as con:
            for kind, rid in con.execute(
                "SELECT Trap, RecordingId FROM _sandbox_traps WHERE Day = ? AND RecordingId IS NOT NULL "
                "ORDER BY rowid", (day.isoformat(),),
            ):
                out[kind].append(rid)
        return out

    def manifest(self, day: date) -> dict[str, object]:
        """The day's trap manifest as JSON-able data (what ``traps/<day>.json`` holds)."""
        stats = self.day_stats(day)
        return {
            "day": day.isoformat(), "seed": self.seed, "timezone": self.timezone,
            "interactions": stats.interactions, "summary_rows": stats.summary_rows, "recordings": stats.recordings,
            "row_traps": {k: [list(v) for v in vs] for k, vs in self.trap_rows(day).items()},
            "recording_kinds": self.recording_kinds(day),
        }


# ---------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pools:
    agents: tuple[str, ...]
    special_agents: tuple[str, ...]
    unmapped_agents: tuple[str, ...]
    queues: tuple[str, ...]
    special_queues: tuple[str, ...]
    unmapped_queues: tuple[str, ...]
    wrapups: tuple[str, ...]
    unmapped_wrapups: tuple[str, ...]


def _interleave(a: list[str], b: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for i in range(max(len(a), len(b))):
        out += [x[i] for x in (a, b) if i < len(x)]
    return tuple(out)


def _has_special(value: str) -> bool:
    return any(c in SPECIAL_CHARS for c in value)


def _unique_agents(directory: Directory) -> list:
    """Directory agents with a unique legacy id (the first user wins when two share one)."""
    seen: set[str] = set()
    out = []
    for u in directory.agents:
        if u.legacy_agent_id not in seen:
            seen.add(u.legacy_agent_id)
            out.append(u)
    return out


def _pools(directory: Directory) -> _Pools:
    agents = _unique_agents(directory)
    stale_agent, stale_queue = _stale_legacy_ids(directory)
    mapped = [u.legacy_agent_id for u in agents if u.in_mapping_csv and u.legacy_agent_id != stale_agent]
    not_in_csv = [u.legacy_agent_id for u in agents if not u.in_mapping_csv and not _has_special(u.legacy_agent_id)]
    legacy_only = [a for a in directory.legacy_only_agents if not _has_special(a)]
    queues = directory.routing_queues
    q_mapped = [q.legacy_workgroup for q in queues if q.in_mapping_csv and q.legacy_workgroup != stale_queue]
    q_not_in_csv = [q.legacy_workgroup for q in queues if not q.in_mapping_csv and not _has_special(q.legacy_workgroup)]
    return _Pools(
        agents=tuple(a for a in mapped if not _has_special(a)),
        special_agents=tuple(a for a in mapped if _has_special(a)),
        unmapped_agents=_interleave(legacy_only, not_in_csv),
        queues=tuple(q for q in q_mapped if not _has_special(q)),
        special_queues=tuple(q for q in q_mapped if _has_special(q)),
        unmapped_queues=_interleave([w for w in directory.legacy_only_workgroups if not _has_special(w)],
                                    q_not_in_csv),
        wrapups=tuple(w.legacy_code for w in directory.wrapup_codes if w.in_mapping_csv),
        unmapped_wrapups=tuple(w.legacy_code for w in directory.wrapup_codes if not w.in_mapping_csv),
    )


def _stale_legacy_ids(directory: Directory) -> tuple[str, str]:
    """The legacy agent and workgroup whose CSV rows point at Cloud ids that do not exist."""
    return directory.legacy_only_agents[-1], directory.legacy_only_workgroups[0]


def _fmt(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return f"{dt:%Y-%m-%d %H:%M:%S}.{dt.microsecond // 1000:03d}"


def _offset_seconds(tz: ZoneInfo, utc: datetime) -> int:
    return int(utc.replace(tzinfo=UTC).astimezone(tz).utcoffset().total_seconds())


_HOUR_WEIGHT = [0.03, 0.02, 0.02, 0.02, 0.03, 0.05, 0.15, 0.4, 0.8, 1.0, 1.0, 1.0,
                0.9, 1.0, 1.0, 1.0, 0.9, 0.7, 0.5, 0.35, 0.25, 0.15, 0.08, 0.05]
_AREA = ("212", "312", "415", "617", "646", "718", "917", "202", "305", "404")
_FIRST = ("Maria", "James", "Aisha", "Chen", "Olga", "Luis", "Fatima", "Noah", "Sofia", "Raj", "Emma", "Kwame")
_LAST = ("Smith", "Nguyen", "Garcia", "O'Neil", "Kowalczyk", "Okafor", "Rossi", "Schmidt", "Patel", "Brown")
_SKILLS = ("", "", "English", "Spanish", "English|Billing", "English|Tier2", "French")
_CATEGORY = {"RESOLVED": "Service", "RESOLVED-FCR": "Service", "SALE": "Sales", "NO-SALE": "Sales",
             "PROMO-2024": "Sales", "CANCEL": "Retention", "RETAINED": "Retention", "BILLING-Q": "Billing",
             "PAYMENT": "Billing", "TECH-FIX": "Technical", "TECH-TICKET": "Technical", "FRAUD": "Risk"}
# (weight, Direction, ConnectionType, MediaType)
_MIX = ((58, 1, 1, 0), (14, 2, 1, 0), (1, 3, 2, 0), (12, 1, 1, 1), (8, 1, 1, 5), (5, 1, 1, 6), (2, 1, 1, 2))
_CALL_RECORDED = 0.92
_TEXT_RECORDED = 0.9
_GOOD_AUDIO = ((rec.RecordingKind.PCM16, 30), (rec.RecordingKind.MULAW, 30), (rec.RecordingKind.ALAW, 20),
               (rec.RecordingKind.GSM610, 20))


def _phone(rng: random.Random) -> str:
    area, line = rng.choice(_AREA), f"01{rng.randrange(100):02d}"
    form = rng.randrange(8)
    if form == 0:
        return f"1{area}555{line}"
    if form == 1:
        return f"({area}) 555-{line}"
    if form == 2:
        return f"tel:+1{area}555{line}"
    if form == 3:
        return f"sip:+1{area}555{line}@10.20.30.40"
    if form == 4:
        return f"+44 20 7946 0{rng.randrange(1000):03d}"
    return f"+1{area}555{line}"


@dataclass
class _Interaction:
    """One interaction being generated (UTC datetimes until rendered)."""

    key: str
    site: int
    seq: int
    interaction_id: int
    start: datetime
    direction: int
    connection_type: int
    media_type: int
    answered: bool
    agent: str
    workgroup: str
    wrapup: str
    remote_id: str
    remote_name: str
    dnis: str
    skill: str
    account: str
    t: dict[str, int]
    n: dict[str, int]
    disposition: int
    local_only: bool = False
    end_skew_ms: int = 0  # > 0: terminated stamped before start (clock skew)
    recorded: bool = False
    wrapup_segments: list[tuple[str, str, int]] = field(default_factory=list)  # (agent, code, tAcw)
    custom: tuple | None = None

    def times(self) -> tuple[datetime, datetime | None, datetime]:
        initiated = self.start
        pre = self.t["tDialing"] + self.t["tIVRWait"] + self.t["tQueueWait"] + self.t["tAlert"]
        connected = initiated + timedelta(milliseconds=pre) if self.answered else None
        terminated = initiated + timedelta(milliseconds=pre + self.t["tConnected"] + self.t["tHeld"])
        if self.end_skew_ms:
            terminated = self.start - timedelta(milliseconds=self.end_skew_ms)
        return initiated, connected, terminated


class _DayGenerator:
    def __init__(self, seed: int, day: date, n: int, traps: TrapRates, tz: ZoneInfo, pools: _Pools) -> None:
        self.seed, self.day, self.n, self.traps, self.tz, self.pools = seed, day, n, traps, tz, pools
        self.rng = random.Random(f"pureconnect/{seed}/{day.isoformat()}/rows")
        self.trap_rng = random.Random(f"pureconnect/{seed}/{day.isoformat()}/traps")
        self.day_start = datetime(day.year, day.month, day.day)

    # -- trap assignment -----------------------------------------------------------------------------------
    def assign_row_traps(self) -> dict[int, str]:
        order = list(range(self.n))
        self.trap_rng.shuffle(order)
        assigned: dict[int, str] = {}
        pos = 0
        for name in ROW_TRAPS:
            k = TrapRates.count(getattr(self.traps, name), self.n)
            for i in order[pos:pos + k]:
                assigned[i] = name
            pos += k
        return assigned

    # -- one interaction -----------------------------------------------------------------------------------
    def _start(self) -> datetime:
        rng = self.rng
        while True:
            ms = rng.randrange(86_400_000)
            utc = self.day_start + timedelta(milliseconds=ms)
            local_hour = (utc + timedelta(seconds=_offset_seconds(self.tz, utc))).hour
            if rng.random() < _HOUR_WEIGHT[local_hour]:
                return utc

    def interaction(self, i: int, trap: str | None, trap_ordinal: int) -> _Interaction:
        rng, pools = self.rng, self.pools
        _, direction, ctype, media = rng.choices(_MIX, weights=[m[0] for m in _MIX])[0]
        if trap is not None and ctype == 2:
            direction, ctype, media = 1, 1, 0  # trap rows are answered ACD interactions (agent, queue, wrap-up)
        site = 1 if rng.random() < 0.8 else 2
        interaction_id = site * 1_000_000_000 + (self.day.toordinal() % 1000) * 1_000_000 + i
        key = f"{interaction_id:010d}{self.day:%Y%m%d}"
        answered = trap is not None or rng.random() > (0.08 if media == 0 else 0.04)
        start = self._start()
        while trap == "seqno_recreated" and start.hour >= 20:  # the recreated SeqNo 1 must start the same day
            start = self._start()
        t = dict.fromkeys(("tDialing", "tIVRWait", "tQueueWait", "tAlert", "tConnected", "tHeld", "tConference",
                           "tExternal", "tACW"), 0)
        n = dict.fromkeys(("nIVR", "nQueueWait", "nTalk", "nConference", "nHeld", "nTransfer", "nExternal"), 0)
        if media == 0 and direction == 2:
            t["tDialing"] = rng.randint(3_000, 20_000)
        elif media == 0 and direction == 1:
            t["tIVRWait"] = rng.choice((0, rng.randint(5_000, 90_000)))
        if direction != 2 and ctype == 1:
            t["tQueueWait"] = rng.randint(1_000, 3_600_000 if media == 5 else 300_000)
        if answered:
            t["tAlert"] = rng.randint(1_500, 15_000)
            talk = {0: (30_000, 1_200_000), 1: (120_000, 1_500_000), 5: (60_000, 600_000), 6: (30_000, 900_000),
                    2: (10_000, 120_000)}.get(media, (30_000, 600_000))
            t["tConnected"] = int(rng.triangular(talk[0], talk[1], talk[0] * 3))
            if media in (0, 6) and rng.random() < 0.25:
                t["tHeld"], n["nHeld"] = rng.randint(10_000, 180_000), 1
            if rng.random() < 0.1:
                n["nTransfer"] = 1
            if rng.random() < 0.03:
                t["tConference"], n["nConference"] = rng.randint(20_000, 300_000), 1
            t["tACW"] = rng.randint(0, 120_000)
            n["nTalk"] = 1
        n["nIVR"] = int(t["tIVRWait"] > 0)
        n["nQueueWait"] = int(t["tQueueWait"] > 0)
        t["tExternal"] = t["tConnected"] if ctype == 1 and answered else 0
        n["nExternal"] = int(t["tExternal"] > 0)
        if not answered:
            disposition = rng.choice((1, 2, 2, 2, 4)) if media == 0 else 2
        elif n["nConference"]:
            disposition = 0
        else:
            disposition = rng.choice((6, 6, 7))

        if media in (0, 2, 6) or ctype == 2:
            remote = _phone(rng)
        elif media == 5:
            remote = f"{rng.choice(_FIRST).lower()}.{rng.choice(_LAST).lower().replace(chr(39), '')}@example.org"
        else:
            remote = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        remote_name = rng.choice(("", "", "WIRELESS CALLER", f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"))
        dnis = f"+1800555{rng.randrange(100, 200):04d}" if direction == 1 else f"+1212555{rng.randrange(100):04d}"

        agent = rng.choice(pools.agents) if answered else ""
        workgroup = "" if ctype == 2 else rng.choice(pools.queues)
        wrapup = rng.choice(pools.wrapups)
        if trap == "unmapped_agent":
            agent = pools.unmapped_agents[trap_ordinal % len(pools.unmapped_agents)]
        elif trap == "unmapped_queue":
            workgroup = pools.unmapped_queues[trap_ordinal % len(pools.unmapped_queues)]
        elif trap == "unmapped_wrapup":
            wrapup = pools.unmapped_wrapups[trap_ordinal % len(pools.unmapped_wrapups)]
        elif trap == "special_char_id":
            if trap_ordinal % 2 == 0 and pools.special_agents:
                agent = pools.special_agents[(trap_ordinal // 2) % len(pools.special_agents)]
            else:
                workgroup = pools.special_queues[(trap_ordinal // 2) % len(pools.special_queues)]

        it = _Interaction(
            key=key, site=site, seq=0, interaction_id=interaction_id, start=start, direction=direction,
            connection_type=ctype, media_type=media, answered=answered, agent=agent, workgroup=workgroup,
            wrapup=wrapup, remote_id=remote, remote_name=remote_name, dnis=dnis, skill=rng.choice(_SKILLS),
            account=rng.choice(("",) * 4 + (f"{rng.randrange(1000, 9999)}",)), t=t, n=n, disposition=disposition,
        )
        if answered and workgroup:
            segments = [(agent, wrapup, t["tACW"])]
            if n["nTransfer"]:
                segments.insert(0, (rng.choice(pools.agents), rng.choice(pools.wrapups), rng.randint(0, 30_000)))
            it.wrapup_segments = segments
        if rng.random() < 0.7:
            it.custom = (
                rng.randint(1, 5) if rng.random() < 0.3 else None, rng.randint(0, 50), None, None, None, None,
                f"ACCT-{rng.randrange(10**7):07d}", rng.choice(("Gold", "Silver", "Bronze", "")),
                rng.choice(("web", "ivr", "app", None)), None, None, None,
            )
        recordable = answered and media in (0, 1, 5, 6)
        it.recorded = recordable and rng.random() < (_CALL_RECORDED if media in (0, 6) else _TEXT_RECORDED)
        if trap == "local_time_only":
            it.local_only = True
        elif trap == "end_before_start":
            it.end_skew_ms = rng.randint(1_000, 600_000)
        elif trap == "unknown_code":
            variant = trap_ordinal % 4
            if variant == 0:
                it.direction = 0
            elif variant == 1:
                it.media_type, it.recorded = 255, False
            elif variant == 2:
                it.direction = 9
            else:
                it.media_type, it.recorded = 13, False
        return it

    def twin(self, base: _Interaction, site: int, seq: int) -> _Interaction:
        """Another interaction sharing ``base``'s key: on another site, or recreated with a higher SeqNo."""
        other = self.interaction(base.interaction_id % 1_000_000, None, 0)
        other.key, other.site, other.seq, other.interaction_id = base.key, site, seq, base.interaction_id
        other.recorded = False
        _, _, base_end = base.times()
        if seq:  # recreated after the first ended
            other.start = base_end + timedelta(seconds=self.rng.randint(5, 120))
        else:  # far enough from base that RecordingDate disambiguates
            hours = 6 if base.start.hour < 12 else -6
            other.start = base.start + timedelta(hours=hours, milliseconds=self.rng.randrange(3_600_000))
        return other

    # -- rendering -----------------------------------------------------------------------------------------
    def render(self, it: _Interaction) -> tuple[tuple, list[tuple], tuple | None]:
        initiated, connected, terminated = it.times()
        offset = _offset_seconds(self.tz, it.start)

        def stamp(dt: datetime | None) -> str | None:
            if dt is None:
                return None
            return _fmt(dt + timedelta(seconds=offset)) if it.local_only else _fmt(dt)

        line = it.t["tDialing"] + it.t["tIVRWait"] + it.t["tQueueWait"] + it.t["tAlert"] + it.t["tConnected"] \
            + it.t["tHeld"]
        summary = (
            it.key, it.site, it.seq, it.interaction_id, stamp(it.start), None if it.local_only else offset,
            stamp(initiated), stamp(connected), stamp(terminated), it.direction, it.connection_type, it.media_type,
            it.remote_id, it.remote_name, it.dnis, it.agent, it.workgroup, it.skill, it.account, line,
            *(it.t[c] for c in ("tDialing", "tIVRWait", "tQueueWait", "tAlert", "tConnected", "tHeld",
                                "tConference", "tExternal", "tACW")),
            *(it.n[c] for c in ("nIVR", "nQueueWait", "nTalk", "nConference", "nHeld", "nTransfer", "nExternal")),
            it.disposition,
        )
        wraps = []
        wrap_at = initiated + timedelta(milliseconds=line)
        for seg, (agent, code, acw) in enumerate(it.wrapup_segments, start=1):
            incomplete = "Timeout" if acw == 0 else None
            wraps.append((
                it.key, it.site, it.seq, it.key, seg, code, _CATEGORY.get(code, "General"), stamp(wrap_at),
                None if it.local_only else offset, agent, it.workgroup, 1, incomplete, acw,
                it.t["tConnected"], it.t["tHeld"], 0, it.n["nHeld"], 0, 0,
            ))
        custom = (it.key, it.site, it.seq, *it.custom) if it.custom is not None else None
        return summary, wraps, custom


@dataclass
class _DayRows:
    summary: list[tuple] = field(default_factory=list)
    wrapups: list[tuple] = field(default_factory=list)
    custom: list[tuple] = field(default_factory=list)
    recordings: list[tuple] = field(default_factory=list)
    tag_map: list[tuple] = field(default_factory=list)
    traps: list[tuple] = field(default_factory=list)
    interactions: int = 0


def _recording_id(seed: int, key: str, site: int, seq: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}/recording/{key}/{site}/{seq}")).upper()


def _add_years(dt: datetime, years: int) -> datetime:
    try:
        return dt.replace(year=dt.year + years)
    except ValueError:  # 29 February
        return dt.replace(year=dt.year + years, day=28)


def _chat_xml(it: _Interaction, start: datetime) -> str:
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             f'<chatTranscript interactionId="{it.key}" siteId="{it.site}">']
    who = (("Visitor", it.remote_id), ("Agent", it.agent))
    texts = ("Hi, I need help with my account.", "Of course. Can you confirm your account number?",
             "It is on the card ending 4242.", "Thanks, I have updated it for you.", "Great, thank you!")
    for j, text in enumerate(texts):
        role, name = who[j % 2]
        at = _fmt(start + timedelta(seconds=20 * j))
        safe = name.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").replace("'", "&apos;")
        lines.append(f'  <message time="{at}" role="{role}" name="{safe}">{text}</message>')
    lines.append("</chatTranscript>")
    return "\n".join(lines) + "\n"


def _email_txt(it: _Interaction, start: datetime) -> str:
    return (f"From: {it.remote_id}\nTo: support@example.com\nDate: {_fmt(start)} UTC\n"
            f"Subject: Question about my bill ({it.key})\n\nHello,\nI was charged twice this month. "
            f"Please call me back on +1 212 555 0142.\n\nThanks\n")


def _generate_day(site: PureConnectSite, day: date, n: int, traps: TrapRates, pools: _Pools) -> _DayRows:
    tz = ZoneInfo(site.timezone)
    gen = _DayGenerator(site.seed, day, n, traps, tz, pools)
    assigned = gen.assign_row_traps()
    ordinals: dict[str, int] = {}
    rows = _DayRows(interactions=n)
    day_s = day.isoformat()
    recorded: list[_Interaction] = []

    def emit(it: _Interaction) -> None:
        summary, wraps, custom = gen.render(it)
        rows.summary.append(summary)
        rows.wrapups.extend(wraps)
        if custom is not None:
            rows.custom.append(custom)

    for i in range(n):
        trap = assigned.get(i)
        ordinal = ordinals.get(trap, 0) if trap else 0
        if trap:
            ordinals[trap] = ordinal + 1
        it = gen.interaction(i, trap, ordinal)
        emit(it)
        if it.recorded:
            recorded.append(it)
        if trap and trap != "seqno_recreated":
            rows.traps.append((day_s, trap, it.key, it.site, it.seq, None))
        if trap == "true_duplicate":
            rows.summary.append(rows.summary[-1])
        elif trap in ("key_collision", "seqno_recreated"):
            other = gen.twin(it, (2 if it.site == 1 else 1) if trap == "key_collision" else it.site,
                             1 if trap == "seqno_recreated" else 0)
            emit(other)
            rows.traps.append((day_s, trap, other.key, other.site, other.seq, None))

    _generate_recordings(site, day, gen, recorded, traps, rows)
    return rows


def _generate_recordings(site: PureConnectSite, day: date, gen: _DayGenerator, recorded: list[_Interaction],
                         traps: TrapRates, rows: _DayRows) -> None:
    rng = random.Random(f"pureconnect/{site.seed}/{day.isoformat()}/recordings")
    calls = [it for it in recorded if it.media_type in (0, 6)]
    order = list(range(len(calls)))
    rng.shuffle(order)
    kinds: dict[int, rec.RecordingKind] = {}
    pos = 0
    for name in RECORDING_TRAPS:
        k = TrapRates.count(getattr(traps, name), len(calls))
        for idx in order[pos:pos + k]:
            kinds[idx] = rec.RecordingKind(name)
        pos += k
    good_kinds, good_weights = zip(*_GOOD_AUDIO, strict=True)
    for idx in range(len(calls)):
        if idx not in kinds:
            kinds[idx] = rng.choices(good_kinds, weights=good_weights)[0]
    kind_of = {id(it): kinds[j] for j, it in enumerate(calls)}

    retention = set(rng.sample(range(len(recorded)), TrapRates.count(traps.retention_7y, len(recorded))))
    folder = site.recordings_dir.joinpath(*IR_SERVER_SHARE, f"{day:%Y}", f"{day:%m}", f"{day:%d}")
    day_s = day.isoformat()
    for j, it in enumerate(recorded):
        rid = _recording_id(site.seed, it.key, it.site, it.seq)
        if it.media_type in (0, 6):
            kind, ir_media = kind_of[id(it)], 1
        else:
            kind = rec.RecordingKind.CHAT_XML if it.media_type == 1 else rec.RecordingKind.EMAIL_TXT
            ir_media = 2 if it.media_type == 1 else 3
        path = folder / f"{rid}{rec.extension(kind)}"
        _, connected, _ = it.times()
        rec_start = connected or it.start
        media_key = None
        if kind in rec.AUDIO_KINDS:
            duration = 2_000 + int(18_000 * rng.random() ** 3)  # 2-20 s, mostly short (mean 6.5 s)
            media_key = f"IMS-KEY-{rid[:8]}" if kind is rec.RecordingKind.SASF else None
            written = rec.write_recording(path, kind, f"{site.seed}/{rid}", duration, key_id=media_key or "")
            size, duration_ms = written.file_size, written.duration_ms
        elif kind is rec.RecordingKind.CHAT_XML:
            size, duration_ms = rec.write_text(path, _chat_xml(it, rec_start)), it.t["tConnected"]
        else:
            size, duration_ms = rec.write_text(path, _email_txt(it, rec_start)), 0
        tags: list[tuple[int, str | None]] = []
        if j in retention:
            tags.append((1, None))
        if rng.random() < 0.05:
            tags.append((2, None))
        if it.wrapup == "COMPLAINT":
            tags.append((3, None))
        if ir_media == 1 and rng.random() < 0.03:
            tags.append((4, None))
        if rng.random() < 0.005:
            tags.append((5, None))
        if it.wrapup in ("CANCEL", "RETAINED") and ir_media == 1:
            tags.append((6, "Retention Keywords"))
        expires = _add_years(rec_start, 7) if j in retention else rec_start + timedelta(days=730)
        offset = _offset_seconds(gen.tz, rec_start)
        local_number = it.dnis if it.direction == 1 else "+12125550100"
        from_conn, to_conn = (it.remote_id, local_number) if it.direction != 2 else (local_number, it.remote_id)
        rows.recordings.append((
            rid, it.key, ir_media, path.as_uri(), media_key, 0,
            size, duration_ms, _fmt(rec_start), offset, _fmt(expires), 0, 1, None, it.connection_type,
            it.direction, from_conn, to_conn, f"SIP-Line-{it.site}" if ir_media == 1 else None,
            "Record all ACD" if it.workgroup else "Record agent calls", 0, 1,
        ))
        rows.tag_map.extend((rid, tag_id, ks) for tag_id, ks in tags)
        rows.traps.append((day_s, kind.value, None, None, None, rid))


# ---------------------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------------------


def _fingerprint(seed: int, n: int, traps: TrapRates, timezone: str) -> str:
    payload = json.dumps({"v": GENERATOR_VERSION, "seed": seed, "n": n, "traps": asdict(traps), "tz": timezone},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _write_json(path: Path, payload: object) -> None:
    atomic_write(path, json.dumps(payload, indent=1, sort_keys=True).encode())


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _delete_day(con: sqlite3.Connection, site: PureConnectSite, day: date) -> None:
    suffix = f"{day:%Y%m%d}"
    con.execute("DELETE FROM IR_TagMap WHERE RecordingId IN (SELECT RecordingId FROM IR_RecordingMedia "
                "WHERE substr(QueueObjectIdKey, 11, 8) = ?)", (suffix,))
    con.execute("DELETE FROM IR_RecordingMedia WHERE substr(QueueObjectIdKey, 11, 8) = ?", (suffix,))
    for table in ("InteractionSummary", "InteractionWrapup", "InteractionCustomAttributes"):
        con.execute(f"DELETE FROM {table} WHERE substr(InteractionIDKey, 11, 8) = ?", (suffix,))
    con.execute("DELETE FROM _sandbox_traps WHERE Day = ?", (day.isoformat(),))
    con.execute("DELETE FROM _sandbox_days WHERE Day = ?", (day.isoformat(),))
    folder = site.recordings_dir.joinpath(*IR_SERVER_SHARE, f"{day:%Y}", f"{day:%m}", f"{day:%d}")
    shutil.rmtree(folder, ignore_errors=True)


def _insert_day(con: sqlite3.Connection, rows: _DayRows) -> None:
    for table, data in (("InteractionSummary", rows.summary), ("InteractionWrapup", rows.wrapups),
                        ("InteractionCustomAttributes", rows.custom), ("IR_RecordingMedia", rows.recordings),
                        ("IR_TagMap", rows.tag_map)):
        if data:
            con.executemany(f"INSERT INTO {table} VALUES ({_placeholders(len(TABLES[table]))})", data)
    con.executemany(f"INSERT INTO _sandbox_traps VALUES ({_placeholders(6)})", rows.traps)


def _daterange(start: date, end: date) -> Iterator[date]:
    for i in range((end - start).days + 1):
        yield start + timedelta(days=i)


def _init_db(root: Path, seed: int, timezone: str) -> None:
    """Create the schema; a root built with another seed or timezone is wiped first (its days are not ours)."""
    db = root / DB_FILENAME
    if db.exists():
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
                meta = dict(con.execute("SELECT Name, Value FROM _sandbox_site").fetchall())
        except sqlite3.DatabaseError:
            meta = {}
        if meta.get("seed") != str(seed) or meta.get("timezone") != timezone:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            shutil.rmtree(root / "recordings", ignore_errors=True)
            shutil.rmtree(root / "traps", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
        con.execute("PRAGMA journal_mode=DELETE")
        with con:
            for stmt in (*_schema_ddl(), *_META_DDL):
                con.execute(stmt)
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type='view' AND name='CallDetail_viw'").fetchone():
                con.execute(_CALLDETAIL_VIEW)
            con.executemany("INSERT OR REPLACE INTO _sandbox_site VALUES (?, ?)",
                            [("seed", str(seed)), ("timezone", timezone), ("generator", str(GENERATOR_VERSION))])
            con.executemany("INSERT OR REPLACE INTO IR_Tag VALUES (?, ?, ?)", IR_TAGS)


def create_empty_site(root: Path, *, seed: int = DEFAULT_SEED) -> PureConnectSite:
    """A site with the schema, tags and mapping CSVs but no days yet (a fresh PureConnect install)."""
    root = Path(root).resolve()
    _init_db(root, seed, SITE_TIMEZONE)
    site = PureConnectSite(root, seed, SITE_TIMEZONE)
    write_mapping_csvs(site)
    return site


def build_site(root: Path, start: date, end: date, *, seed: int = DEFAULT_SEED, interactions_per_day: int = 300,
               traps: TrapRates | None = None, force: bool = False) -> PureConnectSite:
    """Build (or extend) the sandbox site under ``root`` for the UTC days ``start``..``end`` inclusive.

    Days already built with the same parameters are left untouched (a rebuild is a quick no-op); ``force``
    regenerates them anyway. Safe to call from concurrent processes: each day is built under SQLite's write
    lock and re-checked inside it.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if not 1 <= interactions_per_day < 1_000_000:
        raise ValueError("interactions_per_day must be in 1..999999 (six digits of the 10-digit InteractionID)")
    traps = traps or TrapRates()
    root = Path(root).resolve()
    site = PureConnectSite(root, seed, SITE_TIMEZONE)
    _init_db(root, seed, site.timezone)
    fingerprint = _fingerprint(seed, interactions_per_day, traps, site.timezone)
    pools = _pools(site.directory)
    with contextlib.closing(sqlite3.connect(site.db_path, timeout=120, isolation_level=None)) as con:
        built = dict(con.execute("SELECT Day, Fingerprint FROM _sandbox_days").fetchall())
        for day in _daterange(start, end):
            if not force and built.get(day.isoformat()) == fingerprint:
                continue
            con.execute("BEGIN IMMEDIATE")
            try:
                current = con.execute("SELECT Fingerprint FROM _sandbox_days WHERE Day = ?",
                                      (day.isoformat(),)).fetchone()
                if not force and current and current[0] == fingerprint:
                    con.execute("ROLLBACK")
                    continue
                _delete_day(con, site, day)
                rows = _generate_day(site, day, interactions_per_day, traps, pools)
                _insert_day(con, rows)
                con.execute("INSERT INTO _sandbox_days VALUES (?, ?, ?, ?, ?)",
                            (day.isoformat(), fingerprint, rows.interactions, len(rows.summary),
                             len(rows.recordings)))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            _write_json(site.traps_dir / f"{day.isoformat()}.json", site.manifest(day))
    write_mapping_csvs(site)
    return site


# ---------------------------------------------------------------------------------------------------------
# Mapping CSVs (seed 001 format)
# ---------------------------------------------------------------------------------------------------------


def mapping_rows(directory: Directory) -> dict[str, list[tuple[str, str, str]]]:
    """The rows of agents/queues/wrapups CSVs: directory entries with ``in_mapping_csv``, plus one stale row
    per file whose Cloud id does not exist. Wrap-up names are the names at creation (a CSV is a snapshot)."""
    stale_agent, stale_queue = _stale_legacy_ids(directory)
    seed = directory.seed
    agents = [(u.legacy_agent_id, u.id, u.name) for u in _unique_agents(directory)
              if u.in_mapping_csv and u.legacy_agent_id != stale_agent]
    agents.append((stale_agent, stable_id(seed, "user", "stale"), 'Admin, Old "Sysadmin"'))
    queues = [(q.legacy_workgroup, q.id, q.name) for q in directory.routing_queues
              if q.in_mapping_csv and q.legacy_workgroup != stale_queue]
    queues.append((stale_queue, stable_id(seed, "queue", "stale"), 'Overflow, "Legacy"'))
    wrapups = [(w.legacy_code, w.id, w.names[0][1]) for w in directory.wrapup_codes if w.in_mapping_csv]
    wrapups.append(("PROMO-2023", stable_id(seed, "wrapup", "stale"), 'Promo 2023, "Spring"'))
    return {"agents": agents, "queues": queues, "wrapups": wrapups}


_CSV_HEADERS = {
    "agents": ("legacy_agent_id", "genesys_user_id", "genesys_user_name"),
    "queues": ("legacy_queue_id", "genesys_queue_id", "genesys_queue_name"),
    "wrapups": ("legacy_wrapup_code", "genesys_wrapup_code_id", "genesys_wrapup_code_name"),
}


def write_mapping_csvs(site: PureConnectSite) -> dict[str, Path]:
    """Write ``mappings/{agents,queues,wrapups}.csv`` (UTF-8, RFC 4180 quoting), only when changed."""
    site.mappings_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, rows in mapping_rows(site.directory).items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_CSV_HEADERS[name])
        writer.writerows(rows)
        data = buf.getvalue().encode("utf-8")
        path = site.mappings_dir / f"{name}.csv"
        if not path.exists() or path.read_bytes() != data:
            atomic_write(path, data)
        out[name] = path
    return out
