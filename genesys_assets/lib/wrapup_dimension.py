"""The wrap-up code dimension, kept as a slowly changing dimension (type 2).

Genesys Cloud renames wrap-up codes and deletes them, but conversations keep the immutable code id. Each
directory snapshot is merged into the dimension: a changed name closes the current row and opens a new one,
a code missing from the snapshot gets a closing ``is_deleted`` row that keeps its last name, so every id a
conversation ever carried still joins to the label that was valid at conversation time.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from genesys_assets.lib.timestamps import parse_api_timestamps

LAKE_PATH = "analytics/dimensions/wrapup_codes/wrapup_codes.parquet"
TRACKED = ("name", "division_id")
SCHEMA = {
    "wrap_up_code_id": pl.String,
    "name": pl.String,
    "division_id": pl.String,
    "valid_from": pl.Datetime("us", "UTC"),
    "valid_to": pl.Datetime("us", "UTC"),
    "is_current": pl.Boolean,
    "is_deleted": pl.Boolean,
    "snapshot_at": pl.Datetime("us", "UTC"),
}


def snapshot_frame(entities: list[dict]) -> pl.DataFrame:
    """``/api/v2/routing/wrapupcodes`` entities → one row per code (id, name, division, dates)."""
    rows = [
        {
            "wrap_up_code_id": e["id"],
            "name": e.get("name"),
            "division_id": (e.get("division") or {}).get("id"),
            "date_created": e.get("dateCreated"),
            "date_modified": e.get("dateModified"),
        }
        for e in entities
    ]
    frame = pl.DataFrame(
        rows,
        schema={"wrap_up_code_id": pl.String, "name": pl.String, "division_id": pl.String,
                "date_created": pl.String, "date_modified": pl.String},
    )
    duplicated = frame.filter(pl.col("wrap_up_code_id").is_duplicated())
    if duplicated.height:
        ids = duplicated["wrap_up_code_id"].unique().to_list()
        raise ValueError(f"the wrap-up code snapshot lists ids twice: {ids}")
    return frame.with_columns(
        parse_api_timestamps(pl.col("date_created")).alias("date_created"),
        parse_api_timestamps(pl.col("date_modified")).alias("date_modified"),
    )


def merge_snapshot(dimension: pl.DataFrame | None, snapshot: pl.DataFrame, snapshot_at: datetime) -> pl.DataFrame:
    """The dimension after one snapshot; idempotent (merging the same snapshot twice changes nothing).

    A new or changed code's row starts at its ``dateModified`` when the API gives one (so the label is right
    for conversations between the rename and this snapshot), else at the snapshot time; the first row of a
    code starts at ``dateCreated``.
    """
    at = pl.lit(snapshot_at).cast(pl.Datetime("us", "UTC"))
    dimension = dimension if dimension is not None else pl.DataFrame(schema=SCHEMA)
    current = dimension.filter(pl.col("is_current"))
    history = dimension.filter(~pl.col("is_current"))

    joined = current.join(
        snapshot.with_columns(in_snapshot=pl.lit(True)), on="wrap_up_code_id", how="full", suffix="_new", coalesce=True
    ).with_columns(pl.col("in_snapshot").fill_null(False))
    changed = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_new")) for c in TRACKED) | pl.col("is_deleted")
    modified_since = (pl.col("date_modified") > pl.col("valid_from")) & (pl.col("date_modified") <= at)
    joined = joined.with_columns(
        status=pl.when(pl.col("valid_from").is_null()).then(pl.lit("new"))
        .when(~pl.col("in_snapshot") & pl.col("is_deleted")).then(pl.lit("unchanged"))
        .when(~pl.col("in_snapshot")).then(pl.lit("deleted"))
        .when(changed).then(pl.lit("changed"))
        .otherwise(pl.lit("unchanged")),
    ).with_columns(
        starts=pl.when(pl.col("status") == "new").then(pl.coalesce(pl.col("date_created"), at))
        .when((pl.col("status") == "changed") & modified_since).then(pl.col("date_modified"))
        .otherwise(at)
    )
    deleted = pl.col("status") == "deleted"

    kept = joined.filter(pl.col("status") == "unchanged").select(*SCHEMA)
    closed = joined.filter(pl.col("status").is_in(["changed", "deleted"])).select(
        "wrap_up_code_id", "name", "division_id", "valid_from",
        pl.col("starts").alias("valid_to"), pl.lit(False).alias("is_current"), "is_deleted", "snapshot_at",
    )
    opened = joined.filter(pl.col("status") != "unchanged").select(
        "wrap_up_code_id",
        pl.when(deleted).then(pl.col("name")).otherwise(pl.col("name_new")).alias("name"),
        pl.when(deleted).then(pl.col("division_id")).otherwise(pl.col("division_id_new")).alias("division_id"),
        pl.col("starts").alias("valid_from"),
        pl.lit(None, dtype=SCHEMA["valid_to"]).alias("valid_to"),
        pl.lit(True).alias("is_current"),
        deleted.alias("is_deleted"),
        at.alias("snapshot_at"),
    )
    return (
        pl.concat([history, kept, closed.cast(SCHEMA), opened.cast(SCHEMA)])
        .sort("wrap_up_code_id", "valid_from", "is_current")
    )


def labels_as_of(dimension: pl.DataFrame, at: datetime) -> pl.DataFrame:
    """The label each code id carried at ``at`` (deleted codes keep their last name)."""
    at_lit = pl.lit(at).cast(pl.Datetime("us", "UTC"))
    valid = (pl.col("valid_from") <= at_lit) & (pl.col("valid_to").is_null() | (at_lit < pl.col("valid_to")))
    first_rows = dimension.sort("valid_from").group_by("wrap_up_code_id", maintain_order=True).first()
    matched = dimension.filter(valid).select("wrap_up_code_id", "name")
    # Before a code's first known row (history older than the first snapshot) its earliest name is the best label.
    earlier = first_rows.join(matched, on="wrap_up_code_id", how="anti").select("wrap_up_code_id", "name")
    return pl.concat([matched, earlier]).rename({"name": "wrap_up_code_label"})


def known_codes(dimension: pl.DataFrame) -> pl.DataFrame:
    """Every code id the dimension has ever seen with its latest name, deleted ones marked ``deleted``.

    Mapping a legacy wrap-up to a code deleted since is still right for history: validating against today's
    directory alone would send those interactions to "unmapped".
    """
    return (
        dimension.filter(pl.col("is_current"))
        .select(
            pl.col("wrap_up_code_id").alias("id"),
            "name",
            pl.when(pl.col("is_deleted")).then(pl.lit("deleted")).otherwise(pl.lit("active")).alias("state"),
        )
        .sort("id")
    )
