"""The PureConnect watermark sensor: requests a day of the migration once its rows have settled."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import orjson

from genesys_assets.defs.legacy import assets as legacy
from genesys_assets.resources.pureconnect import PureConnectResource
from genesys_assets.settings import env_number


def settled_days(watermark: datetime, settle: timedelta, lookback_days: int) -> tuple[date, date] | None:
    """The day range the sensor looks at: up to the last day that ended ``settle`` before the watermark."""
    last = (watermark - settle).date() - timedelta(days=1)
    if last < date(2020, 1, 1):
        return None
    return last - timedelta(days=max(0, lookback_days - 1)), last


@dg.sensor(
    asset_selection=[legacy.legacy_interactions],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Follows the newest StartDateTimeUTC in PureConnect (the watermark). A UTC day is requested once the "
        "watermark is PURECONNECT_SETTLE_MINUTES (default 60) past its end; days in the last "
        "PURECONNECT_SENSOR_LOOKBACK_DAYS (default 7) are requested again when their row count changes (late "
        "rows). The cursor keeps each day's count; downstream assets follow by automation."
    ),
)
def pureconnect_watermark_sensor(
    context: dg.SensorEvaluationContext, pureconnect: PureConnectResource
) -> dg.SensorResult | dg.SkipReason:
    watermark = pureconnect.watermark()
    if watermark is None:
        return dg.SkipReason("PureConnect has no interactions with a UTC start yet")
    settle = timedelta(minutes=env_number("PURECONNECT_SETTLE_MINUTES", 60, low=0))
    lookback = int(env_number("PURECONNECT_SENSOR_LOOKBACK_DAYS", 7, integer=True, low=1))
    window = settled_days(watermark.astimezone(UTC), settle, lookback)
    if window is None:
        return dg.SkipReason(f"no day has settled yet (watermark {watermark.isoformat()})")
    seen: dict[str, int] = orjson.loads(context.cursor) if context.cursor else {}
    counts = {d.isoformat(): n for d, n in pureconnect.day_counts(*window).iter_rows()}
    requests = [
        dg.RunRequest(partition_key=day, run_key=f"pureconnect:{day}:{rows}",
                      tags={"pureconnect/rows": str(rows), "pureconnect/late": str(day in seen).lower()})
        for day, rows in sorted(counts.items()) if rows and seen.get(day) != rows
    ]
    first = window[0].isoformat()
    cursor = {d: n for d, n in {**seen, **counts}.items() if d >= first}
    context.log.info("Watermark %s: %d day(s) settled in %s..%s, %d requested", watermark.isoformat(),
                     len(counts), *window, len(requests))
    return dg.SensorResult(run_requests=requests, cursor=orjson.dumps(cursor, option=orjson.OPT_SORT_KEYS).decode())
