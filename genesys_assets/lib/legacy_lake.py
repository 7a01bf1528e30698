"""Where the PureConnect migration keeps its files and warehouse tables, and the few writers they share."""

from __future__ import annotations

from datetime import date

import orjson
import polars as pl

from genesys_assets.lib.legacy_interactions import partition_prefix

INTERACTIONS = "legacy/interactions"
RECORDING_LINKS = "legacy/recording_links"
QUARANTINE = "legacy/quarantine"
ID_MAPS_PATH = "legacy/id_maps/id_maps.parquet"
ID_MAP_TARGETS_PATH = "legacy/id_maps/targets.json"
RECORDINGS_MANIFEST = "legacy/recordings_manifest"
INGEST_LEDGER = "legacy/ingest_ledger"
INGEST_BATCHES = "legacy/ingest_batches"


def quarantine_base(source: str) -> str:
    """Quarantine rows of one stage: ``interactions`` (source rows), ``recordings`` or ``cloud`` (target)."""
    return f"{QUARANTINE}/source={source}"


def day_file(base: str, day: date, name: str) -> str:
    return f"{partition_prefix(base, day)}/{name}"


SUMMARY_FILE = "_summary.json"


def write_day(lake: object, base: str, day: date, name: str, frame: pl.DataFrame,
              summary: dict | None = None) -> int:
    """Replace the day's partition of ``base`` with one Parquet file (atomic; a re-run replaces it exactly).

    Returns the bytes written. An empty frame is written too, so a day with nothing in it is visibly done.
    ``summary`` (the run's settings and counts) goes beside it as ``_summary.json``, which Parquet readers skip.
    """
    with lake.replace_partition(partition_prefix(base, day)) as writer:  # type: ignore[attr-defined]
        size = writer.write_parquet(name, frame)
        if summary is not None:
            writer.write_bytes(SUMMARY_FILE, orjson.dumps(summary, option=orjson.OPT_SORT_KEYS))
        return size


def read_summary(lake: object, base: str, day: date) -> dict | None:
    path = day_file(base, day, SUMMARY_FILE)
    if not lake.exists(path):  # type: ignore[attr-defined]
        return None
    return orjson.loads(lake.read_bytes(path))  # type: ignore[attr-defined]


def read_day(lake: object, base: str, day: date, name: str) -> pl.DataFrame | None:
    """The day's file of ``base``, or None when the day has not been written."""
    path = day_file(base, day, name)
    if not lake.exists(path):  # type: ignore[attr-defined]
        return None
    frame = pl.from_arrow(lake.read_parquet(path))  # type: ignore[attr-defined]
    assert isinstance(frame, pl.DataFrame)
    return frame
