"""Interaction Recorder files → the staging bucket: probe, transcode when the player cannot play it, upload
under a content-hash key, verify by HEAD before it counts. No Dagster here: the asset passes an S3 client.

* **Probe**: the file's magic bytes decide what it is (RIFF/WAVE, ``#!AMR``, MP3, the SASF secure format). A
  WAV's header says how many bytes of audio it holds: more declared than the file has is a truncated file,
  whatever the database says. For PCM and G.711 WAVs with a consistent header every byte is a sample, so the
  header (checked against the file's size) gives the codec and exact duration without decoding; for anything
  else FFmpeg's demuxer names the codec and the file is decoded frame by frame (never the whole file in memory),
  by the transcode itself when there is one. A duration far below the database's ``Duration`` is a truncated
  file. SASF is "needs export through PureConnect", never audio.
* **Transcode** (PyAV, streaming): anything but PCM/G.711 WAV or MP3 becomes 16-bit PCM WAV, with
  bit-exact output so the same source gives the same bytes, hence the same key, on every run. Decoded frames
  (20 ms each for AMR) are gathered in a FIFO and converted, encoded and muxed in blocks: the same bytes as frame
  by frame, with a fraction of the per-frame Python. ``stage_all`` runs transcodes in worker processes, one per
  core (:class:`TranscodePool`: the per-packet Python left still holds the GIL too often for threads to scale);
  decodes run in a thread take one of ``DECODE_SLOTS``, one per core, while the other workers hash and upload.
* **Upload**: ``recordings/year=/month=/day=/<sha256>.<ext>`` with the exact Content-Type, SSE (AES256) and
  retention tags, and the file's SHA-256 for S3 to check on receipt (a changed file or damaged bytes are refused
  with ``BadDigest``: quarantined as ``upload_checksum_mismatch``). One streaming PUT below the multipart
  threshold (64 MiB: a 10-minute 8 kHz PCM call is ~10 MB), otherwise boto3's managed transfer, SHA-256 per
  part, parts of ``multipart_chunksize`` read one at a time. What is already there comes from one listing of the
  day's prefix, not a HEAD per file.
* **Verify** (seed 000: storage is eventually consistent; a reference to an object not yet visible is an orphaned
  link): S3's answer to a single PUT carries the SHA-256 it checked the bytes against and the encryption, and one
  listing of the day after the uploads shows each key with its size (a request per 1,000 keys, not a HEAD per
  file). A key the listing does not show, a multipart upload, or an answer without the checksum gets a HEAD
  (checksum mode) with exponential backoff until size, S3's SHA-256 checksum (the file's, or for a multipart
  upload the SHA-256 of its parts' SHA-256s, ``-N``, computed locally in the same pass), Content-Type and
  encryption match. The hash the key is named by is the hash S3 verified: no second digest (MD5 ETag) needed.
* **Pacing**: every S3 request of a run (listing, PUT, parts, HEAD, retries) takes a slot of one shared rate
  limit. The default stays well under S3's documented 3,500 writes and 5,500 reads per second per prefix.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import multiprocessing
import os
import random
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

import av
import polars as pl

from genesys_assets.lib.legacy_interactions import partition_prefix
from genesys_assets.lib.progress import Progress
from genesys_assets.resources.genesys_cloud_client import RateLimiter
from genesys_assets.sandbox.recordings import resolve_media_uri

log = logging.getLogger(__name__)


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


READ_CHUNK = 1 << 20
TRANSCODE_BLOCK_SAMPLES = 1 << 15  # ~4 s at 8 kHz per resample/encode/mux call
# FFmpeg's WAV demuxer hands out 256-byte packets of G.726 (a packet per 64 ms); 64 KiB ones cut the per-packet
# overhead, same samples. Other demuxers ignore the option; codecs with a parser (GSM) keep their frame packets.
DEMUX_OPTIONS = {"max_size": str(1 << 16)}
# AMR-NB storage frame sizes by frame type, header byte included (RFC 4867 section 5.3; FFmpeg's AMR demuxer
# uses the same table). Whole frames are handed to the decoder a few hundred at a time instead of one per packet.
AMR_NB_MAGIC = b"#!AMR\n"
AMR_NB_FRAME_BYTES = (13, 14, 16, 18, 20, 21, 27, 32, 6, 1, 1, 1, 1, 1, 1, 1)
AMR_FRAMES_PER_PACKET = 256
DEFAULT_REQUESTS_PER_SECOND = 1000.0
# Decoding in a thread is CPU-bound: one per core at a time, however many I/O workers there are (more would only
# add switching and GIL hand-offs, and take the cores from the uploads).
DECODE_SLOTS = threading.BoundedSemaphore(cpu_cores())
PASSTHROUGH_CODECS = frozenset({"pcm_s16le", "pcm_mulaw", "pcm_alaw", "mp3", "mp3float"})
# WAV (format tag, bits per sample) whose every data byte is a sample: the header gives the exact duration.
HEADER_TIMED_CODECS = {(1, 16): "pcm_s16le", (6, 8): "pcm_alaw", (7, 8): "pcm_mulaw"}
SAMPLE_FORMAT_TAGS = frozenset(tag for tag, _ in HEADER_TIMED_CODECS)  # PCM, A-law, mu-law: block = sample
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
RETENTION_TAGS = {"Retention-7Y": ("retention", "7y"), "Legal-Hold": ("legal-hold", "true")}
DEFAULT_RETENTION = ("retention", "2y")

# Quarantine reasons of a recording.
MISSING_FILE, ZERO_BYTE, SASF = "missing_file", "zero_byte", "sasf_needs_export"
UNKNOWN_FORMAT, UNDECODABLE, TRUNCATED = "unknown_format", "undecodable", "truncated"
DURATION_MISMATCH, UPLOAD_UNVERIFIED = "duration_mismatch", "upload_unverified"
UPLOAD_CHECKSUM_MISMATCH = "upload_checksum_mismatch"
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

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses back from a transcode worker process
        return type(self), (self.reason, self.detail)


@dataclass(frozen=True)
class Probe:
    container: str
    codec: str
    sample_rate: int
    duration_ms: int


@dataclass(frozen=True)
class Inspection:
    """What a file is before any decoding; ``header_duration_ms`` is None when only decoding can tell."""

    container: str
    codec: str
    sample_rate: int
    header_duration_ms: int | None


@dataclass(frozen=True)
class WavLayout:
    """A WAV's ``fmt `` fields and where its ``data`` chunk starts; ``declared_bytes`` None: left open."""

    format_tag: int
    channels: int
    sample_rate: int
    byte_rate: int
    block_align: int
    bits: int
    data_offset: int
    declared_bytes: int | None


#: What the source recordings hold, as the site's security team confirmed (seed 001, PII masking): PureConnect may
#: mask numbers in its UI while the files on disk keep them.
SOURCE_AUDIO = ("raw", "masked")


def stated_source_audio(value: str | None) -> str:
    """``raw`` or ``masked`` from the PURECONNECT_RECORDING_AUDIO setting; a ValueError saying what to do else."""
    audio = (value or "").strip().lower()
    if audio not in SOURCE_AUDIO:
        raise ValueError(
            f"PURECONNECT_RECORDING_AUDIO must say whether PureConnect's recording files are raw or masked (got "
            f"{audio or 'nothing'!r}). PureConnect can mask card numbers and SSNs in its UI while the files on disk "
            "keep them (seed 001). Ask your security team, then set it to 'raw' or 'masked'.")
    return audio


@dataclass(frozen=True)
class StagingSettings:
    bucket: str
    source_audio: str = "raw"  # the cautious default for the library; the asset requires it to be stated
    multipart_threshold: int = 64 * 1024 * 1024
    multipart_chunksize: int = 8 * 1024 * 1024
    duration_tolerance_ms: int = 250
    duration_tolerance_ratio: float = 0.02
    verify_attempts: int = 6
    verify_base_seconds: float = 0.2
    verify_max_seconds: float = 5.0
    passthrough_codecs: frozenset[str] = PASSTHROUGH_CODECS

    def tolerance_ms(self, expected_ms: int) -> float:
        """How far a duration may fall short of (or exceed) ``expected_ms`` and still count as equal."""
        return max(self.duration_tolerance_ms, expected_ms * self.duration_tolerance_ratio)


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


def read_wav_layout(handle: BinaryIO, size: int, max_chunks: int = 64) -> WavLayout | None:
    """Walk a RIFF/WAVE file's chunks up to ``data``; None unless the header is complete and self-consistent.

    None is not a verdict: the caller then lets FFmpeg decode the file, which is the judge of odd headers.
    A data size of 0 or 0xFFFFFFFF is what streaming writers leave when they cannot seek back: "until EOF".
    """
    handle.seek(0)
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    fmt: tuple[int, ...] | None = None
    pos = 12
    for _ in range(max_chunks):
        if pos + 8 > size:
            return None
        handle.seek(pos)
        chunk_id, length = struct.unpack("<4sI", handle.read(8))
        if chunk_id == b"fmt ":
            if length < 16:
                return None
            fmt = struct.unpack("<HHIIHH", handle.read(16))
        elif chunk_id == b"data":
            if fmt is None:
                return None
            tag, channels, rate, byte_rate, align, bits = fmt
            if not channels or not rate or not align or not byte_rate:
                return None
            if tag in SAMPLE_FORMAT_TAGS and (align != channels * bits // 8 or byte_rate != rate * align):
                return None
            return WavLayout(tag, channels, rate, byte_rate, align, bits, pos + 8,
                             None if length in (0, 0xFFFFFFFF) else length)
        pos += 8 + length + (length & 1)  # chunks are word-aligned
    return None


def wav_header_duration(path: Path, layout: WavLayout, size: int, settings: StagingSettings) -> int:
    """Duration in ms of the audio the file holds; raises TRUNCATED when the header declares more (beyond the
    tolerance) than the file has. Decoding PCM counts exactly these ``data bytes // block_align`` samples."""
    available = max(0, size - layout.data_offset)
    held = available if layout.declared_bytes is None else min(available, layout.declared_bytes)
    held_ms = round(held // layout.block_align * 1000 / layout.sample_rate)
    if layout.declared_bytes is not None and available < layout.declared_bytes:
        declared_ms = round(layout.declared_bytes * 1000 / layout.byte_rate)
        missing_ms = (layout.declared_bytes - available) * 1000 / layout.byte_rate
        if missing_ms > settings.tolerance_ms(declared_ms):
            raise RecordingProblem(TRUNCATED, f"{path.name}: the WAV header declares {declared_ms} ms of audio "
                                              f"({layout.declared_bytes} bytes), the file holds {available} bytes: "
                                              "the file is truncated")
    return held_ms


@contextmanager
def open_audio(path: Path, options: dict[str, str] | None = None) -> Iterator[tuple[Any, Any]]:
    """(container, first audio stream) of ``path``; any FFmpeg error, opening or inside the block (decoding,
    writing), becomes an UNDECODABLE :class:`RecordingProblem`."""
    try:
        with av.open(str(path), options=options) as container:
            if not container.streams.audio:
                raise RecordingProblem(UNDECODABLE, "no audio stream")
            yield container, container.streams.audio[0]
    except av.FFmpegError as exc:
        raise RecordingProblem(UNDECODABLE, f"{type(exc).__name__}: {exc}") from None


def stream_codec(path: Path) -> tuple[str, int]:
    """(codec, sample rate) as FFmpeg's demuxer sees the file, without decoding it."""
    with open_audio(path) as (_, stream):
        return stream.codec_context.name, stream.codec_context.sample_rate or 8000


def inspect(path: Path, settings: StagingSettings) -> Inspection:
    """Magic bytes, container, codec and, where the header can be trusted, the duration; raises
    :class:`RecordingProblem` with the quarantine reason."""
    if not path.is_file():
        raise RecordingProblem(MISSING_FILE, f"{path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise RecordingProblem(ZERO_BYTE, f"{path.name} is empty")
    with open(path, "rb") as handle:
        container = sniff(handle.read(16))
        layout = read_wav_layout(handle, size) if container == "wav" else None
    if container == "sasf":
        raise RecordingProblem(SASF, "Interaction Media Server secure audio (SASF): export it decrypted through "
                                     "PureConnect IR first; it is not decodable audio")
    if container not in ("wav", "amr", "mp3"):
        raise RecordingProblem(UNKNOWN_FORMAT, f"magic bytes of {path.name} are not WAV, AMR or MP3 ({container})")
    if layout is not None:
        held_ms = wav_header_duration(path, layout, size, settings)
        timed = HEADER_TIMED_CODECS.get((layout.format_tag, layout.bits))
        if timed is not None:  # FFmpeg's name for that tag; every byte decodes, so there is nothing to ask it
            return Inspection(container, timed, layout.sample_rate, held_ms)
    codec, rate = stream_codec(path)
    return Inspection(container, codec, rate, None)


def check_duration(path: Path, duration_ms: int, db_duration_ms: int | None, settings: StagingSettings) -> None:
    """Raise when the audio is empty, or shorter (truncated) or longer than the database's duration."""
    if duration_ms == 0:
        raise RecordingProblem(UNDECODABLE, f"{path.name} decodes to no audio")
    if db_duration_ms:
        gap = db_duration_ms - duration_ms
        tolerance = settings.tolerance_ms(db_duration_ms)
        if gap > tolerance:
            raise RecordingProblem(TRUNCATED, f"{path.name} holds {duration_ms} ms of the {db_duration_ms} ms the "
                                              "database recorded: the file is truncated")
        if -gap > tolerance:
            raise RecordingProblem(DURATION_MISMATCH, f"{path.name} holds {duration_ms} ms, the database says "
                                                      f"{db_duration_ms} ms")


def decode_stats(path: Path) -> tuple[str, int, int]:
    """(codec, sample rate, decoded duration ms), decoding frame by frame."""
    with DECODE_SLOTS, open_audio(path, DEMUX_OPTIONS) as (container, stream):
        samples = 0
        for frame in container.decode(stream):
            samples += frame.samples
        rate = stream.codec_context.sample_rate or 8000
        return stream.codec_context.name, rate, round(samples * 1000 / rate)


def audio_duration(path: Path, found: Inspection) -> int:
    """The duration in ms: the header's where it can be trusted, else by decoding the file."""
    return found.header_duration_ms if found.header_duration_ms is not None else decode_stats(path)[2]


def probe(path: Path, db_duration_ms: int | None, settings: StagingSettings) -> Probe:
    """Check a recording file; raises :class:`RecordingProblem` with the quarantine reason."""
    found = inspect(path, settings)
    duration = audio_duration(path, found)
    check_duration(path, duration, db_duration_ms, settings)
    return Probe(found.container, found.codec, found.sample_rate, duration)


def amr_nb_packets(source: Path, frames_per_packet: int = AMR_FRAMES_PER_PACKET) -> Iterator[av.Packet]:
    """An AMR-NB file's speech frames, cut at frame boundaries into packets of ``frames_per_packet``, read in
    blocks; any other frame (comfort noise, no data, reserved types) is a packet of its own.

    The decoder takes a frame at a time from a packet until it is used up, so the samples equal those of one
    packet per frame (what the demuxer gives), minus the Python per 20 ms. A last frame cut short comes in a
    packet of its own, as from the demuxer, and the decoder rejects it the same way."""
    with open(source, "rb") as handle:
        if handle.read(len(AMR_NB_MAGIC)) != AMR_NB_MAGIC:
            raise RecordingProblem(UNDECODABLE, f"{source.name} is not single-channel AMR-NB")
        pending, whole = b"", 0
        while block := handle.read(READ_CHUNK):
            data = pending + block
            start = pos = frames = 0
            while pos < len(data):
                frame_type = (data[pos] >> 3) & 0x0F
                end = pos + AMR_NB_FRAME_BYTES[frame_type]
                if end > len(data):
                    break  # the frame goes on in the next block
                if frame_type > 7:  # comfort noise, no data or reserved: alone, as the demuxer hands them over
                    if frames:
                        yield av.Packet(data[start:pos])
                    yield av.Packet(data[pos:end])
                    start = pos = end
                    frames = 0
                    continue
                pos, frames = end, frames + 1
                if frames == frames_per_packet:
                    yield av.Packet(data[start:pos])
                    start, frames = pos, 0
            pending, whole = data[start:], pos - start
        if whole:
            yield av.Packet(pending[:whole])
        if pending[whole:]:
            yield av.Packet(pending[whole:])  # a cut last frame alone, as the demuxer hands it over


def transcode_to_pcm_wav(source: Path, target: Path) -> int:
    """Decode ``source`` into 16-bit PCM mono WAV at ``target``, bit-exact (stable bytes); returns the decoded
    duration in ms, so the decode that transcodes is also the one that checks the duration.

    Frames go through a FIFO and are converted, encoded and muxed ``TRANSCODE_BLOCK_SAMPLES`` at a time: the
    conversion is per sample and the WAV muxer writes what it is given, so the bytes equal a frame-by-frame run.
    """
    with DECODE_SLOTS, open_audio(source, DEMUX_OPTIONS) as (inp, stream):
        rate = stream.codec_context.sample_rate or 8000
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        fifo = av.AudioFifo()
        with av.open(str(target), "w", format="wav", options={"fflags": "+bitexact"}) as out:
            ostream = out.add_stream("pcm_s16le", rate=rate, layout="mono")

            def write(frame: av.AudioFrame | None) -> None:
                for converted in resampler.resample(frame):
                    for packet in ostream.encode(converted):
                        out.mux(packet)

            if stream.codec_context.name == "amrnb" and stream.codec_context.channels == 1:
                context = stream.codec_context
                frames: Iterable[av.AudioFrame] = (
                    frame for packet in chain(amr_nb_packets(source), [None]) for frame in context.decode(packet))
            else:
                frames = inp.decode(stream)
            for frame in frames:
                frame.pts = None
                fifo.write(frame)
                if fifo.samples >= TRANSCODE_BLOCK_SAMPLES:
                    write(fifo.read(TRANSCODE_BLOCK_SAMPLES))
            if fifo.samples:
                write(fifo.read())
            write(None)
            for packet in ostream.encode(None):
                out.mux(packet)
        return round(fifo.samples_written * 1000 / rate)


def _peak_rss_kib() -> int:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _transcode_job(source: str, target: str) -> tuple[int, int]:
    """What a worker process runs: the transcode, and the worker's peak RSS so far (for the benchmark)."""
    return transcode_to_pcm_wav(Path(source), Path(target)), _peak_rss_kib()


class TranscodePool:
    """Transcodes in worker processes, one per core, for any number of I/O threads.

    Why processes: decoding itself runs without the GIL, but the per-packet Python around it (20 ms AMR frames)
    holds it about a third of the time, so two decoding threads run no faster than one. The pool starts on the
    first transcode (a day of playable files starts none) from a forkserver with this module preloaded: forking
    from it is safe next to the run's threads, and after the first pool of a process, cheap.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or cpu_cores())
        self.worker_peak_rss_kib = 0
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def transcode(self, source: Path, target: Path) -> int:
        """:func:`transcode_to_pcm_wav` in a worker; blocks the calling thread only."""
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([__name__])
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
            pool = self._pool
        duration, rss = pool.submit(_transcode_job, str(source), str(target)).result()
        with self._lock:
            self.worker_peak_rss_kib = max(self.worker_peak_rss_kib, rss)
        return duration

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()

    def __enter__(self) -> TranscodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def digests(path: Path, multipart_threshold: int, chunksize: int) -> tuple[str, int, str]:
    """(sha256 hex, size, the SHA-256 checksum S3 will report) in one streaming pass.

    Below the threshold S3 reports the file's SHA-256 (base64); above it, a multipart upload's composite: the
    SHA-256 of its parts' SHA-256s, ``-<parts>``. Reads stop at part boundaries, so each read feeds the whole-file
    hash and exactly one part's; part hashes are only kept for a file that will go up in parts.
    """
    whole = hashlib.sha256()
    with open(path, "rb") as handle:
        multipart = os.fstat(handle.fileno()).st_size >= multipart_threshold
        part, parts = hashlib.sha256(), []
        size = fill = 0
        while chunk := handle.read(min(READ_CHUNK, chunksize - fill)):
            whole.update(chunk)
            size += len(chunk)
            if not multipart:
                continue
            part.update(chunk)
            fill += len(chunk)
            if fill == chunksize:
                parts.append(part.digest())
                part, fill = hashlib.sha256(), 0
    if not multipart:
        return whole.hexdigest(), size, base64.b64encode(whole.digest()).decode()
    if fill or not parts:
        parts.append(part.digest())
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    return whole.hexdigest(), size, f"{composite}-{len(parts)}"


def tag_pairs(ir_tags: Iterable[str] | None, recording_id: str, source_audio: str) -> list[tuple[str, str]]:
    """S3 object tags, sorted: retention (7y when IR tagged Retention-7Y, else the default), legal hold, provenance, and
    whether the audio is raw or masked at the source (``source-audio``), so raw recordings can be found and
    restricted or redacted."""
    tags = dict([DEFAULT_RETENTION])
    for tag in ir_tags or ():
        if tag in RETENTION_TAGS:
            k, v = RETENTION_TAGS[tag]
            tags[k] = v
    tags["source"] = "pureconnect-ir"
    tags["legacy-recording-id"] = recording_id
    tags["source-audio"] = source_audio
    return sorted(tags.items())


def day_prefix(day: date) -> str:
    """The Hive-style folder of a day's recordings in the staging bucket."""
    return f"{partition_prefix('recordings', day)}/"


def _head_matches(head: dict, size: int, checksum: str, content_type: str) -> str | None:
    if head.get("ContentLength") != size:
        return f"size {head.get('ContentLength')} != {size}"
    if head.get("ChecksumSHA256") != checksum:
        return f"SHA-256 checksum {head.get('ChecksumSHA256')} != {checksum}"
    if head.get("ContentType") != content_type:
        return f"content type {head.get('ContentType')} != {content_type}"
    if head.get("ServerSideEncryption") != "AES256":
        return f"server-side encryption {head.get('ServerSideEncryption')}"
    return None


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def head_or_none(s3: Any, bucket: str, key: str) -> dict | None:
    """HEAD the object with its checksum; None for 404 (not there, or not visible yet)."""
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as exc:  # botocore ClientError; boto3 is not imported here
        if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def list_present(s3: Any, bucket: str, prefix: str) -> dict[str, int] | None:
    """Key -> size of what is already under ``prefix``: one request per 1,000 keys instead of a HEAD per
    recording. None when the role may not list the bucket (then each recording HEADs its own key)."""
    present: dict[str, int] = {}
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    try:
        while True:
            page = s3.list_objects_v2(**kwargs)
            for obj in page.get("Contents", ()):
                present[obj["Key"]] = obj["Size"]
            if not page.get("IsTruncated"):
                return present
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
    except Exception as exc:  # botocore ClientError
        if _error_code(exc) in ("AccessDenied", "403"):
            return None
        raise


def verify_upload(s3: Any, bucket: str, key: str, size: int, checksum: str, content_type: str,
                  settings: StagingSettings, sleep: Callable[[float], None] = time.sleep) -> tuple[int, dict]:
    """HEAD until the object is visible and matches; exponential backoff with jitter. Returns the attempts used
    and the matching HEAD."""
    problem = "not visible"
    for attempt in range(1, settings.verify_attempts + 1):
        head = head_or_none(s3, bucket, key)
        problem = "not visible (404)" if head is None else _head_matches(head, size, checksum, content_type)
        if head is not None and problem is None:
            return attempt, head
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
    # The S3 checksum of an upload S3 accepted whose visibility stage_all still confirms (key etc. are in row)
    unconfirmed: str | None = None


@dataclass
class StagingRun:
    """Counters shared by the workers of one asset run."""

    uploaded: int = 0
    already_present: int = 0
    bytes_uploaded: int = 0
    verify_retries: int = 0
    requests: int = 0  # every S3 request sent, retries included (counted by stage_all)
    listed: bool = False  # whether "already there" came from one listing of the day (else a HEAD per file)
    lock: threading.Lock = field(default_factory=threading.Lock)


def upload(s3: Any, path: Path, bucket: str, key: str, extra: dict[str, Any], settings: StagingSettings,
           size: int, sha256_hex: str) -> dict | None:
    """Stream ``path`` (``size`` bytes) to S3 with SHA-256 checksums for S3 to check on receipt: one PUT below the
    threshold (its response returned), else a multipart upload one part at a time (SHA-256 per part; None). A
    refused checksum quarantines."""
    extra = {**extra, "ChecksumAlgorithm": "SHA256"}
    try:
        if size < settings.multipart_threshold:
            checksum = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
            with open(path, "rb") as handle:
                return s3.put_object(Bucket=bucket, Key=key, Body=handle, ChecksumSHA256=checksum, **extra)
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=settings.multipart_threshold,
                                multipart_chunksize=settings.multipart_chunksize, max_concurrency=1,
                                use_threads=False)
        with open(path, "rb") as handle:
            s3.upload_fileobj(handle, bucket, key, ExtraArgs={**extra, "ChecksumType": "COMPOSITE"}, Config=config)
        return None
    except Exception as exc:  # botocore ClientError (upload_fileobj re-raises its parts' errors as they are)
        if _error_code(exc) != "BadDigest":
            raise
        raise RecordingProblem(UPLOAD_CHECKSUM_MISMATCH, f"S3 refused s3://{bucket}/{key}: the bytes it received "
                               "do not match the SHA-256 taken before the upload (the file changed while it was "
                               "being staged, or was damaged in transit); nothing was stored, re-run to stage it"
                               ) from exc


def stage_recording(s3: Any, link: dict[str, Any], day: date, settings: StagingSettings,
                    run: StagingRun | None = None,
                    present: Mapping[str, int] | None = None,
                    transcoder: TranscodePool | None = None) -> StageResult:
    """Probe, transcode if needed, upload and verify one recording; quarantine it on any problem.

    ``present`` is the day's listing (key -> size): a key absent from it is uploaded without asking, one listed
    with the same size gets the verifying HEAD (checksum, type, encryption), and is uploaded again only if that
    disagrees. Without a listing, a HEAD decides.
    With a listing, a single PUT whose response carries the file's checksum and the encryption (S3 stored exactly
    these bytes) is left ``unconfirmed``: :func:`stage_all` confirms every such upload with one listing of the day
    instead of a HEAD each, and counts it then. Otherwise the upload is HEAD-verified here.
    ``transcoder`` runs the transcode in a worker process; without one it runs in this thread.
    """
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
        found = inspect(source, settings)
        with ExitStack() as stack:
            upload_path, codec_out, ext = source, found.codec, found.container
            if found.codec not in settings.passthrough_codecs or found.container not in CONTENT_TYPES:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="recording-"))
                upload_path, codec_out, ext = Path(tmp) / "out.wav", "pcm_s16le", "wav"
                if transcoder is not None:
                    duration = transcoder.transcode(source, upload_path)
                else:
                    duration = transcode_to_pcm_wav(source, upload_path)
                row["transcoded"] = True
            else:
                duration = audio_duration(source, found)
            check_duration(source, duration, link.get("db_duration_ms"), settings)
            row.update(container_in=found.container, codec_in=found.codec, duration_ms=duration)
            sha, size, checksum = digests(upload_path, settings.multipart_threshold, settings.multipart_chunksize)
            key = f"{day_prefix(day)}{sha}.{ext}"
            content_type = CONTENT_TYPES[ext]
            pairs = tag_pairs(link.get("ir_tags"), link["recording_id"], settings.source_audio)
            tags = urlencode(pairs)
            row.update(codec_out=codec_out, key=key, sha256=sha, bytes=size, content_type=content_type,
                       server_side_encryption="AES256", tags=tags)
            head = None
            if present is None or present.get(key) == size:
                head = head_or_none(s3, settings.bucket, key)
            if head is not None and _head_matches(head, size, checksum, content_type) is None:
                result.verify_attempts = 1  # already there and complete: that HEAD is the verification
                # Its tags as of this run (source-audio, retention may have been restated since it was staged).
                s3.put_object_tagging(Bucket=settings.bucket, Key=key, Tagging={
                    "TagSet": [{"Key": k, "Value": v} for k, v in pairs]})
            else:
                extra = {"ContentType": content_type, "ServerSideEncryption": "AES256", "Tagging": tags,
                         "Metadata": {"sha256": sha, "legacy-recording-id": link["recording_id"]}}
                put = upload(s3, upload_path, settings.bucket, key, extra, settings, size, sha)
                result.uploaded = True
                if present is not None and put is not None and _put_matches(put, checksum):
                    result.unconfirmed, head = checksum, put
                else:
                    result.verify_attempts, head = verify_upload(s3, settings.bucket, key, size, checksum,
                                                                 content_type, settings)
            row["etag"] = str(head["ETag"]).strip('"')  # S3's, as verified: for inventories and reconciliations
        row["status"] = STAGED
        if result.unconfirmed is None:
            _count(run, result)
    except RecordingProblem as problem:
        row.update(status=QUARANTINED, reason=problem.reason, detail=problem.detail)
    result.seconds = time.monotonic() - started
    return result


def _put_matches(response: dict, checksum: str) -> bool:
    """S3 answered the PUT with the checksum it verified the bytes against, and encrypted them."""
    return response.get("ChecksumSHA256") == checksum and response.get("ServerSideEncryption") == "AES256"


def _count(run: StagingRun, result: StageResult) -> None:
    with run.lock:
        run.uploaded += int(result.uploaded)
        run.already_present += int(not result.uploaded)
        run.bytes_uploaded += result.row["bytes"] if result.uploaded else 0
        run.verify_retries += result.verify_attempts - 1  # a staged recording was verified at least once


def confirm_uploads(s3: Any, results: list[StageResult], day: date, settings: StagingSettings, run: StagingRun,
                    pool: ThreadPoolExecutor) -> None:
    """Confirm the ``unconfirmed`` uploads are visible with one listing of the day (a request per 1,000 keys); a
    key the listing does not show, or shows with another size, is HEAD-verified with backoff and quarantined as
    ``upload_unverified`` if it never matches (seed 000: nothing may link an object readers cannot see)."""
    waiting = [r for r in results if r.unconfirmed is not None]
    if not waiting:
        return
    listed = list_present(s3, settings.bucket, day_prefix(day)) or {}

    def confirm(result: StageResult) -> None:
        row, checksum = result.row, result.unconfirmed
        result.unconfirmed = None
        if listed.get(row["key"]) == row["bytes"]:
            result.verify_attempts = 1  # the listing
        else:
            try:
                result.verify_attempts, _ = verify_upload(s3, settings.bucket, row["key"], row["bytes"],
                                                          checksum, row["content_type"], settings)
            except RecordingProblem as problem:
                result.row.update(status=QUARANTINED, reason=problem.reason, detail=problem.detail)
                return
        _count(run, result)

    list(pool.map(confirm, waiting))


@contextmanager
def paced(s3: Any, limiter: RateLimiter, run: StagingRun) -> Iterator[None]:
    """Every request ``s3`` sends meanwhile (boto3's managed transfers and retries included) waits for a slot of
    ``limiter`` and is counted in ``run.requests``."""

    def before_send(**_: Any) -> None:
        limiter.acquire()
        with run.lock:
            run.requests += 1

    events = s3.meta.events
    events.register("before-send.s3", before_send)
    try:
        yield
    finally:
        events.unregister("before-send.s3", before_send)


def stage_all(s3: Any, links: list[dict[str, Any]], day: date, settings: StagingSettings, *, workers: int = 10,
              requests_per_second: float | None = DEFAULT_REQUESTS_PER_SECOND) -> tuple[pl.DataFrame, StagingRun]:
    """Stage every recording with a bounded pool sharing one rate limit; the manifest comes back sorted."""
    run = StagingRun()
    with paced(s3, RateLimiter(requests_per_second), run), TranscodePool() as transcoder:
        present = list_present(s3, settings.bucket, day_prefix(day)) if links else None
        run.listed = present is not None
        progress = Progress(f"Recordings of {day} checked and uploaded", log, len(links))

        def stage(link: dict[str, Any]) -> StageResult:
            result = stage_recording(s3, link, day, settings, run, present, transcoder)
            progress.advance()
            return result

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stage-recording") as pool:
            results = list(pool.map(stage, links))
            confirm_uploads(s3, results, day, settings, run, pool)
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
