"""Interaction Recorder files for the sandbox PureConnect site: every codec and every broken file a real
IR share holds, small and deterministic.

Each call recording is a few seconds (2-20 s) of 8 kHz mono audio synthesised from a key, so the same
recording always has the same bytes. The kinds:

* playable by the Cloud player: PCM 16-bit WAV, µ-law WAV, A-law WAV (PyAV ``pcm_mulaw``/``pcm_alaw`` in a WAV
  container) and GSM 6.10 WAV (``WAVE_FORMAT_GSM610``, tag 0x31). PyAV has only the ``gsm_ms`` *decoder*, so the
  GSM file is a hand-written WAV header (``fmt`` with ``wSamplesPerBlock`` 320 and ``nBlockAlign`` 65, a
  ``fact`` chunk) around deterministic 65-byte frames; PyAV decodes it to exactly ``blocks x 40 ms``.
  (Whether the real Cloud player accepts GSM WAV is for the migration to decide; it is a valid WAV codec.)
* not playable, must be transcoded: AMR-NB (``.amr``, magic ``#!AMR\\n``, PyAV's ``libopencore_amrnb``) and
  G.726 ADPCM inside a WAV container (tag 0x45).
* broken on purpose: SASF placeholders, zero-byte files, truncated WAVs and files missing from disk.

**SASF is a stand-in.** Interaction Media Server's secure format is proprietary and can only be exported
through PureConnect. The placeholder starts with the ASCII magic ``SASF`` followed by a small header and
pseudo-random "ciphertext"; it is *not* audio and no generic tool decodes it, which is exactly how the
migration must treat the real thing ("needs export", never audio).

``MediaURI`` values are ``file://`` URIs (RFC 8089, absolute, percent-encoded by :meth:`Path.as_uri`); use
:func:`resolve_media_uri` to turn one back into a path (it also accepts plain absolute paths and UNC paths).
"""

from __future__ import annotations

import array
import math
import random
import struct
import wave
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path, PureWindowsPath
from urllib.parse import unquote, urlparse

import av

from genesys_assets.lib.files import atomic_write

SAMPLE_RATE = 8000
SASF_MAGIC = b"SASF"
GSM_BLOCK_ALIGN = 65
GSM_SAMPLES_PER_BLOCK = 320
WAVE_FORMAT_GSM610 = 0x0031
_SEGMENT_SAMPLES = 1600  # 200 ms: every duration is a multiple of it (and of the 40 ms GSM block)
_BANK_SIZE = 48


class RecordingKind(StrEnum):
    """What sits at a recording's MediaURI."""

    PCM16 = "pcm16"
    MULAW = "mulaw"
    ALAW = "alaw"
    GSM610 = "gsm610"
    AMR_NB = "amr_nb"
    G726 = "g726"
    SASF = "sasf"
    ZERO_BYTE = "zero_byte"
    TRUNCATED = "truncated"
    MISSING = "missing"
    CHAT_XML = "chat_xml"
    EMAIL_TXT = "email_txt"


# Audio the Cloud player can play as-is / audio that must be transcoded / files that are not usable audio.
PLAYABLE_KINDS = frozenset({RecordingKind.PCM16, RecordingKind.MULAW, RecordingKind.ALAW, RecordingKind.GSM610})
TRANSCODE_KINDS = frozenset({RecordingKind.AMR_NB, RecordingKind.G726})
BROKEN_KINDS = frozenset({RecordingKind.SASF, RecordingKind.ZERO_BYTE, RecordingKind.TRUNCATED,
                          RecordingKind.MISSING})
AUDIO_KINDS = PLAYABLE_KINDS | TRANSCODE_KINDS | BROKEN_KINDS

EXTENSIONS: dict[RecordingKind, str] = {
    RecordingKind.AMR_NB: ".amr", RecordingKind.SASF: ".sasf", RecordingKind.CHAT_XML: ".xml",
    RecordingKind.EMAIL_TXT: ".txt",
}
# PyAV decoder name expected when the file is probed (None: must not decode).
DECODER: dict[RecordingKind, str | None] = {
    RecordingKind.PCM16: "pcm_s16le", RecordingKind.MULAW: "pcm_mulaw", RecordingKind.ALAW: "pcm_alaw",
    RecordingKind.GSM610: "gsm_ms", RecordingKind.AMR_NB: "amrnb", RecordingKind.G726: "g726",
}


def extension(kind: RecordingKind) -> str:
    return EXTENSIONS.get(kind, ".wav")


@dataclass(frozen=True)
class WrittenRecording:
    """What the database must say about a file: its size on disk and its duration in milliseconds.

    For the broken kinds these are the *claimed* values (what IR recorded before the file went bad), so they
    deliberately disagree with the disk.
    """

    kind: RecordingKind
    file_size: int
    duration_ms: int
    content_type: str


@cache
def _segment_bank() -> tuple[bytes, ...]:
    """200 ms snippets of tones, glides, noise and silence; recordings are sequences of them.

    Built once (pure Python, no numpy) so synthesising a recording is a byte concatenation, not a loop per sample.
    """
    rng = random.Random(8000)
    bank: list[bytes] = []
    for i in range(_BANK_SIZE):
        samples = array.array("h", bytes(2 * _SEGMENT_SAMPLES))
        if i % 6 == 5:  # a pause
            bank.append(samples.tobytes())
            continue
        f0, f1 = rng.uniform(110, 320), rng.uniform(110, 320)
        amp, noise = rng.uniform(2000, 9000), rng.uniform(0, 600)
        phase = 0.0
        for n in range(_SEGMENT_SAMPLES):
            t = n / _SEGMENT_SAMPLES
            f = f0 + (f1 - f0) * t
            phase += 2 * math.pi * f / SAMPLE_RATE
            env = math.sin(math.pi * t) ** 0.5  # no clicks at the joins
            v = amp * env * (math.sin(phase) + 0.35 * math.sin(3 * phase)) + rng.uniform(-noise, noise)
            samples[n] = max(-32768, min(32767, int(v)))
        bank.append(samples.tobytes())
    return tuple(bank)


def synth_pcm(key: str, duration_ms: int) -> bytes:
    """Deterministic 16-bit little-endian mono PCM for ``key`` (duration rounded down to 200 ms steps)."""
    bank = _segment_bank()
    rng = random.Random(key)
    segments = max(1, duration_ms // 200)
    return b"".join(bank[rng.randrange(_BANK_SIZE)] for _ in range(segments))


def _pcm_wav_bytes(pcm: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    return buf.getvalue()


def _encode_pyav(tmp: str, fmt: str, codec: str, pcm: bytes, bit_rate: int | None = None) -> None:
    # bitexact: no encoder version string in the file, so bytes are stable for a given FFmpeg build.
    with av.open(tmp, "w", format=fmt, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
        step = 1600
        for off in range(0, len(pcm) // 2, step):
            chunk = pcm[off * 2:(off + step) * 2]
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(chunk) // 2)
            frame.planes[0].update(chunk)
            frame.sample_rate = SAMPLE_RATE
            frame.pts = off
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def gsm610_wav_bytes(key: str, duration_ms: int) -> bytes:
    """A valid GSM 6.10 WAV (WAVE_FORMAT_GSM610) of ``duration_ms`` rounded down to 40 ms blocks.

    There is no GSM encoder in this PyAV build, so the frames are deterministic pseudo-random 65-byte blocks
    (any bit pattern is a decodable GSM frame pair; it decodes to noise-like speech).
    """
    blocks = max(1, duration_ms // 40)
    data = random.Random(f"gsm/{key}").randbytes(blocks * GSM_BLOCK_ALIGN)
    fmt = struct.pack(
        "<HHIIHHHH", WAVE_FORMAT_GSM610, 1, SAMPLE_RATE, SAMPLE_RATE * GSM_BLOCK_ALIGN // GSM_SAMPLES_PER_BLOCK,
        GSM_BLOCK_ALIGN, 0, 2, GSM_SAMPLES_PER_BLOCK,
    )
    fact = struct.pack("<I", blocks * GSM_SAMPLES_PER_BLOCK)
    pad = b"\x00" if len(data) % 2 else b""  # RIFF chunks are word-aligned
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
            + b"data" + struct.pack("<I", len(data)) + data + pad)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def sasf_placeholder_bytes(key: str, duration_ms: int, key_id: str) -> bytes:
    """A stand-in for an IMS secure (SASF) recording: plausible header, opaque payload, never audio."""
    payload = random.Random(f"sasf/{key}").randbytes(max(512, duration_ms))  # ~8 kbit/s "ciphertext"
    key_field = key_id.encode("ascii")[:36].ljust(36, b"\x00")
    header = SASF_MAGIC + struct.pack("<HHII", 2, 1, duration_ms, len(payload)) + key_field
    return header + payload


def decode_duration_ms(path: Path) -> tuple[str, int]:
    """Decode the whole file with PyAV: (decoder name, duration in ms from the decoded sample count)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.codec_context.name, round(samples * 1000 / stream.codec_context.sample_rate)


def write_recording(path: Path, kind: RecordingKind, key: str, duration_ms: int, *,
                    key_id: str = "") -> WrittenRecording:
    """Write one recording of ``kind`` at ``path`` and return what IR_RecordingMedia must say about it."""
    duration_ms = max(200, duration_ms - duration_ms % 200)
    pcm = synth_pcm(key, duration_ms)
    content_type = "audio/wav"
    if kind is RecordingKind.PCM16:
        atomic_write(path, _pcm_wav_bytes(pcm))
    elif kind is RecordingKind.MULAW:
        atomic_write(path, writer=lambda tmp: _encode_pyav(tmp, "wav", "pcm_mulaw", pcm))
    elif kind is RecordingKind.ALAW:
        atomic_write(path, writer=lambda tmp: _encode_pyav(tmp, "wav", "pcm_alaw", pcm))
    elif kind is RecordingKind.G726:
        atomic_write(path, writer=lambda tmp: _encode_pyav(tmp, "wav", "g726", pcm, 32000))
    elif kind is RecordingKind.AMR_NB:
        content_type = "audio/amr"
        atomic_write(path, writer=lambda tmp: _encode_pyav(tmp, "amr", "libopencore_amrnb", pcm, 12200))
    elif kind is RecordingKind.GSM610:
        atomic_write(path, gsm610_wav_bytes(key, duration_ms))
    elif kind is RecordingKind.SASF:
        content_type = "application/octet-stream"
        atomic_write(path, sasf_placeholder_bytes(key, duration_ms, key_id))
        return WrittenRecording(kind, path.stat().st_size, duration_ms, content_type)
    elif kind in (RecordingKind.ZERO_BYTE, RecordingKind.TRUNCATED, RecordingKind.MISSING):
        full = _pcm_wav_bytes(pcm)
        if kind is RecordingKind.ZERO_BYTE:
            atomic_write(path, b"")
        elif kind is RecordingKind.TRUNCATED:
            # The header still claims the full data chunk; only ~40 % of the samples are present.
            atomic_write(path, full[: 44 + (len(full) - 44) * 2 // 5])
        else:
            path.unlink(missing_ok=True)
        return WrittenRecording(kind, len(full), duration_ms, content_type)
    else:
        raise ValueError(f"not an audio recording kind: {kind}")
    if kind in (RecordingKind.AMR_NB, RecordingKind.G726):
        # Codec framing/padding decides the exact length: measure it rather than predict it.
        _, duration_ms = decode_duration_ms(path)
    return WrittenRecording(kind, path.stat().st_size, duration_ms, content_type)


def write_text(path: Path, text: str) -> int:
    """Chat transcripts (.xml) and emails (.txt) as IR exports them; returns the size on disk."""
    data = text.encode("utf-8")
    atomic_write(path, data)
    return len(data)


def resolve_media_uri(uri: str) -> Path:
    """A MediaURI (``file://`` URI, absolute path, or ``\\\\server\\share\\...`` UNC path) as a local path."""
    if uri.startswith("file:"):
        parsed = urlparse(uri)
        path = unquote(parsed.path)
        if parsed.netloc and parsed.netloc != "localhost":
            return Path(f"//{parsed.netloc}{path}")
        return Path(path)
    if uri.startswith("\\\\"):
        return Path(PureWindowsPath(uri).as_posix())
    return Path(uri)
