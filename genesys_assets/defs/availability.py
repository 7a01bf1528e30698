"""The availability gate shared by every asset that reads a day of Genesys Cloud analytics data."""

from datetime import date, datetime

import dagster as dg

from genesys_assets.lib.analytics_plan import day_bounds, day_is_complete, iso
from genesys_assets.resources.genesys_cloud import GenesysCloudClient


def require_complete_day(client: GenesysCloudClient, day: date, what: str) -> datetime:
    """Fail clearly, before any data request, when Genesys does not yet guarantee ``day`` complete.

    Windows past ``dataAvailabilityDate`` come back short with no error: a short day must never be written as
    complete. ``analytics_availability_sensor`` requests the day again once the watermark passes its end.
    """
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
