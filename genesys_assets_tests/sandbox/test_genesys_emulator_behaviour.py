"""Behaviour of the emulated tenant: the semantics and failure modes the pipeline is built against."""

from __future__ import annotations

import random
import socket
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from genesys_assets.sandbox.conversations import ConversationStore, conversation_uuid, parse_ms
from genesys_assets.sandbox.directory import TENANT_CREATED, build_directory
from genesys_assets.sandbox.genesys_emulator import FaultConfig, GenesysEmulator
from genesys_assets_tests.sandbox.conftest import JOBS, SMALL_DAY, Api, all_job_results, day_interval, wait_job
from genesys_assets_tests.support import crosses_both_midnights, latest_day_with

QUERY = "/api/v2/analytics/conversations/details/query"


def _submit(api: Api, body: dict, fault: str | None = None) -> str:
    r = api.post(JOBS, body, fault=fault)
    assert r.status_code in (200, 202), r.text
    return r.json()["jobId"]


def _day_ms(day: date) -> tuple[int, int]:
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    return start, start + 86_400_000


# ---------------------------------------------------------------------------------------------- jobs

def test_job_state_machine_queued_pending_fulfilled(api: Api, past_day: date) -> None:
    job = _submit(api, {"interval": day_interval(past_day)}, fault="job_delay_seconds=1.6")  # 0.8 s a state
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = api.get(f"{JOBS}/{job}").json()["state"]
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "FULFILLED":
            break
        time.sleep(0.02)
    assert seen == ["QUEUED", "PENDING", "FULFILLED"]
    status = api.get(f"{JOBS}/{job}").json()
    assert parse_ms(status["completionDate"]) >= parse_ms(status["submissionDate"])
    assert parse_ms(status["expirationDate"]) > parse_ms(status["completionDate"])


@pytest.mark.parametrize("outcome", ["FAILED", "EXPIRED"])
def test_job_terminal_failures(api: Api, past_day: date, outcome: str) -> None:
    job = _submit(api, {"interval": day_interval(past_day)}, fault=f"job_outcome={outcome};job_delay_seconds=0.1")
    status = wait_job(api, job)
    assert status["state"] == outcome
    assert ("errorMessage" in status) == (outcome == "FAILED")
    assert api.get(f"{JOBS}/{job}/results").status_code == 400


def test_stuck_job_stays_pending_until_deleted(api: Api, past_day: date) -> None:
    job = _submit(api, {"interval": day_interval(past_day)}, fault="job_outcome=STUCK;job_delay_seconds=0.05")
    time.sleep(0.3)
    assert api.get(f"{JOBS}/{job}").json()["state"] == "PENDING"
    assert api.delete(f"{JOBS}/{job}").status_code == 204
    assert api.get(f"{JOBS}/{job}").json()["state"] == "CANCELLED"


def test_job_requires_interval(api: Api) -> None:
    r = api.post(JOBS, {"order": "asc"})
    assert r.status_code == 400 and "interval" in r.json()["message"]


def test_async_covers_activity_during_sync_covers_started_on(emulator: GenesysEmulator, api: Api,
                                                             past_day: date) -> None:
    past_day = latest_day_with(past_day, lambda day: crosses_both_midnights(lambda d: emulator.store.day(d).index, day),
                               "conversations crossing both midnights")  # not so on 2026-12-01
    start, end = _day_ms(past_day)
    today = emulator.conversations_for_day(past_day)
    yesterday = emulator.conversations_for_day(past_day - timedelta(days=1))
    crossers = {c["conversationId"] for c in yesterday if parse_ms(c["conversationEnd"]) > start}
    assert crossers, "the data must contain conversations crossing midnight"
    own_crossers = [c for c in today if parse_ms(c["conversationEnd"]) >= end]
    assert own_crossers

    job = _submit(api, {"interval": day_interval(past_day)})
    assert wait_job(api, job)["state"] == "FULFILLED"
    got = [c["conversationId"] for c in all_job_results(api, job, page_size=37)]
    assert len(got) == len(set(got)), "cursor paging must not repeat a conversation"
    assert set(got) == {c["conversationId"] for c in today} | crossers
    starts = [parse_ms(c["conversationStart"]) for c in all_job_results(api, job, page_size=500)]
    assert starts == sorted(starts)

    sync_ids: list[str] = []
    page = 1
    while True:
        r = api.post(QUERY, {"interval": day_interval(past_day), "paging": {"pageSize": 100, "pageNumber": page}})
        body = r.json()
        assert body["totalHits"] == SMALL_DAY
        if not body.get("conversations"):
            break
        sync_ids += [c["conversationId"] for c in body["conversations"]]
        page += 1
    assert sync_ids == [c["conversationId"] for c in today]
    assert not crossers & set(sync_ids)

    # "Started on a day touched by the interval": six hours of the day still answer for the whole day.
    morning = f"{past_day.isoformat()}T06:00:00.000Z/{past_day.isoformat()}T12:00:00.000Z"
    r = api.post(QUERY, {"interval": morning, "paging": {"pageSize": 1, "pageNumber": 1}})
    assert r.json()["totalHits"] == SMALL_DAY


def test_sync_pagination_cap_and_page_size(api: Api, past_day: date) -> None:
    r = api.post(QUERY, {"interval": day_interval(past_day), "paging": {"pageSize": 100, "pageNumber": 1001}})
    assert r.status_code == 400 and r.json()["message"] == "Pagination may not exceed 100000 results"
    assert api.post(QUERY, {"interval": day_interval(past_day),
                            "paging": {"pageSize": 101, "pageNumber": 1}}).status_code == 400
    ok = api.post(QUERY, {"interval": day_interval(past_day), "paging": {"pageSize": 100, "pageNumber": 1000}})
    assert ok.status_code == 200 and "conversations" not in ok.json()
    default = api.post(QUERY, {"interval": day_interval(past_day)}).json()
    assert len(default["conversations"]) == 25


def test_segment_dimensions_in_conversation_filters_are_ignored(emulator: GenesysEmulator, api: Api,
                                                                 past_day: date) -> None:
    message = [{"type": "and", "predicates": [
        {"type": "dimension", "dimension": "mediaType", "operator": "matches", "value": "message"},
        {"type": "dimension", "dimension": "messageType", "operator": "matches", "value": "webmessaging"}]}]
    expected = sum(1 for c in emulator.conversations_for_day(past_day)
                   if c["participants"][0]["sessions"][0]["mediaType"] == "message")
    seg = api.post(QUERY, {"interval": day_interval(past_day), "segmentFilters": message}).json()
    assert seg["totalHits"] == expected and 0 < expected < SMALL_DAY
    conv = api.post(QUERY, {"interval": day_interval(past_day), "conversationFilters": message}).json()
    assert conv["totalHits"] == SMALL_DAY  # silently ignored, as in the real API
    # A conversation-level dimension in conversationFilters does filter.
    one = emulator.conversations_for_day(past_day)[7]["conversationId"]
    by_id = api.post(QUERY, {"interval": day_interval(past_day), "conversationFilters": [
        {"type": "and", "predicates": [{"dimension": "conversationId", "value": one}]}]}).json()
    assert by_id["totalHits"] == 1
    # The slow path (a non-indexed segment dimension) agrees with the ground truth.
    queue = build_directory().routing_queues[0].id
    want = sum(1 for c in emulator.conversations_for_day(past_day)
               if any(seg.get("queueId") == queue for p in c["participants"] for s in p["sessions"]
                      for seg in s["segments"]))
    by_queue = api.post(QUERY, {"interval": day_interval(past_day), "segmentFilters": [
        {"type": "or", "predicates": [{"dimension": "queueId", "value": queue}]}]}).json()
    assert by_queue["totalHits"] == want
    absent = api.post(QUERY, {"interval": day_interval(past_day), "segmentFilters": [
        {"type": "and", "predicates": [{"dimension": "wrapUpCode", "operator": "exists"}]}]}).json()
    assert 0 < absent["totalHits"] < SMALL_DAY  # abandoned conversations have no wrap-up


def test_availability_lag_gives_short_results_without_error(emulator: GenesysEmulator, api: Api) -> None:
    now = datetime.now(UTC)
    day = now.date() - timedelta(days=1)
    start, _end = _day_ms(day)
    watermark = start + 12 * 3600 * 1000  # noon of that day
    lag = (time.time() * 1000 - watermark) / 1000
    fault = f"availability_lag_seconds={lag}"
    avail = api.get(f"{JOBS}/availability", fault=fault).json()["dataAvailabilityDate"]
    assert abs(parse_ms(avail) - watermark) < 5000
    job = _submit(api, {"interval": day_interval(day)}, fault=fault)
    assert wait_job(api, job)["state"] == "FULFILLED"
    page = api.get(f"{JOBS}/{job}/results", pageSize=1000).json()
    got = page.get("conversations", [])
    assert 0 < len(got) < SMALL_DAY
    assert all(parse_ms(c["conversationEnd"]) <= parse_ms(page["dataAvailabilityDate"]) for c in got)


def test_aggregates_match_details_exactly(emulator: GenesysEmulator, api: Api, past_day: date) -> None:
    start, end = _day_ms(past_day)
    expected: dict[str, list[int]] = {}
    for day in (past_day - timedelta(days=1), past_day):
        for c in emulator.conversations_for_day(day):
            for p in c["participants"]:
                for s in p["sessions"]:
                    code = next((g["wrapUpCode"] for g in s["segments"] if g.get("wrapUpCode")), None)
                    for m in s.get("metrics", []):
                        if m["name"] == "tAcw" and start <= parse_ms(m["emitDate"]) < end:
                            expected.setdefault(code, []).append(m["value"])
    r = api.post("/api/v2/analytics/conversations/aggregates/query", {
        "interval": day_interval(past_day), "granularity": "P1D", "groupBy": ["wrapUpCode"], "metrics": ["tAcw"]})
    got = {g["group"]["wrapUpCode"]: g["data"][0]["metrics"][0]["stats"] for g in r.json()["results"]}
    assert set(got) == set(expected)
    for code, values in expected.items():
        assert got[code]["count"] == len(values) and got[code]["sum"] == sum(values)
        assert got[code]["max"] == max(values) and got[code]["min"] == min(values)
    day_codes = {w.id for w in build_directory().wrapup_codes_as_of(past_day)}
    assert set(got) <= day_codes | {w.id for w in build_directory().wrapup_codes_as_of(past_day - timedelta(1))}


# ---------------------------------------------------------------------------------------------- auth

def test_limited_client_gets_403_naming_the_permission(emulator: GenesysEmulator, past_day: date) -> None:
    emulator.add_client("queues-only", "pw-123", ["routing:queue:view"])
    limited = Api(emulator, "queues-only", "pw-123")
    assert limited.get("/api/v2/routing/queues").status_code == 200
    denied = limited.post(QUERY, {"interval": day_interval(past_day)})
    assert denied.status_code == 403
    body = denied.json()
    assert body["code"] == "missing.any.permissions"
    assert "analytics:conversationDetail:view" in body["message"]
    wildcard = requests.post(f"{emulator.base_url}/__sandbox__/clients", json={
        "client_id": "analyst", "client_secret": "pw-456", "permissions": ["analytics:*"]}, timeout=5)
    assert wildcard.status_code == 201
    analyst = Api(emulator, "analyst", "pw-456")
    assert analyst.post(QUERY, {"interval": day_interval(past_day)}).status_code == 200
    assert analyst.get("/api/v2/routing/wrapupcodes").status_code == 403


def test_expired_token_gets_401(emulator: GenesysEmulator) -> None:
    r = requests.post(f"{emulator.base_url}/oauth/token", auth=(emulator.client_id, emulator.client_secret),
                      data={"grant_type": "client_credentials"}, headers={"X-Sandbox-Fault": "token_ttl_seconds=1"},
                      timeout=5)
    assert r.json()["expires_in"] == 1
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert requests.get(f"{emulator.base_url}/api/v2/routing/queues", headers=auth, timeout=5).status_code == 200
    time.sleep(1.1)
    expired = requests.get(f"{emulator.base_url}/api/v2/routing/queues", headers=auth, timeout=5)
    assert expired.status_code == 401 and expired.json()["code"] == "bad.credentials"
    assert requests.get(f"{emulator.base_url}/api/v2/routing/queues", timeout=5).status_code == 401


def test_wrong_secret_and_grant(emulator: GenesysEmulator) -> None:
    bad = requests.post(f"{emulator.base_url}/oauth/token", auth=(emulator.client_id, "wrong"),
                        data={"grant_type": "client_credentials"}, timeout=5)
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert "wrong" not in bad.text
    grant = requests.post(f"{emulator.base_url}/oauth/token", auth=(emulator.client_id, emulator.client_secret),
                          data={"grant_type": "password"}, timeout=5)
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


# ---------------------------------------------------------------------------------------------- faults

def test_fault_header_applies_to_one_request(api: Api) -> None:
    r = api.get("/api/v2/routing/queues", fault="rate_429=1;retry_after=7")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    # The normalised 429 (developer forum, "Normalized Platform API 429 responses", 10 Nov 2021).
    assert r.json() == {"message": "Rate limit exceeded the maximum. Retry the request in [7] seconds",
                        "code": "too.many.requests.retry.after", "status": 429,
                        "contextId": r.headers["inin-correlation-id"], "details": [], "errors": []}
    assert api.get("/api/v2/routing/queues").status_code == 200
    assert api.get("/api/v2/routing/queues", fault="rate_5xx=1").status_code in (500, 502, 503)
    junk = api.get("/api/v2/routing/queues", fault="rate_429=1;retry_after=Wed, 21 Oct 2015 07:28:00 GMT")
    assert junk.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert api.get("/api/v2/routing/queues", fault="no_such_knob=1").status_code == 400


def test_fail_next_is_deterministic(emulator: GenesysEmulator, api: Api) -> None:
    emulator.fail_next(503, count=2)
    assert [api.get("/api/v2/routing/queues").status_code for _ in range(3)] == [503, 503, 200]
    emulator.fail_next(429, retry_after="2")
    r = api.get("/api/v2/users")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    emulator.fail_next(0)
    with pytest.raises(requests.ConnectionError):
        api.get("/api/v2/users")
    # over HTTP, and /__sandbox__ itself is never faulted
    admin = requests.post(f"{emulator.base_url}/__sandbox__/fail-next", json={"status": 502, "count": 1}, timeout=5)
    assert admin.status_code == 200
    assert requests.get(f"{emulator.base_url}/__sandbox__/requests", timeout=5).status_code == 200
    assert api.get("/api/v2/users").status_code == 502
    assert api.get("/api/v2/users").status_code == 200


def test_drop_mid_body_and_admin_faults(emulator: GenesysEmulator, api: Api) -> None:
    r = requests.put(f"{emulator.base_url}/__sandbox__/faults", json={"rate_drop": 1.0}, timeout=5)
    assert r.status_code == 200 and r.json()["rate_drop"] == 1.0
    try:
        with pytest.raises(requests.RequestException):
            api.get("/api/v2/users", state="any")
    finally:
        emulator.set_faults(rate_drop=0.0)
    assert api.get("/api/v2/users").status_code == 200


def test_request_log(emulator: GenesysEmulator, api: Api) -> None:
    emulator.clear_request_log()
    api.get("/api/v2/routing/wrapupcodes")
    log = emulator.request_log()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [("GET", "/api/v2/routing/wrapupcodes", 200)]
    assert isinstance(log[0]["time"], float)
    over_http = requests.get(f"{emulator.base_url}/__sandbox__/requests", timeout=5).json()["requests"]
    assert len(over_http) == 1
    assert requests.delete(f"{emulator.base_url}/__sandbox__/requests", timeout=5).status_code == 204
    assert emulator.request_log() == []


def test_schema_drift(api: Api, past_day: date) -> None:
    body = api.post(QUERY, {"interval": day_interval(past_day)}, fault="schema_drift=true").json()
    conv = body["conversations"][0]
    assert "sandboxNewField" in conv and "divisionIds" not in conv


# ---------------------------------------------------------------------------------------------- directory

def test_directory_state_filter_and_wrapup_history(api: Api) -> None:
    directory = build_directory()
    active = api.get("/api/v2/users", pageSize=500).json()
    assert {u["state"] for u in active["entities"]} == {"active"}
    everyone = api.get("/api/v2/users", pageSize=500, state="any").json()
    assert everyone["total"] == len(directory.users) > active["total"]
    page2 = api.get("/api/v2/users", pageSize=10, pageNumber=2, state="any").json()
    assert page2["pageNumber"] == 2 and "nextUri" in page2 and "previousUri" in page2
    today = datetime.now(UTC).date()
    codes = api.get("/api/v2/routing/wrapupcodes", pageSize=100).json()["entities"]
    expected = {w.id: w.name_as_of(today) for w in directory.wrapup_codes_as_of(today)}
    assert {c["id"]: c["name"] for c in codes} == expected
    deleted = [w.id for w in directory.wrapup_codes if not w.exists_on(today)]
    assert deleted and not set(deleted) & {c["id"] for c in codes}
    named = api.get("/api/v2/routing/queues", name="Support").json()["entities"]
    assert [q["name"] for q in named] == ["Support"]
    assert len(api.get("/api/v2/routing/queues", name="*support*").json()["entities"]) >= 3


# ---------------------------------------------------------------------------------------------- messaging

def test_bulk_messages_limit_and_content(emulator: GenesysEmulator, api: Api, past_day: date) -> None:
    conv = next(c for c in emulator.conversations_for_day(past_day)
                if c["participants"][0]["sessions"][0]["mediaType"] == "message")
    cid = conv["conversationId"]
    assert api.post(f"/api/v2/conversations/messages/{cid}/messages/bulk", ["x"] * 1001).status_code == 400
    mc = api.get(f"/api/v2/conversations/messages/{cid}").json()
    ids = [m["messageId"] for p in mc["participants"] for m in p.get("messages", [])]
    bulk = api.post(f"/api/v2/conversations/messages/{cid}/messages/bulk", [*ids[:2], "unknown"]).json()
    assert [e["id"] for e in bulk["entities"]] == ids[:2] or {e["id"] for e in bulk["entities"]} == set(ids[:2])
    assert all(e["normalizedMessage"]["text"] for e in bulk["entities"])
    voice = next(c for c in emulator.conversations_for_day(past_day)
                 if c["participants"][0]["sessions"][0]["mediaType"] == "voice")
    assert api.get(f"/api/v2/conversations/messages/{voice['conversationId']}").status_code == 404
    assert api.get(f"/api/v2/conversations/messages/{uuid.uuid4()}").status_code == 404


def test_ids_and_days_the_org_never_had_are_not_found(emulator: GenesysEmulator, api: Api) -> None:
    """Before the org existed there are no conversations (not a 500); an id the emulator never made is a 404."""
    before = TENANT_CREATED - timedelta(days=200)
    body = api.post(QUERY, {"interval": day_interval(before)}).json()
    assert body["totalHits"] == 0 and "conversations" not in body
    assert emulator.conversations_for_day(before) == []
    rng = random.Random(7)
    assert api.get(f"/api/v2/conversations/messages/{conversation_uuid(rng, before, 0)}").status_code == 404
    # A row beyond the day's conversations is a 404 without generating the day to find out.
    untouched = TENANT_CREATED + timedelta(days=33)
    beyond = conversation_uuid(rng, untouched, SMALL_DAY + 5)
    assert api.get(f"/api/v2/conversations/messages/{beyond}").status_code == 404
    assert not emulator.store.paths(untouched)[1].exists()


# ---------------------------------------------------------------------------------------------- uploads

def test_presigned_put_upload_and_expiry(emulator: GenesysEmulator, api: Api) -> None:
    import base64
    import hashlib

    data = b"RIFF....WAVEfmt "
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    grant = api.post("/api/v2/uploads/recordings", {"fileName": "rec 1.wav", "contentMd5": md5,
                                                     "contentType": "audio/wav", "signedUrlTimeoutSeconds": 3,
                                                     "serverSideEncryption": "AES256"}).json()
    put = requests.put(grant["url"], data=data, headers=grant["headers"], timeout=5)
    assert put.status_code == 200
    stored = [u for u in emulator.uploads() if u["uploadKey"] == grant["uploadKey"]]
    assert stored and stored[0]["size"] == len(data) and stored[0]["serverSideEncryption"] == "AES256"
    tampered = grant["url"].replace("X-Signature=", "X-Signature=00")
    assert requests.put(tampered, data=data, timeout=5).status_code == 403
    # As S3's X-Amz-Date, the expiry counts from the whole second the URL was signed in: a 1 s URL may be dead
    # before its first PUT, so the test's URL lives 3 s and the test then waits for it to run out.
    expires = int(parse_qs(urlsplit(grant["url"]).query)["X-Expires"][0])
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    expired = requests.put(grant["url"], data=data, headers=grant["headers"], timeout=5)
    assert expired.status_code == 403 and b"expired" in expired.content


# ---------------------------------------------------------------------------------------------- webhook

def test_data_lake_webhook_receiver(emulator: GenesysEmulator) -> None:
    payload = {"status": "completed", "recordsArchived": 12}
    r = requests.post(f"{emulator.base_url}/__sandbox__/webhooks/data-lake", json=payload,
                      headers={"X-Archive-Source": "genesys-cloud"}, timeout=5)
    assert r.status_code == 202
    assert emulator.webhook_deliveries()[-1]["payload"] == payload
    listed = requests.get(f"{emulator.base_url}/__sandbox__/webhooks", timeout=5).json()["deliveries"]
    assert listed[-1]["headers"]["X-Archive-Source"] == "genesys-cloud"


# ---------------------------------------------------------------------------------------------- migration target

def _record(n: int, **over: object) -> dict:
    rec = {"id": str(uuid.UUID(int=n + 1)), "direction": "inbound", "startTime": "2023-01-15T08:30:00Z",
           "endTime": "2023-01-15T08:35:22Z", "duration": 322, "contactType": "call",
           "x_legacy_id": f"1001-{n}"}
    rec.update(over)
    return rec


def test_migration_target(tmp_path: Path) -> None:
    with GenesysEmulator(tmp_path, conversations_per_day=10) as gc:
        api = Api(gc)
        batch = {"interactions": [_record(n) for n in range(3)]}
        denied = api.post("/api/v2/interactions", batch, headers={"X-Request-ID": "r1"})
        assert denied.status_code == 403 and "allowHistoricalImport" in denied.json()["message"]
        assert api.put("/api/v2/interactions/settings", {"allowHistoricalImport": True}).status_code == 200
        first = api.post("/api/v2/interactions", batch, headers={"X-Request-ID": "r1"})
        assert first.status_code == 200 and first.json()["created"] == 3
        again = api.post("/api/v2/interactions", batch, headers={"X-Request-ID": "r1"})
        assert again.json() == first.json() and again.headers.get("X-Idempotent-Replay") == "true"
        other = api.post("/api/v2/interactions", {"interactions": [_record(0)]}, headers={"X-Request-ID": "r1"})
        assert other.status_code == 409
        resend = api.post("/api/v2/interactions", batch, headers={"X-Request-ID": "r2"})
        assert resend.json()["unchanged"] == 3
        bad = api.post("/api/v2/interactions", {"interactions": [
            _record(10), _record(11, id="1001-7#2"), _record(12, startTime="2023-01-15 08:30:00"),
            _record(13, endTime="2023-01-15T08:00:00Z")]}, headers={"X-Request-ID": "r3"})
        assert bad.status_code == 400
        fields = {d["fieldName"] for d in bad.json()["details"]}
        assert fields == {"interactions[1].id", "interactions[2].startTime", "interactions[3].endTime"}
        assert len(bad.json()["errors"]) == 3
        assert api.get(f"/api/v2/interactions/{_record(10)['id']}").status_code == 404  # nothing stored
        too_many = api.post("/api/v2/interactions", {"interactions": [_record(n) for n in range(101)]})
        assert too_many.status_code == 400
        assert api.get("/api/v2/interactions", pageSize=2).json()["total"] == 3
    with GenesysEmulator(tmp_path, conversations_per_day=10) as gc:  # a restart keeps data and setting
        api = Api(gc)
        got = api.get(f"/api/v2/interactions/{_record(1)['id']}")
        assert got.status_code == 200 and got.json()["x_legacy_id"] == "1001-1"
        listing = api.get("/api/v2/interactions", pageSize=2, pageNumber=1,
                          interval="2023-01-15T00:00:00Z/2023-01-16T00:00:00Z").json()
        assert listing["total"] == 3 and len(listing["entities"]) == 2 and "nextUri" in listing
        replay = api.post("/api/v2/interactions", batch, headers={"X-Request-ID": "r1"})
        assert replay.status_code == 200 and replay.json()["created"] == 3
    gc2 = GenesysEmulator(tmp_path / "flag", historical_import_enabled=True, conversations_per_day=10)
    with gc2:
        assert Api(gc2).post("/api/v2/interactions", {"interactions": [_record(5)]}).status_code == 200


# ---------------------------------------------------------------------------------------------- determinism, lifecycle

def test_same_seed_and_day_give_same_bytes(tmp_path: Path, past_day: date) -> None:
    a = ConversationStore(tmp_path / "a", conversations_per_day=300).day(past_day)
    b = ConversationStore(tmp_path / "b", conversations_per_day=300).day(past_day)
    assert a.path.read_bytes() == b.path.read_bytes()
    c = ConversationStore(tmp_path / "c", seed=7, conversations_per_day=300).day(past_day)
    assert c.path.read_bytes() != a.path.read_bytes()
    with GenesysEmulator(tmp_path / "e1", conversations_per_day=50) as g1, \
            GenesysEmulator(tmp_path / "e2", conversations_per_day=50) as g2:
        pages = []
        for gc in (g1, g2):
            api = Api(gc)
            job = _submit(api, {"interval": day_interval(past_day)})
            wait_job(api, job)
            pages.append(api.get(f"{JOBS}/{job}/results", pageSize=1000).json()["conversations"])
        assert pages[0] == pages[1]


def test_mix_and_shape_of_a_day(emulator: GenesysEmulator, past_day: date) -> None:
    convs = ConversationStore(emulator.state_dir / "mix", conversations_per_day=2000).conversations_for_day(past_day)
    media = [c["participants"][0]["sessions"][0]["mediaType"] for c in convs]
    assert 0.5 < media.count("voice") / len(media) < 0.7
    assert 0.12 < media.count("message") / len(media) < 0.28
    agents = [p for c in convs for p in c["participants"] if p["purpose"] == "agent"]
    transfers = sum(1 for c in convs if sum(p["purpose"] == "agent" for p in c["participants"]) > 1)
    assert transfers > 50 and agents
    _start, end = _day_ms(past_day)
    crossing = sum(1 for c in convs if parse_ms(c["conversationEnd"]) >= end)
    assert 0.005 < crossing / len(convs) < 0.06
    valid = {w.id for w in build_directory().wrapup_codes_as_of(past_day)}
    codes = {g["wrapUpCode"] for p in agents for s in p["sessions"] for g in s["segments"] if g.get("wrapUpCode")}
    assert codes <= valid and len(codes) > 5
    holds = sum(1 for p in agents for s in p["sessions"] for g in s["segments"] if g["segmentType"] == "hold")
    assert holds > 50


def test_stop_closes_the_socket(tmp_path: Path) -> None:
    gc = GenesysEmulator(tmp_path, conversations_per_day=10, faults=FaultConfig()).start()
    host, port = gc.base_url.removeprefix("http://").split(":")
    session = requests.Session()
    assert session.get(f"{gc.base_url}/__sandbox__/webhooks", timeout=5).status_code == 200  # keep-alive open
    gc.stop()
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=1):
        pass


def test_a_request_hook_that_fails_is_raised_where_it_was_armed(emulator: GenesysEmulator) -> None:
    """The request it broke is still answered; the error is not lost as a dropped connection."""
    with pytest.raises(ZeroDivisionError), emulator.request_hook(lambda entry: 1 / 0):
        answer = requests.get(f"{emulator.base_url}/api/v2/users", timeout=5)
        assert answer.status_code == 401  # no token: answered as always
