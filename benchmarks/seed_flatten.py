"""Baseline A of scenario 1: the seed-style pipeline (seed 004's code, applied to details-job pages).

Written the way the seed writes it, and not slowed down: ``json.loads`` per page, Python loops over dicts with
``.get()``, a ``set`` of conversation ids for dedup (first occurrence wins, as in the seed), ``pa.Table.from_pylist``
with an explicit schema per page, tables buffered in memory and concatenated into ``pq.write_table`` files of
about 128 MB (zstd, 100k-row row groups, dictionary encoding), as the seed's "accumulate, then flush at the
threshold" advice says. It produces the same five tables with the same columns (addresses HMAC'd, phone-like text
redacted, metrics pivoted, wrap-up labels looked up), so both sides do the same job on these pages. One rule is
ours alone: a number under an attribute key that names a phone (``callbackNumber: 317-555-0142``) is hashed; the
benchmark's pages have no such keys, so it changes no output here.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from genesys_assets.lib.pii import PHONE_ATTRIBUTE, PHONE_IN_TEXT, PHONE_REDACTED, PHONE_VALUE, AddressHasher
from genesys_assets.lib.schemas import METRICS, SCHEMA_VERSION, TABLE_SCHEMAS

FLUSH_BYTES = 128 * 1024 * 1024
_PHONE_TEXT = re.compile(PHONE_IN_TEXT)
_PHONE_ATTR = re.compile(PHONE_ATTRIBUTE, re.IGNORECASE)


def _plain(schema: pa.Schema) -> pa.Schema:
    """The seed declares plain strings and lets the writer dictionary-encode them."""
    return pa.schema([pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type, f.nullable)
                      for f in schema])


SCHEMAS = {name: _plain(schema) for name, schema in TABLE_SCHEMAS.items()}


def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class SeedFlattener:
    def __init__(self, day: date, out_dir: Path, key: bytes | str, labels: dict[str, str]) -> None:
        self.lo = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)  # noqa: UP017 - seed style
        self.hi = self.lo + timedelta(days=1)
        self.out_dir = out_dir
        self.hasher = AddressHasher(key)
        self.labels = labels
        self.processed_ids: set[str] = set()
        self.buffers: dict[str, list[pa.Table]] = {name: [] for name in SCHEMAS}
        self.buffered: dict[str, int] = dict.fromkeys(SCHEMAS, 0)
        self.files: dict[str, int] = dict.fromkeys(SCHEMAS, 0)
        self.rows: dict[str, int] = dict.fromkeys(SCHEMAS, 0)

    def _hash(self, value: str | None) -> str | None:
        return self.hasher.hash(value) if value else None

    def add_page(self, raw: bytes) -> None:
        page = json.loads(raw)
        records: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}
        for conv in page.get("conversations", []):
            cid = conv.get("conversationId")
            start = _ts(conv.get("conversationStart"))
            if start is None or not (self.lo <= start < self.hi):
                continue
            if cid in self.processed_ids:
                continue
            self.processed_ids.add(cid)
            division_ids = conv.get("divisionIds") or []
            n_segments = 0
            participants = conv.get("participants", [])
            for p in participants:
                pid = p.get("participantId")
                name = p.get("participantName")
                attrs = p.get("attributes")
                if attrs is not None:
                    attrs = [(k, self._hash(v) if isinstance(v, str) and _PHONE_ATTR.match(v) else str(v))
                             for k, v in sorted(attrs.items()) if v is not None]
                records["participants"].append({
                    "conversation_id": cid, "conversation_start": start, "participant_id": pid,
                    "participant_name": self._hash(name) if name and PHONE_VALUE.match(name) else name,
                    "purpose": p.get("purpose"), "user_id": p.get("userId"),
                    "external_contact_id": p.get("externalContactId"),
                    "external_organization_id": p.get("externalOrganizationId"), "team_id": p.get("teamId"),
                    "flagged_reason": p.get("flaggedReason"), "screen_recording": p.get("screenRecording"),
                    "attributes": attrs,
                })
                for s in p.get("sessions", []):
                    sid = s.get("sessionId")
                    metrics: dict[str, int] = {}
                    for m in s.get("metrics", []):
                        col = METRICS.get(m.get("name"))
                        if col is not None:
                            metrics[col] = metrics.get(col, 0) + m.get("value", 0)
                    flow = s.get("flow") or {}
                    session = {
                        "conversation_id": cid, "conversation_start": start, "participant_id": pid,
                        "session_id": sid, "media_type": s.get("mediaType"), "message_type": s.get("messageType"),
                        "direction": s.get("direction"), "ani_hash": self._hash(s.get("ani")),
                        "dnis_hash": self._hash(s.get("dnis")),
                        "address_from_hash": self._hash(s.get("addressFrom")),
                        "address_to_hash": self._hash(s.get("addressTo")), "recording": s.get("recording"),
                        "edge_id": s.get("edgeId"), "used_routing": s.get("usedRouting"),
                        "selected_agent_id": s.get("selectedAgentId"),
                        "outbound_campaign_id": s.get("outboundCampaignId"), "provider": s.get("provider"),
                        "acw_skipped": s.get("acwSkipped"), "flow_id": flow.get("flowId"),
                        "flow_name": flow.get("flowName"), "flow_type": flow.get("flowType"),
                        "flow_version": flow.get("flowVersion"), "flow_entry_type": flow.get("entryType"),
                        "flow_exit_reason": flow.get("exitReason"), "flow_transfer_type": flow.get("transferType"),
                        **metrics,
                    }
                    records["sessions"].append(session)
                    seen_segments: set[tuple] = set()
                    for g in s.get("segments", []):
                        key = (pid, sid, g.get("segmentStart"), g.get("segmentType"))
                        if key in seen_segments or key[2] is None or key[3] is None:
                            continue
                        seen_segments.add(key)
                        n_segments += 1
                        seg_start, seg_end = _ts(g.get("segmentStart")), _ts(g.get("segmentEnd"))
                        note, subject = g.get("wrapUpNote"), g.get("subject")
                        records["segments"].append({
                            "conversation_id": cid, "conversation_start": start, "participant_id": pid,
                            "session_id": sid, "segment_start": seg_start, "segment_end": seg_end,
                            "segment_type": g.get("segmentType"), "queue_id": g.get("queueId"),
                            "wrap_up_code": g.get("wrapUpCode"),
                            "wrap_up_note": _PHONE_TEXT.sub(PHONE_REDACTED, note) if note else note,
                            "wrap_up_tags": g.get("wrapUpTags"), "disconnect_type": g.get("disconnectType"),
                            "error_code": g.get("errorCode"), "conference": g.get("conference"),
                            "subject": _PHONE_TEXT.sub(PHONE_REDACTED, subject) if subject else subject,
                        })
                        if g.get("segmentType") == "wrapup":
                            code = g.get("wrapUpCode")
                            records["wrapup_facts"].append({
                                "conversation_id": cid, "conversation_start": start, "participant_id": pid,
                                "session_id": sid, "user_id": p.get("userId"), "queue_id": g.get("queueId"),
                                "media_type": s.get("mediaType") or "unknown", "direction": s.get("direction"),
                                "wrap_up_code_id": code, "wrap_up_code_label": self.labels.get(code),
                                "segment_start": seg_start, "segment_end": seg_end,
                                "t_acw_ms": metrics.get("t_acw_ms"), "t_handle_ms": metrics.get("t_handle_ms"),
                                "division_id": division_ids[0] if division_ids else None,
                                "schema_version": SCHEMA_VERSION,
                            })
            records["conversations"].append({
                "conversation_id": cid, "conversation_start": start,
                "conversation_end": _ts(conv.get("conversationEnd")),
                "originating_direction": conv.get("originatingDirection"),
                "conversation_initiator": conv.get("conversationInitiator"),
                "customer_participation": conv.get("customerParticipation"), "division_ids": division_ids,
                "external_tag": conv.get("externalTag"),
                "media_stats_min_conversation_mos": conv.get("mediaStatsMinConversationMos"),
                "media_stats_min_conversation_r_factor": conv.get("mediaStatsMinConversationRFactor"),
                "originating_social_media_public": conv.get("originatingSocialMediaPublic"),
                "self_served": conv.get("selfServed"),
                "associated_conversation_id": conv.get("associatedConversationId"),
                "participant_count": len(participants), "segment_count": n_segments,
            })
        for name, rows in records.items():
            table = pa.Table.from_pylist(rows, schema=SCHEMAS[name])
            self.buffers[name].append(table)
            self.buffered[name] += table.nbytes
            if self.buffered[name] >= FLUSH_BYTES:
                self._flush(name)

    def _flush(self, name: str) -> None:
        if not self.buffers[name]:
            return
        table = pa.concat_tables(self.buffers[name])
        folder = self.out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{self.files[name]:05d}.parquet", compression="zstd",
                       row_group_size=100_000, use_dictionary=True)
        self.files[name] += 1
        self.rows[name] += table.num_rows
        self.buffers[name], self.buffered[name] = [], 0

    def finish(self) -> dict[str, int]:
        for name in SCHEMAS:
            self._flush(name)
        return self.rows
