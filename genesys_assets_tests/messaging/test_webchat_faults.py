"""Refusals before any data request, API faults on the bulk endpoint, >1,000 messages, a failing webhook."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import dagster as dg
import orjson
import pytest

from genesys_assets.sandbox import genesys_emulator
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.messaging.conftest import (
    archive,
    make_resources,
    materialization,
    part_bytes,
    web_messaging_truth,
)
from genesys_assets_tests.support import failure_metadata, step_failure

DATA_PATHS = ("/api/v2/analytics/conversations/details/jobs", "/api/v2/conversations/messages")
AVAILABILITY = "/api/v2/analytics/conversations/details/jobs/availability"  # a watermark, not conversation data


def test_residency_refusal_happens_before_any_request(emu: GenesysEmulator, tmp_path: Path) -> None:
    resources = make_resources(emu, tmp_path, region="eu_west_1")  # base URL still the sandbox
    deliveries = len(emu.webhook_deliveries())
    result = archive(resources, tmp_path, with_checks=False, raise_on_error=False)
    message = step_failure(result).error.message
    assert "Data residency" in message and "'eu_west_1'" in message and "ALLOWED_REGIONS (sandbox)" in message
    assert failure_metadata(result) == {"region": "eu_west_1", "allowed_regions": "sandbox"}
    assert emu.request_log() == [], "no request at all, not even a token"
    assert part_bytes(tmp_path) == {}
    assert len(emu.webhook_deliveries()) == deliveries


def test_a_region_host_without_a_region_named_is_held_to_residency(emu: GenesysEmulator, tmp_path: Path) -> None:
    # Before, no GENESYS_REGION meant "sandbox", which ALLOWED_REGIONS allows by default, whatever the host.
    resources = make_resources(emu, tmp_path, api_base_url="https://api.mypurecloud.ie")
    result = archive(resources, tmp_path, with_checks=False, raise_on_error=False)
    assert "Data residency" in step_failure(result).error.message
    assert "'eu_west_1'" in step_failure(result).error.message
    assert failure_metadata(result) == {"region": "eu_west_1", "allowed_regions": "sandbox"}
    resources = make_resources(emu, tmp_path, api_base_url="https://genesys-proxy.corp.example")
    result = archive(resources, tmp_path, with_checks=False, raise_on_error=False)
    assert "Set GENESYS_REGION to the region behind that host" in step_failure(result).error.message
    assert failure_metadata(result) == {"region": "unknown", "allowed_regions": "sandbox"}
    assert emu.request_log() == [] and part_bytes(tmp_path) == {}


def test_quota_refusal_happens_before_any_data_request(
    emu: GenesysEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWED_REGIONS", "eu-west-1")  # the env default is read when the config leaves it unset
    monkeypatch.setenv("ARCHIVE_QUOTA_MB", "0.001")
    resources = make_resources(emu, tmp_path, region="eu_west_1")
    result = archive(resources, tmp_path, with_checks=False, raise_on_error=False)
    message = step_failure(result).error.message
    assert "Storage quota" in message and "ARCHIVE_QUOTA_MB=0.001" in message
    limits = failure_metadata(result)
    assert limits["quota_mib"] == 0.001 and limits["conversations"] > 0 and limits["bytes_per_record"] > 0
    requests = [(r["method"], r["path"]) for r in emu.request_log()]
    assert requests == [("POST", "/oauth/token"), ("GET", AVAILABILITY),
                        ("POST", "/api/v2/analytics/conversations/details/query")]
    assert not any(path.startswith(DATA_PATHS) and path != AVAILABILITY for _, path in requests)
    assert part_bytes(tmp_path) == {}


def test_a_quota_that_is_not_a_number_is_refused_by_name_before_any_request(
    emu: GenesysEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWED_REGIONS", "eu-west-1")
    monkeypatch.setenv("ARCHIVE_QUOTA_MB", "500MB")
    resources = make_resources(emu, tmp_path, region="eu_west_1")
    result = archive(resources, tmp_path, with_checks=False, raise_on_error=False)
    cause = step_failure(result).error.cause
    assert cause is not None and cause.cls_name == "ValueError"
    assert "ARCHIVE_QUOTA_MB must be a number, got '500MB'; unset it to use the default 500" in cause.message
    assert emu.request_log() == []
    assert part_bytes(tmp_path) == {}


def test_a_day_past_the_availability_watermark_is_refused_before_any_data_request(
    emu: GenesysEmulator, tmp_path: Path
) -> None:
    emu.set_faults(availability_lag_seconds=400 * 86400)  # the watermark sits far before the archived day
    result = archive(make_resources(emu, tmp_path), tmp_path, with_checks=False, raise_on_error=False)
    message = step_failure(result).error.message
    assert "not yet available until" in message and "analytics_availability_sensor" in message
    requests = [(r["method"], r["path"]) for r in emu.request_log()]
    assert requests == [("POST", "/oauth/token"), ("GET", AVAILABILITY)]
    assert part_bytes(tmp_path) == {}


def test_429_and_5xx_on_the_bulk_endpoint_give_a_complete_identical_archive(
    emu: GenesysEmulator, tmp_path: Path, clean_run: tuple[Path, dg.ExecuteInProcessResult]
) -> None:
    resources = make_resources(emu, tmp_path, max_attempts=12,
                               extra_headers={"X-Sandbox-Fault": "rate_429=0.15;rate_5xx=0.2;retry_after=0"})
    result = archive(resources, tmp_path)
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    bulk = [r for r in emu.request_log() if r["path"].endswith("/messages/bulk")]
    assert {429} <= {r["status"] for r in bulk} and {r["status"] for r in bulk} & {500, 502, 503}
    meta = materialization(result)
    assert meta["api_retries"] > 0 and meta["api_throttled"] > 0 and meta["api_server_errors"] > 0
    assert part_bytes(tmp_path) == part_bytes(clean_run[0]), "faults change nothing in the files"


def test_conversation_with_more_than_1000_messages_is_fetched_in_chunks(
    emu: GenesysEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = sorted(web_messaging_truth(emu))[3]
    original = genesys_emulator.web_messages

    def with_long_transcript(conversation: dict) -> list[dict]:
        rows = original(conversation)
        if conversation["conversationId"] != chosen:
            return rows
        return [{**rows[i % len(rows)], "messageId": f"{i:032x}", "time_ms": rows[0]["time_ms"] + i * 10}
                for i in range(2345)]

    monkeypatch.setattr(genesys_emulator, "web_messages", with_long_transcript)
    result = archive(make_resources(emu, tmp_path), tmp_path)
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    bulk = [r for r in emu.request_log() if r["path"] == f"/api/v2/conversations/messages/{chosen}/messages/bulk"]
    assert [r["status"] for r in bulk] == [200, 200, 200], "2,345 ids in chunks of at most 1,000"
    records = {}
    for data in part_bytes(tmp_path).values():
        for line in gzip.decompress(data).splitlines():
            record = orjson.loads(line)
            records[record["id"]] = record
    messages = records[chosen]["messages"]
    assert len(messages) == 2345 and len({m["id"] for m in messages}) == 2345
    assert all(m["text"] for m in messages)


def test_failing_webhook_is_a_warning_and_the_archive_stays_valid(emu: GenesysEmulator, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    before = len(emu.webhook_deliveries())
    result = archive(make_resources(emu, tmp_path, webhook_url=dead), tmp_path)
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    meta = materialization(result)
    assert meta["webhook_delivered"] is False and meta["webhook_attempts"] == 4
    assert "webhook failed after 4 attempt(s)" in meta["webhook_warning"]
    assert len(emu.webhook_deliveries()) == before
    assert meta["records"] == len(web_messaging_truth(emu))
