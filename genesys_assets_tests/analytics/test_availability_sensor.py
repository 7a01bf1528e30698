"""analytics_availability_sensor follows the watermark: a day is requested once it is complete, and only once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from genesys_assets.defs.analytics.sensors import START_DATE_ENV, analytics_availability_sensor
from genesys_assets.defs.availability import WATERMARK_TAG
from genesys_assets.lib.analytics_plan import day_bounds, iso
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.analytics.conftest import materialize, past_day, resources

DAY = past_day(2)


def _watermark_at(emulator: GenesysEmulator, when: datetime) -> None:
    emulator.set_faults(availability_lag_seconds=(datetime.now(UTC) - when).total_seconds())


def _tick(emulator: GenesysEmulator, home: Path, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(cursor=cursor,
                                 resources={"genesys": resources(emulator, home)["genesys"]}) as context:
        return analytics_availability_sensor(context)


@pytest.fixture
def start_date() -> Iterator[None]:
    previous = os.environ.get(START_DATE_ENV)
    os.environ[START_DATE_ENV] = (DAY - timedelta(days=2)).isoformat()
    yield
    if previous is None:
        os.environ.pop(START_DATE_ENV, None)
    else:
        os.environ[START_DATE_ENV] = previous


def test_a_day_is_refused_then_requested_once_when_complete(emulator: GenesysEmulator, home: Path,
                                                           start_date: None) -> None:
    try:
        _, end = day_bounds(DAY)
        cursor = (DAY - timedelta(days=1)).isoformat()
        _watermark_at(emulator, end - timedelta(hours=2))
        assert isinstance(_tick(emulator, home, cursor), dg.SkipReason)
        refused = materialize(resources(emulator, home), DAY, "conversation_details", raise_on_error=False)
        assert not refused.success

        _watermark_at(emulator, end + timedelta(hours=1))
        first = _tick(emulator, home, cursor)
        assert isinstance(first, dg.SensorResult)
        assert [(r.run_key, r.partition_key) for r in first.run_requests] == [(DAY.isoformat(), DAY.isoformat())]
        assert first.cursor == DAY.isoformat()
        again = _tick(emulator, home, first.cursor)
        assert isinstance(again, dg.SkipReason)  # quiet: nothing changed since

        ran = materialize(resources(emulator, home), DAY, "conversation_details")
        assert ran.success
    finally:
        emulator.set_faults(availability_lag_seconds=6 * 3600)


AVAILABILITY = "/api/v2/analytics/conversations/details/jobs/availability"


def _availability_requests(emulator: GenesysEmulator) -> int:
    return sum(e["path"] == AVAILABILITY for e in emulator.request_log())


def test_a_run_the_sensor_requested_carries_its_watermark_and_does_not_ask_again(
        emulator: GenesysEmulator, home: Path, start_date: None) -> None:
    _, end = day_bounds(DAY)
    _watermark_at(emulator, end + timedelta(hours=1))
    try:
        tick = _tick(emulator, home, (DAY - timedelta(days=1)).isoformat())
        assert isinstance(tick, dg.SensorResult)
        [request] = tick.run_requests
        seen = datetime.fromisoformat(request.tags[WATERMARK_TAG])
        assert end < seen <= datetime.now(UTC)
        emulator.clear_request_log()
        ran = materialize(resources(emulator, home), DAY, "conversation_details", tags=request.tags)
        assert ran.success and _availability_requests(emulator) == 0
        assert ran.asset_materializations_for_node("conversation_details")[0].metadata[
            "data_availability_date"].value == iso(seen)
    finally:
        emulator.set_faults(availability_lag_seconds=6 * 3600)


@pytest.mark.parametrize("tag", ["not a timestamp", "2001-01-01T00:00:00.000Z", "2999-01-01T00:00:00"])
def test_a_watermark_tag_that_does_not_prove_the_day_complete_is_checked_with_genesys(
        emulator: GenesysEmulator, home: Path, tag: str) -> None:
    """Junk, a watermark before the day's end, or one without a time zone: the run asks Genesys, which here says
    the day is not complete yet, so nothing is written."""
    _, end = day_bounds(DAY)
    _watermark_at(emulator, end - timedelta(hours=2))
    try:
        emulator.clear_request_log()
        refused = materialize(resources(emulator, home), DAY, "conversation_details", raise_on_error=False,
                              tags={WATERMARK_TAG: tag})
        assert not refused.success and _availability_requests(emulator) == 1
        [failure] = [e for e in refused.all_events if e.is_step_failure]
        assert "not yet available until" in str(failure.step_failure_data.error)
    finally:
        emulator.set_faults(availability_lag_seconds=6 * 3600)

def test_without_a_cursor_it_starts_at_the_configured_start_date(emulator: GenesysEmulator, home: Path,
                                                                start_date: None) -> None:
    _, end = day_bounds(DAY)
    _watermark_at(emulator, end + timedelta(minutes=5))
    try:
        result = _tick(emulator, home, None)
    finally:
        emulator.set_faults(availability_lag_seconds=6 * 3600)
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests] == [
        (DAY - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert result.cursor == DAY.isoformat()


def test_the_sensor_runs_a_named_job_of_both_details_api_readers() -> None:
    from genesys_assets.definitions import build_definitions

    repo = build_definitions().get_repository_def()
    job = repo.get_job(analytics_availability_sensor.job_name)
    assert job.name == "details_api_day_job" and "conversation_details and webchat_archive" in job.description
    selected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert selected == {"conversation_details", "webchat_archive"}
    assert job.partitions_def is not None  # daily, from the assets


def test_a_failed_day_run_is_retried_by_dagster_and_other_jobs_are_not(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sensor asks for a day once; the project's dagster.yaml and the job's tag make Dagster retry it."""
    from dagster._core.events import RunFailureReason
    from dagster._core.execution.retries import auto_reexecution_should_retry_run

    from genesys_assets.cli import PROJECT_ROOT
    from genesys_assets.defs.analytics.sensors import DAY_RUN_RETRIES, details_api_day_job

    (tmp_path / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 0

        def failed_run(job_name: str, tags: dict[str, str]) -> dg.DagsterRun:
            return instance.add_run(dg.DagsterRun(job_name=job_name, tags=tags, status=dg.DagsterRunStatus.FAILURE))

        assert details_api_day_job.tags["dagster/max_retries"] == str(DAY_RUN_RETRIES) == "2"
        day_run = failed_run(details_api_day_job.name, dict(details_api_day_job.tags))
        assert auto_reexecution_should_retry_run(instance, day_run, RunFailureReason.STEP_FAILURE)
        other = failed_run("legacy_day_job", {})  # no tag: the instance default, no retry
        assert not auto_reexecution_should_retry_run(instance, other, RunFailureReason.STEP_FAILURE)
