"""Explicit Arrow schemas for the analytics conversation-details tables and the wrap-up facts.

Two kinds live here:

* ``PAGE_SCHEMA``: how a details-job result page is *parsed* (the API's camelCase names, the SDK models' types).
  It is explicit so pyarrow never guesses a type from a page's first row, and so unknown keys cost nothing.
  ``participants[].attributes`` is deliberately absent: its keys are dynamic (a string map), so the parser infers
  it and :mod:`genesys_assets.lib.conversation_details` turns it into a ``map<string, string>``.
* The output schemas (snake_case): what lands in the lake. Timestamps are ``timestamp[us, UTC]``; low-cardinality
  strings are dictionary-encoded (``dictionary<int32, string>``) so Parquet stores them as small integers.

Bump ``SCHEMA_VERSION`` whenever an output schema changes shape; it is written into every file's metadata and
into the ``schema_version`` column of ``wrapup_facts``.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

TS = pa.timestamp("us", tz="UTC")
DICT = pa.dictionary(pa.int32(), pa.string())
STR = pa.string()
STRS = pa.list_(pa.string())

# ------------------------------------------------------------------------------------------- parse (API shape)
# Field names and types follow PureCloudPlatformClientV2 (AnalyticsConversation, AnalyticsParticipant,
# AnalyticsSession, AnalyticsConversationSegment, AnalyticsSessionMetric, AnalyticsFlow). Only fields the
# pipeline outputs are declared: pyarrow builds every declared field for every element (a null when absent),
# and that cost, not tokenising, dominates a page (measured ~0.25 ms per declared segment field per page).
# Add a field here and to the output schema together.

_SEGMENT = pa.struct([
    ("segmentStart", TS), ("segmentEnd", TS), ("segmentType", STR), ("queueId", STR),
    ("wrapUpCode", STR), ("wrapUpNote", STR), ("wrapUpTags", STRS), ("disconnectType", STR),
    ("errorCode", STR), ("conference", pa.bool_()), ("subject", STR),
])
_METRIC = pa.struct([("name", STR), ("value", pa.int64())])  # emitDate is not output: not parsed
_FLOW = pa.struct([
    ("flowId", STR), ("flowName", STR), ("flowType", STR), ("flowVersion", STR), ("entryType", STR),
    ("exitReason", STR), ("transferType", STR),
])
_SESSION = pa.struct([
    ("sessionId", STR), ("mediaType", STR), ("messageType", STR), ("direction", STR),
    ("ani", STR), ("dnis", STR), ("addressFrom", STR), ("addressTo", STR),
    ("recording", pa.bool_()), ("edgeId", STR), ("usedRouting", STR), ("selectedAgentId", STR),
    ("outboundCampaignId", STR), ("provider", STR), ("acwSkipped", pa.bool_()),
    ("flow", _FLOW), ("metrics", pa.list_(_METRIC)), ("segments", pa.list_(_SEGMENT)),
])
_PARTICIPANT = pa.struct([
    ("participantId", STR), ("participantName", STR), ("purpose", STR), ("userId", STR),
    ("externalContactId", STR), ("externalOrganizationId", STR), ("teamId", STR), ("flaggedReason", STR),
    ("screenRecording", pa.bool_()), ("sessions", pa.list_(_SESSION)),
    # "attributes" is inferred on purpose (dynamic keys): see the module docstring.
])
CONVERSATION_STRUCT = pa.struct([
    ("conversationId", STR), ("conversationStart", TS), ("conversationEnd", TS),
    ("originatingDirection", STR), ("conversationInitiator", STR), ("customerParticipation", pa.bool_()),
    ("divisionIds", STRS), ("externalTag", STR), ("mediaStatsMinConversationMos", pa.float64()),
    ("mediaStatsMinConversationRFactor", pa.float64()), ("originatingSocialMediaPublic", pa.bool_()),
    ("selfServed", pa.bool_()), ("associatedConversationId", STR), ("participants", pa.list_(_PARTICIPANT)),
])
PAGE_SCHEMA = pa.schema([
    ("conversations", pa.list_(CONVERSATION_STRUCT)), ("cursor", STR), ("dataAvailabilityDate", STR),
])

# ----------------------------------------------------------------------------------------- output (lake shape)
# Session metrics pivoted to columns: API name -> column name. ``t*`` are milliseconds, ``n*`` counts. A metric
# emitted more than once in a session (e.g. one tHeld per hold) is summed; a metric never emitted is null.
METRICS: dict[str, str] = {
    "tHandle": "t_handle_ms", "tTalk": "t_talk_ms", "tAcw": "t_acw_ms", "tHeld": "t_held_ms",
    "tAcd": "t_acd_ms", "tIvr": "t_ivr_ms", "tAlert": "t_alert_ms", "tWait": "t_wait_ms",
    "tAnswered": "t_answered_ms", "tConnected": "t_connected_ms", "tAbandon": "t_abandon_ms",
    "tShortAbandon": "t_short_abandon_ms", "tVoicemail": "t_voicemail_ms", "tDialing": "t_dialing_ms",
    "tContacting": "t_contacting_ms", "tTalkComplete": "t_talk_complete_ms", "tHeldComplete": "t_held_complete_ms",
    "tFlowOut": "t_flow_out_ms", "tMonitoring": "t_monitoring_ms",
    "nConnected": "n_connected", "nOffered": "n_offered", "nTransferred": "n_transferred",
    "nOverSla": "n_over_sla", "nBlindTransferred": "n_blind_transferred",
    "nConsultTransferred": "n_consult_transferred", "nOutbound": "n_outbound", "nFlow": "n_flow",
}

CONVERSATIONS_SCHEMA = pa.schema([
    pa.field("conversation_id", STR, nullable=False),
    pa.field("conversation_start", TS, nullable=False),
    pa.field("conversation_end", TS),
    pa.field("originating_direction", DICT),
    pa.field("conversation_initiator", DICT),
    pa.field("customer_participation", pa.bool_()),
    pa.field("division_ids", STRS),
    pa.field("external_tag", STR),
    pa.field("media_stats_min_conversation_mos", pa.float64()),
    pa.field("media_stats_min_conversation_r_factor", pa.float64()),
    pa.field("originating_social_media_public", pa.bool_()),
    pa.field("self_served", pa.bool_()),
    pa.field("associated_conversation_id", STR),
    pa.field("participant_count", pa.int32(), nullable=False),
    pa.field("segment_count", pa.int32(), nullable=False),
])

PARTICIPANTS_SCHEMA = pa.schema([
    pa.field("conversation_id", STR, nullable=False),
    pa.field("conversation_start", TS, nullable=False),
    pa.field("participant_id", STR, nullable=False),
    pa.field("participant_name", STR),  # a name that looks like a phone number is replaced by its HMAC
    pa.field("purpose", DICT),
    pa.field("user_id", STR),
    pa.field("external_contact_id", STR),
    pa.field("external_organization_id", STR),
    pa.field("team_id", STR),
    pa.field("flagged_reason", DICT),
    pa.field("screen_recording", pa.bool_()),
    pa.field("attributes", pa.map_(pa.string(), pa.string())),
])

SESSIONS_SCHEMA = pa.schema([
    pa.field("conversation_id", STR, nullable=False),
    pa.field("conversation_start", TS, nullable=False),
    pa.field("participant_id", STR, nullable=False),
    pa.field("session_id", STR, nullable=False),
    pa.field("media_type", DICT),
    pa.field("message_type", DICT),
    pa.field("direction", DICT),
    # Addresses are personal data (phone numbers, e-mail, messaging ids): only keyed hashes are kept.
    pa.field("ani_hash", STR),
    pa.field("dnis_hash", STR),
    pa.field("address_from_hash", STR),
    pa.field("address_to_hash", STR),
    pa.field("recording", pa.bool_()),
    pa.field("edge_id", STR),
    pa.field("used_routing", DICT),
    pa.field("selected_agent_id", STR),
    pa.field("outbound_campaign_id", STR),
    pa.field("provider", DICT),
    pa.field("acw_skipped", pa.bool_()),
    pa.field("flow_id", STR),
    pa.field("flow_name", DICT),
    pa.field("flow_type", DICT),
    pa.field("flow_version", STR),
    pa.field("flow_entry_type", DICT),
    pa.field("flow_exit_reason", DICT),
    pa.field("flow_transfer_type", DICT),
    *[pa.field(col, pa.int64()) for col in METRICS.values()],
])

SEGMENTS_SCHEMA = pa.schema([
    pa.field("conversation_id", STR, nullable=False),
    pa.field("conversation_start", TS, nullable=False),
    pa.field("participant_id", STR, nullable=False),
    pa.field("session_id", STR, nullable=False),
    pa.field("segment_start", TS, nullable=False),
    pa.field("segment_end", TS),
    pa.field("segment_type", DICT, nullable=False),
    pa.field("queue_id", DICT),
    pa.field("wrap_up_code", DICT),
    pa.field("wrap_up_note", STR),  # free text: phone-number-like runs are redacted
    pa.field("wrap_up_tags", STRS),
    pa.field("disconnect_type", DICT),
    pa.field("error_code", DICT),
    pa.field("conference", pa.bool_()),
    pa.field("subject", STR),  # free text: phone-number-like runs are redacted
])

# Nullability follows seed 004: wrap-up code (and its label) may be missing, media type never is.
WRAPUP_FACTS_SCHEMA = pa.schema(
    [
        pa.field("conversation_id", STR, nullable=False),
        pa.field("conversation_start", TS, nullable=False),
        pa.field("participant_id", STR, nullable=False),
        pa.field("session_id", STR, nullable=False),
        pa.field("user_id", STR),
        pa.field("queue_id", DICT),
        pa.field("media_type", DICT, nullable=False),
        pa.field("direction", DICT),
        pa.field("wrap_up_code_id", DICT),
        pa.field("wrap_up_code_label", DICT),
        pa.field("segment_start", TS, nullable=False),
        pa.field("segment_end", TS),
        pa.field("t_acw_ms", pa.int64()),
        pa.field("t_handle_ms", pa.int64()),
        pa.field("division_id", DICT),
        pa.field("schema_version", pa.int16(), nullable=False),
    ],
    metadata={"genesys_assets.schema_version": str(SCHEMA_VERSION)},
)

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "conversations": CONVERSATIONS_SCHEMA,
    "participants": PARTICIPANTS_SCHEMA,
    "sessions": SESSIONS_SCHEMA,
    "segments": SEGMENTS_SCHEMA,
    "wrapup_facts": WRAPUP_FACTS_SCHEMA,
}

# The labels dimension ``wrapup_facts`` reads (the wrapup_codes SCD2 snapshot): one row per version of a code.
# ``valid_to`` null means "still current"; a deleted code keeps its last version with ``valid_to`` = deletion.
WRAPUP_LABELS_SCHEMA = pa.schema([
    pa.field("wrap_up_code_id", STR, nullable=False),
    pa.field("wrap_up_code_label", STR),
    pa.field("valid_from", TS, nullable=False),
    pa.field("valid_to", TS),
])
