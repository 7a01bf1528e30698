"""Recording staging against the sandbox S3: eventual consistency, never-visible uploads, streamed multipart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from genesys_assets.lib import recordings_staging as rs
from genesys_assets.sandbox.s3 import STAGING_BUCKET, SandboxS3

DAY = date(2026, 11, 3)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[SandboxS3]:
    with SandboxS3() as server:
        yield server


@pytest.fixture(scope="module")
def s3(s3_server: SandboxS3) -> Any:
    return s3_server.client()


@pytest.fixture(scope="module")
def s3_endpoint(s3_server: SandboxS3) -> str:
    return s3_server.endpoint_url


class LaggingHeads:
    """An S3 client whose HEADs answer 404 for the first ``lag`` calls per key (eventual consistency)."""

    def __init__(self, client: Any, lag: int) -> None:
        self._client, self._lag, self.heads = client, lag, {}

    def head_object(self, **kw: Any) -> dict:
        n = self.heads[kw["Key"]] = self.heads.get(kw["Key"], 0) + 1
        if n <= self._lag:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
        return self._client.head_object(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _wav(path: Path, seconds: int, rate: int = 8000) -> int:
    """A PCM WAV written in 1 s blocks (never held whole); returns its duration in ms."""
    block = os.urandom(2 * rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for _ in range(seconds):
            w.writeframes(block)
    return seconds * 1000


def _link(path: Path, duration_ms: int, rid: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {"recording_id": rid, "interaction_id": f"i-{rid}", "x_legacy_id": f"1:{rid}:0",
            "media_uri": path.as_uri(), "db_duration_ms": duration_ms, "ir_tags": tags or []}


def test_a_head_that_first_answers_404_is_retried(s3: Any, tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    link = _link(path, _wav(path, 3), "A1", ["Retention-7Y"])
    lagging = LaggingHeads(s3, lag=2)  # the pre-upload HEAD and the first verification HEAD miss
    settings = rs.StagingSettings(bucket=STAGING_BUCKET, verify_base_seconds=0.01)
    result = rs.stage_recording(lagging, link, DAY, settings)
    assert result.row["status"] == rs.STAGED and result.uploaded
    assert result.verify_attempts == 2
    assert "retention=7y" in result.row["tags"]


def test_an_upload_never_visible_is_quarantined(s3: Any, tmp_path: Path) -> None:
    path = tmp_path / "b.wav"
    link = _link(path, _wav(path, 2), "B1")
    settings = rs.StagingSettings(bucket=STAGING_BUCKET, verify_attempts=3, verify_base_seconds=0.01)
    result = rs.stage_recording(LaggingHeads(s3, lag=100), link, DAY, settings)
    assert (result.row["status"], result.row["reason"]) == (rs.QUARANTINED, rs.UPLOAD_UNVERIFIED)


def test_undecodable_and_unknown_files_are_quarantined(s3: Any, tmp_path: Path) -> None:
    garbage = tmp_path / "c.wav"
    garbage.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(400))
    text = tmp_path / "d.wav"
    text.write_text("hello, not audio")
    settings = rs.StagingSettings(bucket=STAGING_BUCKET)
    reasons = {rs.stage_recording(s3, _link(p, 1000, p.stem), DAY, settings).row["reason"] for p in (garbage, text)}
    assert reasons == {rs.UNDECODABLE, rs.UNKNOWN_FORMAT}


_MEASURE = """
import json, os, sys, threading, time
from datetime import date
import boto3
from genesys_assets.lib import recordings_staging as rs
endpoint, bucket, link = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",
                  region_name="us-east-1")
s3.list_buckets()
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
before, peak, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.perf_counter()
settings = rs.StagingSettings(bucket=bucket, multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
result = rs.stage_recording(s3, link, date(2026, 11, 3), settings)
seconds = time.perf_counter() - started
done.set()
sampler.join()
print(json.dumps({"row": result.row, "seconds": seconds, "growth": peak[0] - before}, default=str))
"""


def _multipart(endpoint: str, tmp_path: Path, seconds: int, limit_mb: int) -> None:
    """Stage in a separate process (the moto server here keeps objects in memory) and sample its RSS."""
    path = tmp_path / "big.wav"
    link = _link(path, _wav(path, seconds), "BIG")
    size = path.stat().st_size
    out = subprocess.run([sys.executable, "-c", _MEASURE, endpoint, STAGING_BUCKET, json.dumps(link)],
                         capture_output=True, text=True, check=True, timeout=1200)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    row, growth = report["row"], report["growth"]
    assert row["status"] == rs.STAGED, row
    assert row["etag"].endswith(f"-{-(-size // (8 << 20))}")  # a real multipart upload, verified by HEAD
    print(f"multipart {size / 2**20:.0f} MiB in {report['seconds']:.1f}s, peak RSS growth {growth / 2**20:.1f} MiB")
    assert growth < limit_mb << 20, f"peak RSS grew {growth / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"


def test_a_file_above_the_multipart_threshold_streams(s3_endpoint: str, tmp_path: Path) -> None:
    _multipart(s3_endpoint, tmp_path, seconds=2_500, limit_mb=32)  # 40 MB


@pytest.mark.slow
def test_a_500_mb_recording_streams_in_bounded_memory(s3_endpoint: str, tmp_path: Path) -> None:
    _multipart(s3_endpoint, tmp_path, seconds=32_000, limit_mb=32)  # 512 MB
