"""A small sandbox (PureConnect site, Genesys tenant with the migration target, S3) for the migration tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource

from genesys_assets.defs.legacy import assets as legacy
from genesys_assets.defs.legacy import checks
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.resources.lake import Lake
from genesys_assets.resources.pii import PiiHashingResource
from genesys_assets.resources.pureconnect import PureConnectResource
from genesys_assets.sandbox.pureconnect_site import PureConnectSite
from genesys_assets.sandbox.s3 import SANDBOX_ACCESS_KEY, SANDBOX_REGION, SANDBOX_SECRET_KEY
from genesys_assets.sandbox.services import SANDBOX_PII_HASH_KEY, Sandbox

DAY = date(2026, 11, 3)
PER_DAY = 150

ASSETS = [legacy.legacy_interactions, legacy.id_maps, legacy.staged_recordings, legacy.cloud_interactions,
          legacy.legacy_audit_tables]
CHECKS = [checks.legacy_interactions_integrity, checks.legacy_reconciliation, checks.legacy_recordings_playback,
          checks.legacy_mapping_coverage]


@dataclass
class Env:
    sandbox: Sandbox
    site: PureConnectSite
    home: Path

    def resources(self, lake_dir: Path | None = None, **genesys: object) -> dict[str, object]:
        ep = self.sandbox.endpoints
        assert ep is not None
        settings = {"api_base_url": ep.genesys_api_base_url, "client_id": ep.client_id,
                    "client_secret": ep.client_secret, "requests_per_second": 0, "backoff_base_seconds": 0.05,
                    "backoff_max_seconds": 0.2, **genesys}
        return {
            "genesys": GenesysCloudResource(**settings),
            "pureconnect": PureConnectResource(uri=ep.pureconnect_uri),
            "lake": Lake(base_uri=str(lake_dir or self.home / "lake")),
            "warehouse": DuckDBResource(database=str((lake_dir or self.home) / "warehouse.duckdb")),
            "recordings_s3": S3Resource(endpoint_url=ep.s3_endpoint_url, region_name=SANDBOX_REGION,
                                        aws_access_key_id=SANDBOX_ACCESS_KEY,
                                        aws_secret_access_key=SANDBOX_SECRET_KEY),
            "pii": PiiHashingResource(hash_key=SANDBOX_PII_HASH_KEY),
        }

    def materialize(self, day: date = DAY, resources: dict | None = None, selection: list | None = None,
                    raise_on_error: bool = True, run_config: dict | None = None,
                    instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
        """id_maps (unpartitioned) once, then the day's partitioned assets with their checks."""
        resources = resources or self.resources()
        if selection is None:
            dg.materialize([legacy.id_maps], resources=resources)
            selection = [a for a in ASSETS if a is not legacy.id_maps]
        keys = [a.key for a in selection]
        return dg.materialize([*ASSETS, *CHECKS], resources=resources, partition_key=day.isoformat(),
                              selection=dg.AssetSelection.assets(*keys) | dg.AssetSelection.checks_for_assets(*keys),
                              raise_on_error=raise_on_error, run_config=run_config or {}, instance=instance)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("legacy")
    with Sandbox(home, start=DAY - timedelta(days=1), end=DAY + timedelta(days=1), conversations_per_day=20,
                 interactions_per_day=PER_DAY) as sandbox:
        assert sandbox.endpoints is not None
        for key, value in sandbox.endpoints.to_env().items():
            monkeypatch_module.setenv(key, value)
        yield Env(sandbox, PureConnectSite.open(Path(sandbox.endpoints.pureconnect_uri.removeprefix("sqlite://"))
                                                .parent), home)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp
