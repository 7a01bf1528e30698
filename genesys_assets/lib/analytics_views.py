"""DuckDB views over the analytics lake tables (Hive partitioning) and the label-as-of join.

The warehouse holds no copy of the data: each view reads the lake's Parquet through a ``year=*/month=*/day=*``
glob, so a day landed later is visible without touching the view (``day=*`` never matches the dot-named staging
folders of a write in progress). DuckDB refuses a view over a glob that matches nothing, so a table with no
files yet gets a typed empty view; the next run swaps in the real one.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from genesys_assets.lib.analytics_plan import TABLE_ROOT, table_glob
from genesys_assets.lib.schemas import TABLE_SCHEMAS
from genesys_assets.resources.lake import Lake

SCHEMA = "analytics"
TABLES = ("conversations", "participants", "sessions", "segments", "wrapup_facts")
_HIVE = "hive_partitioning = true, hive_types = {'year': 'INTEGER', 'month': 'INTEGER', 'day': 'INTEGER'}, " \
        "union_by_name = true"

# Each fact joined to the dimension version valid at conversation_start; before a code's first version, its
# earliest name (history older than the first snapshot). A deleted code keeps its versions, so it still joins.
LABELLED_SQL = f"""
CREATE OR REPLACE VIEW {SCHEMA}.wrapup_facts_labelled AS
WITH first_version AS (
    SELECT wrap_up_code_id, arg_min(name, valid_from) AS first_name, min(valid_from) AS first_valid_from,
           bool_or(is_current AND is_deleted) AS deleted_now
    FROM {SCHEMA}.wrapup_codes GROUP BY wrap_up_code_id
)
SELECT f.*,
       coalesce(d.name, CASE WHEN f.conversation_start < fv.first_valid_from THEN fv.first_name END)
           AS label_as_of_conversation,
       coalesce(fv.deleted_now, false) AS code_deleted_since
FROM {SCHEMA}.wrapup_facts AS f
LEFT JOIN {SCHEMA}.wrapup_codes AS d
       ON d.wrap_up_code_id = f.wrap_up_code_id
      AND d.valid_from <= f.conversation_start
      AND (d.valid_to IS NULL OR f.conversation_start < d.valid_to)
LEFT JOIN first_version AS fv ON fv.wrap_up_code_id = f.wrap_up_code_id
"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _has_files(lake: Lake, table: str) -> bool:
    # Lake.list already leaves out temporary and staging entries (dot names inside the lake, not above it).
    return any(p.endswith(".parquet") for p in lake.list(f"{TABLE_ROOT}/{table}"))


def _configure_s3(connection: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    connection.execute("INSTALL httpfs; LOAD httpfs;")
    parts = ["TYPE s3", "PROVIDER credential_chain", f"REGION {_literal(lake.s3_region)}"]
    if lake.s3_endpoint_url:
        endpoint = lake.s3_endpoint_url
        parts += [f"ENDPOINT {_literal(endpoint.split('://', 1)[-1])}", "URL_STYLE 'path'",
                  f"USE_SSL {str(endpoint.startswith('https://')).lower()}"]
    connection.execute(f"CREATE OR REPLACE SECRET genesys_lake ({', '.join(parts)})")


def create_views(connection: duckdb.DuckDBPyConnection, lake: Lake, dimension_path: str) -> dict[str, bool]:
    """(Re)create every analytics view; returns ``{view: whether lake files back it}``."""
    if lake.is_s3:
        _configure_s3(connection, lake)
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    out: dict[str, bool] = {}
    for table in TABLES:
        name = f"{SCHEMA}.{table}"
        if _has_files(lake, table):
            source = f"read_parquet({_literal(lake.uri(table_glob(table)))}, {_HIVE})"
            connection.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {source}")
            out[name] = True
        else:
            empty = TABLE_SCHEMAS[table].empty_table()
            empty = empty.append_column("year", pa.array([], pa.int32())).append_column(
                "month", pa.array([], pa.int32())).append_column("day", pa.array([], pa.int32()))
            connection.register("_empty_table", empty)
            try:
                connection.execute(f"CREATE OR REPLACE TABLE {SCHEMA}._empty_{table} AS SELECT * FROM _empty_table")
            finally:
                connection.unregister("_empty_table")
            connection.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {SCHEMA}._empty_{table}")
            out[name] = False
    dim = f"{SCHEMA}.wrapup_codes"
    if lake.exists(dimension_path):
        connection.execute(f"CREATE OR REPLACE VIEW {dim} AS SELECT * FROM "
                           f"read_parquet({_literal(lake.uri(dimension_path))})")
        out[dim] = True
    else:
        connection.execute(
            f"CREATE OR REPLACE VIEW {dim} AS SELECT NULL::VARCHAR AS wrap_up_code_id, NULL::VARCHAR AS name, "
            "NULL::VARCHAR AS division_id, NULL::TIMESTAMPTZ AS valid_from, NULL::TIMESTAMPTZ AS valid_to, "
            "NULL::BOOLEAN AS is_current, NULL::BOOLEAN AS is_deleted, NULL::TIMESTAMPTZ AS snapshot_at WHERE false")
        out[dim] = False
    connection.execute(LABELLED_SQL)
    out[f"{SCHEMA}.wrapup_facts_labelled"] = out[f"{SCHEMA}.wrapup_facts"] and out[dim]
    return out
