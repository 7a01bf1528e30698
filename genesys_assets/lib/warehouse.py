"""Writing the DuckDB warehouse: small tables replaced whole, in one transaction.

The warehouse is the local query surface; the lake is the system of record. Every writer runs in the
``warehouse`` pool (limit 1), because DuckDB allows one writing process per file.
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def replace_table(connection: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    """Replace ``table`` with ``data`` atomically: readers see the old rows or the new ones."""
    connection.register("_incoming", data)
    try:
        connection.execute("BEGIN TRANSACTION")
        connection.execute(f"CREATE OR REPLACE TABLE {quote_identifier(table)} AS SELECT * FROM _incoming")
        connection.execute("COMMIT")
    except Exception:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.unregister("_incoming")
