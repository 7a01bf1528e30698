"""Scenario 1's input: a day of async details-job result pages, as the sandbox tenant serves them, on disk.

The pages are what ``GET /analytics/conversations/details/jobs/{id}/results`` returns for a 24 h job at the page
size the ``conversation_details`` asset asks for (its config default; the raw landing holds exactly these pages): the
previous day's midnight-crossers (neighbours the flattener must drop) followed by the day's
conversations, by start. Overlapping windows and retried pages are imitated by repeating the last ``OVERLAP``
conversations of each page at the start of the next one (the flattener must dedup them). One page per line, so
every variant reads exactly the same bytes with an ordinary buffered read (no mmap: mapped pages would count
against the reader's RSS).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import orjson

from benchmarks.harness import bench_home, log

DAY = date(2024, 3, 5)
OVERLAP = 20
SEED = 20240305


@dataclass(frozen=True)
class PageSet:
    path: Path
    pages: int
    conversations: int  # conversations on the pages (neighbours and repeats included)
    day_conversations: int  # distinct conversations that started on the day: the rows expected
    bytes: int


def _refs(store, day: date) -> list[tuple[date, int]]:  # type: ignore[no-untyped-def]
    """The job's results: yesterday's conversations still running at midnight, then the day's, by start."""
    lo = (day.toordinal() - date(1970, 1, 1).toordinal()) * 86_400_000
    prev = store.day(day - timedelta(days=1)).index
    refs = [(day - timedelta(days=1), r) for r in range(len(prev.ids)) if prev.ends[r] > lo]
    refs.sort(key=lambda r: prev.starts[r[1]])
    cur = store.day(day).index
    return refs + sorted(((day, r) for r in range(len(cur.ids))), key=lambda r: cur.starts[r[1]])


def prepare_pages(conversations: int) -> PageSet:
    """Generate (once, cached) the result pages of one day of ``conversations``."""
    from genesys_assets.sandbox.conversations import ConversationStore

    root = bench_home() / "flatten"
    from genesys_assets.defs.analytics.assets import ConversationDetailsConfig

    page_size = ConversationDetailsConfig().page_size
    path = root / f"pages-{conversations}-by-{page_size}.ndjson"
    meta_path = path.with_suffix(".json")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return PageSet(path, meta["pages"], meta["conversations"], meta["day_conversations"], meta["bytes"])
    log(f"preparing {conversations:,} conversations of result pages (cached under {root})")
    store = ConversationStore(root / "tenant", seed=SEED, conversations_per_day=conversations)
    try:
        refs = _refs(store, DAY)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        pages = total = size = 0
        with open(tmp, "wb") as out:
            start = 0
            while start < len(refs):
                lo = max(0, start - OVERLAP) if start else 0
                chunk = refs[lo:start + page_size]
                start += page_size
                line = b'{"conversations":[' + b",".join(store.day(d).raw(r) for d, r in chunk) + b"]"
                if start < len(refs):
                    line += b',"cursor":' + orjson.dumps(f"page-{pages + 1}")
                line += b',"dataAvailabilityDate":"2024-03-07T00:00:00.000Z"}\n'
                out.write(line)
                pages += 1
                total += len(chunk)
                size += len(line)
        os.replace(tmp, path)
        day_count = len(store.day(DAY).index.ids)
    finally:
        store.close()
    meta = {"pages": pages, "conversations": total, "day_conversations": day_count, "bytes": size}
    meta_path.write_text(json.dumps(meta))
    # The generated tenant days are only an intermediate: the page file is what is measured.
    for f in (root / "tenant").rglob(f"count={conversations}/*"):
        f.unlink()
    return PageSet(path, pages, total, day_count, size)


def iter_pages(path: str | Path):  # type: ignore[no-untyped-def]
    """The page file, one raw page (bytes) at a time."""
    with open(path, "rb", buffering=1 << 20) as f:
        yield from f
