"""``analytics_availability_sensor``: request each day of analytics data once Genesys says it is complete.

One request carries the day for both readers of the details API: ``conversation_details`` and ``webchat_archive``.

Follows the details-job availability watermark (``dataAvailabilityDate``). The cursor is the last day requested;
each tick requests the days that became complete since, oldest first (run_key = the day, so a day is never
requested twice even if the cursor were lost), and is quiet when the watermark has not passed a new midnight. A failed
run is retried by Dagster's run retries (``DAY_RUN_RETRIES``), not requested again by the sensor, unless a step
was refused (``is_refusal``): a retry would be refused the same way. Each run
carries the watermark seen (tag ``genesys/data_availability_date``), so the run need not ask for it again.
Downstream assets (wrap-up facts, views) follow each day by declarative automation.

Start date: ``GENESYS_ANALYTICS_START_DATE`` (YYYY-MM-DD); unset, the sensor starts a week before the watermark.
"""

import os
from datetime import date, timedelta

import dagster as dg

from genesys_assets.defs.analytics import assets as analytics_assets
from genesys_assets.defs.availability import WATERMARK_TAG
from genesys_assets.defs.messaging import assets as messaging_assets
from genesys_assets.lib.analytics_plan import days_to_request, iso, last_complete_day
from genesys_assets.resources.genesys_cloud import GenesysAuthError, GenesysCloudResource, GenesysPermissionError

START_DATE_ENV = "GENESYS_ANALYTICS_START_DATE"
DEFAULT_LOOKBACK_DAYS = 7
MAX_DAYS_PER_TICK = 31  # a long catch-up is spread over ticks instead of flooding the run queue


def configured_start(watermark_day: date) -> date:
    """The first day the sensor may request."""
    raw = os.environ.get(START_DATE_ENV, "").strip()
    if raw:
        try:
            return date.fromisoformat(raw)
        except ValueError as exc:
            raise ValueError(f"{START_DATE_ENV} must be a date (YYYY-MM-DD), got {raw!r}") from exc
    return watermark_day - timedelta(days=DEFAULT_LOOKBACK_DAYS - 1)


#: Run retries of a failed day (dagster.yaml enables them; each retry re-runs only the failed steps). The sensor
#: requests a day once, so without them one transient failure would leave the day to a manual backfill.
DAY_RUN_RETRIES = 2
#: Dagster's run tag that stops run retries of a run failed by a step (read when the run fails).
RETRY_ON_STEP_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
#: The run whose refusal set it: a re-execution from the UI copies its parent's tags, this one among them.
REFUSED_IN_TAG = "genesys/refused_in_run"
#: What a retry would meet again: Genesys refusing the client's credentials or permissions. (A wrong setting fails
#: the resource's start, a run failure that Dagster retries whatever the tag says.)
_REFUSED_BY_GENESYS = (GenesysAuthError, GenesysPermissionError)


def is_refusal(error: BaseException | None) -> bool:
    """A step failure no retry can mend: a policy refusal or an unavailable day (our ``Failure`` with retries off),
    or Genesys refusing the client. Everything else (5xx, timeouts, a failed job) may pass on a retry."""
    return isinstance(error, _REFUSED_BY_GENESYS) or (isinstance(error, dg.Failure) and error.allow_retries is False)


@dg.failure_hook(name="day_run_not_retried_when_refused")
def day_run_not_retried_when_refused(context: dg.HookContext) -> None:
    """A refused step turns the day run's retries off: each retry would fail the same way (after re-running the
    other failed steps too) and only bury the reason under more failed runs. A person fixes the cause and
    re-executes the run from its failure; that re-execution inherits the tag, so another kind of failure in it turns
    its retries back on unless a step of its own was refused."""
    if is_refusal(context.op_exception):
        context.instance.add_run_tags(context.run_id, {RETRY_ON_STEP_FAILURE_TAG: "false",
                                                       REFUSED_IN_TAG: context.run_id})
        context.log.warning("%s was refused (%s): this run will not be retried; fix the cause, then re-execute it "
                            "from its failure.", context.step_key, context.op_exception)
        return
    run = context.instance.get_run_by_id(context.run_id)
    if run is not None and run.tags.get(REFUSED_IN_TAG, context.run_id) != context.run_id:
        context.instance.add_run_tags(context.run_id, {RETRY_ON_STEP_FAILURE_TAG: "true", REFUSED_IN_TAG: ""})


details_api_day_job = dg.define_asset_job(
    "details_api_day_job",
    selection=[analytics_assets.conversation_details, messaging_assets.webchat_archive],
    description="One day of both readers of the analytics details API, conversation_details and webchat_archive, "
    f"with their checks: what analytics_availability_sensor requests once the day is complete. A failed run is "
    f"retried up to {DAY_RUN_RETRIES} times from its failed steps, unless a step was refused (a policy, an "
    "unavailable day, the client's credentials or permissions).",
    tags={"dagster/max_retries": str(DAY_RUN_RETRIES)},
    hooks={day_run_not_retried_when_refused},
)


@dg.sensor(
    name="analytics_availability_sensor",
    target=details_api_day_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests each day of conversation_details and webchat_archive once the availability watermark "
    f"has passed its end (run_key = day), from {START_DATE_ENV} on; quiet when nothing changed.",
)
def analytics_availability_sensor(
    context: dg.SensorEvaluationContext, genesys: GenesysCloudResource
) -> dg.SensorResult | dg.SkipReason:
    watermark = genesys.get_client().data_availability_date()
    cursor = date.fromisoformat(context.cursor) if context.cursor else None
    start = configured_start(last_complete_day(watermark))
    days = days_to_request(start=start, cursor=cursor, watermark=watermark, max_days=MAX_DAYS_PER_TICK)
    if not days:
        return dg.SkipReason(f"No newly complete day: watermark {iso(watermark)}, last requested "
                             f"{cursor.isoformat() if cursor else 'nothing yet'}.")
    context.log.info("Watermark %s: requesting %s .. %s", iso(watermark), days[0], days[-1])
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=d.isoformat(), partition_key=d.isoformat(),
                                   tags={WATERMARK_TAG: iso(watermark)}) for d in days],
        cursor=days[-1].isoformat(),
    )
