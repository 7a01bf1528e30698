"""Streaming gzip NDJSON part files that survive a crash, and the checkpoint that says how far they got.

Why the gzip is built by hand: a resumed run must produce the same bytes as an uninterrupted one. Each page of
lines is compressed by a fresh raw-deflate compressor and ended with a sync flush, so the compressed bytes of a
page depend only on that page; the file is the fixed gzip header (mtime 0, OS unknown), the pages' deflate
blocks, a final empty block and the CRC32/size trailer. The CRC is carried in the checkpoint. After every page
the part is fsynced and the checkpoint replaced atomically; a run killed between the two leaves extra bytes
that the next run cuts off (``truncate`` to the checkpointed length). Standard gzip readers see one member.

Parts roll over at page boundaries once they hold ``part_max_bytes`` of NDJSON, a rule that depends only on the
data, so part boundaries are the same on every run too.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

#: gzip member header: magic, deflate, no flags, mtime 0, no extra flags, OS 255 (unknown): no run-specific bytes.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
COMPRESSION = "gzip"
CHECKPOINT_NAME = "checkpoint.json"
_COPY_CHUNK = 1 << 20


def part_name(index: int) -> str:
    return f"part-{index:04d}.ndjson.gz"


def _deflate(data: bytes, level: int, final: bool) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    out = compressor.compress(data) if data else b""
    return out + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


@dataclass
class PartState:
    """A part file: finished (``sha256`` set) or still being written (``length`` bytes valid so far)."""

    name: str
    records: int = 0
    bytes_raw: int = 0
    length: int = len(GZIP_HEADER)
    crc: int = 0
    sha256: str | None = None


@dataclass
class Checkpoint:
    """Progress of one day's archive, saved after every page: enough to continue exactly where it stopped."""

    day: str
    plan: str
    job_id: str | None = None
    cursor: str | None = None
    pages: int = 0
    pages_done: bool = False
    conversations_written: int = 0
    bytes_raw: int = 0
    bytes_compressed: int = 0
    neighbours_skipped: int = 0
    duplicates_skipped: int = 0
    messages: int = 0
    parts: list[PartState] = field(default_factory=list)

    @property
    def current(self) -> PartState | None:
        """The part still being written, if any."""
        return self.parts[-1] if self.parts and self.parts[-1].sha256 is None else None

    def save(self, directory: Path) -> None:
        """Replace the checkpoint file atomically (temp file, fsync, rename)."""
        path = directory / CHECKPOINT_NAME
        temp = path.with_name(path.name + ".tmp")
        with open(temp, "wb") as handle:
            handle.write(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)

    @classmethod
    def load(cls, directory: Path) -> Checkpoint | None:
        """The saved checkpoint, or None when there is none or it cannot be read (then the day starts over)."""
        path = directory / CHECKPOINT_NAME
        try:
            data: dict[str, Any] = orjson.loads(path.read_bytes())
            data["parts"] = [PartState(**p) for p in data.get("parts") or []]
            return cls(**data)
        except (OSError, orjson.JSONDecodeError, TypeError):
            return None


class ResumeError(RuntimeError):
    """The part files on disk do not match the checkpoint: the day must start cleanly."""


class PartWriter:
    """Appends pages of NDJSON lines to gzip parts in ``directory``, keeping ``checkpoint`` in step."""

    def __init__(self, directory: Path, checkpoint: Checkpoint, *, part_max_bytes: int, level: int = 6) -> None:
        if part_max_bytes < 1:
            raise ValueError("part_max_bytes must be positive")
        self.directory = directory
        self.checkpoint = checkpoint
        self.part_max_bytes = part_max_bytes
        self.level = level
        self._check_files()

    def _check_files(self) -> None:
        """Cut a current part back to its checkpointed length; refuse when files are missing or short."""
        for part in self.checkpoint.parts:
            path = self.directory / part.name
            size = path.stat().st_size if path.is_file() else -1
            if part.sha256 is not None:
                if size != part.length:
                    raise ResumeError(f"{part.name}: expected {part.length} bytes on disk, found {size}")
            else:
                if size < part.length:
                    raise ResumeError(f"{part.name}: checkpoint says {part.length} bytes, file has {size}")
                if size > part.length:
                    with open(path, "r+b") as handle:  # the page written after the last checkpoint
                        handle.truncate(part.length)

    def write_page(self, lines: Sequence[bytes]) -> int:
        """Append one page of lines (each ending in ``\\n``) to the current part; returns compressed bytes added.

        Does not save the checkpoint: the caller saves it once the page's cursor is recorded too.
        """
        if not lines:
            return 0
        current = self.checkpoint.current
        if current is not None and current.bytes_raw >= self.part_max_bytes:
            self.close_part()
            current = None
        if current is None:
            current = PartState(part_name(len(self.checkpoint.parts)))
            self.checkpoint.parts.append(current)
            self._append(current, GZIP_HEADER, create=True)
            current.length = len(GZIP_HEADER)
            self.checkpoint.bytes_compressed += len(GZIP_HEADER)
        data = b"".join(lines)
        block = _deflate(data, self.level, final=False)
        self._append(current, block)
        current.length += len(block)
        current.records += len(lines)
        current.bytes_raw += len(data)
        current.crc = zlib.crc32(data, current.crc)
        self.checkpoint.conversations_written += len(lines)
        self.checkpoint.bytes_raw += len(data)
        self.checkpoint.bytes_compressed += len(block)
        return len(block)

    def close_part(self) -> None:
        """Finish the current part: final block, CRC32 and size trailer, fsync, sha256 of the whole file."""
        current = self.checkpoint.current
        if current is None:
            return
        tail = _deflate(b"", self.level, final=True)
        tail += (current.crc & 0xFFFFFFFF).to_bytes(4, "little")
        tail += (current.bytes_raw & 0xFFFFFFFF).to_bytes(4, "little")
        self._append(current, tail)
        current.length += len(tail)
        self.checkpoint.bytes_compressed += len(tail)
        current.sha256 = file_sha256(self.directory / current.name)

    def _append(self, part: PartState, data: bytes, create: bool = False) -> None:
        with open(self.directory / part.name, "wb" if create else "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def iter_gzip_lines(chunks: Iterator[bytes] | Sequence[bytes], *, complete: bool = True) -> Iterator[bytes]:
    """The lines of a gzip NDJSON stream given in chunks, decompressed as they come.

    ``complete`` demands a whole gzip member with nothing after it (``ValueError`` otherwise); without it a
    part still being written reads up to its last flushed page.
    """
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = b""
    for chunk in chunks:
        try:
            pending += decompressor.decompress(chunk)
        except zlib.error as exc:
            raise ValueError(f"corrupt gzip data: {exc}") from None
        *lines, pending = pending.split(b"\n")
        yield from lines
    pending += decompressor.flush()
    if complete and (not decompressor.eof or decompressor.unused_data):
        raise ValueError("truncated gzip stream" if not decompressor.eof else "bytes after the gzip member")
    if pending:
        yield from pending.split(b"\n")


def read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            yield chunk
