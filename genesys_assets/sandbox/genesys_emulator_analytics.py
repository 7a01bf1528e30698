"""Analytics semantics of the emulated tenant: intervals, filters, details jobs, sync query, aggregates.

Kept apart from the HTTP layer so the rules the pipeline depends on are easy to read and test:
- async jobs select conversations that *had activity during* the interval (a midnight-crosser belongs to both
  days), and only data before the job's ``dataAvailabilityDate`` (later data is silently missing);
- the sync query selects conversations that *started on a day touched by* the interval (the API's documented
  rule: a 6-hour interval still answers for its whole day), pages of at most 100, never past result 100,000;
- segment filters are evaluated per segment, with its session, participant and conversation dimensions;
  conversation filters honour only conversation-level dimensions and silently drop the rest;
- aggregates sum session metrics by their ``emitDate``, exactly the numbers in the details data.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import orjson

from genesys_assets.sandbox.conversations import DAY_MS, ConversationStore, iso_ms, parse_ms

SYNC_MAX_PAGE_SIZE = 100
SYNC_DEFAULT_PAGE_SIZE = 25
SYNC_MAX_RESULTS = 100_000
JOB_DEFAULT_PAGE_SIZE = 1000
JOB_MAX_PAGE_SIZE = 10_000
JOB_RESULTS_TTL_MS = 2 * DAY_MS

# The only dimensions a conversation filter honours (reference: genesys-cloud-api.md).
CONVERSATION_DIMENSIONS = frozenset({
    "conversationId", "conversationStart", "conversationEnd", "conversationInitiator", "customerParticipation",
    "divisionId", "externalTag", "mediaStatsMinConversationMos", "originatingDirection",
    "originatingSocialMediaPublic", "accessAttribute",
})
_FAST_DIMENSIONS = frozenset({"mediaType", "messageType"})  # answerable from the day index alone


class QueryError(ValueError):
    """A request the real API refuses with 400; the message is the body's ``message``."""


# ---------------------------------------------------------------------------------------------- intervals

def parse_interval(value: object) -> tuple[int, int]:
    """``start/end`` ISO-8601 -> (start_ms, end_ms), half-open."""
    if not isinstance(value, str) or "/" not in value:
        raise QueryError("interval is required and must be an ISO-8601 interval 'start/end'")
    a, b = value.split("/", 1)
    try:
        start, end = parse_ms(a.strip()), parse_ms(b.strip())
    except ValueError as exc:
        raise QueryError(f"Invalid interval {value!r}: dates must be ISO-8601") from exc
    if end <= start:
        raise QueryError(f"Invalid interval {value!r}: end must be after start")
    return start, end


def _day_of(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def days_touching(start_ms: int, end_ms: int) -> list[date]:
    first, last = _day_of(start_ms), _day_of(end_ms - 1)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


def parse_granularity(value: str | None) -> int | None:
    """ISO-8601 duration (PT30M, PT1H, P1D, P7D...) -> ms; None when absent."""
    if not value:
        return None
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        raise QueryError(f"Invalid granularity {value!r}")
    w, d, h, mi = (int(g or 0) for g in m.groups())
    return ((w * 7 + d) * 24 * 60 + h * 60 + mi) * 60_000


# ---------------------------------------------------------------------------------------------- filters

def _text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _predicate_ok(pred: dict, ctx: dict) -> bool:
    if pred.get("type", "dimension") != "dimension":
        return True  # metric/property predicates are not emulated: they never narrow the result
    dim = pred.get("dimension")
    op = pred.get("operator", "matches")
    present = dim in ctx and ctx[dim] is not None
    if op == "exists":
        return present
    if op == "notExists":
        return not present
    if op != "matches":
        raise QueryError(f"Unsupported predicate operator {op!r}")
    return present and _text(ctx[dim]) == _text(pred.get("value"))


def _filter_ok(flt: dict, ctx: dict) -> bool:
    kind = flt.get("type", "and")
    checks = [_predicate_ok(p, ctx) for p in flt.get("predicates") or []]
    checks += [_filter_ok(c, ctx) for c in flt.get("clauses") or []]
    if not checks:
        return True
    return all(checks) if kind == "and" else any(checks)


def _dims(flt: dict) -> set[str]:
    out = {p.get("dimension") for p in flt.get("predicates") or [] if p.get("type", "dimension") == "dimension"}
    for c in flt.get("clauses") or []:
        out |= _dims(c)
    return out  # type: ignore[return-value]


def _strip_segment_dims(flt: dict) -> dict:
    """A conversation filter as the real API applies it: segment-level predicates silently dropped."""
    preds = [p for p in flt.get("predicates") or []
             if p.get("type", "dimension") != "dimension" or p.get("dimension") in CONVERSATION_DIMENSIONS]
    clauses = [_strip_segment_dims(c) for c in flt.get("clauses") or []]
    return {"type": flt.get("type", "and"), "predicates": preds, "clauses": clauses}


def _validate_filters(filters: object, name: str) -> list[dict]:
    if filters is None:
        return []
    if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
        raise QueryError(f"{name} must be a list of filters")
    for f in filters:
        if f.get("type", "and") not in ("and", "or"):
            raise QueryError(f"{name}: filter type must be 'and' or 'or'")
        for p in f.get("predicates") or []:
            if p.get("operator", "matches") not in ("matches", "exists", "notExists"):
                raise QueryError(f"Unsupported predicate operator {p.get('operator')!r}")
    return filters


def conversation_context(conv: dict) -> dict:
    return {
        "conversationId": conv.get("conversationId"), "conversationStart": conv.get("conversationStart"),
        "conversationEnd": conv.get("conversationEnd"), "conversationInitiator": conv.get("conversationInitiator"),
        "customerParticipation": conv.get("customerParticipation"), "externalTag": conv.get("externalTag"),
        "mediaStatsMinConversationMos": conv.get("mediaStatsMinConversationMos"),
        "originatingDirection": conv.get("originatingDirection"),
        "divisionId": (conv.get("divisionIds") or [None])[0],
    }


def segment_contexts(conv: dict) -> Iterator[dict]:
    """One flat dimension map per segment: segment, session, participant and conversation fields."""
    base = conversation_context(conv)
    for p in conv.get("participants") or []:
        pctx = {**base, "participantId": p.get("participantId"), "participantName": p.get("participantName"),
                "purpose": p.get("purpose"), "userId": p.get("userId")}
        for s in p.get("sessions") or []:
            sctx = {**pctx, "sessionId": s.get("sessionId"), "mediaType": s.get("mediaType"),
                    "messageType": s.get("messageType"), "direction": s.get("direction"), "ani": s.get("ani"),
                    "dnis": s.get("dnis"), "addressFrom": s.get("addressFrom"), "addressTo": s.get("addressTo"),
                    "flowId": (s.get("flow") or {}).get("flowId")}
            for seg in s.get("segments") or []:
                yield {**sctx, **{k: v for k, v in seg.items() if not isinstance(v, (list, dict))}}


@dataclass
class Selection:
    """Filters compiled once per query."""

    segment_filters: list[dict]
    conversation_filters: list[dict]

    @classmethod
    def from_body(cls, body: dict) -> Selection:
        seg = _validate_filters(body.get("segmentFilters"), "segmentFilters")
        conv = _validate_filters(body.get("conversationFilters"), "conversationFilters")
        return cls(seg, [_strip_segment_dims(f) for f in conv])

    @property
    def empty(self) -> bool:
        return not self.segment_filters and not self.conversation_filters

    @property
    def fast(self) -> bool:
        """True when the day index alone (media type) answers every predicate."""
        dims: set[str] = set()
        for f in self.segment_filters:
            dims |= _dims(f)
        return not self.conversation_filters and dims <= _FAST_DIMENSIONS

    def matches_fast(self, media: str) -> bool:
        ctx = {"mediaType": media, "messageType": "webmessaging" if media == "message" else None}
        return all(_filter_ok(f, ctx) for f in self.segment_filters)

    def matches(self, conv: dict) -> bool:
        if self.conversation_filters:
            ctx = conversation_context(conv)
            if not all(_filter_ok(f, ctx) for f in self.conversation_filters):
                return False
        return all(any(_filter_ok(f, ctx) for ctx in segment_contexts(conv)) for f in self.segment_filters)


# ---------------------------------------------------------------------------------------------- selection

Ref = tuple[date, int]  # (day the conversation started, row in that day's cache)


class Analytics:
    """Answers the analytics endpoints from a ConversationStore."""

    def __init__(self, store: ConversationStore, now_ms: callable) -> None:  # type: ignore[valid-type]
        self.store = store
        self.now_ms = now_ms
        self._sync_cache: OrderedDict[bytes, list[Ref]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _candidates(self, days: Iterable[date], keep, selection: Selection) -> list[Ref]:  # type: ignore[no-untyped-def]
        """(day, row) of each conversation ``keep`` accepts by (start, end) that ``selection`` matches.

        Answered from the day index whenever the media type decides (once per distinct media type, not per row):
        the job's selection of a 100k-conversation day is then well inside the 0.5 s a job takes at least.
        """
        out: list[Ref] = []
        by_index = selection.empty or selection.fast
        for day in days:
            data = self.store.day(day)
            idx = data.index
            if by_index:
                media_ok = {m: selection.empty or selection.matches_fast(m) for m in set(idx.media)}
                out.extend((day, row) for row, (s, e, m) in enumerate(zip(idx.starts, idx.ends, idx.media, strict=True))
                           if media_ok[m] and keep(s, e))
            else:
                out.extend((day, row) for row, (s, e) in enumerate(zip(idx.starts, idx.ends, strict=True))
                           if keep(s, e) and selection.matches(data.conversation(row)))
        return out

    def _by_start(self, refs: list[Ref], body: dict) -> list[Ref]:
        """``refs`` in conversation-start order (``order: desc`` reversed), ties in the order found."""
        starts = {day: self.store.day(day).index.starts for day in {day for day, _ in refs}}
        refs.sort(key=lambda r: starts[r[0]][r[1]], reverse=body.get("order") == "desc")
        return refs

    def select_async(self, body: dict, watermark_ms: int) -> list[Ref]:
        """Conversations with activity during the interval, known before the watermark, ordered by start."""
        start, end = parse_interval(body.get("interval"))
        selection = Selection.from_body(body)
        days = days_touching(start, end)
        days.insert(0, days[0] - timedelta(days=1))  # yesterday's midnight-crossers had activity today

        def keep(s: int, e: int) -> bool:
            return s < end and e > start and e <= watermark_ms

        refs = self._by_start(self._candidates(days, keep, selection), body)
        limit = body.get("limit")
        if isinstance(limit, int) and limit > 0:
            refs = refs[:limit]
        return refs

    def select_sync(self, body: dict) -> list[Ref]:
        """Conversations that started on a day the interval touches (and have started by now), ordered by start."""
        start, end = parse_interval(body.get("interval"))
        selection = Selection.from_body(body)
        now = self.now_ms()

        def keep(s: int, e: int) -> bool:
            return s <= now

        return self._by_start(self._candidates(days_touching(start, end), keep, selection), body)

    def _select_sync_cached(self, body: dict) -> list[Ref]:
        """Paging re-asks the same query page after page: keep the last few selections (per minute)."""
        key = orjson.dumps({k: body.get(k) for k in ("interval", "segmentFilters", "conversationFilters", "order")}
                           | {"minute": self.now_ms() // 60_000}, option=orjson.OPT_SORT_KEYS)
        with self._cache_lock:
            hit = self._sync_cache.get(key)
            if hit is not None:
                self._sync_cache.move_to_end(key)
                return hit
        refs = self.select_sync(body)
        with self._cache_lock:
            self._sync_cache[key] = refs
            while len(self._sync_cache) > 16:
                self._sync_cache.popitem(last=False)
        return refs

    def sync_page(self, body: dict) -> dict:
        paging = body.get("paging") or {}
        size = paging.get("pageSize", SYNC_DEFAULT_PAGE_SIZE)
        number = paging.get("pageNumber", 1)
        if not isinstance(size, int) or not isinstance(number, int) or size < 1 or number < 1:
            raise QueryError("paging.pageSize and paging.pageNumber must be positive integers")
        if size > SYNC_MAX_PAGE_SIZE:
            raise QueryError(f"Max page size is {SYNC_MAX_PAGE_SIZE}")
        if size * number > SYNC_MAX_RESULTS:
            raise QueryError(f"Pagination may not exceed {SYNC_MAX_RESULTS} results")
        refs = self._select_sync_cached(body)
        page = refs[(number - 1) * size: number * size]
        out: dict = {}
        if page:
            now = self.now_ms()
            convs = [as_of(self.conversation(r), now) for r in page]
            for c in convs:  # sync results are AnalyticsConversationWithoutAttributes
                for p in c.get("participants") or []:
                    p.pop("attributes", None)
            out["conversations"] = convs
        out["totalHits"] = len(refs)
        return out

    def conversation(self, ref: Ref) -> dict:
        return self.store.day(ref[0]).conversation(ref[1])

    def raw(self, ref: Ref) -> bytes:
        return self.store.day(ref[0]).raw(ref[1])

    # ----------------------------------------------------------------------------------------- aggregates

    def aggregate(self, body: dict) -> dict:
        """Session metrics grouped by the requested dimensions, attributed to intervals by ``emitDate``."""
        start, end = parse_interval(body.get("interval"))
        gran = parse_granularity(body.get("granularity"))
        group_by = body.get("groupBy") or []
        metrics = body.get("metrics") or []
        if not isinstance(metrics, list) or not metrics:
            raise QueryError("metrics must name at least one metric")
        if not isinstance(group_by, list):
            raise QueryError("groupBy must be a list of dimensions")
        flt = body.get("filter")
        wanted = set(metrics)
        buckets: dict[tuple, dict[int, dict[str, list[float]]]] = {}
        days = days_touching(start, end)
        days.insert(0, days[0] - timedelta(days=1))
        now = self.now_ms()
        for day in days:
            data = self.store.day(day)
            idx = data.index
            for row in range(len(idx.ids)):
                if idx.ends[row] < start or idx.starts[row] >= end:
                    continue
                conv = data.conversation(row)
                for ctx, session in _session_contexts(conv):
                    if flt and not _filter_ok(flt, ctx):
                        continue
                    for m in session.get("metrics") or []:
                        if m["name"] not in wanted:
                            continue
                        emit = parse_ms(m["emitDate"])
                        if not start <= emit < min(end, now + 1):  # nothing is counted before it is emitted
                            continue
                        bucket = (emit - start) // gran if gran else 0
                        key = tuple((g, ctx.get(g)) for g in group_by if ctx.get(g) is not None)
                        stats = buckets.setdefault(key, {}).setdefault(bucket, {})
                        stats.setdefault(m["name"], []).append(m["value"])
        results = []
        for key in sorted(buckets, key=lambda k: [(g, str(v)) for g, v in k]):
            data_out = []
            for bucket in sorted(buckets[key]):
                b_start = start + bucket * gran if gran else start
                b_end = min(b_start + gran, end) if gran else end
                mets = []
                for name in metrics:
                    values = buckets[key][bucket].get(name)
                    if not values:
                        continue
                    if name.startswith("n"):
                        stats = {"count": int(sum(values))}
                    else:
                        stats = {"max": float(max(values)), "min": float(min(values)), "count": len(values),
                                 "sum": float(sum(values))}
                    mets.append({"metric": name, "stats": stats})
                if mets:
                    data_out.append({"interval": f"{iso_ms(b_start)}/{iso_ms(b_end)}", "metrics": mets})
            if data_out:
                results.append({"group": {g: str(v) for g, v in key}, "data": data_out})
        return {"results": results} if results else {}


_OPEN_SEGMENT_DROPS = ("segmentEnd", "disconnectType", "wrapUpCode", "wrapUpNote", "wrapUpTags")


def as_of(conv: dict, now_ms: int) -> dict:
    """A conversation as the API reports it at ``now_ms``: one still in progress has no ``conversationEnd``, no
    segment, session or participant that has not started, open segments without their end (or the disconnect and
    wrap-up that come with it), and no metric not yet emitted. A finished one is returned as it is."""
    end = conv.get("conversationEnd")
    if end is None or parse_ms(end) <= now_ms:
        return conv
    del conv["conversationEnd"]
    participants = []
    for p in conv.get("participants") or []:
        sessions = []
        for s in p.get("sessions") or []:
            segments = [seg for seg in s.get("segments") or [] if parse_ms(seg["segmentStart"]) <= now_ms]
            if not segments:
                continue
            for seg in segments:
                if "segmentEnd" in seg and parse_ms(seg["segmentEnd"]) > now_ms:
                    for key in _OPEN_SEGMENT_DROPS:
                        seg.pop(key, None)
            s["segments"] = segments
            emitted = [m for m in s.get("metrics") or [] if parse_ms(m["emitDate"]) <= now_ms]
            if emitted:
                s["metrics"] = emitted
            else:
                s.pop("metrics", None)
            sessions.append(s)
        if sessions:
            p["sessions"] = sessions
            participants.append(p)
    conv["participants"] = participants
    return conv


def _session_contexts(conv: dict) -> Iterator[tuple[dict, dict]]:
    base = conversation_context(conv)
    for p in conv.get("participants") or []:
        for s in p.get("sessions") or []:
            wrap = next((seg.get("wrapUpCode") for seg in s.get("segments") or [] if seg.get("wrapUpCode")), None)
            queue = next((seg.get("queueId") for seg in s.get("segments") or [] if seg.get("queueId")), None)
            ctx = {**base, "purpose": p.get("purpose"), "userId": p.get("userId"), "mediaType": s.get("mediaType"),
                   "messageType": s.get("messageType"), "direction": s.get("direction"), "wrapUpCode": wrap,
                   "queueId": queue}
            yield ctx, s


# ---------------------------------------------------------------------------------------------- jobs

@dataclass
class Job:
    """One async details job. Its state is a function of time, so polling needs no background thread."""

    id: str
    body: dict
    submitted_ms: int
    delay_s: float
    outcome: str  # FULFILLED | FAILED | EXPIRED | STUCK
    watermark_ms: int
    refs: list[Ref] | None = None
    error: str | None = None
    deleted: bool = False
    cancelled_ms: int | None = None  # DELETE while it was still QUEUED or PENDING
    drift: bool = False
    ready: threading.Event = field(default_factory=threading.Event)

    def state(self, now_ms: int) -> str:
        if self.cancelled_ms is not None:
            return "CANCELLED"
        elapsed = (now_ms - self.submitted_ms) / 1000
        if elapsed < self.delay_s / 2:
            return "QUEUED"
        if elapsed < self.delay_s or self.outcome == "STUCK" or not self.ready.is_set():
            return "PENDING"
        if self.error:
            return "FAILED"
        if self.outcome == "FULFILLED" and now_ms >= self.completed_ms() + JOB_RESULTS_TTL_MS:
            return "EXPIRED"  # results are kept until the expirationDate the status reports, then gone
        return self.outcome

    def completed_ms(self) -> int:
        return self.submitted_ms + int(self.delay_s * 1000)

    def status(self, now_ms: int) -> dict:
        state = self.state(now_ms)
        out: dict = {"state": state, "submissionDate": iso_ms(self.submitted_ms)}
        if state in ("FULFILLED", "FAILED", "EXPIRED"):
            done = max(self.completed_ms(), self.submitted_ms)
            out["completionDate"] = iso_ms(done)
            out["expirationDate"] = iso_ms(done + JOB_RESULTS_TTL_MS)
        elif state == "CANCELLED":
            out["completionDate"] = iso_ms(self.cancelled_ms)  # type: ignore[arg-type]  # set when CANCELLED
        if state == "FAILED":
            out["errorMessage"] = self.error or "The analytics job failed: internal error while computing results"
        return out


class JobBook:
    """Submitted jobs; selection runs on a worker thread so a big day stays PENDING while it is computed."""

    def __init__(self, analytics: Analytics) -> None:
        self.analytics = analytics
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def submit(self, body: dict, delay_s: float, outcome: str, watermark_ms: int) -> Job:
        parse_interval(body.get("interval"))  # 400 now, not later
        Selection.from_body(body)
        outcome = outcome.upper()
        if outcome not in ("FULFILLED", "FAILED", "EXPIRED", "STUCK"):
            raise QueryError(f"unknown job_outcome {outcome!r}")
        job = Job(str(uuid.uuid4()), body, self.analytics.now_ms(), delay_s, outcome, watermark_ms)
        if outcome == "FAILED":
            job.error = "The analytics job failed: internal error while computing results (sandbox fault)"
        with self.lock:
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True, name=f"details-job-{job.id[:8]}").start()
        return job

    def _run(self, job: Job) -> None:
        try:
            job.refs = self.analytics.select_async(job.body, job.watermark_ms)
        except Exception as exc:  # surfaces as a FAILED job, as a real backend failure would
            job.error = f"The analytics job failed: {exc}"
        finally:
            job.ready.set()

    def get(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return None if job is None or job.deleted else job

    def delete(self, job_id: str, now_ms: int | None = None) -> bool:
        """"Delete/cancel an async details job": a job still running is cancelled (its status says CANCELLED
        and its results never come); a finished one, or a cancelled one deleted again, is gone (404)."""
        job = self.get(job_id)
        if job is None:
            return False
        now_ms = self.analytics.now_ms() if now_ms is None else now_ms
        if job.state(now_ms) in ("QUEUED", "PENDING"):
            job.cancelled_ms = now_ms
        else:
            job.deleted = True
        return True


def encode_cursor(offset: int) -> str:
    return orjson.dumps({"o": offset}).hex()


def decode_cursor(cursor: str) -> int:
    try:
        return int(orjson.loads(bytes.fromhex(cursor))["o"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise QueryError("Invalid cursor") from exc


def now_ms() -> int:
    return int(time.time() * 1000)
