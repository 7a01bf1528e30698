"""The wrap-up code dimension keeps every id joinable to the label valid at conversation time."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from genesys_assets.lib.wrapup_dimension import labels_as_of, merge_snapshot, snapshot_frame

T1 = datetime(2025, 1, 1, tzinfo=UTC)
T2 = datetime(2025, 6, 1, tzinfo=UTC)
T3 = datetime(2025, 9, 1, tzinfo=UTC)


def code(id_: str, name: str, modified: str = "2024-01-01T00:00:00.000Z") -> dict:
    return {"id": id_, "name": name, "division": {"id": "home"}, "dateCreated": "2024-01-01T00:00:00.000Z",
            "dateModified": modified, "selfUri": f"/api/v2/routing/wrapupcodes/{id_}"}


def label(dimension: pl.DataFrame, id_: str, at: datetime) -> str:
    labels = labels_as_of(dimension, at)
    return labels.filter(pl.col("wrap_up_code_id") == id_)["wrap_up_code_label"].item()


@pytest.fixture
def history() -> pl.DataFrame:
    first = merge_snapshot(None, snapshot_frame([code("sale", "Sale"), code("spam", "Spam"), code("info", "Info")]), T1)
    renamed = merge_snapshot(
        first, snapshot_frame([code("sale", "Sale - Closed", "2025-03-15T00:00:00.000Z"), code("info", "Info")]), T2
    )
    return merge_snapshot(renamed, snapshot_frame([code("sale", "Sale - Closed", "2025-03-15T00:00:00.000Z"),
                                                   code("info", "Info"), code("spam", "Spam")]), T3)


def test_a_rename_closes_the_old_row_at_the_modification_date(history: pl.DataFrame) -> None:
    sale = history.filter(pl.col("wrap_up_code_id") == "sale").sort("valid_from")
    assert sale["name"].to_list() == ["Sale", "Sale - Closed"]
    assert sale["valid_to"][0] == datetime(2025, 3, 15, tzinfo=UTC)
    assert sale["is_current"].to_list() == [False, True]
    assert label(history, "sale", datetime(2025, 2, 1, tzinfo=UTC)) == "Sale"
    assert label(history, "sale", datetime(2025, 4, 1, tzinfo=UTC)) == "Sale - Closed"


def test_a_deleted_code_keeps_its_label_and_can_come_back(history: pl.DataFrame) -> None:
    spam = history.filter(pl.col("wrap_up_code_id") == "spam").sort("valid_from")
    assert spam["is_deleted"].to_list() == [False, True, False]
    assert spam["valid_from"][1] == T2 and spam["valid_to"][1] == T3
    assert label(history, "spam", datetime(2025, 7, 1, tzinfo=UTC)) == "Spam"  # deleted, still labelled


def test_merging_the_same_snapshot_again_changes_nothing(history: pl.DataFrame) -> None:
    again = merge_snapshot(history, snapshot_frame([code("sale", "Sale - Closed", "2025-03-15T00:00:00.000Z"),
                                                    code("info", "Info"), code("spam", "Spam")]), T3)
    assert again.equals(history)


def test_exactly_one_current_row_and_no_overlaps(history: pl.DataFrame) -> None:
    assert history.group_by("wrap_up_code_id").agg(pl.col("is_current").sum())["is_current"].to_list() == [1, 1, 1]
    ordered = history.sort("wrap_up_code_id", "valid_from").with_columns(
        next_from=pl.col("valid_from").shift(-1).over("wrap_up_code_id")
    )
    closed = ordered.filter(pl.col("valid_to").is_not_null())
    assert (closed["valid_to"] == closed["next_from"]).all()


def test_labels_before_the_first_snapshot_use_the_earliest_name(history: pl.DataFrame) -> None:
    assert label(history, "sale", datetime(2023, 1, 1, tzinfo=UTC)) == "Sale"


def test_a_snapshot_listing_an_id_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="ids twice"):
        snapshot_frame([code("a", "A"), code("a", "A again")])


def test_codes_deleted_since_still_validate_a_legacy_mapping(history: pl.DataFrame) -> None:
    from genesys_assets.lib.legacy_id_maps import directory_frame, validate_map, with_deleted_codes

    today = directory_frame([{"id": "sale", "name": "Sale - Closed"}, {"id": "info", "name": "Info"}])
    gone = merge_snapshot(history, snapshot_frame([code("sale", "Sale - Closed", "2025-03-15T00:00:00.000Z"),
                                                   code("info", "Info")]), datetime(2026, 1, 1, tzinfo=UTC))
    directory = with_deleted_codes(today, gone)
    assert directory.filter(pl.col("id") == "spam").row(0, named=True) == {"id": "spam", "name": "Spam",
                                                                            "state": "deleted"}
    assert with_deleted_codes(today, None).equals(today)
    csv = pl.DataFrame({"legacy_id": ["SPAM", "GHOST"],
                        "cloud_id": ["spam", "00000000-0000-0000-0000-000000000000"], "csv_name": ["Spam", "x"]})
    # Only the id shape and existence matter here; the sandbox's UUID ids are checked in the legacy tests.
    problems = validate_map("wrapups", csv.with_columns(pl.col("cloud_id").replace(
        "spam", "5f0c1c2e-6a47-4a38-9d0b-3f3f7f0c0a11")), directory.with_columns(pl.col("id").replace(
            "spam", "5f0c1c2e-6a47-4a38-9d0b-3f3f7f0c0a11")))
    assert dict(zip(problems["legacy_id"], problems["status"], strict=True)) == {"GHOST": "invalid", "SPAM": "valid"}
