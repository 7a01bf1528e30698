"""PureConnectResource against the sandbox site: one query per table, the right rows (local-time-only rows
included), fixed schemas, dialect literals for SQL Server and Oracle, and no password anywhere."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import traceback
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from genesys_assets.resources import pureconnect as pc
from genesys_assets.resources.pureconnect import PureConnectError, PureConnectResource, timestamp_literal
from genesys_assets.sandbox.pureconnect_site import (
    TABLES,
    PureConnectSite,
    build_site,
    create_empty_site,
)

DAY = date(2025, 11, 2)  # New York falls back: local 01:00-02:00 happens twice
N = 120
SECRET = "Sup3r$ecret-pw"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> PureConnectSite:
    return build_site(tmp_path_factory.mktemp("pcr") / "site", DAY - timedelta(days=1), DAY + timedelta(days=1),
                      interactions_per_day=N)


@pytest.fixture
def resource(site: PureConnectSite) -> PureConnectResource:
    return PureConnectResource(uri=site.uri)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = pc.read_arrow

    def counting(uri: str, sql: str):
        calls.append(sql)
        return real(uri, sql)

    monkeypatch.setattr(pc, "read_arrow", counting)
    return calls


def _sql(site: PureConnectSite, query: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(site.connect()) as con:
        return con.execute(query, params).fetchall()


def test_read_day_runs_one_read_per_table(resource: PureConnectResource, counted: list) -> None:
    day = resource.read_day(DAY)
    span, *reads = counted  # SQLite: the window's rowid span first (covering index), then one read per table
    assert span.startswith("SELECT ifnull(min(rowid), 0)") and "FROM InteractionSummary WHERE" in span
    assert len(reads) == 5
    first = [q if isinstance(q, str) else q[0] for q in reads]
    assert sorted(q.split(" FROM ", 1)[1].split()[0] for q in first) == sorted([
        "InteractionSummary", "InteractionWrapup", "InteractionCustomAttributes", "IR_RecordingMedia", "IR_TagMap",
    ])
    (summary,) = [q for q in reads if isinstance(q, list)]  # the rowid ranges, read on parallel connections
    assert len(summary) == resource.sqlite_partitions == 2
    assert sorted(sql for q in reads for sql in ([q] if isinstance(q, str) else q)) == sorted(day.queries)


def _copy_site(site: PureConnectSite, tmp_path: Path) -> str:
    db = tmp_path / "I3_IC.sqlite"
    with contextlib.closing(site.connect()) as src, contextlib.closing(sqlite3.connect(db)) as dst:
        src.backup(dst)
    return f"sqlite://{db}"


@pytest.mark.parametrize("partitions", [1, 2, 3])
@pytest.mark.parametrize("sparse", [False, True])
def test_rowid_reads_number_the_plain_querys_rows_in_its_order(site: PureConnectSite, tmp_path: Path,
                                                               partitions: int, sparse: bool) -> None:
    """Whatever the access path and the number of rowid ranges, the same rows in the order the plain
    (index-driven) query returns them, so source_row and every output byte stay put."""
    uri = _copy_site(site, tmp_path)
    if sparse:  # the window's rows spread over ten times the rowids: read by rowid IN the covering index
        with contextlib.closing(sqlite3.connect(uri.split("://", 1)[1])) as con, con:
            con.execute("UPDATE InteractionSummary SET rowid = rowid * 10 + 1000000")
            con.execute("UPDATE InteractionSummary SET rowid = rowid - 1000000")
    resource = PureConnectResource(uri=uri, sqlite_partitions=partitions)
    statements = resource.sqlite_day_queries(DAY)["InteractionSummary"]
    assert len(statements) == partitions
    assert all(("s.rowid IN (SELECT rowid" in q) == sparse for q in statements)
    plain = pc._normalise(pc.read_arrow(uri, resource.day_queries(DAY)["InteractionSummary"]),
                          pc.INTERACTION_SUMMARY_SCHEMA, flag_unparseable=True)
    day = resource.read_day(DAY)
    assert day.source_row is not None and day.source_row.sort().to_list() == list(range(day.interactions.height))
    in_plan_order = day.interactions.with_columns(day.source_row.alias("_pos")).sort("_pos").drop("_pos")
    assert in_plan_order.height > N and in_plan_order.equals(plain)


def test_rowid_reads_are_sqlite_only_and_an_empty_window_reads_the_plain_query(
        resource: PureConnectResource) -> None:
    with pytest.raises(PureConnectError, match="only for the sqlite backend"):
        PureConnectResource(uri="mssql://u:p@db:1433/I3_IC").sqlite_day_queries(DAY)
    assert resource.sqlite_day_queries(date(2020, 1, 1))["InteractionSummary"] == [
        resource.day_queries(date(2020, 1, 1))["InteractionSummary"]]


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("sparse", [False, True])
def test_sqlite_keyed_tables_read_the_exists_querys_rows_in_its_order(site: PureConnectSite, tmp_path: Path,
                                                                      partitions: int, sparse: bool) -> None:
    """The rowid-driven join returns exactly the EXISTS queries' wrap-ups and custom attributes, in the same
    order, once each, even when InteractionSummary holds the interaction twice (a join would repeat them)."""
    uri = _copy_site(site, tmp_path)
    with contextlib.closing(sqlite3.connect(uri.split("://", 1)[1])) as con, con:
        doubled = con.execute(
            "SELECT s.rowid FROM InteractionSummary s JOIN InteractionWrapup w ON w.InteractionIDKey = "
            "s.InteractionIDKey AND w.SiteID = s.SiteID AND w.SeqNo = s.SeqNo JOIN InteractionCustomAttributes a ON "
            "a.InteractionIDKey = s.InteractionIDKey AND a.SiteID = s.SiteID AND a.SeqNo = s.SeqNo WHERE "
            "s.StartDTOffset IS NOT NULL AND substr(s.StartDateTimeUTC, 1, 10) = ? LIMIT 1", (str(DAY),)).fetchone()[0]
        con.execute("INSERT INTO InteractionSummary SELECT * FROM InteractionSummary WHERE rowid = ?", (doubled,))
        if sparse:
            con.execute("UPDATE InteractionSummary SET rowid = rowid * 10 + 1000000")
            con.execute("UPDATE InteractionSummary SET rowid = rowid - 1000000")
    resource = PureConnectResource(uri=uri, sqlite_partitions=partitions)
    fast, plain = resource.sqlite_day_queries(DAY), resource.day_queries(DAY)
    assert len(fast["InteractionSummary"]) == partitions
    assert {t: fast[t] for t in ("IR_RecordingMedia", "IR_Tag")} == {t: plain[t] for t in ("IR_RecordingMedia",
                                                                                          "IR_Tag")}
    for table in ("InteractionWrapup", "InteractionCustomAttributes"):
        sql = fast[table]
        assert isinstance(sql, str) and "EXISTS" not in sql and ".rowid IN (SELECT k.rowid" in sql
        assert ("s.rowid IN (SELECT rowid" in sql) == sparse
        got, want = pc.read_arrow(uri, sql), pc.read_arrow(uri, plain[table])
        assert got.num_rows > N // 2 and got.equals(want)


def test_sqlite_day_queries_are_sqlite_only_and_an_empty_window_reads_the_plain_queries(
        resource: PureConnectResource, counted: list) -> None:
    with pytest.raises(PureConnectError, match="only for the sqlite backend"):
        PureConnectResource(uri="oracle://u:p@db:1521/ORCL").sqlite_day_queries(DAY)
    assert counted == []  # refused before any query
    empty = date(2020, 1, 1)
    plain = resource.day_queries(empty)
    assert resource.sqlite_day_queries(empty) == {**plain, "InteractionSummary": [plain["InteractionSummary"]]}
    day = resource.read_day(empty)
    assert day.interactions.height == day.wrapups.height == day.custom_attributes.height == 0


def test_read_day_on_sqlite_runs_the_rowid_driven_queries(resource: PureConnectResource, counted: list) -> None:
    resource.read_day(DAY)
    expected = resource.sqlite_day_queries(DAY)
    for table in ("InteractionWrapup", "InteractionCustomAttributes"):
        assert expected[table] in counted


def test_normalise_gives_one_chunk_per_column_of_a_multi_batch_read() -> None:
    """Partitioned reads arrive as several record batches, the columns a table lacks are added as one literal
    chunk: every column comes out as one chunk (Polars 2.1 panicked on differently chunked columns)."""
    import pyarrow as pa

    batches = pa.concat_tables([pa.table({"InteractionIDKey": ["A", "B"], "SiteID": [1, 2]}),
                                pa.table({"InteractionIDKey": ["C"], "SiteID": [3]})])
    assert batches.column("SiteID").num_chunks == 2
    frame = pc._normalise(batches, {"InteractionIDKey": pl.String, "SiteID": pl.Int32, "SeqNo": pl.Int16})
    assert frame.rows() == [("A", 1, None), ("B", 2, None), ("C", 3, None)]
    assert {c: frame[c].n_chunks() for c in frame.columns} == dict.fromkeys(frame.columns, 1)


def test_read_day_in_rowid_ranges_gives_one_chunk_per_column(site: PureConnectSite) -> None:
    resource = PureConnectResource(uri=site.uri, sqlite_partitions=3)
    raw = pc.read_arrow(site.uri, resource.sqlite_day_queries(DAY)["InteractionSummary"])
    assert raw.column("InteractionIDKey").num_chunks > 1  # the case this is about
    day = resource.read_day(DAY)
    for frame in (day.interactions, day.wrapups, day.custom_attributes, day.recordings, day.tags):
        assert all(frame[c].n_chunks() == 1 for c in frame.columns)


def test_missing_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PureConnectError, match="does not exist"):
        PureConnectResource(uri=f"sqlite://{tmp_path}/nowhere.sqlite").read_day(DAY)


def test_read_day_returns_the_days_rows(site: PureConnectSite, resource: PureConnectResource) -> None:
    got = resource.read_day(DAY)
    lo, hi = f"{DAY} 00:00:00.000", f"{DAY + timedelta(days=1)} 00:00:00.000"
    wlo, whi = f"{DAY - timedelta(days=1)} 10:00:00.000", f"{DAY + timedelta(days=1)} 14:00:00.000"
    expected = _sql(site, "SELECT InteractionIDKey, SiteID, SeqNo FROM InteractionSummary WHERE "
                          "(StartDateTimeUTC >= ? AND StartDateTimeUTC < ?) OR (StartDTOffset IS NULL AND "
                          "StartDateTimeUTC >= ? AND StartDateTimeUTC < ?)", (lo, hi, wlo, whi))
    keys = got.interactions.select("InteractionIDKey", "SiteID", "SeqNo").rows()
    assert sorted(keys) == sorted(expected)  # true duplicates come back twice, as stored
    assert got.interactions.height > N

    # Every local-time-only row of the day is found, flagged, and the caller sees neighbours' ones too.
    local_rows = set(got.interactions.filter(got.local_time_rows).select("InteractionIDKey", "SiteID", "SeqNo")
                     .iter_rows())
    assert set(site.trap_rows(DAY)["local_time_only"]) <= local_rows
    assert local_rows - set(site.trap_rows(DAY)["local_time_only"])  # neighbouring days' local rows
    utc = got.interactions.filter(~got.local_time_rows)["StartDateTimeUTC"]
    assert utc.min() >= datetime(2025, 11, 2) and utc.max() < datetime(2025, 11, 3)

    # Dependent tables: exactly the rows that belong to the returned interactions.
    wanted = {(k, s, q) for k, s, q in keys}
    all_wraps = _sql(site, "SELECT InteractionIDKey, SiteID, SeqNo, WrapupSegmentID FROM InteractionWrapup")
    assert sorted(got.wrapups.select("InteractionIDKey", "SiteID", "SeqNo", "WrapupSegmentID").rows()) == sorted(
        w for w in all_wraps if w[:3] in wanted)
    all_ica = _sql(site, "SELECT InteractionIDKey, SiteID, SeqNo FROM InteractionCustomAttributes")
    assert sorted(got.custom_attributes.select("InteractionIDKey", "SiteID", "SeqNo").rows()) == sorted(
        a for a in all_ica if a in wanted)
    recordings = set(got.recordings["RecordingId"])
    kinds = site.recording_kinds(DAY)
    assert {rid for ids in kinds.values() for rid in ids} <= recordings
    keys_only = {k for k, _, _ in keys}
    assert set(got.recordings["QueueObjectIdKey"]) <= keys_only

    # Tags arrive per recording; Retention-7Y among them.
    retained = _sql(site, "SELECT tm.RecordingId FROM IR_TagMap tm JOIN IR_Tag t ON t.TagId = tm.TagId "
                          "WHERE t.Name = 'Retention-7Y'")
    tagged = set(got.recordings.filter(pl.col("Tags").list.contains("Retention-7Y"))["RecordingId"])
    assert tagged == {r for (r,) in retained} & recordings and tagged


def test_schemas_are_fixed_and_typed(site: PureConnectSite, resource: PureConnectResource) -> None:
    full = resource.read_day(DAY)
    empty = resource.read_day(date(2020, 1, 1))
    for name in ("interactions", "wrapups", "custom_attributes", "recordings", "tags"):
        assert getattr(empty, name).height == 0
        assert getattr(empty, name).schema == getattr(full, name).schema, name
    schema = full.interactions.schema
    assert schema["StartDateTimeUTC"] == pl.Datetime("us") and schema["StartDTOffset"] == pl.Int32
    assert schema["Direction"] == pl.Int16 and schema["LineDuration"] == pl.Int64
    assert full.recordings.schema["Tags"] == pl.List(pl.String)
    # The resource selects every column the site declares.
    for table, frame in (("InteractionSummary", full.interactions),
                         ("InteractionCustomAttributes", full.custom_attributes)):
        assert frame.columns == [c for c, _ in TABLES[table]]
    assert full.wrapups.columns == list(pc.WRAPUP_READ_COLUMNS)  # what the migration uses of the 20
    assert full.recordings.columns[:-1] == [c for c, _ in TABLES["IR_RecordingMedia"]]


def test_watermark_ping_and_day_counts(site: PureConnectSite, resource: PureConnectResource,
                                       tmp_path: Path) -> None:
    (latest,) = _sql(site, "SELECT MAX(StartDateTimeUTC) FROM InteractionSummary WHERE StartDTOffset IS NOT NULL")[0]
    wm = resource.watermark()
    assert wm is not None and wm.tzinfo == UTC
    assert wm.replace(tzinfo=None) == datetime.strptime(latest, "%Y-%m-%d %H:%M:%S.%f")
    assert resource.ping()["backend"] == "sqlite"
    counts = resource.day_counts(DAY - timedelta(days=1), DAY + timedelta(days=1))
    assert counts["day"].to_list() == [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)]
    assert counts.filter(pl.col("day") == DAY)["rows"][0] == resource.read_day(DAY).interactions.filter(
        pl.col("StartDTOffset").is_not_null()).height
    empty = create_empty_site(tmp_path / "empty")
    assert PureConnectResource(uri=empty.uri).watermark() is None
    assert PureConnectResource(uri=empty.uri).read_day(DAY).interactions.height == 0


def test_env_var_config(site: PureConnectSite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PURECONNECT_URI", site.uri)
    with dg.build_resources({"pureconnect": PureConnectResource(uri=dg.EnvVar("PURECONNECT_URI"))}) as res:
        assert res.pureconnect.ping()["backend"] == "sqlite"


# ---------------------------------------------------------------------------------------------------------
# Dialects
# ---------------------------------------------------------------------------------------------------------


def test_timestamp_literals_per_dialect() -> None:
    ts = datetime(2025, 11, 2, 0, 0, 0, 123456)
    assert timestamp_literal(ts, "sqlite") == "'2025-11-02 00:00:00.123'"
    assert timestamp_literal(ts, "mssql") == "CONVERT(datetime2, '2025-11-02T00:00:00.123', 126)"
    assert timestamp_literal(ts, "oracle") == "TIMESTAMP '2025-11-02 00:00:00.123'"
    aware = datetime(2025, 11, 2, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert timestamp_literal(aware, "oracle") == "TIMESTAMP '2025-11-02 00:00:00.000'"
    with pytest.raises(TypeError):
        timestamp_literal("2025-11-02'; DROP TABLE InteractionSummary; --", "mssql")  # type: ignore[arg-type]


@pytest.mark.parametrize(("uri", "lo", "wide"), [
    ("mssql://u:p@db:1433/I3_IC", "CONVERT(datetime2, '2025-11-02T00:00:00.000', 126)",
     "CONVERT(datetime2, '2025-11-01T10:00:00.000', 126)"),
    ("oracle://u:p@db:1521/ORCL", "TIMESTAMP '2025-11-02 00:00:00.000'", "TIMESTAMP '2025-11-01 10:00:00.000'"),
])
def test_day_queries_render_the_backend_dialect(uri: str, lo: str, wide: str) -> None:
    queries = PureConnectResource(uri=uri).day_queries(DAY)
    assert len(queries) == 5
    for sql in queries.values():
        assert lo in sql and wide in sql
        assert "'2025-11-02 00:00:00.000'" not in sql.replace("TIMESTAMP '2025-11-02 00:00:00.000'", "")
        assert " AS isum" not in sql and " AS s " not in sql  # Oracle refuses AS before a table alias


@pytest.mark.parametrize("uri", ["mssql://u:p@127.0.0.1:9/I3_IC", "oracle://u:p@127.0.0.1:9/ORCL"])
def test_connectorx_parses_the_backend_queries(uri: str) -> None:
    """connectorx's own SQL parser (MsSql/Oracle dialect) accepts every query; no server needed."""
    import connectorx as cx

    for sql in PureConnectResource(uri=uri).day_queries(DAY).values():
        parts = cx.partition_sql(uri, sql, partition_on="SiteID", partition_num=2, partition_range=(0, 4))
        assert len(parts) == 2 and "2025-11-01" in parts[0]


def test_oracle_ping_and_watermark_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake(uri: str, sql: str):
        seen.append(sql)
        return pl.DataFrame({"WATERMARK": [datetime(2025, 1, 1, 12)]}).to_arrow()

    monkeypatch.setattr(pc, "read_arrow", fake)
    r = PureConnectResource(uri="oracle://u:p@db:1521/ORCL")
    assert r.watermark() == datetime(2025, 1, 1, 12, tzinfo=UTC)  # upper-case Oracle names normalised
    r.ping()
    assert "MAX(StartDateTimeUTC)" in seen[0] and seen[1].endswith("FROM DUAL")


def test_unsupported_scheme_is_refused_without_the_password() -> None:
    with pytest.raises(PureConnectError) as err:
        PureConnectResource(uri=f"postgres://u:{SECRET}@db/I3_IC").ping()
    assert SECRET not in str(err.value) and "postgres" in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------------------


def test_password_absent_from_repr_str_logs_and_errors(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    uri = f"mssql://migrator:{SECRET}@sql01.example.com:1433/I3_IC?encrypt=true"
    r = PureConnectResource(uri=uri)
    for text in (repr(r), str(r), r.redacted_uri, f"{r}", f"{r!r}"):
        assert SECRET not in text
    assert "migrator:***@sql01.example.com" in repr(r)

    def boom(uri: str, sql: str):
        raise RuntimeError(f"Login failed connecting to {uri} (password {SECRET})")

    monkeypatch.setattr(pc, "read_arrow", boom)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PureConnectError) as err:
        r.read_day(DAY)
    logging.getLogger("test").exception("read failed", exc_info=err.value)
    rendered = "".join(traceback.format_exception(err.value))
    for text in (str(err.value), repr(err.value), rendered, caplog.text):
        assert SECRET not in text
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert "sql01.example.com" in str(err.value) and "Login failed" in str(err.value)


def test_percent_encoded_and_query_passwords_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    r = PureConnectResource(uri="oracle://u:p%40ss%3Aword@db:1521/ORCL")
    assert "p%40ss" not in repr(r) and "p@ss:word" not in repr(r)

    def boom(uri: str, sql: str):
        raise RuntimeError("auth failed for password p@ss:word")

    monkeypatch.setattr(pc, "read_arrow", boom)
    with pytest.raises(PureConnectError) as err:
        r.ping()
    assert "p@ss:word" not in str(err.value)
    assert "pwd=***" in pc.redact_uri("mssql://db:1433/I3_IC?user=sa&pwd=hunter2")


@pytest.mark.parametrize("password", ["pa/ss", "pa?ss", "pa#ss", "p@ss/word", "12/34"])
def test_a_password_with_unencoded_reserved_characters_is_redacted_and_the_fix_named(password: str) -> None:
    uri = f"mssql://migrator:{password}@sql01.example.com:1433/I3_IC"
    r = PureConnectResource(uri=uri)
    with pytest.raises(PureConnectError) as err:
        r.ping()
    for text in (repr(r), r.redacted_uri):
        assert password not in text and "migrator:***@sql01.example.com:1433/I3_IC" in text
    assert password not in str(err.value) and "not percent-encoded: encode it" in str(err.value)


def test_a_port_followed_by_an_at_sign_in_the_query_is_not_taken_for_a_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pc, "read_arrow", lambda uri, sql: pl.DataFrame({"ok": [1]}).to_arrow())
    r = PureConnectResource(uri="mssql://sql01.example.com:1433/I3_IC?user=migrator@corp&pwd=hunter2")
    assert r.ping()["backend"] == "mssql"
    assert r.redacted_uri == "mssql://sql01.example.com:1433/I3_IC?user=migrator@corp&pwd=***"
    later = PureConnectResource(uri="mssql://migrator:hunter2@sql01.example.com/I3_IC?x=a@b")  # "@" after the path
    assert later.redacted_uri == "mssql://migrator:***@sql01.example.com/I3_IC?x=a@b"


@pytest.mark.parametrize(("uri", "message"), [
    ("mssql:/sa:hunter2@sql01/I3_IC", "has no '://'"),
    ("mssql://sa:hunter2@sql01.example.com", "names no host or no database"),  # connectorx would panic
    ("oracle://sa:hunter2@:1521/ORCL", "names no host or no database"),
])
def test_a_uri_without_its_parts_is_refused_before_connecting(uri: str, message: str) -> None:
    with pytest.raises(PureConnectError, match=message) as err:
        PureConnectResource(uri=uri).ping()
    assert "hunter2" not in str(err.value) and "mssql://user:password@host:1433/I3_IC" in str(err.value)
    assert "hunter2" not in repr(PureConnectResource(uri=uri))


def test_a_driver_panic_becomes_a_redacted_error_and_an_interrupt_stays_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class PanicException(BaseException):  # pyo3's, as connectorx raises it: not an Exception
        pass

    def panic(uri: str, sql: str):
        raise PanicException(f"called unwrap on {uri}")

    r = PureConnectResource(uri=f"mssql://migrator:{SECRET}@sql01.example.com:1433/I3_IC")
    monkeypatch.setattr(pc, "read_arrow", panic)
    with pytest.raises(PureConnectError, match="PanicException: called unwrap on mssql://migrator:\\*\\*\\*@") as err:
        r.ping()
    assert SECRET not in str(err.value) and err.value.__context__ is None

    def interrupted(uri: str, sql: str):
        raise KeyboardInterrupt

    monkeypatch.setattr(pc, "read_arrow", interrupted)
    with pytest.raises(KeyboardInterrupt):
        r.ping()


def test_ping_says_when_the_database_is_not_the_reporting_one(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with contextlib.closing(sqlite3.connect(other)) as con, con:
        con.execute("CREATE TABLE Unrelated (x INTEGER)")
    with pytest.raises(PureConnectError, match="InteractionSummary cannot be read there: PURECONNECT_URI must name"):
        PureConnectResource(uri=f"sqlite://{other}").ping()


def test_a_connection_timeout_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def timeout(uri: str, sql: str):
        raise RuntimeError("Timed out in bb8")  # connectorx's words when no connection came within its pool timeout

    monkeypatch.setattr(pc, "read_arrow", timeout)
    with pytest.raises(PureConnectError, match=r"Timed out in bb8 \(no connection within .* check the host, the port"):
        PureConnectResource(uri="mssql://sa:pw@sql01.example.com:1433/I3_IC").ping()


@pytest.mark.parametrize("password", ["S3cretPw", "p@ss/word", "pa:ss"])
def test_a_user_name_with_an_at_sign_still_has_its_password_redacted(password: str) -> None:
    # Azure SQL logins are user@server; the "@" in the user name once hid the password from redaction.
    uri = f"mssql://admin@myserver:{password}@127.0.0.1:1/I3_IC"
    r = PureConnectResource(uri=uri)
    with pytest.raises(PureConnectError) as err:
        r.ping()
    for text in (repr(r), r.redacted_uri, str(err.value)):
        assert password not in text
    assert r.redacted_uri == "mssql://admin@myserver:***@127.0.0.1:1/I3_IC"
    assert pc.redact_uri("mssql://admin@myserver@127.0.0.1:1/I3_IC") == "mssql://admin@myserver@127.0.0.1:1/I3_IC"
    # No password: an "@" in the query and a "/" after it must not make the port and database one.
    assert pc.redact_uri("mssql://user@host:1433/I3_IC?x=a@b/c") == "mssql://user@host:1433/I3_IC?x=a@b/c"
