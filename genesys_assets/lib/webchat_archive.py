"""Archiving one day of web messaging conversations: discover, fetch bodies, write parts, resume, publish, verify.

No Dagster here (the asset is a thin shell around ``archive_day`` and ``publish``), so the crash/resume rules are
testable on their own. The flow for a day:

1. An async details job (``mediaType=message`` and ``messageType=webmessaging`` segment predicates) lists the
   conversations; it also returns neighbours with activity in the day, which are skipped: a conversation is
   archived in the day of its start, exactly once.
2. Per conversation, ``GET /api/v2/conversations/messages/{id}`` lists the message ids and
   ``POST .../messages/bulk`` (≤ 1,000 ids per call) returns the bodies; a few conversations of a page are
   fetched in parallel through the one shared client (one token, one rate limiter), in page order.
3. Each page's lines go through :class:`PartWriter` into gzip parts in a local work folder; the checkpoint (job
   id, cursor, conversations written, bytes, parts) is saved after every page.
4. A later run with a checkpoint continues from its cursor when the job is still FULFILLED on Genesys and the
   files match; otherwise it starts the day cleanly. Either way the parts come out byte for byte the same.
5. ``publish`` swaps the parts and a manifest into ``lake/webchat/year=/month=/day=`` as one partition.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from genesys_assets.lib.pii import AddressHasher
from genesys_assets.lib.progress import Progress
from genesys_assets.lib.webchat_parts import (
    COMPRESSION,
    Checkpoint,
    PartWriter,
    ResumeError,
    iter_gzip_lines,
    read_chunks,
)
from genesys_assets.lib.webchat_record import (
    BULK_MAX_IDS,
    build_record,
    chunks,
    keys_outside,
    message_ids,
    query_body,
    started_in_day,
)
from genesys_assets.resources.genesys_cloud_errors import GenesysError

log = logging.getLogger("genesys_assets.webchat")

MESSAGES = "/api/v2/conversations/messages/{conversation_id}"
MESSAGES_BULK = MESSAGES + "/messages/bulk"
MANIFEST_NAME = "manifest.json"
#: Bumped when the bytes of a record or part change: an old checkpoint is then not resumed.
FORMAT_VERSION = 1


class ArchiveError(RuntimeError):
    """The day cannot be archived completely (the message says which conversation or file and why)."""


class LakeLike(Protocol):
    def replace_partition(self, prefix: str) -> Any: ...
    def read_bytes(self, relpath: str) -> bytes: ...
    def exists(self, relpath: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def uri(self, relpath: str = "") -> str: ...


@dataclass(frozen=True)
class ArchiveSettings:
    """What shapes the output bytes (page size, part size, level) plus the fetch parallelism."""

    page_size: int = 1000
    part_max_bytes: int = 128 * 1024 * 1024
    compression_level: int = 6
    fetch_workers: int = 4

    def plan(self, day: date) -> str:
        """Fingerprint of everything that decides the bytes: a checkpoint is resumed only under the same plan."""
        key = orjson.dumps([FORMAT_VERSION, day.isoformat(), self.page_size, self.part_max_bytes,
                            self.compression_level])
        return hashlib.sha256(key).hexdigest()[:16]


@dataclass
class ArchiveRun:
    """What ``archive_day`` did: the final checkpoint and how this run started."""

    checkpoint: Checkpoint
    resumed: bool
    resumed_from_page: int | None
    restart_reason: str | None
    seconds: float
    pages_this_run: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


def lake_prefix(day: date) -> str:
    """``webchat/year=YYYY/month=MM/day=DD``: the day's partition in the lake."""
    return f"webchat/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


# ------------------------------------------------------------------------------------------------ API reads

def fetch_messages_ids(client: Any, conversation_id: str) -> list[str]:
    """The message ids ``GET /api/v2/conversations/messages/{id}`` lists for a conversation."""
    return message_ids(client.get_json(MESSAGES, path_params={"conversation_id": conversation_id}))


def fetch_messages(client: Any, conversation_id: str, bulk_size: int = BULK_MAX_IDS) -> list[dict[str, Any]]:
    """Every message (``MessageData``) of a conversation: ids from the conversation, bodies in bulk chunks.

    Raises :class:`ArchiveError` when the bulk endpoint leaves out an id the conversation lists, so an archive
    is never silently incomplete.
    """
    ids = fetch_messages_ids(client, conversation_id)
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids, bulk_size):
        answer = client.post_json(MESSAGES_BULK, json=chunk, params={"useNormalizedMessage": "true"},
                                  path_params={"conversation_id": conversation_id})
        for entity in answer.get("entities") or []:
            if isinstance(entity, dict) and entity.get("id") in chunk:
                found.setdefault(entity["id"], entity)
    missing = [i for i in ids if i not in found]
    if missing:
        raise ArchiveError(f"conversation {conversation_id}: the bulk endpoint did not return {len(missing)} of "
                           f"{len(ids)} messages (first missing id {missing[0]})")
    return [found[i] for i in ids]


def job_state(client: Any, job_id: str) -> tuple[str | None, str | None]:
    """``(state, None)`` when the job's results can still be read (now or once it finishes), else
    ``(state, why not)``: expired, deleted, failed or cancelled jobs mean the day starts cleanly."""
    try:
        status = client.details_job_status(job_id)
    except GenesysError as exc:
        return None, f"job {job_id} is no longer readable ({type(exc).__name__})"
    state = str(status.get("state") or "").upper() or None
    if state in ("FULFILLED", "QUEUED", "PENDING"):
        return state, None
    return state, f"job {job_id} is {state or 'in an unknown state'}"


# ------------------------------------------------------------------------------------------------ the run

def _written_ids(work_dir: Path, checkpoint: Checkpoint) -> set[str]:
    """Ids already in the parts (a resumed run must not write them again)."""
    ids: set[str] = set()
    for part in checkpoint.parts:
        lines = iter_gzip_lines(read_chunks(work_dir / part.name), complete=part.sha256 is not None)
        ids.update(orjson.loads(line)["id"] for line in lines if line)
    return ids


def _start(client: Any, day: date, work_dir: Path, settings: ArchiveSettings,
           ) -> tuple[Checkpoint, bool, str | None]:
    """The checkpoint to continue from (resumed) or a fresh one with a new, fulfilled job."""
    plan = settings.plan(day)
    saved = Checkpoint.load(work_dir)
    reason: str | None = None
    if saved is None:
        reason = None if not work_dir.exists() else "no readable checkpoint"
    elif saved.plan != plan:
        reason = "the checkpoint was written under other settings"
    else:
        state, reason = (None, None) if saved.pages_done else job_state(client, saved.job_id or "")
        if reason is None:
            try:
                PartWriter(work_dir, saved, part_max_bytes=settings.part_max_bytes,
                           level=settings.compression_level)
            except ResumeError as exc:
                reason = str(exc)
            else:
                if state in ("QUEUED", "PENDING"):  # the last run died while the job was still running
                    client.wait_for_details_job(saved.job_id)
                return saved, True, None
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    checkpoint = Checkpoint(day=day.isoformat(), plan=plan)
    checkpoint.job_id = client.submit_details_job(query_body(day))
    checkpoint.save(work_dir)  # a run killed while waiting resumes the same job
    client.wait_for_details_job(checkpoint.job_id)
    return checkpoint, False, reason


def archive_day(client: Any, day: date, work_dir: Path, hasher: AddressHasher,
                settings: ArchiveSettings | None = None) -> ArchiveRun:
    """Write (or finish writing) the day's parts in ``work_dir``; resumable at any point.

    ``client`` is a :class:`GenesysCloudClient`; ``hasher`` hashes participant names that are phone numbers.
    Returns once every page is written and the last part closed.
    """
    settings = settings or ArchiveSettings()
    started = time.monotonic()
    checkpoint, resumed, reason = _start(client, day, work_dir, settings)
    resumed_from = checkpoint.pages if resumed else None
    if reason:
        log.warning("Archive of %s starts cleanly: %s", day, reason)
    elif resumed:
        log.info("Archive of %s resumes after page %d (%d conversations written)", day, checkpoint.pages,
                 checkpoint.conversations_written)
    writer = PartWriter(work_dir, checkpoint, part_max_bytes=settings.part_max_bytes,
                        level=settings.compression_level)
    seen = _written_ids(work_dir, checkpoint) if resumed else set()
    pages_this_run = 0
    progress = Progress(f"Web messaging conversations of {day} archived this run", log)
    if not checkpoint.pages_done:
        assert checkpoint.job_id is not None
        with ThreadPoolExecutor(max_workers=max(1, settings.fetch_workers), thread_name_prefix="webchat") as pool:
            for page in client.iter_details_job_pages(checkpoint.job_id, settings.page_size, checkpoint.cursor):
                todo = []
                for conversation in page.conversations:
                    cid = conversation.get("conversationId")
                    if not started_in_day(conversation, day):
                        checkpoint.neighbours_skipped += 1
                    elif cid in seen:
                        checkpoint.duplicates_skipped += 1
                    else:
                        seen.add(cid)
                        todo.append(conversation)
                lines = []
                for conversation, messages in zip(
                    todo, pool.map(lambda c: fetch_messages(client, c["conversationId"]), todo), strict=True
                ):
                    lines.append(orjson.dumps(build_record(conversation, messages, hasher)) + b"\n")
                    checkpoint.messages += len(messages)
                writer.write_page(lines)
                progress.advance(len(lines))
                checkpoint.pages += 1
                checkpoint.cursor = page.cursor
                pages_this_run += 1
                if not page.cursor:
                    writer.close_part()
                    checkpoint.pages_done = True
                checkpoint.save(work_dir)
        progress.done()
    return ArchiveRun(checkpoint, resumed, resumed_from, reason, time.monotonic() - started, pages_this_run)


# ------------------------------------------------------------------------------------------------ publishing

def build_manifest(checkpoint: Checkpoint, *, region: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest written next to the parts: per file records, bytes and sha256; totals; region; run info."""
    files = [{"path": p.name, "records": p.records, "bytes": p.length, "bytes_raw": p.bytes_raw,
              "sha256": p.sha256} for p in checkpoint.parts]
    return {
        "dataset": "webchat_archive",
        "day": checkpoint.day,
        "format": "ndjson",
        "compression": COMPRESSION,
        "region": region,
        "records": checkpoint.conversations_written,
        "bytes": sum(f["bytes"] for f in files),
        "bytes_raw": checkpoint.bytes_raw,
        "messages": checkpoint.messages,
        "files": files,
        "run": dict(run),
    }


def publish(lake: LakeLike, day: date, work_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Swap the parts and the manifest into the day's lake partition as a whole; returns the lake paths."""
    prefix = lake_prefix(day)
    with lake.replace_partition(prefix) as partition:
        for entry in manifest["files"]:
            with partition.open(entry["path"]) as out:
                for chunk in read_chunks(work_dir / entry["path"]):
                    out.write(chunk)
        partition.write_bytes(MANIFEST_NAME, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    shutil.rmtree(work_dir, ignore_errors=True)
    return [f"{prefix}/{e['path']}" for e in manifest["files"]] + [f"{prefix}/{MANIFEST_NAME}"]


def read_manifest(lake: LakeLike, day: date) -> dict[str, Any] | None:
    path = f"{lake_prefix(day)}/{MANIFEST_NAME}"
    return orjson.loads(lake.read_bytes(path)) if lake.exists(path) else None


def recent_manifests(lake: LakeLike, before: date, limit: int = 7) -> list[dict[str, Any]]:
    """Manifests of up to ``limit`` archived days before ``before`` (newest first): the measured sizes."""
    paths = [p for p in lake.list("webchat") if p.endswith("/" + MANIFEST_NAME) and p < lake_prefix(before)]
    return [orjson.loads(lake.read_bytes(p)) for p in sorted(paths, reverse=True)[:limit]]


# ------------------------------------------------------------------------------------------------ verifying

@dataclass
class Verification:
    """Outcome of reading a published day back: problems (empty when it is intact) and what was read."""

    problems: list[str] = field(default_factory=list)
    records: int = 0
    files: int = 0
    bytes: int = 0
    bytes_raw: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sample_key(conversation_id: str) -> str:
    return hashlib.sha256(conversation_id.encode()).hexdigest()


def verify_day(lake: LakeLike, day: date, sample_size: int = 0) -> Verification:
    """Every file decompresses fully, every line parses, keys ⊆ allow-list, ids unique, sha256 = manifest.

    Streams file by file and keeps only ids (for duplicates) and a deterministic sample of ``sample_size``
    records (the smallest sha256 of their ids) for the messages-complete check.
    """
    result = Verification()
    manifest = read_manifest(lake, day)
    if manifest is None:
        result.problems.append(f"no manifest at {lake_prefix(day)}/{MANIFEST_NAME}")
        return result
    prefix = lake_prefix(day)
    listed = {f"{prefix}/{f['path']}" for f in manifest.get("files") or []}
    extra = sorted(set(lake.list(prefix)) - listed - {f"{prefix}/{MANIFEST_NAME}"})
    if extra:
        result.problems.append(f"files not in the manifest: {extra}")
    seen: set[str] = set()
    heap: list[tuple[str, bytes]] = []  # max-heap by negated key: the sample_size smallest keys
    for entry in manifest.get("files") or []:
        path = f"{prefix}/{entry['path']}"
        data = lake.read_bytes(path)
        result.files += 1
        result.bytes += len(data)
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            result.problems.append(f"{path}: sha256 does not match the manifest")
        count = 0
        try:
            for number, line in enumerate(iter_gzip_lines([data]), start=1):
                if not line:
                    continue
                result.bytes_raw += len(line) + 1
                count += 1
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    result.problems.append(f"{path} line {number}: not JSON")
                    continue
                outside = keys_outside(record)
                if outside:
                    result.problems.append(f"{path} line {number}: keys outside the allow-list {outside[:5]}")
                cid = record.get("id") if isinstance(record, dict) else None
                if not isinstance(cid, str) or not cid:
                    result.problems.append(f"{path} line {number}: no id")
                    continue
                if cid in seen:
                    result.problems.append(f"{path} line {number}: duplicate id {cid}")
                seen.add(cid)
                if sample_size > 0:
                    item = (_negate(_sample_key(cid)), line)
                    if len(heap) < sample_size:
                        heapq.heappush(heap, item)
                    elif item > heap[0]:
                        heapq.heapreplace(heap, item)
        except ValueError as exc:
            result.problems.append(f"{path}: does not decompress fully ({exc})")
        if count != entry.get("records"):
            result.problems.append(f"{path}: {count} records, manifest says {entry.get('records')}")
        result.records += count
    if result.records != manifest.get("records"):
        result.problems.append(f"{result.records} records in the files, manifest says {manifest.get('records')}")
    result.sample = [orjson.loads(line) for _, line in sorted(heap, reverse=True)]
    return result


def _negate(hex_key: str) -> str:
    """Order-reversing map on hex strings, so heapq's min-heap keeps the smallest keys."""
    return hex_key.translate(str.maketrans("0123456789abcdef", "fedcba9876543210"))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
