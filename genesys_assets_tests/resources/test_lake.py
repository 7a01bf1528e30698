"""The lake's contract: atomic files, atomic partition replacement, listing, on a folder and on S3."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genesys_assets.resources.lake import Lake, LakeError
from genesys_assets.sandbox.s3 import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, SandboxS3


@pytest.fixture(scope="module")
def s3() -> Iterator[SandboxS3]:
    with SandboxS3(buckets=("lake-bucket",)) as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    if request.param == "local":
        return Lake(base_uri=str(tmp_path / "lake"))
    server: SandboxS3 = request.getfixturevalue("s3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SANDBOX_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SANDBOX_SECRET_KEY)
    return Lake(base_uri=f"s3://lake-bucket/{tmp_path.name}", s3_endpoint_url=server.endpoint_url)


def test_write_read_list_delete(lake: Lake) -> None:
    lake.write_bytes("raw/year=2026/month=11/day=02/page-0001.ndjson.gz", b"one")
    lake.write_bytes("raw/year=2026/month=11/day=02/page-0002.ndjson.gz", b"two")
    lake.write_bytes("raw/year=2026/month=11/day=03/page-0001.ndjson.gz", b"three")

    assert lake.list("raw/year=2026/month=11/day=02") == [
        "raw/year=2026/month=11/day=02/page-0001.ndjson.gz",
        "raw/year=2026/month=11/day=02/page-0002.ndjson.gz",
    ]
    assert lake.read_bytes("raw/year=2026/month=11/day=03/page-0001.ndjson.gz") == b"three"
    assert lake.exists("raw/year=2026/month=11/day=03/page-0001.ndjson.gz")
    lake.delete("raw/year=2026/month=11/day=03/page-0001.ndjson.gz")
    assert not lake.exists("raw/year=2026/month=11/day=03/page-0001.ndjson.gz")
    assert lake.list("nothing/here") == []


def test_failed_write_leaves_the_previous_file(lake: Lake) -> None:
    lake.write_bytes("manifest.json", b"good")
    with pytest.raises(RuntimeError, match="crash"), lake.open_atomic("manifest.json") as handle:
        handle.write(b"half-writ")
        raise RuntimeError("crash mid-write")
    assert lake.read_bytes("manifest.json") == b"good"
    assert lake.list() == ["manifest.json"]  # no temporary file left visible


def test_parquet_round_trip(lake: Lake, tmp_path: Path) -> None:
    table = pa.table({"id": ["a", "b"], "n": [1, 2]})
    size = lake.write_parquet("t/part-0.parquet", table, compression="zstd")
    data = lake.read_bytes("t/part-0.parquet")
    assert size == len(data)
    (tmp_path / "copy.parquet").write_bytes(data)
    assert pq.read_table(tmp_path / "copy.parquet").equals(table)


def test_a_polars_frame_round_trips_through_polars_writer(lake: Lake) -> None:
    frame = pl.DataFrame({"id": ["a", None], "day": [date(2024, 3, 5)] * 2, "tags": [["x"], []],
                          "at": [datetime(2024, 3, 5, 1, tzinfo=UTC), None]})
    size = lake.write_parquet("t/frame.parquet", frame)
    assert size == len(lake.read_bytes("t/frame.parquet"))
    assert pl.from_arrow(lake.read_parquet("t/frame.parquet")).equals(frame)
    assert pq.ParquetFile(pa.BufferReader(lake.read_bytes("t/frame.parquet"))).metadata.row_group(0).column(
        0).compression == "ZSTD"


def test_replace_partition_swaps_the_whole_partition(lake: Lake) -> None:
    day = "analytics/segments/year=2026/month=11/day=02"
    with lake.replace_partition(day) as partition:
        partition.write_bytes("part-0000.parquet", b"v1-a")
        partition.write_bytes("part-0001.parquet", b"v1-b")
    with lake.replace_partition(day) as partition:
        partition.write_bytes("part-0000.parquet", b"v2")
    assert lake.list(day) == [f"{day}/part-0000.parquet"]
    assert lake.read_bytes(f"{day}/part-0000.parquet") == b"v2"


def test_replace_partition_that_fails_keeps_the_old_partition(lake: Lake) -> None:
    day = "legacy/interactions/year=2024/month=01/day=15"
    with lake.replace_partition(day) as partition:
        partition.write_bytes("part-0000.parquet", b"good")
    with pytest.raises(ValueError), lake.replace_partition(day) as partition:
        partition.write_bytes("part-0000.parquet", b"bad")
        raise ValueError("transform failed")
    assert lake.list(day) == [f"{day}/part-0000.parquet"]
    assert lake.read_bytes(f"{day}/part-0000.parquet") == b"good"


def test_paths_cannot_escape_the_lake(lake: Lake) -> None:
    with pytest.raises(LakeError, match="inside the lake"):
        lake.write_bytes("../outside.txt", b"x")


def test_uri_for_readers(tmp_path: Path) -> None:
    assert Lake(base_uri="s3://bucket/pre/fix").uri("a/b.parquet") == "s3://bucket/pre/fix/a/b.parquet"
    assert Lake(base_uri=f"file://{tmp_path}").uri("a") == str(tmp_path / "a")


@pytest.mark.parametrize("base_uri", ["gs://bucket/lake", "S3://bucket/lake", "s3:/bucket/lake", "abfs://c@a/lake",
                                      "s3://", "s3:///lake"])
def test_a_base_uri_the_lake_cannot_serve_is_refused_before_any_write(
    base_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where a misread URI used to be written, as a relative folder
    lake = Lake(base_uri=base_uri)
    with pytest.raises(LakeError, match="GENESYS_LAKE_URI"):
        lake.write_bytes("probe.txt", b"ok")
    with pytest.raises(LakeError, match="GENESYS_LAKE_URI"):
        lake.uri("probe.txt")
    assert list(tmp_path.iterdir()) == []


def test_folder_paths_and_file_uris_are_still_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for base in ("relative/lake", str(tmp_path / "abs"), f"file://{tmp_path / 'uri'}"):
        Lake(base_uri=base).write_bytes("a/probe.txt", b"ok")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("probe.txt")) == [
        "abs/a/probe.txt", "relative/lake/a/probe.txt", "uri/a/probe.txt"]
