"""analytics_availability_sensor follows the watermark: a day is requested once it is complete, and only once."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.execution.plan.handle import StepHandle
from dagster._core.execution.plan.objects import StepFailureData, StepSuccessData
from dagster._core.execution.retries import auto_reexecution_should_retry_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, PARTITION_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.auto_run_reexecution.event_log_consumer import EventLogConsumerDaemon

from genesys_assets.cli import PROJECT_ROOT
from genesys_assets.defs.analytics import assets as analytics_assets
from genesys_assets.defs.analytics.sensors import (
    DAY_RUN_RETRIES,
    REFUSED_IN_TAG,
    RETRY_ON_STEP_FAILURE_TAG,
    START_DATE_ENV,
    analytics_availability_sensor,
    details_api_day_job,
    is_refusal,
)
from genesys_assets.defs.availability import WATERMARK_TAG
from genesys_assets.lib.analytics_plan import day_bounds, iso
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.analytics.conftest import ASSETS, CHECKS, QUIET, materialize, past_day, resources
from genesys_assets_tests.support import step_failure

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
        assert "not yet available until" in step_failure(refused).error.message
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


@pytest.fixture
def project_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """An instance configured by the project's own dagster.yaml: its run_retries are what retries a day."""
    (tmp_path / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def test_a_failed_day_run_is_retried_by_dagster_and_other_jobs_are_not(project_instance: dg.DagsterInstance) -> None:
    """The sensor asks for a day once; the project's dagster.yaml and the job's tag make Dagster retry it."""
    instance = project_instance
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 0

    def failed_run(job_name: str, tags: dict[str, str]) -> dg.DagsterRun:
        return instance.add_run(dg.DagsterRun(job_name=job_name, tags=tags, status=dg.DagsterRunStatus.FAILURE))

    assert details_api_day_job.tags["dagster/max_retries"] == str(DAY_RUN_RETRIES) == "2"
    day_run = failed_run(details_api_day_job.name, dict(details_api_day_job.tags))
    assert auto_reexecution_should_retry_run(instance, day_run, RunFailureReason.STEP_FAILURE)
    other = failed_run("legacy_day_job", {})  # no tag: the instance default, no retry
    assert not auto_reexecution_should_retry_run(instance, other, RunFailureReason.STEP_FAILURE)


@contextmanager
def _project_workspace(instance: dg.DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    """The project's code location as the daemon sees it (workspace.yaml's module), loaded in this process."""
    origin = LoadableTargetOrigin(module_name="genesys_assets.definitions", working_directory=str(PROJECT_ROOT))
    target = InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin, location_name="genesys_assets"))
    with WorkspaceProcessContext(instance, target) as workspace:
        yield workspace


def _request_day_run(workspace: WorkspaceProcessContext, tags: dict[str, str]) -> dg.DagsterRun:
    """Create the run of ``details_api_day_job`` the sensor daemon creates for a RunRequest with ``tags``."""
    instance = workspace.instance
    location = workspace.create_request_context().get_code_location("genesys_assets")
    [repo] = location.get_repositories().values()
    job = location.get_job(JobSubsetSelector(location_name=location.name, repository_name=repo.name,
                                             job_name=details_api_day_job.name, op_selection=None))
    plan = location.get_execution_plan(job, {}, step_keys_to_execute=None, known_state=None, instance=instance)
    return instance.create_run(
        job_name=job.name, run_id=None, run_config={}, resolved_op_selection=None, step_keys_to_execute=None,
        status=dg.DagsterRunStatus.NOT_STARTED, op_selection=None, root_run_id=None, parent_run_id=None,
        tags={**job.run_tags, **tags}, job_snapshot=job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot, parent_job_snapshot=job.parent_job_snapshot,
        remote_job_origin=job.get_remote_origin(), job_code_origin=job.get_python_origin(), asset_selection=None,
        asset_check_selection=None, asset_graph=repo.asset_graph)


def _fail(instance: dg.DagsterInstance, run: dg.DagsterRun, succeeded: Iterable[str] = ()) -> None:
    """What a run whose ``conversation_details`` step raised leaves in the event log: the ``succeeded`` steps done,
    conversation_details failed, the run failed because a step did."""
    steps = [(key, dg.DagsterEventType.STEP_SUCCESS, StepSuccessData(duration_ms=1.0)) for key in succeeded]
    steps.append(("conversation_details", dg.DagsterEventType.STEP_FAILURE,
                  StepFailureData(error=None, user_failure_data=None)))
    for key, kind, data in steps:
        event = dg.DagsterEvent(kind.value, run.job_name, step_handle=StepHandle.parse_from_key(key),
                                event_specific_data=data)
        instance.report_dagster_event(event, run.run_id)
    instance.report_run_failed(run, job_failure_data=JobFailureData(error=None,
                                                                    failure_reason=RunFailureReason.STEP_FAILURE))


def test_a_day_that_keeps_failing_is_retried_twice_from_its_failed_step_then_left_failed(
        project_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon that retries runs, on the project's instance and code location: each retry is of the same day
    with the sensor's watermark, runs only what failed (the day's archived web chats are not fetched again), and
    after DAY_RUN_RETRIES failed retries the day is left failed for a person, not retried forever."""
    monkeypatch.setenv("GENESYS_HOME", str(tmp_path / "home"))  # no sandbox there: loading the code asks nothing
    for name, value in {"GENESYS_MODE": "sandbox", "GENESYS_CLIENT_ID": "id", "GENESYS_CLIENT_SECRET": "secret",
                        "GENESYS_PII_HASH_KEY": "k" * 32}.items():
        monkeypatch.setenv(name, value)  # the resources' EnvVars, resolved when a run's plan is built
    instance = project_instance
    watermark = iso(day_bounds(DAY)[1] + timedelta(hours=1))
    with _project_workspace(instance) as workspace:
        daemon = EventLogConsumerDaemon()
        list(daemon.run_iteration(workspace))  # its first tick sets its cursor: failures from before are not its own
        first = run = _request_day_run(workspace, {WATERMARK_TAG: watermark, PARTITION_NAME_TAG: DAY.isoformat()})
        steps = [step.key for step in instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id).steps]
        _fail(instance, run, succeeded=[key for key in steps if key.startswith("webchat_archive")])
        retries: list[dg.DagsterRun] = []
        for _ in range(DAY_RUN_RETRIES + 1):  # a daemon tick after each failure, the last one past the limit
            list(daemon.run_iteration(workspace))
            launched = instance.get_runs(dg.RunsFilter(tags={PARENT_RUN_ID_TAG: run.run_id}))
            if launched:
                [run] = launched
                retries.append(run)
                _fail(instance, run)

    assert [r.tags["dagster/retry_number"] for r in retries] == ["1", "2"]
    assert [r.parent_run_id for r in retries] == [first.run_id, retries[0].run_id]
    for retry in retries:
        assert retry.root_run_id == first.run_id and retry.status == dg.DagsterRunStatus.QUEUED  # launched
        assert retry.tags[PARTITION_NAME_TAG] == DAY.isoformat() and retry.tags[WATERMARK_TAG] == watermark
        assert set(retry.step_keys_to_execute or ()) == {key for key in steps if key.startswith("conversation_details")}
    assert instance.get_run_by_id(run.run_id).tags["dagster/will_retry"] == "false"  # what the UI shows
    assert len(instance.get_runs()) == 1 + DAY_RUN_RETRIES


def _day_run_of_conversation_details(res: dict, instance: dg.DagsterInstance,
                                     inherited: dict[str, str] | None = None) -> dg.DagsterRun:
    """conversation_details for DAY in a job with the day job's retry tags and hooks, run on the project's instance
    (with tags ``inherited`` from a parent run, as a re-execution from the UI has them); the run as stored once it
    failed, its ``dagster/will_retry`` decided."""
    job = dg.define_asset_job("day_run", selection=[analytics_assets.conversation_details],
                              tags=details_api_day_job.tags, hooks=details_api_day_job.hooks)
    defs = dg.Definitions(assets=[*ASSETS, *CHECKS], resources=res, jobs=[job])
    result = defs.resolve_job_def("day_run").execute_in_process(
        instance=instance, partition_key=DAY.isoformat(), run_config=QUIET, raise_on_error=False,
        tags={WATERMARK_TAG: iso(day_bounds(DAY)[1] + timedelta(hours=1)), **(inherited or {})})
    assert not result.success
    return instance.get_run_by_id(result.run_id)


#: What a re-execution from the UI copies from a parent run that was refused.
_REFUSED_PARENT = {RETRY_ON_STEP_FAILURE_TAG: "false", REFUSED_IN_TAG: "a-refused-parent-run"}


@pytest.mark.parametrize(("cause", "inherited"), [("permission", None), ("credentials", None),
                                                  ("permission", _REFUSED_PARENT)])
def test_a_refused_day_run_is_not_retried(project_instance: dg.DagsterInstance, emulator: GenesysEmulator,
                                          home: Path, cause: str, inherited: dict[str, str] | None) -> None:
    """A retry would be refused the same way: the run says so and is left for a person, not retried twice."""
    emulator.add_client("no-roles", "its-secret", [])
    client = {"client_id": "no-roles", "client_secret": "its-secret" if cause == "permission" else "wrong"}
    res = resources(emulator, home)
    res["genesys"] = GenesysCloudResource(**{**res["genesys"].model_dump(), **client})
    run = _day_run_of_conversation_details(res, project_instance, inherited)
    assert run.tags["dagster/will_retry"] == "false"
    assert run.tags[RETRY_ON_STEP_FAILURE_TAG] == "false" and run.tags[REFUSED_IN_TAG] == run.run_id
    warnings = [e.user_message for e in project_instance.all_logs(run.run_id) if e.level == 30]
    assert any("will not be retried" in message and "conversation_details" in message for message in warnings)


@pytest.mark.parametrize("inherited", [None, _REFUSED_PARENT], ids=["first run", "re-execution of a refused run"])
def test_a_day_run_that_failed_on_server_errors_is_retried(project_instance: dg.DagsterInstance,
                                                           emulator: GenesysEmulator, home: Path,
                                                           inherited: dict[str, str] | None) -> None:
    res = resources(emulator, home, max_attempts=2, extra_headers={"X-Sandbox-Fault": "rate_5xx=1"})
    run = _day_run_of_conversation_details(res, project_instance, inherited)
    assert run.tags["dagster/will_retry"] == "true"
    assert run.tags.get(RETRY_ON_STEP_FAILURE_TAG, "true") == "true"


def test_refusals_are_policy_failures_and_genesys_refusing_the_client_not_transient_errors() -> None:
    from genesys_assets.resources.genesys_cloud import (
        GenesysAuthError,
        GenesysPermissionError,
        GenesysRetriesExhausted,
    )

    assert is_refusal(dg.Failure("region not allowed", allow_retries=False))
    assert is_refusal(GenesysPermissionError("403")) and is_refusal(GenesysAuthError("401"))
    assert not is_refusal(dg.Failure("flaky"))
    exhausted = GenesysRetriesExhausted("GET /users: 503 three times", attempts=3, elapsed_seconds=1.0)
    assert not is_refusal(exhausted) and not is_refusal(RuntimeError("boom"))
    assert not is_refusal(None)
