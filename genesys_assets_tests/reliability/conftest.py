"""One sandbox for the reliability suite, and the fault-free reference run of every domain it compares against."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from genesys_assets.sandbox.genesys_emulator import FaultConfig
from genesys_assets.sandbox.services import Sandbox, SandboxEndpoints
from genesys_assets_tests.reliability.platform import (
    CONVERSATIONS_PER_DAY,
    DAILY_ASSETS,
    DAY,
    INTERACTIONS_PER_DAY,
    OTHER_DAY,
    UNPARTITIONED,
    Reference,
    run_domain,
    snapshot,
)
from genesys_assets_tests.support import failure_text


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Emulator, PureConnect site, S3 and webhook receiver on loopback, stopped when the session ends."""
    root = tmp_path_factory.mktemp("reliability-sandbox")
    with Sandbox(root, start=OTHER_DAY, end=DAY + timedelta(days=1), conversations_per_day=CONVERSATIONS_PER_DAY,
                 interactions_per_day=INTERACTIONS_PER_DAY, faults=FaultConfig(job_delay_seconds=0.2)) as sb:
        yield sb


@pytest.fixture(scope="session")
def endpoints(sandbox: Sandbox) -> SandboxEndpoints:
    assert sandbox.endpoints is not None
    return sandbox.endpoints


@pytest.fixture(scope="session")
def reference(endpoints: SandboxEndpoints, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """Every domain, fault-free, for OTHER_DAY and DAY: the good partitions every fault run starts from."""
    home = tmp_path_factory.mktemp("reference")
    for domain in DAILY_ASSETS:
        if UNPARTITIONED[domain]:
            result = run_domain(endpoints, home, domain, unpartitioned=True)
            assert result.success, failure_text(result)
        for day in (OTHER_DAY, DAY):
            result = run_domain(endpoints, home, domain, day)
            assert result.success, failure_text(result)
            assert all(e.passed for e in result.get_asset_check_evaluations()), domain
    return Reference(home, snapshot(home, DAY), snapshot(home, OTHER_DAY))


@pytest.fixture
def clean_sandbox(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The shared sandbox with every fault off before and after the test."""
    _reset(sandbox)
    yield sandbox
    _reset(sandbox)


def _reset(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    emulator.set_faults(rate_429=0.0, retry_after="1", rate_5xx=0.0, rate_drop=0.0, token_ttl_seconds=86400,
                        job_outcome="FULFILLED", job_delay_seconds=0.2, availability_lag_seconds=6 * 3600,
                        schema_drift=False, latency_seconds=0.0)
    emulator.clear_faults()
    sandbox.s3.set_head_lag(0)
