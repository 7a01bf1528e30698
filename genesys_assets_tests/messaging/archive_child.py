"""Run one webchat_archive materialization in its own process (the kill -9 resume test kills it mid-day).

Usage: python -m genesys_assets_tests.messaging.archive_child '<json: base_url, client_id, client_secret, home,
day, config, fault>'
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from genesys_assets.defs.messaging.assets import webchat_archive
from genesys_assets.resources.data_lake_webhook import DataLakeWebhookResource
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.sandbox.services import SANDBOX_PII_HASH_KEY


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    home = Path(args["home"])
    resources = {
        "genesys": GenesysCloudResource(
            api_base_url=args["base_url"], client_id=args["client_id"], client_secret=args["client_secret"],
            requests_per_second=0, job_poll_initial_seconds=0.05, job_poll_max_seconds=0.2,
            extra_headers={"X-Sandbox-Fault": args["fault"]} if args.get("fault") else {},
        ),
        "lake": Lake(base_uri=str(home / "lake")),
        "warehouse": DuckDBResource(database=str(home / "warehouse.duckdb")),
        "data_lake_webhook": DataLakeWebhookResource(url=None),
        "pii": PiiHashingResource(hash_key=SANDBOX_PII_HASH_KEY),
    }
    run_config = {"ops": {"webchat_archive": {"config": args["config"]}}}
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([webchat_archive], partition_key=date.fromisoformat(args["day"]).isoformat(),
                                resources=resources, run_config=run_config, instance=instance, raise_on_error=False)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
