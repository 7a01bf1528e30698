"""The analytics domain's pure rules: windows, watermark planning, drift filtering, integrity, wrap-up totals."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from genesys_assets.lib.analytics_plan import (
    day_is_complete,
    days_to_request,
    details_job_body,
    last_complete_day,
    relative_difference,
    windows,
)
from genesys_assets.lib.analytics_quality import (
    SDK_FIELDS,
    aggregate_totals,
    compare_totals,
    facts_totals,
    integrity_report,
    markdown_preview,
    split_unknown_fields,
)

D = date(2026, 3, 5)


def ts(hour: int, minute: int = 0, day: date = D) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


@pytest.mark.parametrize("hours", [24, 6, 1])
def test_windows_tile_the_day_half_open(hours: int) -> None:
    w = windows(D, hours)
    assert len(w) == 24 // hours and w[0][0] == ts(0) and w[-1][1] == ts(24)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(w))
    with pytest.raises(ValueError):
        windows(D, 5)


def test_job_body_is_bounded_and_unpaged() -> None:
    body = details_job_body(ts(0), ts(24), limit=500)
    assert body["interval"] == "2026-03-05T00:00:00.000Z/2026-03-06T00:00:00.000Z" and body["limit"] == 500
    assert "paging" not in body and "*" not in str(body)
    assert {p["value"] for p in body["segmentFilters"][0]["predicates"]} >= {"voice", "message", "email"}


def test_watermark_rules() -> None:
    assert not day_is_complete(D, ts(23, 59))
    assert day_is_complete(D, ts(24))
    assert last_complete_day(ts(6, day=D + timedelta(days=1))) == D
    plan = days_to_request(start=D - timedelta(days=3), cursor=None, watermark=ts(1, day=D + timedelta(days=1)),
                           max_days=31)
    assert plan == [D - timedelta(days=n) for n in (3, 2, 1, 0)]
    assert days_to_request(start=D - timedelta(days=3), cursor=D, watermark=ts(23, day=D + timedelta(days=1)),
                           max_days=31) == []
    assert len(days_to_request(start=D - timedelta(days=100), cursor=None, watermark=ts(1), max_days=31)) == 31
    assert relative_difference(95, 100) == 0.05 and relative_difference(0, 0) == 0.0


def test_sdk_fields_match_the_sdk_models() -> None:
    sdk = pytest.importorskip("PureCloudPlatformClientV2")
    models = {"conversations[]": "AnalyticsConversation", "conversations[].participants[]": "AnalyticsParticipant",
              "conversations[].participants[].sessions[]": "AnalyticsSession",
              "conversations[].participants[].sessions[].segments[]": "AnalyticsConversationSegment",
              "conversations[].participants[].sessions[].metrics[]": "AnalyticsSessionMetric",
              "conversations[].participants[].sessions[].flow": "AnalyticsFlow"}
    for level, model in models.items():
        assert SDK_FIELDS[level] == frozenset(getattr(sdk, model)().attribute_map.values()), model


def test_only_keys_the_sdk_does_not_know_are_drift() -> None:
    drift, known = split_unknown_fields([
        "conversations[].sandboxNewField", "conversations[].participants[].sessions[].sessionDnis",
        "conversations[].participants[].unknownParticipantKey", "conversations[].participants[].sessions[].flow"
        ".entryReason"])
    assert drift == ["conversations[].participants[].unknownParticipantKey", "conversations[].sandboxNewField"]
    assert len(known) == 2


def test_integrity_report_finds_rows_outside_the_day_duplicates_and_disorder() -> None:
    lf = pl.LazyFrame({
        "conversation_id": ["a", "b", "b", "c"],
        "conversation_start": [ts(1), ts(2), ts(2), ts(24)],
        "conversation_end": [ts(2), ts(3), ts(1), ts(25)],
    })
    rep = integrity_report(lf, "conversations", D)
    assert rep["outside_day"] == 1 and rep["examples_outside_day"] == ["c"]
    assert rep["duplicate_keys"] == 1 and rep["duplicate_rows"] == 1 and rep["examples_duplicate"] == ["b"]
    assert rep["start_after_end"] == 1 and rep["examples_start_after_end"] == ["b"]


def test_wrapup_totals_compare_by_the_day_the_wrapup_ended() -> None:
    answer = {"results": [
        {"group": {"wrapUpCode": "sale"},
         "data": [{"metrics": [{"metric": "tAcw", "stats": {"count": 2, "sum": 30.0}}]}]},
        {"group": {}, "data": [{"metrics": [{"metric": "tAcw", "stats": {"count": 9, "sum": 1.0}}]}]},
    ]}
    aggs = aggregate_totals(answer)
    assert aggs == {"sale": (2, 30)}
    today = pl.LazyFrame({"wrap_up_code_id": ["sale", "sale"], "segment_end": [ts(10), ts(24, 5)],
                          "t_acw_ms": [10, 99]})
    yesterday = pl.LazyFrame({"wrap_up_code_id": ["sale"], "segment_end": [ts(0, 10)], "t_acw_ms": [20]})
    assert facts_totals([yesterday, today], D) == {"sale": (2, 30)}
    assert compare_totals(facts_totals([today], D), aggs) == [
        {"wrap_up_code_id": "sale", "facts_count": 1, "aggregates_count": 2, "facts_t_acw_ms": 10,
         "aggregates_t_acw_ms": 30}]


def test_markdown_preview() -> None:
    md = markdown_preview(pl.DataFrame({"a": [1, 2], "b": ["x|y", None]}))
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | x\\|y |", "| 2 |  |"]
