"""Metadata every asset reports the same way."""

from __future__ import annotations


def row_count(rows: int) -> dict[str, int]:
    """``rows`` for our own summaries, and ``dagster/row_count``, which the UI charts across partitions."""
    return {"rows": rows, "dagster/row_count": rows}
