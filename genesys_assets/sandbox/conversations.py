"""Deterministic Genesys Cloud tenant data: every UTC day's conversations, generated from (seed, day, count).

Conversations are shaped as the analytics details API returns them (SDK model ``AnalyticsConversation``):
customer / IVR / ACD / agent participants, sessions with metrics in milliseconds, segments IVR -> ACD -> alert
-> interact -> hold -> wrapup, transfers to a second agent, participant attributes, a few percent crossing
midnight. The wrap-up code on each ``wrapup`` segment is a code *id* valid on that day in
``build_directory(seed)``, so renamed and deleted codes show up in history exactly as they do in a real org.

The emulator must serve a million conversations a day without being the bottleneck, so a day is generated
once, in bulk, into a cache under the state dir: one pre-serialised JSON conversation per line (the bytes the
results endpoints send) plus a small column index (ids, start/end in epoch ms, offsets, media types). Pages are
built by slicing an mmap and joining bytes; nothing is re-serialised on the hot path.

Conversation ids are random-looking UUIDs whose last group carries the day ordinal and the row number, so any
conversation id can be resolved back to its day without a global lookup table.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import random
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson

from genesys_assets.sandbox.directory import DEFAULT_SEED, TENANT_CREATED, Directory, build_directory

DAY_MS = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
CACHE_FORMAT = 1
CHUNK = 10_000  # conversations generated per RNG stream; fixed so output never depends on worker count
_PARALLEL_FROM = 50_000

# Share of conversations by media type (voice ~60 %, web messaging ~20 %).
MEDIA_MIX = (("voice", 0.60), ("message", 0.20), ("email", 0.12), ("callback", 0.08))
# Relative arrival rate per UTC hour: a business-hours curve with a quiet night and a late tail.
_HOURLY = (2, 1, 1, 1, 1, 2, 4, 8, 14, 18, 19, 18, 16, 17, 18, 17, 15, 12, 9, 7, 6, 5, 4, 5)
_LATE_CROSSING_SHARE = 0.6  # of conversations starting in the last 45 min, this share ends the next day

# The contact centre's own lines (the DNIS its customers dial): not customer data, so they may stay clear.
CONTACT_CENTRE_LINES = ("tel:+18005550100", "tel:+18005550111", "tel:+18005550122", "tel:+442035550100")
_FLOWS = (("Main IVR", "INBOUNDCALL"), ("Billing IVR", "INBOUNDCALL"), ("After Hours", "INBOUNDCALL"))
_CUSTOMER_NAMES = ("Mobile Number, Georgia", "Customer", "Alex Kim", "Sam Patel", "Jordan Lee", "Maria Silva",
                   "Wireless Caller", "Chris O'Neil", "Noor Haddad", "Taylor Brooks")
_TIERS = ("bronze", "silver", "gold", "platinum")
_INTENTS = ("billing", "support", "sales", "cancel", "fraud", "general")
_LANGS = ("en-US", "en-GB", "es-US", "fr-CA", "de-DE")
_SUBJECTS = ("Invoice question", "Order status", "Cannot log in", "Refund request", "Change of address",
             "Complaint", "Upgrade my plan")
_INBOUND_TEXT = ("Hi, I need help with my bill", "My order hasn't arrived", "Can I change my plan?",
                 "I was charged twice this month", "How do I reset my password?", "Thanks!",
                 "Yes that's right", "Order number is 55-2291", "Is there a cancellation fee?", "ok 👍",
                 "Can you call me back tomorrow?", "Here is a screenshot")
_OUTBOUND_TEXT = ("Hello, thanks for contacting us. How can I help?", "Let me look into that for you.",
                  "Could you confirm the account holder's name?", "I've updated that for you.",
                  "Is there anything else I can help with today?", "I've issued a refund of $12.50.",
                  "You'll receive an email confirmation shortly.", "Have a great day!")


# ---------------------------------------------------------------------------------------------- formatting

class _Clock:
    """Fast epoch-ms -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (the analytics API's timestamp format)."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def iso(self, ms: int) -> str:
        day, rem = divmod(ms, DAY_MS)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
        s, milli = divmod(rem, 1000)
        h, s = divmod(s, 3600)
        m, s = divmod(s, 60)
        return f"{prefix}T{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as the API's ISO-8601 UTC string."""
    return _Clock().iso(ms)


def day_start_ms(day: date) -> int:
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_MS


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def conversation_uuid(rng: random.Random, day: date, row: int) -> str:
    """A v4-shaped UUID whose last group encodes (day ordinal, row), so the id resolves to its day."""
    h = f"{rng.getrandbits(80):020x}"
    tail = f"{day.toordinal():06x}{row:06x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{tail}"


def locate_conversation(conversation_id: str) -> tuple[date, int] | None:
    """(day, row) encoded in an emulator conversation id, or None for an id the emulator never made."""
    try:
        tail = conversation_id.rsplit("-", 1)[1]
        if len(tail) != 12 or len(conversation_id) != 36:
            return None
        return date.fromordinal(int(tail[:6], 16)), int(tail[6:], 16)
    except (IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- generation

@dataclass(frozen=True)
class _Pools:
    """Directory objects a day draws from, flattened to tuples for fast random choice."""

    queues: tuple[tuple[str, str], ...]
    agents: tuple[tuple[str, str], ...]
    wrapups: tuple[str, ...]
    division_id: str
    flows: tuple[tuple[str, str, str], ...]


def _pools(directory: Directory, day: date) -> _Pools:
    queues = tuple((q.id, q.name) for q in directory.routing_queues)
    agents = tuple((u.id, u.name) for u in directory.agents)
    wrapups = tuple(w.id for w in directory.wrapup_codes_as_of(day))
    flows = tuple((f"{directory.seed:08x}-f10{n}-4000-8000-00000000000{n}"[:36], name, ftype)
                  for n, (name, ftype) in enumerate(_FLOWS))
    return _Pools(queues, agents, wrapups, directory.divisions[0].id, flows)


def _hour_cdf() -> list[float]:
    total = float(sum(_HOURLY))
    acc, out = 0.0, []
    for w in _HOURLY:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


_CDF = _hour_cdf()


def _start_offset(q: float) -> int:
    """Inverse CDF of the intraday curve: a quantile in [0, 1) -> ms into the day (monotone in q)."""
    hour = bisect.bisect_right(_CDF, q)
    hour = min(hour, 23)
    lo = _CDF[hour - 1] if hour else 0.0
    frac = (q - lo) / (_CDF[hour] - lo)
    return int((hour + min(max(frac, 0.0), 0.999999)) * 3_600_000)


def _metric(name: str, value: int, emit: str) -> dict:
    return {"name": name, "value": value, "emitDate": emit}


class _Generator:
    """Builds one chunk of a day's conversations from its own RNG stream."""

    def __init__(self, seed: int, day: date, count: int, chunk: int) -> None:
        self.seed, self.day, self.count, self.chunk = seed, day, count, chunk
        self.rng = random.Random(f"{seed}/{day.isoformat()}/{count}/{chunk}")
        self.pools = _pools(build_directory(seed), day)
        self.clock = _Clock()
        self.base = day_start_ms(day)

    def conversations(self) -> Iterator[tuple[dict, int, int, str, str]]:
        lo, hi = self.chunk * CHUNK, min(self.count, (self.chunk + 1) * CHUNK)
        rng = self.rng
        for row in range(lo, hi):
            start = self.base + _start_offset((row + rng.random()) / self.count)
            r = rng.random()
            acc = 0.0
            media = MEDIA_MIX[-1][0]
            for name, share in MEDIA_MIX:
                acc += share
                if r < acc:
                    media = name
                    break
            conv = self.one(row, start, media)
            end_ms = self._end_ms
            yield conv, start, end_ms, media, "webmessaging" if media == "message" else ""

    # The conversation builder: a single pass that appends participants while advancing a clock.
    def one(self, row: int, start: int, media: str) -> dict:
        rng, iso, pools = self.rng, self.clock.iso, self.pools
        cid = conversation_uuid(rng, self.day, row)
        queue_id, queue_name = rng.choice(pools.queues)
        outbound = media == "voice" and rng.random() < 0.08
        direction = "outbound" if outbound else "inbound"
        abandoned = not outbound and rng.random() < 0.05
        transferred = not abandoned and rng.random() < 0.10
        crossing = start - self.base > DAY_MS - 2_700_000 and rng.random() < _LATE_CROSSING_SHARE
        phone = f"tel:+1{rng.randrange(200, 999)}{rng.randrange(1_000_000, 9_999_999)}"
        dnis = rng.choice(CONTACT_CENTRE_LINES)
        customer_addr = {"voice": (phone, dnis), "callback": (phone, dnis),
                         "email": (f"customer{rng.randrange(10**6)}@example.net", "support@example.com"),
                         "message": (_uuid(rng), _uuid(rng))}[media]

        t = start
        participants: list[dict] = []
        # Long-running media (messaging, email) last longer; the crossers are stretched past midnight.
        talk_scale = {"voice": 240_000, "callback": 200_000, "email": 900_000, "message": 1_200_000}[media]

        # --- IVR (voice inbound only)
        ivr_ms = 0
        if media == "voice" and not outbound:
            ivr_ms = rng.randrange(8_000, 90_000)
            flow_id, flow_name, flow_type = rng.choice(pools.flows)
            ivr_end = t + ivr_ms
            participants.append({
                "participantId": _uuid(rng), "participantName": flow_name, "purpose": "ivr",
                "sessions": [{
                    "sessionId": _uuid(rng), "mediaType": "voice", "direction": "inbound",
                    "ani": phone, "dnis": dnis, "sessionDnis": dnis, "edgeId": _uuid(rng),
                    "flow": {"flowId": flow_id, "flowName": flow_name, "flowType": flow_type,
                             "flowVersion": "12.0", "entryType": "dnis", "entryReason": dnis,
                             "exitReason": "TRANSFER", "transferType": "ACD",
                             "transferTargetName": queue_name, "transferTargetAddress": queue_id},
                    "metrics": [_metric("tIvr", ivr_ms, iso(ivr_end))],
                    "segments": [{"segmentStart": iso(t), "segmentEnd": iso(ivr_end), "segmentType": "ivr",
                                  "disconnectType": "transfer"}],
                }],
            })
            t = ivr_end

        # --- ACD (queue wait), then agents
        agents: list[dict] = []
        acd_start = t
        wait = rng.randrange(2_000, 300_000 if media != "email" else 3_600_000)
        if abandoned:
            wait = rng.randrange(5_000, 240_000)
        if outbound:
            wait = 0
        t_alert = rng.randrange(2_000, 20_000)
        first_agent_start = acd_start + wait
        if not outbound:
            acd_end = first_agent_start + (0 if abandoned else t_alert)
            acd_metrics = [_metric("nOffered", 1, iso(acd_start))]
            if abandoned:
                acd_metrics.append(_metric("tAbandon", wait, iso(acd_end)))
            else:
                acd_metrics.append(_metric("tAcd", acd_end - acd_start, iso(acd_end)))
                acd_metrics.append(_metric("tWait", acd_end - acd_start, iso(acd_end)))
            participants.append({
                "participantId": _uuid(rng), "participantName": queue_name, "purpose": "acd",
                "sessions": [{
                    "sessionId": _uuid(rng), "mediaType": media, "direction": direction,
                    **self._addresses(media, customer_addr),
                    **({"messageType": "webmessaging"} if media == "message" else {}),
                    "metrics": acd_metrics,
                    "segments": [{"segmentStart": iso(acd_start), "segmentEnd": iso(acd_end),
                                  "segmentType": "interact", "queueId": queue_id,
                                  "disconnectType": "peer" if abandoned else "transfer"}],
                }],
            })
        t = first_agent_start
        end = t
        if not abandoned:
            agent_pool = pools.agents
            first = rng.choice(agent_pool)
            handlers = [first]
            if transferred:
                second = rng.choice(agent_pool)
                while second == first and len(agent_pool) > 1:
                    second = rng.choice(agent_pool)
                handlers.append(second)
            for n, (user_id, user_name) in enumerate(handlers):
                last = n == len(handlers) - 1
                a_start = t
                alert_end = a_start + (0 if outbound and n == 0 else t_alert if n == 0 else rng.randrange(2_000,
                                                                                                        15_000))
                talk1 = int(rng.expovariate(1 / talk_scale)) + 15_000
                if crossing and last:
                    # Stretch the last agent's talk so the conversation ends 1-40 min after midnight.
                    target = self.base + DAY_MS + rng.randrange(60_000, 2_400_000)
                    talk1 = max(talk1, target - alert_end)
                hold = rng.randrange(10_000, 180_000) if media in ("voice", "callback") and rng.random() < 0.25 \
                    else 0
                talk2 = rng.randrange(5_000, 90_000) if hold else 0
                interact_end = alert_end + talk1
                segments = []
                if alert_end > a_start:
                    segments.append({"segmentStart": iso(a_start), "segmentEnd": iso(alert_end),
                                     "segmentType": "alert", "queueId": queue_id})
                segments.append({"segmentStart": iso(alert_end), "segmentEnd": iso(interact_end),
                                 "segmentType": "callback" if media == "callback" and n == 0 else "interact",
                                 "queueId": queue_id,
                                 **({} if hold or not last else {"disconnectType": "peer"}),
                                 **({"disconnectType": "transfer"} if not last and not hold else {}),
                                 **({"subject": rng.choice(_SUBJECTS)} if media == "email" else {})})
                t2 = interact_end
                if hold:
                    segments.append({"segmentStart": iso(t2), "segmentEnd": iso(t2 + hold),
                                     "segmentType": "hold", "queueId": queue_id})
                    t2 += hold
                    segments.append({"segmentStart": iso(t2), "segmentEnd": iso(t2 + talk2),
                                     "segmentType": "interact", "queueId": queue_id,
                                     "disconnectType": "transfer" if not last else "peer"})
                    t2 += talk2
                acw = rng.randrange(3_000, 120_000)
                code = rng.choice(pools.wrapups)
                wrap_seg = {"segmentStart": iso(t2), "segmentEnd": iso(t2 + acw), "segmentType": "wrapup",
                            "queueId": queue_id, "wrapUpCode": code}
                if rng.random() < 0.3:
                    wrap_seg["wrapUpNote"] = rng.choice(("Customer satisfied", "Follow-up needed",
                                                         "Sent KB article 1234", "Escalated to tier 2"))
                segments.append(wrap_seg)
                t_talk = talk1 + talk2
                metrics = [
                    _metric("tAlert", alert_end - a_start, iso(alert_end)),
                    _metric("tAnswered", alert_end - acd_start, iso(alert_end)),
                    _metric("nConnected", 1, iso(alert_end)),
                    _metric("tTalk", t_talk, iso(t2)),
                    _metric("tTalkComplete", t_talk, iso(t2)),
                ]
                if hold:
                    metrics.append(_metric("tHeld", hold, iso(interact_end + hold)))
                    metrics.append(_metric("tHeldComplete", hold, iso(interact_end + hold)))
                if not last:
                    metrics.append(_metric("nTransferred", 1, iso(t2)))
                    metrics.append(_metric("nBlindTransferred", 1, iso(t2)))
                metrics.append(_metric("tAcw", acw, iso(t2 + acw)))
                metrics.append(_metric("tHandle", t_talk + hold + acw, iso(t2 + acw)))
                agents.append({
                    "participantId": _uuid(rng), "participantName": user_name, "purpose": "agent",
                    "userId": user_id,
                    "sessions": [{
                        "sessionId": _uuid(rng), "mediaType": media, "direction": direction,
                        **self._addresses(media, customer_addr),
                        **({"messageType": "webmessaging"} if media == "message" else {}),
                        **({"recording": True} if media in ("voice", "callback") else {}),
                        "usedRouting": "Standard",
                        "metrics": metrics, "segments": segments,
                    }],
                })
                end = max(end, t2 + acw)
                t = t2  # a transfer hands over when the first agent leaves the interaction
        else:
            end = t

        cust_end = max(t, start + ivr_ms)  # the customer leaves when the last interaction ends
        customer = {
            "participantId": _uuid(rng), "participantName": rng.choice(_CUSTOMER_NAMES),
            "purpose": "customer" if not outbound else "external",
            "attributes": self._attributes(rng, queue_name),
            "sessions": [{
                "sessionId": _uuid(rng), "mediaType": media, "direction": direction,
                **self._addresses(media, customer_addr),
                **({"messageType": "webmessaging"} if media == "message" else {}),
                **({"recording": True} if media == "voice" else {}),
                "segments": [{"segmentStart": iso(start), "segmentEnd": iso(cust_end),
                              "segmentType": "interact", "disconnectType": "endpoint" if not abandoned else "client",
                              **({"queueId": queue_id} if abandoned else {})}],
            }],
        }
        participants.insert(0, customer)
        participants.extend(agents)
        if outbound:
            # An agent-dialled call: the agent is first, the customer is the external party.
            participants.reverse()
        self._end_ms = max(end, cust_end)
        conv: dict = {
            "conversationId": cid,
            "conversationStart": iso(start),
            "conversationEnd": iso(self._end_ms),
            "originatingDirection": direction,
            "conversationInitiator": "agent" if outbound else "customer",
            "customerParticipation": True,
            "divisionIds": [pools.division_id],
        }
        if media == "voice":
            conv["mediaStatsMinConversationMos"] = round(3.2 + rng.random() * 1.3, 3)
            conv["mediaStatsMinConversationRFactor"] = round(70 + rng.random() * 23, 2)
        if rng.random() < 0.05:
            conv["externalTag"] = f"CRM-{rng.randrange(10**7):07d}"
        conv["participants"] = participants
        return conv

    _end_ms: int = 0

    @staticmethod
    def _addresses(media: str, addr: tuple[str, str]) -> dict:
        if media in ("voice", "callback"):
            return {"ani": addr[0], "dnis": addr[1]}
        return {"addressFrom": addr[0], "addressTo": addr[1]}

    @staticmethod
    def _attributes(rng: random.Random, queue_name: str) -> dict[str, str]:
        attrs = {"customerTier": rng.choice(_TIERS), "intent": rng.choice(_INTENTS),
                 "language": rng.choice(_LANGS), "queueRequested": queue_name}
        if rng.random() < 0.6:
            attrs["accountNumber"] = f"{rng.randrange(10**8):08d}"
        if rng.random() < 0.3:
            attrs["surveyOptIn"] = rng.choice(("true", "false"))
        if rng.random() < 0.1:
            attrs["crm.caseId"] = f"CASE-{rng.randrange(10**6)}"
        return attrs


def _generate_chunk(args: tuple[int, date, int, int]) -> tuple[bytes, list[str], list[int], list[int],
                                                                 list[int], list[str]]:
    seed, day, count, chunk = args
    gen = _Generator(seed, day, count, chunk)
    dumps = orjson.dumps
    lines: list[bytes] = []
    ids: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    lengths: list[int] = []
    media: list[str] = []
    for conv, start, end, m, _ in gen.conversations():
        line = dumps(conv)
        lines.append(line)
        ids.append(conv["conversationId"])
        starts.append(start)
        ends.append(end)
        lengths.append(len(line))
        media.append(m)
    return b"\n".join(lines) + b"\n", ids, starts, ends, lengths, media


def _generate_in_subprocesses(chunks: list[tuple[int, date, int, int]], workers: int,
                              scratch_root: Path) -> Iterator[tuple]:
    """Generate chunks in ``workers`` child interpreters, yielding them in order.

    Child processes (``python -m genesys_assets.sandbox.conversations``) rather than multiprocessing: the
    emulator is multi-threaded (no fork) and must not depend on the caller's ``__main__`` guard (spawn).
    """
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix="gen-") as scratch:
        procs = []
        for w in range(workers):
            mine = [c for c in chunks if c[3] % workers == w]
            if not mine:
                continue
            seed, day, count, _ = mine[0]
            cmd = [sys.executable, "-m", "genesys_assets.sandbox.conversations", str(seed), day.isoformat(),
                   str(count), scratch, *(str(c[3]) for c in mine)]
            procs.append(subprocess.Popen(cmd))
        try:
            for proc in procs:
                if proc.wait() != 0:
                    raise RuntimeError(f"conversation generator exited with {proc.returncode}")
            for _, _, _, chunk in chunks:
                blob = (Path(scratch) / f"{chunk}.ndjson").read_bytes()
                cols = orjson.loads((Path(scratch) / f"{chunk}.json").read_bytes())
                yield blob, cols["ids"], cols["starts"], cols["ends"], cols["lengths"], cols["media"]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()


def _child_main(argv: list[str]) -> None:
    seed, day, count, scratch, *chunk_ids = argv
    for c in chunk_ids:
        blob, ids, starts, ends, lengths, media = _generate_chunk((int(seed), date.fromisoformat(day), int(count),
                                                                   int(c)))
        (Path(scratch) / f"{c}.ndjson").write_bytes(blob)
        (Path(scratch) / f"{c}.json").write_bytes(orjson.dumps(
            {"ids": ids, "starts": starts, "ends": ends, "lengths": lengths, "media": media}))


# ---------------------------------------------------------------------------------------------- the cache

@dataclass
class DayIndex:
    """The column index of one cached day: row i of every list describes line i of the data file."""

    day: date
    ids: list[str]
    starts: list[int]
    ends: list[int]
    offsets: list[int]
    lengths: list[int]
    media: list[str]


class DayData:
    """One cached day: its index plus an mmap of the pre-serialised conversations."""

    def __init__(self, index: DayIndex, path: Path) -> None:
        self.index = index
        self.path = path
        self._file = open(path, "rb")  # noqa: SIM115 - lives as long as the mmap
        size = os.fstat(self._file.fileno()).st_size
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None

    def raw(self, row: int) -> bytes:
        """The serialised conversation on ``row`` (no trailing newline)."""
        off = self.index.offsets[row]
        assert self._map is not None
        return self._map[off:off + self.index.lengths[row]]

    def conversation(self, row: int) -> dict:
        return orjson.loads(self.raw(row))

    def __len__(self) -> int:
        return len(self.index.ids)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._file.close()


class ConversationStore:
    """Generates, caches and serves the tenant's conversations by (seed, day, count).

    Thread-safe: the first request for a day generates it (once, under a per-day lock); others wait.
    """

    def __init__(self, state_dir: Path, seed: int = DEFAULT_SEED, conversations_per_day: int = 2000,
                 workers: int | None = None) -> None:
        self.root = Path(state_dir) / "conversations" / f"v{CACHE_FORMAT}" / f"seed={seed}" / \
            f"count={conversations_per_day}"
        self.seed = seed
        self.count = conversations_per_day
        self.workers = workers
        self._days: dict[date, DayData] = {}
        self._locks: dict[date, threading.Lock] = {}
        self._guard = threading.Lock()

    def count_on(self, day: date) -> int:
        """Conversations that started on ``day``: none before the org existed (the real API answers such an
        interval with no conversations; generating one would draw on a directory with no wrap-up codes yet)."""
        return self.count if day >= TENANT_CREATED else 0

    def paths(self, day: date) -> tuple[Path, Path]:
        return self.root / f"{day.isoformat()}.ndjson", self.root / f"{day.isoformat()}.index.json"

    def day(self, day: date) -> DayData:
        """The cached day, generating it on first use."""
        cached = self._days.get(day)
        if cached is not None:
            return cached
        with self._guard:
            lock = self._locks.setdefault(day, threading.Lock())
        with lock:
            cached = self._days.get(day)
            if cached is not None:
                return cached
            data_path, index_path = self.paths(day)
            if not index_path.exists():
                self._generate(day, data_path, index_path)
            raw = orjson.loads(index_path.read_bytes())
            index = DayIndex(day=day, ids=raw["ids"], starts=raw["starts"], ends=raw["ends"],
                             offsets=raw["offsets"], lengths=raw["lengths"], media=raw["media"])
            data = DayData(index, data_path)
            self._days[day] = data
            return data

    def _generate(self, day: date, data_path: Path, index_path: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        count = self.count_on(day)
        chunks = [(self.seed, day, count, c) for c in range((count + CHUNK - 1) // CHUNK)]
        ids: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        offsets: list[int] = []
        lengths: list[int] = []
        media: list[str] = []
        tmp_data = data_path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        workers = self.workers if self.workers is not None else min(len(chunks), os.cpu_count() or 1)
        with open(tmp_data, "wb") as out:
            if self.count >= _PARALLEL_FROM and workers > 1:
                results: Iterator = _generate_in_subprocesses(chunks, workers, self.root)
            else:
                results = map(_generate_chunk, chunks)
            self._append(results, out, 0, ids, starts, ends, offsets, lengths, media)
        index = {"format": CACHE_FORMAT, "seed": self.seed, "day": day.isoformat(), "count": count,
                 "ids": ids, "starts": starts, "ends": ends, "offsets": offsets, "lengths": lengths,
                 "media": media}
        tmp_index = index_path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp_index.write_bytes(orjson.dumps(index))
        os.replace(tmp_data, data_path)
        os.replace(tmp_index, index_path)  # the index is written last: its presence means the day is whole

    @staticmethod
    def _append(results, out, pos, ids, starts, ends, offsets, lengths, media) -> int:  # type: ignore[no-untyped-def]
        for blob, c_ids, c_starts, c_ends, c_lengths, c_media in results:
            out.write(blob)
            for n in c_lengths:
                offsets.append(pos)
                pos += n + 1
            ids.extend(c_ids)
            starts.extend(c_starts)
            ends.extend(c_ends)
            lengths.extend(c_lengths)
            media.extend(c_media)
        return pos

    def conversations_for_day(self, day: date) -> list[dict]:
        """Every conversation that *started* on ``day``, parsed (ground truth for tests)."""
        data = self.day(day)
        return [data.conversation(i) for i in range(len(data))]

    def find(self, conversation_id: str) -> dict | None:
        """The conversation with this id, or None."""
        loc = locate_conversation(conversation_id)
        if loc is None:
            return None
        day, row = loc
        if row >= self.count_on(day):  # not one of the day's rows: no need to generate the day to say so
            return None
        data = self.day(day)
        if data.index.ids[row] != conversation_id:
            return None
        return data.conversation(row)

    def close(self) -> None:
        for data in self._days.values():
            with contextlib.suppress(Exception):
                data.close()
        self._days.clear()


# ---------------------------------------------------------------------------------------------- messages

def web_messages(conversation: dict) -> list[dict]:
    """The web messaging transcript of one conversation, deterministic from its id.

    Returns rows ``{messageId, time_ms, direction, text, media|None, participantId}`` between the customer
    and the (last) agent; media is an image attachment on some customer messages.
    """
    participants = conversation["participants"]
    customer = next(p for p in participants if p["purpose"] in ("customer", "external"))
    agents = [p for p in participants if p["purpose"] == "agent"]
    start = _parse_ms(conversation["conversationStart"])
    end = _parse_ms(conversation.get("conversationEnd") or conversation["conversationStart"])
    rng = random.Random(conversation["conversationId"])
    n = rng.randrange(4, 21)
    span = max(end - start, n * 1000)
    times = sorted(start + rng.randrange(0, span) for _ in range(n))
    rows = []
    for i, ms in enumerate(times):
        inbound = i == 0 or (bool(agents) and rng.random() < 0.5) or not agents
        author = customer if inbound else rng.choice(agents)
        text = rng.choice(_INBOUND_TEXT if inbound else _OUTBOUND_TEXT)
        media = None
        if inbound and rng.random() < 0.08:
            mid = _uuid(rng)
            media = {"id": mid, "url": f"https://api.sandbox.invalid/uploads/{mid}/screenshot.png",
                     "mediaType": "image/png", "contentLengthBytes": rng.randrange(20_000, 900_000),
                     "name": "screenshot.png"}
        rows.append({"messageId": f"{rng.getrandbits(128):032x}", "time_ms": ms,
                     "direction": "inbound" if inbound else "outbound", "text": text, "media": media,
                     "participantId": author["participantId"]})
    return rows


def _parse_ms(ts: str) -> int:
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(dt.timestamp() * 1000)


def parse_ms(ts: str) -> int:
    """ISO-8601 (with ``Z`` or an offset) -> epoch ms."""
    return _parse_ms(ts)


def days_between(first: date, last: date) -> Iterator[date]:
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
