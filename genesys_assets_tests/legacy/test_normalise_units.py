"""The vectorised steps of normalise_day against the per-row definitions they replace."""

from __future__ import annotations

import uuid

import polars as pl
import pytest

from genesys_assets.lib import legacy_interactions as li

TRICKY_NAMES = [
    "1:000000000120240305:0", "", " ", "é", "naïve:Ünïcode:1", "日本語:2:3", "emoji 𝄞✓🙂", "a'b\"c\\d",
    "tab\there\nnewline", "\x00nul", "ß" * 70, "x" * 1000, "2:0000000001 :0", "\u200b zero width", "Ω≈ç√∫",
]


def test_cloud_ids_are_byte_identical_to_uuid5() -> None:
    names = TRICKY_NAMES + [f"{s}:{k:010d}20240305:{q}" for s in (1, 2) for k in range(2_000) for q in (0, 1)]
    got = li.cloud_ids(pl.Series("x_legacy_id", names))
    assert got.name == "x_legacy_id" and got.dtype == pl.String
    assert got.to_list() == [str(uuid.uuid5(li.INTERACTION_NAMESPACE, n)) for n in names]
    assert {uuid.UUID(v).version for v in got} == {5}


def test_cloud_ids_take_a_namespace() -> None:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:test:segments")
    got = li.cloud_ids(pl.Series("x", TRICKY_NAMES), namespace)
    assert got.to_list() == [str(uuid.uuid5(namespace, n)) for n in TRICKY_NAMES]


def test_cloud_ids_keep_nulls_and_empty_input() -> None:
    got = li.cloud_ids(pl.Series("x", ["a", None, "a"], dtype=pl.String))
    assert got.to_list() == [str(uuid.uuid5(li.INTERACTION_NAMESPACE, "a")), None,
                             str(uuid.uuid5(li.INTERACTION_NAMESPACE, "a"))]
    assert li.cloud_ids(pl.Series("x", [], dtype=pl.String)).to_list() == []


def _flags_per_row_reference(frame: pl.DataFrame) -> pl.DataFrame:
    """The formulation _flag_duplicates replaced: every row hashed, windows over every key."""
    content = pl.struct([c for c in frame.columns if c != "source_row"]).hash(seed=0)
    return frame.with_columns(content.alias("_content")).with_columns(
        (pl.col("_content").n_unique().over(list(li._KEY)) > 1).alias("conflicting_duplicate"),
        (pl.col("source_row").rank("ordinal").over(list(li._KEY)) > 1).alias("_extra_copy"),
    ).drop("_content")


def test_duplicate_flags_match_the_per_row_definition() -> None:
    frame = pl.DataFrame({
        "InteractionIDKey": ["A", "A", "B", "B", "B", "C", None, None, "D", "D"],
        "SiteID": [1, 1, 1, 1, 1, 1, 1, 1, 1, 2],
        "SeqNo": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        "RemoteName": ["x", "x", "y", "y", "z", "w", None, None, "v", "v"],
    }).with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))
    got = li._flag_duplicates(frame)
    assert got.equals(_flags_per_row_reference(frame))
    flags = dict(zip(got["source_row"], zip(got["conflicting_duplicate"], got["_extra_copy"], strict=True),
                     strict=True))
    assert flags[0] == (False, False) and flags[1] == (False, True)  # identical copy: skipped once
    assert {flags[i][0] for i in (2, 3, 4)} == {True}  # copies that differ: none trusted
    assert flags[5] == (False, False) and flags[8] == flags[9] == (False, False)


@pytest.mark.parametrize("rows", [0, 1])
def test_duplicate_flags_on_frames_without_repeats(rows: int) -> None:
    frame = pl.DataFrame({"source_row": list(range(rows)), "InteractionIDKey": ["A"] * rows,
                          "SiteID": [1] * rows, "SeqNo": [0] * rows}, schema_overrides={"source_row": pl.Int64})
    got = li._flag_duplicates(frame)
    assert got.height == rows and not got["conflicting_duplicate"].any() and not got["_extra_copy"].any()


def test_wrapup_segments_keep_the_first_stored_copy_and_segment_order() -> None:
    wrapups = pl.DataFrame({
        "InteractionIDKey": ["K", "K", "K", "K", "L"], "SiteID": [1, 1, 1, 1, 1], "SeqNo": [0, 0, 0, 0, 0],
        "WrapupSegmentID": [2, 1, 2, 3, 1], "WrapupCode": ["second", "first", "second-dup", "third", "only"],
        "WrapupCategory": ["b", "a", "b2", "c", "d"],
    })
    got = {r["InteractionIDKey"]: r for r in li._wrapups(wrapups).iter_rows(named=True)}
    assert got["K"]["wrapup_codes"] == ["first", "second", "third"]
    assert (got["K"]["wrapup_code"], got["K"]["wrapup_category"]) == ("third", "c")
    assert got["L"]["wrapup_codes"] == ["only"]
    reference = wrapups.unique(subset=[*li._KEY, "WrapupSegmentID"], keep="first", maintain_order=True).sort(
        [*li._KEY, "WrapupSegmentID"]).group_by(list(li._KEY), maintain_order=True).agg(
        pl.col("WrapupCode").alias("wrapup_codes"))
    assert dict(reference.select("InteractionIDKey", "wrapup_codes").iter_rows()) == {
        k: r["wrapup_codes"] for k, r in got.items()}


def test_assign_day_numbers_rows_by_the_given_source_order() -> None:
    from datetime import date, datetime

    frame = pl.DataFrame({
        "StartDateTimeUTC": [datetime(2024, 3, 5, h) for h in (3, 1, 2)], "StartDTOffset": [0, 0, 0],
        **{c: [None, None, None] for c in ("InitiatedDateTimeUTC", "ConnectedDateTimeUTC", "TerminatedDateTimeUTC")},
    }, schema_overrides={c: pl.Datetime("us") for c in ("InitiatedDateTimeUTC", "ConnectedDateTimeUTC",
                                                       "TerminatedDateTimeUTC")})
    day = date(2024, 3, 5)
    assert li.assign_day(frame, day, None)["source_row"].to_list() == [0, 1, 2]
    got = li.assign_day(frame, day, None, pl.Series([2, 0, 1]))
    assert got["source_row"].to_list() == [2, 0, 1] and got["source_row"].dtype == pl.Int64
    with pytest.raises(ValueError, match="2 positions for 3 interactions"):
        li.assign_day(frame, day, None, pl.Series([0, 1]))


def _dated_frame() -> pl.DataFrame:
    from datetime import datetime

    dt = pl.Datetime("us")
    return pl.DataFrame({
        "InteractionIDKey": ["A", "B", "C"], "SiteID": [1, 1, 1], "SeqNo": [0, 0, 0],
        "StartDateTimeUTC": [datetime(2024, 3, 5, h) for h in (3, 1, 2)], "StartDTOffset": [0, None, 0],
        "InitiatedDateTimeUTC": [datetime(2024, 3, 5, 0, 59, 58, 123000), None, datetime(2024, 3, 5, 1)],
        "ConnectedDateTimeUTC": [None, datetime(2024, 3, 5, 1, 0, 5), datetime(2024, 3, 5, 2, 1)],
        "TerminatedDateTimeUTC": [datetime(2024, 3, 5, 4), None, datetime(2024, 3, 5, 2, 30)],
        "customer_hash": ["h1", None, "h3"], "remote_name_hash": [None, "n2", "n3"],
    }, schema_overrides={c: dt for c in li._DATETIME_COLUMNS})


def test_assign_day_derives_raw_text_and_utc_only_for_the_asked_columns() -> None:
    from datetime import date

    day, frame = date(2024, 3, 5), _dated_frame()
    every = li.assign_day(frame, day, "America/New_York")
    some = li.assign_day(frame, day, "America/New_York", derived=("TerminatedDateTimeUTC",))
    for c in li._DATETIME_COLUMNS:
        assert {f"raw_{c}", f"{c}_utc"} <= set(every.columns)
        assert ({f"raw_{c}", f"{c}_utc"} <= set(some.columns)) == (c in ("StartDateTimeUTC", "TerminatedDateTimeUTC"))
    assert some.equals(every.select(some.columns))  # the same rows and values, fewer columns


def test_raw_json_renders_datetimes_not_derived_up_front_as_the_derived_text() -> None:
    """normalise_day derives raw text for two datetime columns; the rejects' raw JSON must not change."""
    from datetime import date

    day, frame = date(2024, 3, 5), _dated_frame()
    columns = [c for c in frame.columns if not c.endswith("_hash")] + ["RemoteID", "RemoteName"]
    every = li.assign_day(frame, day, None)
    some = li.assign_day(frame, day, None, derived=li._DERIVED_FOR_ALL)
    raw = every.select(li._raw_json(every, columns).alias("raw"))["raw"]
    assert some.select(li._raw_json(some, columns).alias("raw"))["raw"].equals(raw)
    assert '"InitiatedDateTimeUTC":"2024-03-05 00:59:58.123"' in raw[0] and '"RemoteID_hmac":"h1"' in raw[0]


def test_accepted_rows_come_sorted_by_start_then_id_with_only_the_columns_used() -> None:
    import uuid
    from datetime import UTC, datetime

    legacy_ids = [f"1:K{i}:0" for i in range(6)]
    starts = [datetime(2024, 3, 5, h, tzinfo=UTC) for h in (2, 1, 2, 1, 0, 2)]
    frame = pl.DataFrame({
        "x_legacy_id": legacy_ids, "start_time": starts, "InteractionIDKey": [f"K{i}" for i in range(6)],
        "reason": [None, None, None, "missing_key", None, None], "RemoteName": ["n"] * 6, "_scratch": [1] * 6,
    })
    got = li._accepted_in_output_order(frame)
    ids = {n: str(uuid.uuid5(li.INTERACTION_NAMESPACE, n)) for n in legacy_ids}
    expected = sorted(((s, ids[n]) for n, s, r in zip(legacy_ids, starts, frame["reason"], strict=True) if r is None))
    assert list(zip(got["start_time"], got["id"], strict=True)) == expected
    assert dict(zip(got["id"], got["x_legacy_id"], strict=True)) == {ids[n]: n for n in got["x_legacy_id"]}
    assert set(got.columns) == {"x_legacy_id", "start_time", "InteractionIDKey", "id"}
    assert li._accepted_in_output_order(frame.filter(pl.col("reason").is_not_null())).height == 0
