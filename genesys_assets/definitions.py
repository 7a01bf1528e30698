"""The one place that loads ``defs/`` and picks the resources for the mode.

Sandbox mode (the default without live credentials) fills the same environment variables a live
deployment sets from the running sandbox's ``endpoints.json``; live mode reads them as they are. Secrets
are always ``EnvVar``s, so the UI shows their names, never their values.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource

from genesys_assets import settings
from genesys_assets.resources.data_lake_webhook import DataLakeWebhookResource
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.resources.pureconnect import PureConnectResource


def _optional(name: str) -> str | None:
    return os.environ.get(name) or None


def build_resources() -> dict[str, dg.ConfigurableResource]:
    sandbox_tuning: dict[str, float] = {}  # live: the resource's defaults
    if settings.mode() == settings.SANDBOX:
        from genesys_assets.sandbox.genesys_emulator import CLIENT_TUNING
        from genesys_assets.sandbox.services import apply_sandbox_env

        sandbox_tuning = CLIENT_TUNING

        if not apply_sandbox_env():
            dg.get_dagster_logger().warning(
                "Sandbox mode but no sandbox is running (no %s): start one with `genesys-assets sandbox`, "
                "or use `genesys-assets dev` / `genesys-assets demo`, which start it for you.",
                settings.endpoints_file(),
            )
    home = settings.genesys_home()
    s3_endpoint = _optional("GENESYS_S3_ENDPOINT_URL")
    return {
        "genesys": GenesysCloudResource(
            region=_optional("GENESYS_REGION"),
            api_base_url=_optional("GENESYS_API_BASE_URL"),
            login_base_url=_optional("GENESYS_LOGIN_BASE_URL"),
            client_id=dg.EnvVar("GENESYS_CLIENT_ID"),
            client_secret=dg.EnvVar("GENESYS_CLIENT_SECRET"),
            **sandbox_tuning,
        ),
        "pureconnect": PureConnectResource(uri=dg.EnvVar("PURECONNECT_URI")),
        "lake": Lake(
            base_uri=os.environ.get("GENESYS_LAKE_URI") or str(home / "lake"),
            s3_endpoint_url=s3_endpoint,
        ),
        "warehouse": DuckDBResource(database=str(home / "warehouse.duckdb")),
        "recordings_s3": S3Resource(endpoint_url=s3_endpoint, region_name=_optional("AWS_REGION")),
        "pii": PiiHashingResource(hash_key=dg.EnvVar("GENESYS_PII_HASH_KEY")),
        # Optional: without DATA_LAKE_WEBHOOK_URL the archive is simply not announced.
        "data_lake_webhook": DataLakeWebhookResource(
            url=dg.EnvVar("DATA_LAKE_WEBHOOK_URL") if _optional("DATA_LAKE_WEBHOOK_URL") else None
        ),
    }


def build_definitions() -> dg.Definitions:
    """Every asset, check and sensor under ``defs/`` with this mode's resources."""
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources=build_resources()),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
