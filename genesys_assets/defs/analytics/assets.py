"""Genesys Cloud analytics: the wrap-up code dimension (conversation details and facts build on it)."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from genesys_assets.lib.warehouse import replace_table
from genesys_assets.lib.wrapup_dimension import merge_snapshot, snapshot_frame
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.settings import WAREHOUSE_POOL

WRAPUP_CODES_PATH = "analytics/dimensions/wrapup_codes/wrapup_codes.parquet"


@dg.asset(
    group_name="analytics",
    kinds={"genesys", "parquet", "duckdb"},
    pool=WAREHOUSE_POOL,
    code_version="1",
    description=(
        "Wrap-up codes from /api/v2/routing/wrapupcodes kept as a slowly changing dimension (valid_from, "
        "valid_to, is_deleted): renamed and deleted codes still join by their immutable id to the label "
        "valid at conversation time. Lake: " + WRAPUP_CODES_PATH + "; warehouse table wrapup_codes."
    ),
    automation_condition=dg.AutomationCondition.on_cron("0 2 * * *"),
)
def wrapup_codes(
    context: dg.AssetExecutionContext, genesys: GenesysCloudResource, lake: Lake, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    client = genesys.get_client()
    snapshot_at = datetime.now(UTC)
    snapshot = snapshot_frame(list(client.iter_entities("/api/v2/routing/wrapupcodes", page_size=100)))
    previous = pl.from_arrow(lake.read_parquet(WRAPUP_CODES_PATH)) if lake.exists(WRAPUP_CODES_PATH) else None
    dimension = merge_snapshot(previous, snapshot, snapshot_at)

    new_rows = dimension.filter(pl.col("snapshot_at") == snapshot_at)
    renamed = new_rows.filter(~pl.col("is_deleted")).join(
        dimension.filter(~pl.col("is_current")), on="wrap_up_code_id", how="semi"
    ).height
    deleted = new_rows.filter(pl.col("is_deleted")).height
    size = lake.write_parquet(WRAPUP_CODES_PATH, dimension.to_arrow(), compression="zstd")
    with warehouse.get_connection() as connection:
        replace_table(connection, "wrapup_codes", dimension.to_arrow())
    context.log.info(
        "Wrap-up codes: %d in the directory, %d renamed and %d deleted since the last snapshot",
        snapshot.height, renamed, deleted,
    )
    return dg.MaterializeResult(
        metadata={
            "rows": dimension.height,
            "files": 1,
            "codes_in_directory": snapshot.height,
            "renamed_since_last_snapshot": renamed,
            "deleted_since_last_snapshot": deleted,
            "bytes": size,
            "path": dg.MetadataValue.path(lake.uri(WRAPUP_CODES_PATH)),
            **{f"api_{k}": v for k, v in client.stats().items()},
        }
    )
