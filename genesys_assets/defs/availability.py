"""The availability gate shared by every asset that reads a day of Genesys Cloud analytics data."""

from datetime import date, datetime

import dagster as dg

from genesys_assets.lib.analytics_plan import day_bounds, day_is_complete, iso
from genesys_assets.resources.genesys_cloud import GenesysCloudClient

# The watermark analytics_availability_sensor saw when it requested the run (ISO 8601, the API's form).
WATERMARK_TAG = "genesys/data_availability_date"


def seen_watermark(tags: dict[str, str], day: date) -> datetime | None:
    """The sensor's watermark from the run's ``tags`` when it already proves ``day`` complete, else None.

    ``dataAvailabilityDate`` only moves forward, so a watermark seen past the day's end (by the sensor that
    requested this run, minutes ago) still holds: asking again would only cost a request.
    """
    value = tags.get(WATERMARK_TAG)
    if not value:
        return None
    try:
        seen = datetime.fromisoformat(value)
    except ValueError:
        dg.get_dagster_logger().warning("Ignoring run tag %s=%r: not an ISO 8601 timestamp; asking Genesys instead.",
                                        WATERMARK_TAG, value)
        return None
    return seen if seen.tzinfo is not None and day_is_complete(day, seen) else None


def require_complete_day(client: GenesysCloudClient, day: date, what: str, tags: dict[str, str]) -> datetime:
    """Fail clearly, before any data request, when Genesys does not yet guarantee ``day`` complete.

    Windows past ``dataAvailabilityDate`` come back short with no error: a short day must never be written as
    complete. ``analytics_availability_sensor`` requests the day again once the watermark passes its end, and
    tags the run with the watermark it saw (``WATERMARK_TAG``), which spares the run asking again.
    """
    seen = seen_watermark(tags, day)
    if seen is not None:
        dg.get_dagster_logger().info("%s for %s: complete per the watermark %s the availability sensor saw.",
                                     what, day, iso(seen))
        return seen
    watermark = client.data_availability_date()
    end = day_bounds(day)[1]
    if not day_is_complete(day, watermark):
        raise dg.Failure(
            description=f"{what} for {day} are not yet available until {iso(watermark)} "
            f"(Genesys guarantees analytics data only before its dataAvailabilityDate; the day ends {iso(end)}). "
            "Nothing was written; analytics_availability_sensor requests the day once it is complete.",
            metadata={"data_availability_date": iso(watermark), "day_end": iso(end)},
            allow_retries=False,
        )
    return watermark
