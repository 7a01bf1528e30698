"""The migration target under faults, with historical import off, and refusing an invalid record."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import polars as pl
import pytest

from genesys_assets.defs.legacy import assets as legacy
from genesys_assets.lib import legacy_cloud as lc
from genesys_assets.lib import legacy_lake as paths
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.legacy.conftest import DAY, Env
from genesys_assets_tests.support import failure_text

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def baseline(env: Env) -> pl.DataFrame:
    assert env.materialize().success
    ledger = paths.read_day(env.resources()["lake"], paths.INGEST_LEDGER, DAY, "ledger.parquet")
    assert ledger is not None
    return ledger


@pytest.fixture
def fresh_target(env: Env, tmp_path) -> Iterator[GenesysEmulator]:
    with GenesysEmulator(tmp_path / "tenant", conversations_per_day=20, historical_import_enabled=True) as gc:
        yield gc


def test_faults_at_the_target_give_the_fault_free_ledger(env: Env, baseline: pl.DataFrame,
                                                         fresh_target: GenesysEmulator) -> None:
    resources = env.resources(
        api_base_url=fresh_target.base_url, client_id=fresh_target.client_id,
        client_secret=fresh_target.client_secret, max_attempts=12,
        extra_headers={"X-Sandbox-Fault": "rate_429=0.3;rate_5xx=0.2;retry_after=0;token_ttl_seconds=1;"
                                          "latency_seconds=0.3"},
    )
    for status in (429, 503, 429, 500):  # certain faults on top of the random ones
        fresh_target.fail_next(status, retry_after="0" if status == 429 else None)
    result = env.materialize(resources=resources, selection=[legacy.cloud_interactions])
    assert result.success
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}["legacy_reconciliation"]
    ledger = paths.read_day(resources["lake"], paths.INGEST_LEDGER, DAY, "ledger.parquet")
    assert ledger is not None and ledger.equals(baseline)
    assert fresh_target.target.count() == baseline.filter(pl.col("outcome") != "rejected").height
    meta = result.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
    assert meta["api_throttled"].value > 0 and meta["api_server_errors"].value > 0
    # Tokens live 1 s: how many expire depends on the run's speed (refresh on expiry is proven in the client tests).
    assert meta["api_token_refreshes"].value >= 1


def test_historical_import_off_stops_with_the_setting_to_enable(env: Env, baseline: pl.DataFrame) -> None:
    day = DAY - timedelta(days=1)  # never posted: no stored answer to replay
    target = env.sandbox.emulator.target
    before = target.count()
    target.set_settings({"allowHistoricalImport": False})
    try:
        # With migration:settings:view the run fails before posting anything ...
        result = env.materialize(day=day, raise_on_error=False)
        assert not result.success
        text = failure_text(result)
        assert "allowHistoricalImport" in text and "PUT /api/v2/interactions/settings" in text
        # ... and without it, the POST's 403 says the same.
        env.sandbox.emulator.add_client("migration-no-settings", "s3cret-s3cret", [
            "migration:interaction:add", "migration:interaction:view", "routing:*"])
        result = env.materialize(day=day, selection=[legacy.cloud_interactions], raise_on_error=False,
                                 resources=env.resources(client_id="migration-no-settings",
                                                         client_secret="s3cret-s3cret"))
        assert not result.success and "allowHistoricalImport" in failure_text(result)
        assert target.count() == before  # nothing stored, nothing lost: the day stays to be re-run
    finally:
        target.set_settings({"allowHistoricalImport": True})
    result = env.materialize(day=day, selection=[legacy.cloud_interactions])
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    ledger = paths.read_day(env.resources()["lake"], paths.INGEST_LEDGER, day, "ledger.parquet")
    assert ledger is not None and target.count() == before + ledger.height


def test_an_invalid_record_is_quarantined_and_the_rest_is_stored(env: Env, baseline: pl.DataFrame) -> None:
    lake = env.resources()["lake"]
    canonical = paths.read_day(lake, paths.INTERACTIONS, DAY, "interactions.parquet")
    manifest = paths.read_day(lake, paths.RECORDINGS_MANIFEST, DAY, "manifest.parquet")
    assert canonical is not None
    payloads = lc.build_payloads(lc.resolve_mappings(canonical, legacy.load_id_maps(lake), "default_queue"),
                                 manifest)
    ids, docs = payloads["id"].to_list()[:100], payloads["payload"].to_list()[:100]
    bad = 37
    original = env.sandbox.emulator.target.get(ids[bad])
    docs[bad] = docs[bad].replace('"endTime":"', '"endTime":"not-a-time', 1)
    before = env.sandbox.emulator.target.count()
    client = env.resources()["genesys"].get_client()
    outcome = lc.post_records(ids, docs, legacy.historical_import_poster(client))
    assert set(outcome.rejected) == {ids[bad]}
    assert "400" in outcome.rejected[ids[bad]]
    assert {o for i, (o, _) in outcome.outcomes.items() if i != ids[bad]} <= {"unchanged", "created", "updated"}
    assert len(outcome.outcomes) == 100
    assert env.sandbox.emulator.target.count() == before
    assert env.sandbox.emulator.target.get(ids[bad]) == original  # nothing from the refused batch was stored


def test_unmapped_queue_rule_skip_quarantines_and_still_reconciles(env: Env) -> None:
    day = DAY + timedelta(days=1)
    result = env.materialize(day=day, run_config={"ops": {"cloud_interactions": {
        "config": {"unmapped_queue_rule": "skip"}}}})
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    quarantine = paths.read_day(env.resources()["lake"], paths.quarantine_base("cloud"), day, "quarantine.parquet")
    assert quarantine is not None and quarantine.height > 0
    assert set(quarantine["reason"]) == {lc.UNMAPPED_QUEUE}
    unmapped = {f"{s}:{k}:{q}" for k, s, q in env.site.trap_rows(day)["unmapped_queue"]}
    assert unmapped <= set(quarantine["x_legacy_id"])
