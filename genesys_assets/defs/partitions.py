"""Daily partitions shared by every domain: UTC days, half-open [00:00, 24:00)."""

import dagster as dg

DAILY = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC")
