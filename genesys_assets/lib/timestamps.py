"""Timestamps as the Genesys Cloud API writes them (ISO-8601, UTC, ``Z``, milliseconds)."""

from __future__ import annotations

import polars as pl

UTC_US = pl.Datetime("us", "UTC")


def parse_api_timestamps(column: pl.Expr) -> pl.Expr:
    """ISO-8601 strings → ``timestamp[us, UTC]``; anything unparseable becomes null, never a guess."""
    return column.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
