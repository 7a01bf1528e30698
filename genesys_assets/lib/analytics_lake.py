"""Reading and publishing the analytics partitions of the lake (local folder or S3), streaming.

The ``Lake`` resource writes whole files atomically; this module adds what the analytics assets need on top:
streaming a raw NDJSON.gz landing file line by line (one result page per line) without loading it, scanning a
table partition lazily with Polars, publishing a day's locally built files as one atomic partition, and
sweeping what a killed run left behind (dot-named staging folders, never visible to ``day=*`` readers).
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import IO, Any

import polars as pl
import pyarrow.parquet as pq

from genesys_assets.lib.analytics_plan import partition_path, raw_prefix, table_prefix
from genesys_assets.resources.lake import Lake

_COPY_CHUNK = 8 << 20


def _s3_filesystem(lake: Lake) -> Any:
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(endpoint_override=lake.s3_endpoint_url, region=lake.s3_region)


def _open_input(lake: Lake, relpath: str) -> IO[bytes]:
    if lake.is_s3:
        return _s3_filesystem(lake).open_input_stream(lake.uri(relpath).removeprefix("s3://"))
    return open(lake.uri(relpath), "rb")


def iter_raw_pages(lake: Lake, day: date) -> Iterator[bytes]:
    """Every landed result page of ``day`` (one NDJSON line each), file by file, in landing order."""
    for rel in raw_files(lake, day):
        with _open_input(lake, rel) as raw, gzip.GzipFile(fileobj=raw) as lines:
            for line in io.BufferedReader(lines, buffer_size=1 << 20):  # type: ignore[arg-type]
                line = line.strip()
                if line:
                    yield line


def raw_files(lake: Lake, day: date) -> list[str]:
    return [p for p in lake.list(raw_prefix(day)) if p.endswith(".ndjson.gz")]


def partition_files(lake: Lake, table: str, day: date) -> list[str]:
    """Lake-relative Parquet files of one table's day (staging folders excluded)."""
    return [p for p in lake.list(table_prefix(table, day)) if p.endswith(".parquet")]


def storage_options(lake: Lake) -> dict[str, str] | None:
    if not lake.is_s3:
        return None
    options = {"aws_region": lake.s3_region}
    if lake.s3_endpoint_url:
        options["aws_endpoint_url"] = lake.s3_endpoint_url
        options["aws_allow_http"] = "true" if lake.s3_endpoint_url.startswith("http://") else "false"
    return options


def scan_partition(lake: Lake, table: str, day: date) -> pl.LazyFrame | None:
    """One table's day as a lazy frame (None when the partition has no files)."""
    files = partition_files(lake, table, day)
    if not files:
        return None
    return pl.scan_parquet([lake.uri(f) for f in files], storage_options=storage_options(lake))


def partition_stats(lake: Lake, table: str, day: date) -> tuple[int, dict[str, int]]:
    """(rows, null count per column) of a partition from the Parquet footers alone: no data is read."""
    rows = 0
    nulls: dict[str, int] = {}
    fs = _s3_filesystem(lake) if lake.is_s3 else None
    for rel in partition_files(lake, table, day):
        path = lake.uri(rel).removeprefix("s3://") if fs else lake.uri(rel)
        meta = pq.ParquetFile(path, filesystem=fs).metadata
        rows += meta.num_rows
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                col = group.column(c)
                name = col.path_in_schema.split(".")[0]
                stats = col.statistics
                if stats is not None and stats.has_null_count:
                    nulls[name] = nulls.get(name, 0) + stats.null_count
    return rows, nulls


def publish_partition(lake: Lake, prefix: str, files: Iterable[Path], extra: dict[str, bytes] | None = None) -> int:
    """Replace the partition at ``prefix`` with ``files`` (+ small ``extra`` files) atomically; returns bytes."""
    written = 0
    with lake.replace_partition(prefix) as partition:
        for path in files:
            with open(path, "rb") as src, partition.open(path.name) as dst:
                shutil.copyfileobj(src, dst, _COPY_CHUNK)
                written += path.stat().st_size
        for name, data in (extra or {}).items():
            partition.write_bytes(name, data)
            written += len(data)
    return written


def sweep_staging(lake: Lake, prefixes: Iterable[str]) -> list[str]:
    """Remove the staging / retired folders a killed write left next to these partitions (local lakes).

    They are dot-named, so no reader ever saw them; S3 staging lives in a local temp folder instead.
    """
    if lake.is_s3:
        return []
    removed = []
    for prefix in prefixes:
        target = Path(lake.uri(prefix))
        parent = target.parent
        if not parent.is_dir():
            continue
        for entry in parent.iterdir():
            if entry.name.startswith(f".{target.name}.") and entry.name.endswith((".staging", ".retired")):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
            elif entry.name.startswith(f".{target.name}.") and entry.name.endswith(".part"):
                entry.unlink(missing_ok=True)
                removed.append(str(entry))
    return removed


def day_prefixes(day: date, tables: Iterable[str]) -> list[str]:
    return [raw_prefix(day), *(table_prefix(t, day) for t in tables)]


def work_dir(root: Path, name: str, day: date) -> Path:
    """A clean local scratch folder for one asset's day (what a killed run left there is removed first)."""
    path = root / name / partition_path(day).replace("/", "_")
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def remove_tree(path: Path) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
