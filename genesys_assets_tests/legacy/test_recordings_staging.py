"""Recording staging against the sandbox S3: eventual consistency, never-visible uploads, streamed multipart,
header-timed probes, block-wise transcodes, one listing instead of a HEAD per file, one paced request budget."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import av
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from genesys_assets.lib import recordings_staging as rs
from genesys_assets.sandbox.recordings import RecordingKind, extension, write_recording
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
    assert row["status"] == rs.STAGED, (row["reason"], row["detail"])
    assert row["etag"].endswith(f"-{-(-size // (8 << 20))}")  # a real multipart upload, verified by HEAD
    print(f"multipart {size / 2**20:.0f} MiB in {report['seconds']:.1f}s, peak RSS growth {growth / 2**20:.1f} MiB")
    assert growth < limit_mb << 20, f"peak RSS grew {growth / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"


def test_a_file_above_the_multipart_threshold_streams(s3_endpoint: str, tmp_path: Path) -> None:
    _multipart(s3_endpoint, tmp_path, seconds=2_500, limit_mb=32)  # 40 MB


@pytest.mark.slow
def test_a_500_mb_recording_streams_in_bounded_memory(s3_endpoint: str, tmp_path: Path) -> None:
    _multipart(s3_endpoint, tmp_path, seconds=32_000, limit_mb=32)  # 512 MB


# ---------------------------------------------------------------------------------------------------------
# Probing: the WAV header where it can be trusted, decoding where it cannot
# ---------------------------------------------------------------------------------------------------------

SETTINGS = rs.StagingSettings(bucket=STAGING_BUCKET)


def _recording(tmp_path: Path, kind: RecordingKind, ms: int = 3000) -> tuple[Path, int]:
    path = tmp_path / f"{kind.value}{extension(kind)}"
    return path, write_recording(path, kind, f"key-{kind.value}", ms).duration_ms


@pytest.mark.parametrize("kind", [RecordingKind.PCM16, RecordingKind.MULAW, RecordingKind.ALAW])
def test_pcm_and_g711_durations_come_from_the_header_and_equal_the_decoded_ones(tmp_path: Path,
                                                                                 kind: RecordingKind) -> None:
    path, ms = _recording(tmp_path, kind, 4200)
    found = rs.inspect(path, SETTINGS)
    assert found.header_duration_ms == rs.decode_stats(path)[2] == ms
    assert found.codec == rs.decode_stats(path)[0]


@pytest.mark.parametrize("kind", [RecordingKind.GSM610, RecordingKind.G726, RecordingKind.AMR_NB])
def test_other_codecs_are_left_to_the_decoder(tmp_path: Path, kind: RecordingKind) -> None:
    path, ms = _recording(tmp_path, kind)
    assert rs.inspect(path, SETTINGS).header_duration_ms is None
    assert rs.probe(path, ms, SETTINGS).duration_ms == ms


def test_a_wav_shorter_than_its_header_is_truncated_even_without_a_database_duration(tmp_path: Path) -> None:
    for kind in (RecordingKind.PCM16, RecordingKind.G726):  # the header check needs no decoding, any codec
        path, _ = _recording(tmp_path, kind, 10_000)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(rs.RecordingProblem) as problem:
            rs.probe(path, None, SETTINGS)
        assert problem.value.reason == rs.TRUNCATED and "header declares" in problem.value.detail
        row = rs.stage_recording(None, _link(path, None, kind.value), DAY, SETTINGS).row  # never reaches S3
        assert (row["status"], row["reason"], row["key"]) == (rs.QUARANTINED, rs.TRUNCATED, None)


def test_a_header_short_by_less_than_the_tolerance_or_left_open_is_timed_by_the_file(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    _wav(path, 10)
    path.write_bytes(path.read_bytes()[:-1600])  # 100 ms missing of 10 s: within 250 ms
    assert rs.probe(path, None, SETTINGS).duration_ms == 9900 == rs.decode_stats(path)[2]
    open_ended = tmp_path / "streamed.wav"
    data = bytearray((tmp_path / "short.wav").read_bytes())
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)  # a streaming writer never came back to fill in the size
    open_ended.write_bytes(bytes(data))
    assert rs.inspect(open_ended, SETTINGS).header_duration_ms == 9900


def test_an_inconsistent_header_falls_back_to_decoding(tmp_path: Path) -> None:
    path = tmp_path / "odd.wav"
    _wav(path, 2)
    data = bytearray(path.read_bytes())
    data[28:32] = struct.pack("<I", 12345)  # byte rate that does not match rate x block align
    path.write_bytes(bytes(data))
    with open(path, "rb") as handle:
        assert rs.read_wav_layout(handle, len(data)) is None
    found = rs.inspect(path, SETTINGS)
    assert found.header_duration_ms is None and rs.probe(path, 2000, SETTINGS).duration_ms == 2000


# ---------------------------------------------------------------------------------------------------------
# Transcoding: block-wise, byte-identical to frame by frame, and the decode that checks the duration
# ---------------------------------------------------------------------------------------------------------


def _transcode_frame_by_frame(source: Path, target: Path) -> None:
    """The plain PyAV loop (resample, encode and mux every decoded frame): the bytes staged so far."""
    with av.open(str(source)) as inp:
        stream = inp.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        with av.open(str(target), "w", format="wav", options={"fflags": "+bitexact"}) as out:
            ostream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
            for frame in [*inp.decode(stream), None]:
                if frame is not None:
                    frame.pts = None
                for converted in resampler.resample(frame):
                    for packet in ostream.encode(converted):
                        out.mux(packet)
            for packet in ostream.encode(None):
                out.mux(packet)


@pytest.mark.parametrize("kind", [RecordingKind.AMR_NB, RecordingKind.G726, RecordingKind.GSM610])
def test_block_transcode_is_byte_identical_to_frame_by_frame(tmp_path: Path, kind: RecordingKind) -> None:
    source, ms = _recording(tmp_path, kind, 9_800)  # several blocks and a partial one
    assert rs.transcode_to_pcm_wav(source, tmp_path / "blocks.wav") == ms
    rs.transcode_to_pcm_wav(source, tmp_path / "again.wav")
    _transcode_frame_by_frame(source, tmp_path / "frames.wav")
    blocks = (tmp_path / "blocks.wav").read_bytes()
    assert blocks == (tmp_path / "frames.wav").read_bytes() == (tmp_path / "again.wav").read_bytes()


def test_a_short_amr_is_caught_by_its_transcode(tmp_path: Path) -> None:
    source, ms = _recording(tmp_path, RecordingKind.AMR_NB, 2000)
    row = rs.stage_recording(None, _link(source, ms * 5, "AMR1"), DAY, SETTINGS).row  # never reaches S3
    assert (row["status"], row["reason"], row["key"], row["duration_ms"]) == (rs.QUARANTINED, rs.TRUNCATED, None, None)


def test_an_amr_that_opens_but_does_not_decode_is_undecodable(tmp_path: Path) -> None:
    source = tmp_path / "garbage.amr"
    source.write_bytes(b"#!AMR\n" + bytes(range(256)) * 4)
    assert rs.stream_codec(source)[0] == "amrnb"  # the demuxer accepts it: the transcode is what fails
    row = rs.stage_recording(None, _link(source, 1000, "AMR2"), DAY, SETTINGS).row
    assert (row["status"], row["reason"]) == (rs.QUARANTINED, rs.UNDECODABLE)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(("size", "threshold", "chunk"), [
    (5000, 8192, 8192),   # single PUT: the file's SHA-256
    (5000, 4096, 1024),   # multipart: SHA-256 of the parts' SHA-256s, last part short
    (4096, 2048, 1024),   # multipart, an exact number of parts
    (5000, 8192, 1024),   # single PUT spanning several part-sized reads
])
def test_digests_give_the_checksum_s3_reports(tmp_path: Path, size: int, threshold: int, chunk: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    if size < threshold:
        checksum = _b64(hashlib.sha256(data).digest())
    else:
        parts = [hashlib.sha256(data[i:i + chunk]).digest() for i in range(0, size, chunk)]
        checksum = f"{_b64(hashlib.sha256(b''.join(parts)).digest())}-{len(parts)}"
    assert rs.digests(path, threshold, chunk) == (hashlib.sha256(data).hexdigest(), size, checksum)


def test_a_file_changed_after_hashing_is_refused_by_s3_and_quarantined(
        s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "growing.wav"
    link = _link(path, _wav(path, 2), "GROW")
    hashed = rs.digests

    def then_the_recorder_appends(*args: Any) -> tuple[str, int, str]:
        digest = hashed(*args)
        with path.open("r+b") as handle:  # same size, other bytes: the PUT sends what the hash did not see
            handle.seek(-4, os.SEEK_END)
            handle.write(b"\x01\x02\x03\x04")
        return digest

    monkeypatch.setattr(rs, "digests", then_the_recorder_appends)
    row = rs.stage_recording(s3, link, DAY, SETTINGS).row
    assert (row["status"], row["reason"]) == (rs.QUARANTINED, rs.UPLOAD_CHECKSUM_MISMATCH)
    assert "SHA-256" in row["detail"] and "re-run" in row["detail"]
    assert rs.head_or_none(s3, STAGING_BUCKET, row["key"]) is None  # S3 stored nothing under the hash's key
    monkeypatch.undo()
    again = rs.stage_recording(s3, link, DAY, SETTINGS).row  # the re-run stages the file as it now is
    assert again["status"] == rs.STAGED and again["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_listed_object_with_the_wrong_bytes_is_uploaded_again(s3: Any, tmp_path: Path) -> None:
    """Same key, same size, other content: only the checksum tells them apart (a HEAD says so)."""
    day = date(2026, 1, 8)
    links = _links(tmp_path, 1)
    manifest, _ = rs.stage_all(s3, links, day, SETTINGS)
    key, data = manifest["key"][0], (tmp_path / "r0.wav").read_bytes()
    wrong = data[:-1] + bytes([data[-1] ^ 0xFF])
    s3.put_object(Bucket=STAGING_BUCKET, Key=key, Body=wrong, ContentType="audio/wav", ServerSideEncryption="AES256",
                  ChecksumAlgorithm="SHA256", ChecksumSHA256=_b64(hashlib.sha256(wrong).digest()))
    again, run = rs.stage_all(s3, links, day, SETTINGS)
    assert (again["status"][0], run.uploaded) == (rs.STAGED, 1)
    assert s3.get_object(Bucket=STAGING_BUCKET, Key=key)["Body"].read() == data


# ---------------------------------------------------------------------------------------------------------
# Requests: one listing, PUT + HEAD per new file, HEAD only on a re-run, all paced by one limiter
# ---------------------------------------------------------------------------------------------------------


def test_staging_a_day_reports_its_progress(s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=rs.__name__)
    manifest, _ = rs.stage_all(s3, _links(tmp_path, 3), date(2026, 1, 9), SETTINGS, workers=2)
    assert manifest.height == 3
    lines = [r.getMessage() for r in caplog.records if r.name == rs.__name__]
    assert lines[-1].startswith("Recordings of 2026-01-09 checked and uploaded: 3 of 3 (100 %)")


def _links(tmp_path: Path, n: int) -> list[dict[str, Any]]:
    return [_link(tmp_path / f"r{i}.wav", _wav(tmp_path / f"r{i}.wav", 1), f"R{i}") for i in range(n)]


def test_a_rerun_lists_once_and_only_verifies(s3: Any, tmp_path: Path) -> None:
    day = date(2026, 1, 2)
    links = _links(tmp_path, 3)
    first, run1 = rs.stage_all(s3, links, day, SETTINGS, workers=3)
    assert (run1.listed, run1.uploaded, run1.requests) == (True, 3, 1 + 3 + 1)  # LIST, a PUT each, LIST confirming
    second, run2 = rs.stage_all(s3, links, day, SETTINGS, workers=3)
    # LIST, then a HEAD and a tagging PUT each: the tags are restated, the bytes are not sent again.
    assert (run2.uploaded, run2.already_present, run2.requests) == (0, 3, 1 + 3 + 3)
    assert first.equals(second)


def test_a_rerun_restates_the_tags_of_objects_already_staged(s3: Any, tmp_path: Path) -> None:
    # Staged as raw, then the security team says masked: the objects' tags must say so, not only the manifest.
    day = date(2026, 1, 4)
    links = _links(tmp_path, 2)
    rs.stage_all(s3, links, day, rs.StagingSettings(bucket=STAGING_BUCKET, source_audio="raw"))
    again, run = rs.stage_all(s3, links, day, rs.StagingSettings(bucket=STAGING_BUCKET, source_audio="masked"))
    assert run.uploaded == 0
    for key in again["key"]:
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=STAGING_BUCKET, Key=key)["TagSet"]}
        assert tags["source-audio"] == "masked" and tags["legacy-recording-id"].startswith("R")


def test_a_listed_object_whose_head_disagrees_is_uploaded_again(s3: Any, tmp_path: Path) -> None:
    day = date(2026, 1, 3)
    links = _links(tmp_path, 1)
    manifest, _ = rs.stage_all(s3, links, day, SETTINGS)
    key = manifest["key"][0]
    s3.put_object(Bucket=STAGING_BUCKET, Key=key, Body=Path(tmp_path / "r0.wav").read_bytes(),
                  ContentType="application/octet-stream", ServerSideEncryption="AES256")  # same bytes, wrong type
    again, run = rs.stage_all(s3, links, day, SETTINGS)
    assert (again["status"][0], run.uploaded, run.requests) == (rs.STAGED, 1, 1 + 3)  # LIST, HEAD, PUT, LIST
    assert s3.head_object(Bucket=STAGING_BUCKET, Key=key)["ContentType"] == "audio/wav"


class UnlistedUploads(LaggingHeads):
    """The day's first listing as S3 gives it; later listings leave out what this run uploaded (a listing that
    lags the PUTs), and HEADs of a key answer 404 ``lag`` times."""

    def __init__(self, client: Any, lag: int) -> None:
        super().__init__(client, lag)
        self.listings = 0
        self.put_keys: set[str] = set()

    def put_object(self, **kw: Any) -> dict:
        self.put_keys.add(kw["Key"])
        return self._client.put_object(**kw)

    def list_objects_v2(self, **kw: Any) -> dict:
        self.listings += 1
        page = self._client.list_objects_v2(**kw)
        if self.listings > 1:
            page["Contents"] = [o for o in page.get("Contents", ()) if o["Key"] not in self.put_keys]
        return page


def test_uploads_are_confirmed_by_one_listing_not_a_head_each(s3: Any, tmp_path: Path) -> None:
    manifest, run = rs.stage_all(s3, _links(tmp_path, 4), date(2026, 1, 10), SETTINGS)
    assert manifest["status"].to_list() == [rs.STAGED] * 4
    assert (run.uploaded, run.verify_retries, run.requests) == (4, 0, 1 + 4 + 1)  # LIST, the PUTs, one LIST
    for row in manifest.iter_rows(named=True):
        head = s3.head_object(Bucket=STAGING_BUCKET, Key=row["key"], ChecksumMode="ENABLED")
        assert head["ETag"].strip('"') == row["etag"] and head["ContentLength"] == row["bytes"]


def test_an_upload_the_listing_does_not_show_is_headed_until_visible(s3: Any, tmp_path: Path) -> None:
    client = UnlistedUploads(s3, lag=1)  # and its first HEAD answers 404
    settings = rs.StagingSettings(bucket=STAGING_BUCKET, verify_base_seconds=0.01)
    manifest, run = rs.stage_all(client, _links(tmp_path, 2), date(2026, 1, 11), settings)
    assert manifest["status"].to_list() == [rs.STAGED] * 2
    assert sorted(client.heads.values()) == [2, 2]  # backoff: 404, then visible
    assert (run.uploaded, run.verify_retries, run.bytes_uploaded) == (2, 2, sum(manifest["bytes"]))


def test_an_upload_never_visible_after_the_listing_is_quarantined_and_not_counted(s3: Any, tmp_path: Path) -> None:
    client = UnlistedUploads(s3, lag=100)
    settings = rs.StagingSettings(bucket=STAGING_BUCKET, verify_attempts=3, verify_base_seconds=0.01)
    manifest, run = rs.stage_all(client, _links(tmp_path, 1), date(2026, 1, 12), settings)
    row = manifest.row(0, named=True)
    assert (row["status"], row["reason"]) == (rs.QUARANTINED, rs.UPLOAD_UNVERIFIED)
    assert "after 3 HEADs" in row["detail"]
    assert (run.uploaded, run.already_present, run.bytes_uploaded) == (0, 0, 0)


class NoChecksumEcho(LaggingHeads):
    """An S3-compatible store whose PUT answer leaves out the checksum: nothing says what it stored."""

    def put_object(self, **kw: Any) -> dict:
        return {k: v for k, v in self._client.put_object(**kw).items() if k != "ChecksumSHA256"}


def test_a_put_answer_without_the_checksum_is_verified_by_head(s3: Any, tmp_path: Path) -> None:
    client = NoChecksumEcho(s3, lag=0)
    manifest, run = rs.stage_all(client, _links(tmp_path, 1), date(2026, 1, 13), SETTINGS)
    assert manifest["status"].to_list() == [rs.STAGED] and client.heads == {manifest["key"][0]: 1}
    assert run.requests == 1 + 1 + 1  # LIST, PUT, HEAD: no confirming listing


class NoListing(LaggingHeads):
    """A role allowed to read and write objects but not to list the bucket."""

    def __init__(self, client: Any, code: str = "AccessDenied") -> None:
        super().__init__(client, lag=0)
        self.code = code

    def list_objects_v2(self, **kw: Any) -> dict:
        raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "ListObjectsV2")


def test_without_list_permission_each_recording_heads_its_key(s3: Any, tmp_path: Path) -> None:
    links = _links(tmp_path, 2)
    manifest, run = rs.stage_all(NoListing(s3), links, date(2026, 1, 4), SETTINGS)
    assert manifest["status"].to_list() == [rs.STAGED] * 2
    assert (run.listed, run.uploaded, run.requests) == (False, 2, 2 * 3)  # HEAD, PUT, HEAD each


def test_a_listing_that_fails_otherwise_fails_the_run(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(ClientError):
        rs.stage_all(NoListing(s3, code="NoSuchBucket"), _links(tmp_path, 1), date(2026, 1, 5), SETTINGS)


class PagedListing:
    """``list_objects_v2`` answering in pages of ``page`` keys, recording each call's arguments."""

    def __init__(self, keys: list[str], page: int) -> None:
        self.keys, self.page, self.calls = keys, page, []

    def list_objects_v2(self, **kw: Any) -> dict:
        self.calls.append(kw)
        start = int(kw.get("ContinuationToken", 0))
        chunk = self.keys[start:start + self.page]
        more = start + self.page < len(self.keys)
        return {"Contents": [{"Key": k, "Size": i, "ETag": f'"e{i}"'} for i, k in enumerate(chunk, start)],
                "IsTruncated": more, **({"NextContinuationToken": str(start + self.page)} if more else {})}


def test_a_listing_follows_its_continuation_tokens() -> None:
    keys = [f"p/{i}.wav" for i in range(5)]
    client = PagedListing(keys, page=2)
    assert rs.list_present(client, "b", "p/") == {k: i for i, k in enumerate(keys)}
    assert [c.get("ContinuationToken") for c in client.calls] == [None, "2", "4"]
    assert all((c["Bucket"], c["Prefix"]) == ("b", "p/") for c in client.calls)


def test_a_retried_request_takes_a_slot_and_is_counted(s3: Any, tmp_path: Path) -> None:
    attempts: list[str] = []

    def drop_first_put(request: Any, **_: Any) -> None:  # after the pacing hook: registered last, same event
        if request.method == "PUT":
            attempts.append(request.url)
            if len(attempts) == 1:
                raise ConnectionClosedError(endpoint_url=request.url)  # retryable: botocore sends it again

    s3.meta.events.register_last("before-send.s3", drop_first_put)
    try:
        manifest, run = rs.stage_all(s3, _links(tmp_path, 1), date(2026, 1, 9), SETTINGS)
    finally:
        s3.meta.events.unregister("before-send.s3", drop_first_put)
    assert manifest["status"].to_list() == [rs.STAGED] and len(attempts) == 2
    assert run.requests == 1 + 2 + 1  # LIST, the dropped PUT and its retry, the confirming LIST


def test_every_request_takes_a_slot_of_the_shared_rate_limit(s3: Any, tmp_path: Path) -> None:
    links = _links(tmp_path, 2)
    started = time.monotonic()
    _, run = rs.stage_all(s3, links, date(2026, 1, 6), SETTINGS, workers=2, requests_per_second=10)
    assert run.requests == 4  # LIST, two PUTs, the confirming LIST
    assert time.monotonic() - started >= 0.3 - 0.01  # the first slot is free, then one every 100 ms
    s3.head_bucket(Bucket=STAGING_BUCKET)
    assert run.requests == 4  # the pacing hook left the caller's client when the run ended


def test_a_single_put_carries_the_sha256_for_s3_to_check(s3: Any, tmp_path: Path) -> None:
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        if request.method == "PUT":
            sent.append(dict(request.headers))

    s3.meta.events.register("before-send.s3.PutObject", capture)
    try:
        manifest, _ = rs.stage_all(s3, _links(tmp_path, 1), date(2026, 1, 7), SETTINGS)
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", capture)
    expected = base64.b64encode(bytes.fromhex(manifest["sha256"][0]))
    assert [h.get("x-amz-checksum-sha256") for h in sent] == [expected]


class CountingSlots:
    """Stands in for ``DECODE_SLOTS`` with one slot, and records how many decodes ever ran at once."""

    def __init__(self) -> None:
        self._lock, self._inner = threading.Lock(), threading.Semaphore(1)
        self.entered = self.running = self.most = 0

    def __enter__(self) -> None:
        self._inner.acquire()
        with self._lock:
            self.entered += 1
            self.running += 1
            self.most = max(self.most, self.running)
            time.sleep(0.01)  # widen the window a missing gate would show in

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.running -= 1
        self._inner.release()


def test_decodes_and_transcodes_take_a_core_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slots = CountingSlots()
    monkeypatch.setattr(rs, "DECODE_SLOTS", slots)
    sources = [_recording(tmp_path / str(i), RecordingKind.G726, 2000)[0] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda p: rs.transcode_to_pcm_wav(p, p.with_suffix(".pcm.wav")), sources))
        list(pool.map(rs.decode_stats, sources))
    assert (slots.entered, slots.most) == (8, 1)


def test_stage_all_transcodes_in_worker_processes_to_the_same_bytes(s3: Any, tmp_path: Path) -> None:
    links, expected = [], {}
    for kind in (RecordingKind.AMR_NB, RecordingKind.G726, RecordingKind.GSM610):
        source, ms = _recording(tmp_path, kind, 5000)
        links.append(_link(source, ms, kind.value))
        rs.transcode_to_pcm_wav(source, tmp_path / f"{kind.value}.in-thread.wav")  # this thread, no pool
        expected[kind.value] = hashlib.sha256((tmp_path / f"{kind.value}.in-thread.wav").read_bytes()).hexdigest()
    manifest, run = rs.stage_all(s3, links, date(2026, 1, 8), SETTINGS)
    assert manifest["transcoded"].all() and run.uploaded == 3
    assert dict(zip(manifest["recording_id"], manifest["sha256"], strict=True)) == expected


def test_a_transcode_problem_crosses_back_from_the_worker(tmp_path: Path) -> None:
    source = tmp_path / "garbage.amr"
    source.write_bytes(b"#!AMR\n" + bytes(range(256)) * 4)
    with rs.TranscodePool(workers=1) as pool:
        assert not pool.started  # nothing starts before the first transcode
        with pytest.raises(rs.RecordingProblem) as problem:
            pool.transcode(source, tmp_path / "out.wav")
        assert pool.started
    assert problem.value.reason == rs.UNDECODABLE and "PatchWelcomeError" in problem.value.detail  # the decoder's
    assert not pool.started


def _amr_frames(body: bytes) -> list[bytes]:
    frames, pos = [], 0
    while pos < len(body):
        size = rs.AMR_NB_FRAME_BYTES[(body[pos] >> 3) & 0x0F]
        frames.append(body[pos:pos + size])
        pos += size
    return frames


def test_amr_packets_hold_whole_frames_across_read_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = _recording(tmp_path, RecordingKind.AMR_NB, 3000)
    body = source.read_bytes()[len(rs.AMR_NB_MAGIC):]
    source.write_bytes(rs.AMR_NB_MAGIC + body[:-5])  # the last frame cut short
    monkeypatch.setattr(rs, "READ_CHUNK", 100)  # frames straddle every read
    packets = [bytes(p) for p in rs.amr_nb_packets(source, frames_per_packet=7)]
    assert b"".join(packets) == body[:-5] and len(packets) > 3
    assert all(len(_amr_frames(p)) == 7 for p in packets[:-2])  # whole frames, 7 at a time ...
    assert 1 <= len(_amr_frames(packets[-2])) <= 7 and len(_amr_frames(packets[-1])) == 1
    stub = packets[-1]
    assert len(stub) < rs.AMR_NB_FRAME_BYTES[(stub[0] >> 3) & 0x0F]  # ... and the cut frame alone, last
    with pytest.raises(rs.RecordingProblem) as problem:
        rs.transcode_to_pcm_wav(source, tmp_path / "out.wav")  # the decoder rejects the stub, as from the demuxer
    assert problem.value.reason == rs.UNDECODABLE
    sid, no_data = bytes([8 << 3]) + bytes(5), bytes([15 << 3])  # comfort noise, no data: one packet each
    frames = _amr_frames(body)
    source.write_bytes(rs.AMR_NB_MAGIC + b"".join(frames[:3]) + sid + no_data + b"".join(frames[3:5]))
    packets = [bytes(p) for p in rs.amr_nb_packets(source, frames_per_packet=7)]
    assert packets == [b"".join(frames[:3]), sid, no_data, b"".join(frames[3:5])]
    wav = tmp_path / "not-amr.amr"
    _wav(wav, 1)
    with pytest.raises(rs.RecordingProblem):
        list(rs.amr_nb_packets(wav))


def test_a_part_damaged_in_transit_is_refused_by_s3_and_quarantined(s3: Any, tmp_path: Path) -> None:
    """A multipart upload: boto3 checksums each part as it reads it; a part altered on the way is refused."""
    path = tmp_path / "parts.wav"
    link = _link(path, _wav(path, 700), "PARTS")  # 11.2 MB: three parts of 5 MiB

    def damage(request: Any, **_: Any) -> None:
        body = request.body.read() if hasattr(request.body, "read") else request.body
        request.body = bytes([body[0] ^ 0xFF]) + body[1:]

    s3.meta.events.register("before-send.s3.UploadPart", damage)
    try:
        settings = rs.StagingSettings(bucket=STAGING_BUCKET, multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
        row = rs.stage_recording(s3, link, DAY, settings).row
    finally:
        s3.meta.events.unregister("before-send.s3.UploadPart", damage)
    assert (row["status"], row["reason"]) == (rs.QUARANTINED, rs.UPLOAD_CHECKSUM_MISMATCH)
    assert rs.head_or_none(s3, STAGING_BUCKET, row["key"]) is None


def test_every_object_is_tagged_with_what_its_source_audio_is() -> None:
    for audio in rs.SOURCE_AUDIO:
        tags = dict(rs.tag_pairs(["Retention-7Y"], "R-1", audio))
        assert tags["source-audio"] == audio and tags["legacy-recording-id"] == "R-1"
