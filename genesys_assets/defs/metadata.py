"""Metadata every asset reports the same way."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa


def row_count(rows: int) -> dict[str, int]:
    """``rows`` for our own summaries, and ``dagster/row_count``, which the UI charts across partitions."""
    return {"rows": rows, "dagster/row_count": rows}


def column_schema(schema: pa.Schema) -> dict[str, dg.TableSchema]:
    """``dagster/column_schema`` of an asset's table, from its Arrow schema: the UI's Columns tab."""
    return {"dagster/column_schema": dg.TableSchema(columns=[
        dg.TableColumn(f.name, str(f.type), constraints=dg.TableColumnConstraints(nullable=f.nullable))
        for f in schema])}


def api_calls(stats: dict[str, float]) -> dict[str, float]:
    """A run's Genesys Cloud client counters (``stats_since``) as ``api_<counter>``: the same names on every asset
    (requests, retries, throttled, server_errors, connection_errors, token_refreshes, seconds_waiting, ...)."""
    return {f"api_{name}": value for name, value in stats.items()}
