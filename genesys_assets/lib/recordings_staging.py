"""Interaction Recorder files → the staging bucket: probe, transcode when the player cannot play it, upload
under a content-hash key, verify by HEAD before it counts. No Dagster here: the asset passes an S3 client.

* **Probe**: the file's magic bytes decide what it is (RIFF/WAVE, ``#!AMR``, MP3, the SASF secure format), then
  PyAV decodes it frame by frame (never the whole file in memory) to count samples: a decoded duration far
  below the database's ``Duration`` is a truncated file. SASF is "needs export through PureConnect", never audio.
* **Transcode** (in process, PyAV, streaming): anything but PCM/G.711 WAV or MP3 becomes 16-bit PCM WAV, with
  bit-exact output so the same source gives the same bytes, hence the same key, on every run.
* **Upload**: ``recordings/year=/month=/day=/<sha256>.<ext>`` with the exact Content-Type, SSE (AES256) and
  retention tags. boto3's managed transfer streams the file: a single PUT below the multipart threshold,
  otherwise parts of ``multipart_chunksize`` read one at a time.
* **Verify**: HEAD with exponential backoff until size, ETag (MD5, or the multipart MD5-of-MD5s computed
  locally in the same pass as the SHA-256), Content-Type and encryption match (seed 000: storage is eventually
  consistent; a reference to an object not yet visible is an orphaned link).
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import av
import polars as pl

from genesys_assets.resources.genesys_cloud_client import RateLimiter
from genesys_assets.sandbox.recordings import resolve_media_uri

READ_CHUNK = 1 << 20
PASSTHROUGH_CODECS = frozenset({"pcm_s16le", "pcm_mulaw", "pcm_alaw", "mp3", "mp3float"})
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
RETENTION_TAGS = {"Retention-7Y": ("retention", "7y"), "Legal-Hold": ("legal-hold", "true")}
DEFAULT_RETENTION = ("retention", "2y")

# Quarantine reasons of a recording.
MISSING_FILE, ZERO_BYTE, SASF = "missing_file", "zero_byte", "sasf_needs_export"
UNKNOWN_FORMAT, UNDECODABLE, TRUNCATED = "unknown_format", "undecodable", "truncated"
DURATION_MISMATCH, UPLOAD_UNVERIFIED = "duration_mismatch", "upload_unverified"
STAGED, QUARANTINED = "staged", "quarantined"

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date, "recording_id": pl.String, "interaction_id": pl.String, "x_legacy_id": pl.String,
    "source_uri": pl.String, "source_bytes": pl.Int64, "container_in": pl.String, "codec_in": pl.String,
    "codec_out": pl.String, "transcoded": pl.Boolean, "duration_ms": pl.Int64, "db_duration_ms": pl.Int64,
    "bucket": pl.String, "key": pl.String, "sha256": pl.String, "bytes": pl.Int64, "etag": pl.String,
    "content_type": pl.String, "server_side_encryption": pl.String, "tags": pl.String, "status": pl.String,
    "reason": pl.String, "detail": pl.String,
}


class RecordingProblem(Exception):
    """A recording that cannot be staged; ``reason`` is the quarantine code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Probe:
    container: str
    codec: str
    sample_rate: int
    duration_ms: int


@dataclass(frozen=True)
class StagingSettings:
    bucket: str
    multipart_threshold: int = 8 * 1024 * 1024
    multipart_chunksize: int = 8 * 1024 * 1024
    duration_tolerance_ms: int = 250
    duration_tolerance_ratio: float = 0.02
    verify_attempts: int = 6
    verify_base_seconds: float = 0.2
    verify_max_seconds: float = 5.0
    passthrough_codecs: frozenset[str] = PASSTHROUGH_CODECS


def sniff(head: bytes) -> str:
    """The container by magic bytes: wav, amr, mp3, sasf, xml, or unknown."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"#!AMR"):
        return "amr"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head.startswith(b"SASF"):
        return "sasf"
    if head.lstrip().startswith(b"<?xml"):
        return "xml"
    return "unknown"


def decode_stats(path: Path) -> tuple[str, int, int]:
    """(codec, sample rate, decoded duration ms), decoding frame by frame."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise RecordingProblem(UNDECODABLE, "no audio stream")
            stream = container.streams.audio[0]
            samples = 0
            for frame in container.decode(stream):
                samples += frame.samples
            rate = stream.codec_context.sample_rate or 8000
            return stream.codec_context.name, rate, round(samples * 1000 / rate)
    except av.FFmpegError as exc:
        raise RecordingProblem(UNDECODABLE, f"{type(exc).__name__}: {exc}") from None


def probe(path: Path, db_duration_ms: int | None, settings: StagingSettings) -> Probe:
    """Check a recording file; raises :class:`RecordingProblem` with the quarantine reason."""
    if not path.is_file():
        raise RecordingProblem(MISSING_FILE, f"{path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise RecordingProblem(ZERO_BYTE, f"{path.name} is empty")
    with open(path, "rb") as handle:
        container = sniff(handle.read(16))
    if container == "sasf":
        raise RecordingProblem(SASF, "Interaction Media Server secure audio (SASF): export it decrypted through "
                                     "PureConnect IR first; it is not decodable audio")
    if container not in ("wav", "amr", "mp3"):
        raise RecordingProblem(UNKNOWN_FORMAT, f"magic bytes of {path.name} are not WAV, AMR or MP3 ({container})")
    codec, rate, duration = decode_stats(path)
    if duration == 0:
        raise RecordingProblem(UNDECODABLE, f"{path.name} decodes to no audio")
    if db_duration_ms:
        gap = db_duration_ms - duration
        tolerance = max(settings.duration_tolerance_ms, db_duration_ms * settings.duration_tolerance_ratio)
        if gap > tolerance:
            raise RecordingProblem(TRUNCATED, f"decodes to {duration} ms of the {db_duration_ms} ms the database "
                                              "recorded: the file is truncated")
        if -gap > tolerance:
            raise RecordingProblem(DURATION_MISMATCH, f"decodes to {duration} ms, database says {db_duration_ms} ms")
    return Probe(container, codec, rate, duration)


def transcode_to_pcm_wav(source: Path, target: Path) -> None:
    """Decode ``source`` and write 16-bit PCM mono WAV, frame by frame, bit-exact (stable bytes)."""
    with av.open(str(source)) as inp:
        stream = inp.streams.audio[0]
        rate = stream.codec_context.sample_rate or 8000
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        with av.open(str(target), "w", format="wav", options={"fflags": "+bitexact"}) as out:
            ostream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
            for frame in inp.decode(stream):
                frame.pts = None
                for converted in resampler.resample(frame):
                    for packet in ostream.encode(converted):
                        out.mux(packet)
            for converted in resampler.resample(None):
                for packet in ostream.encode(converted):
                    out.mux(packet)
            for packet in ostream.encode(None):
                out.mux(packet)


def digests(path: Path, multipart_threshold: int, chunksize: int) -> tuple[str, int, str]:
    """(sha256 hex, size, the ETag S3 will report) in one streaming pass."""
    sha = hashlib.sha256()
    whole = hashlib.md5()  # S3 ETag arithmetic, not security
    parts: list[bytes] = []
    size = 0
    part = hashlib.md5()
    part_fill = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            sha.update(chunk)
            whole.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                take = min(len(view), chunksize - part_fill)
                part.update(view[:take])
                part_fill += take
                view = view[take:]
                if part_fill == chunksize:
                    parts.append(part.digest())
                    part, part_fill = hashlib.md5(), 0
    if part_fill:
        parts.append(part.digest())
    if size < multipart_threshold:
        etag = whole.hexdigest()
    else:
        etag = f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
    return sha.hexdigest(), size, etag


def tags_for(ir_tags: Iterable[str] | None, recording_id: str) -> str:
    """S3 object tags: retention (7y when IR tagged Retention-7Y, else the default), legal hold, provenance."""
    tags = dict([DEFAULT_RETENTION])
    for tag in ir_tags or ():
        if tag in RETENTION_TAGS:
            k, v = RETENTION_TAGS[tag]
            tags[k] = v
    tags["source"] = "pureconnect-ir"
    tags["legacy-recording-id"] = recording_id
    return urlencode(sorted(tags.items()))


def _head_matches(head: dict, size: int, etag: str, content_type: str) -> str | None:
    got_etag = str(head.get("ETag", "")).strip('"')
    if head.get("ContentLength") != size:
        return f"size {head.get('ContentLength')} != {size}"
    if got_etag != etag:
        return f"etag {got_etag} != {etag}"
    if head.get("ContentType") != content_type:
        return f"content type {head.get('ContentType')} != {content_type}"
    if head.get("ServerSideEncryption") != "AES256":
        return f"server-side encryption {head.get('ServerSideEncryption')}"
    return None


def head_or_none(s3: Any, bucket: str, key: str) -> dict | None:
    """HEAD the object; None for 404 (not there, or not visible yet)."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore ClientError; boto3 is not imported here
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def verify_upload(s3: Any, bucket: str, key: str, size: int, etag: str, content_type: str,
                  settings: StagingSettings, sleep: Callable[[float], None] = time.sleep) -> int:
    """HEAD until the object is visible and matches; exponential backoff with jitter. Returns attempts used."""
    problem = "not visible"
    for attempt in range(1, settings.verify_attempts + 1):
        head = head_or_none(s3, bucket, key)
        problem = "not visible (404)" if head is None else _head_matches(head, size, etag, content_type)
        if problem is None:
            return attempt
        if attempt < settings.verify_attempts:
            ceiling = min(settings.verify_max_seconds, settings.verify_base_seconds * 2 ** (attempt - 1))
            sleep(ceiling / 2 + random.uniform(0, ceiling / 2))
    raise RecordingProblem(UPLOAD_UNVERIFIED, f"s3://{bucket}/{key} after {settings.verify_attempts} HEADs: {problem}")


@dataclass
class StageResult:
    row: dict[str, Any]
    uploaded: bool = False
    verify_attempts: int = 0
    seconds: float = 0.0


@dataclass
class StagingRun:
    """Counters shared by the workers of one asset run."""

    uploaded: int = 0
    already_present: int = 0
    bytes_uploaded: int = 0
    verify_retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def upload(s3: Any, path: Path, bucket: str, key: str, extra: dict[str, Any], settings: StagingSettings) -> None:
    """Stream ``path`` to S3: one PUT below the threshold, else a multipart upload one part at a time."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=settings.multipart_threshold,
                            multipart_chunksize=settings.multipart_chunksize, max_concurrency=1, use_threads=False)
    with open(path, "rb") as handle:
        s3.upload_fileobj(handle, bucket, key, ExtraArgs=extra, Config=config)


def stage_recording(s3: Any, link: dict[str, Any], day: date, settings: StagingSettings,
                    limiter: RateLimiter | None = None, run: StagingRun | None = None) -> StageResult:
    """Probe, transcode if needed, upload and verify one recording; quarantine it on any problem."""
    started = time.monotonic()
    run = run or StagingRun()
    source = resolve_media_uri(link["media_uri"]) if link.get("media_uri") else Path("")
    row: dict[str, Any] = {name: None for name in MANIFEST_SCHEMA}
    row.update(day=day, recording_id=link["recording_id"], interaction_id=link["interaction_id"],
               x_legacy_id=link.get("x_legacy_id"), source_uri=link.get("media_uri"), bucket=settings.bucket,
               db_duration_ms=link.get("db_duration_ms"), transcoded=False)
    result = StageResult(row)
    try:
        if source.is_file():
            row["source_bytes"] = source.stat().st_size
        found = probe(source, link.get("db_duration_ms"), settings)
        row.update(container_in=found.container, codec_in=found.codec, duration_ms=found.duration_ms)
        with tempfile.TemporaryDirectory(prefix="recording-") as tmp:
            upload_path, codec_out, ext = source, found.codec, found.container
            if found.codec not in settings.passthrough_codecs or found.container not in CONTENT_TYPES:
                upload_path, codec_out, ext = Path(tmp) / "out.wav", "pcm_s16le", "wav"
                transcode_to_pcm_wav(source, upload_path)
                row["transcoded"] = True
            sha, size, etag = digests(upload_path, settings.multipart_threshold, settings.multipart_chunksize)
            key = f"recordings/year={day:%Y}/month={day:%m}/day={day:%d}/{sha}.{ext}"
            content_type = CONTENT_TYPES[ext]
            tags = tags_for(link.get("ir_tags"), link["recording_id"])
            row.update(codec_out=codec_out, key=key, sha256=sha, bytes=size, etag=etag, content_type=content_type,
                       server_side_encryption="AES256", tags=tags)
            if limiter is not None:
                limiter.acquire()
            present = head_or_none(s3, settings.bucket, key)
            if present is None or _head_matches(present, size, etag, content_type) is not None:
                extra = {"ContentType": content_type, "ServerSideEncryption": "AES256", "Tagging": tags,
                         "Metadata": {"sha256": sha, "legacy-recording-id": link["recording_id"]}}
                upload(s3, upload_path, settings.bucket, key, extra, settings)
                result.uploaded = True
            result.verify_attempts = verify_upload(s3, settings.bucket, key, size, etag, content_type, settings)
        row["status"] = STAGED
        with run.lock:
            run.uploaded += int(result.uploaded)
            run.already_present += int(not result.uploaded)
            run.bytes_uploaded += size if result.uploaded else 0
            run.verify_retries += result.verify_attempts - 1
    except RecordingProblem as problem:
        row.update(status=QUARANTINED, reason=problem.reason, detail=problem.detail)
    result.seconds = time.monotonic() - started
    return result


def stage_all(s3: Any, links: list[dict[str, Any]], day: date, settings: StagingSettings, *, workers: int = 10,
              requests_per_second: float | None = 50.0) -> tuple[pl.DataFrame, StagingRun]:
    """Stage every recording with a bounded pool sharing one rate limit; the manifest comes back sorted."""
    limiter = RateLimiter(requests_per_second)
    run = StagingRun()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stage-recording") as pool:
        results = list(pool.map(lambda link: stage_recording(s3, link, day, settings, limiter, run), links))
    manifest = pl.DataFrame([r.row for r in results], schema=MANIFEST_SCHEMA).sort("recording_id")
    return manifest, run


def playback_problems(s3: Any, row: dict[str, Any]) -> list[str]:
    """Fetch a staged object back (streamed to a temp file) and check checksum, content type and decoding."""
    problems: list[str] = []
    try:
        obj = s3.get_object(Bucket=row["bucket"], Key=row["key"])
    except Exception as exc:
        return [f"GET failed: {type(exc).__name__}"]
    if obj.get("ContentType") != row["content_type"]:
        problems.append(f"content type {obj.get('ContentType')} != {row['content_type']}")
    with tempfile.NamedTemporaryFile(suffix=Path(row["key"]).suffix) as tmp:
        sha = hashlib.sha256()
        for chunk in obj["Body"].iter_chunks(READ_CHUNK):
            sha.update(chunk)
            tmp.write(chunk)
        tmp.flush()
        if sha.hexdigest() != row["sha256"]:
            problems.append("sha256 of the fetched object differs from the manifest")
        try:
            _, _, duration = decode_stats(Path(tmp.name))
            if duration <= 0:
                problems.append("decodes to no audio")
        except RecordingProblem as problem:
            problems.append(problem.detail)
    return problems


def environment_bucket(configured: str | None) -> str:
    bucket = configured or os.environ.get("GENESYS_STAGING_BUCKET", "")
    if not bucket:
        raise ValueError("no staging bucket: set GENESYS_STAGING_BUCKET (or the asset's bucket config)")
    return bucket

