"""Writing the DuckDB warehouse: every write is one transaction, so readers see old rows or new ones.

The warehouse is the local query surface; the lake is the system of record. Every writer runs in the
``warehouse`` pool (limit 1), because DuckDB allows one writing process per file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INCOMING = "_incoming"


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


@contextmanager
def transaction_with(connection: duckdb.DuckDBPyConnection, data: pa.Table) -> Iterator[str]:
    """A transaction in which ``data`` is readable as the view named by the yielded string; rolled back on error."""
    connection.register(INCOMING, data)
    try:
        connection.execute("BEGIN TRANSACTION")
        yield INCOMING
        connection.execute("COMMIT")
    except Exception:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.unregister(INCOMING)


def replace_table(connection: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    """Replace ``table`` with ``data`` whole."""
    with transaction_with(connection, data) as incoming:
        connection.execute(f"CREATE OR REPLACE TABLE {quote_identifier(table)} AS SELECT * FROM {incoming}")


def replace_rows_together(connection: duckdb.DuckDBPyConnection, column: str, values: Any,
                          tables: dict[str, pa.Table]) -> None:
    """``replace_rows`` for several tables in ONE transaction: a reader sees all of them old or all new."""
    key = quote_identifier(column)
    values = list(values) if isinstance(values, (list, tuple, set)) else [values]
    names = {table: f"{INCOMING}_{n}" for n, table in enumerate(tables)}
    for table, data in tables.items():
        connection.register(names[table], data)
    try:
        connection.execute("BEGIN TRANSACTION")
        try:
            for table, incoming in names.items():
                name = quote_identifier(table)
                connection.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM {incoming} LIMIT 0")
                connection.execute(f"DELETE FROM {name} WHERE {key} IN (SELECT UNNEST(?))", [values])
                connection.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {incoming}")
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
    finally:
        for incoming in names.values():
            connection.unregister(incoming)


def replace_rows(connection: duckdb.DuckDBPyConnection, table: str, column: str, values: Any, data: pa.Table) -> None:
    """Replace the rows whose ``column`` is in ``values`` (one value or a list) by ``data``.

    The table is created from ``data``'s schema on first use; a day's rows or a set of event ids are replaced
    this way, so re-running a partition never doubles it.
    """
    replace_rows_together(connection, column, values, {table: data})
