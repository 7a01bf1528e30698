"""Contract: every field the emulator returns exists, with its JSON type and enum value, in the official SDK model.

The SDK (``PureCloudPlatformClientV2``, generated from the live API spec) is the truth for shapes: a faithful
emulator must not invent fields the models lack (the SDK would silently drop them and the pipeline would be
tested against a fiction).
"""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import PureCloudPlatformClientV2 as sdk
import pytest
import requests

from genesys_assets.sandbox.conversations import parse_ms
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.sandbox.conftest import JOBS, Api, day_interval, wait_job
from genesys_assets_tests.support import latest_day_with

_PRIMITIVES = {"str", "int", "float", "bool", "datetime", "date", "object"}


def _json_key_map(model: type) -> dict[str, str]:
    """JSON key -> python attribute for one SDK model."""
    inst = model()
    return {json_key: attr for attr, json_key in inst.attribute_map.items()}


def _enum_ok(model: type, attr: str, value: str) -> bool:
    """Feed the value to the SDK's own setter: an unknown enum value becomes 'outdated_sdk_version'."""
    inst = model()
    setattr(inst, attr, value)
    return getattr(inst, attr) != "outdated_sdk_version"


def contract_violations(value: object, type_name: str, path: str = "$") -> list[str]:
    """Every way ``value`` departs from the SDK type ``type_name`` (a model name or swagger type string)."""
    problems: list[str] = []
    if value is None:
        return problems  # optional fields may be null
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        inner = type_name[5:-1]
        for i, item in enumerate(value):
            problems += contract_violations(item, inner, f"{path}[{i}]")
        return problems
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        inner = type_name[5:-1].split(",", 1)[1].strip()
        for k, v in value.items():
            problems += contract_violations(v, inner, f"{path}.{k}")
        return problems
    if type_name in _PRIMITIVES:
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "datetime": isinstance(value, str) and _is_iso(value),
            "date": isinstance(value, str),
            "object": True,
        }[type_name]
        return [] if ok else [f"{path}: {value!r} is not a {type_name}"]
    model = getattr(sdk, type_name, None)
    if model is None:
        return [f"{path}: SDK has no model {type_name}"]
    if not isinstance(value, dict):
        return [f"{path}: expected {type_name} object, got {type(value).__name__}"]
    keys = _json_key_map(model)
    types = model().swagger_types
    for key, item in value.items():
        attr = keys.get(key)
        if attr is None:
            problems.append(f"{path}.{key}: not a field of {type_name}")
            continue
        field_type = types[attr]
        problems += contract_violations(item, field_type, f"{path}.{key}")
        if field_type == "str" and isinstance(item, str) and not _enum_ok(model, attr, item):
            problems.append(f"{path}.{key}: {item!r} is not an allowed {type_name}.{attr} value")
    return problems


def _is_iso(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def assert_contract(value: object, model: str) -> None:
    problems = contract_violations(value, model)
    assert not problems, "\n".join(problems[:30])


# ---------------------------------------------------------------------------------------------- the checker

def test_checker_rejects_invented_field_wrong_type_and_bad_enum() -> None:
    good = {"conversationId": "x", "originatingDirection": "inbound",
            "participants": [{"purpose": "agent", "sessions": [{"mediaType": "voice", "metrics": [
                {"name": "tHandle", "value": 5, "emitDate": "2024-01-01T00:00:00.000Z"}]}]}]}
    assert contract_violations(good, "AnalyticsConversation") == []
    invented = {**good, "exportQueryId": "abc"}
    assert any("exportQueryId: not a field" in p for p in contract_violations(invented, "AnalyticsConversation"))
    nested = {"participants": [{"purpose": "agent", "sessions": [{"textBody": "hi"}]}]}
    assert any("textBody" in p for p in contract_violations(nested, "AnalyticsConversation"))
    wrong_type = {"participants": [{"sessions": [{"metrics": [{"name": "tTalk", "value": "12"}]}]}]}
    assert any("is not a int" in p for p in contract_violations(wrong_type, "AnalyticsConversation"))
    bad_enum = {"participants": [{"purpose": "robot"}]}
    assert any("not an allowed" in p for p in contract_violations(bad_enum, "AnalyticsConversation"))
    bad_attr = {"participants": [{"attributes": {"n": 5}}]}
    assert contract_violations(bad_attr, "AnalyticsConversation")


# ---------------------------------------------------------------------------------------------- endpoints

def test_oauth_token_and_error_shapes(api: Api) -> None:
    gc = api.gc
    ok = requests.post(f"{gc.base_url}/oauth/token", auth=(gc.client_id, gc.client_secret),
                       data={"grant_type": "client_credentials"}, timeout=10)
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and isinstance(body["expires_in"], int)
    bad = requests.post(f"{gc.base_url}/oauth/token", auth=("nobody", "nope"),
                        data={"grant_type": "client_credentials"}, timeout=10)
    assert bad.status_code in (400, 401)
    assert set(bad.json()) == {"error", "description", "error_description"}
    assert bad.json()["error"] == "invalid_client"


def test_directory_listings(api: Api) -> None:
    for path, model in (("/api/v2/users", "UserEntityListing"), ("/api/v2/routing/queues", "QueueEntityListing"),
                        ("/api/v2/routing/wrapupcodes", "WrapupCodeEntityListing")):
        for params in ({}, {"pageSize": 3, "pageNumber": 2}, {"state": "any"} if "users" in path else {}):
            r = api.get(path, **params)
            assert r.status_code == 200
            assert_contract(r.json(), model)
            for key in ("entities", "pageSize", "pageNumber", "total", "pageCount", "selfUri", "firstUri",
                        "lastUri"):
                assert key in r.json()


def test_details_job_lifecycle_shapes(api: Api, past_day) -> None:  # type: ignore[no-untyped-def]
    r = api.post(JOBS, {"interval": day_interval(past_day)})
    assert r.status_code in (200, 202)
    assert_contract(r.json(), "AsyncQueryResponse")
    job = r.json()["jobId"]
    assert_contract(api.get(f"{JOBS}/{job}").json(), "AsyncQueryStatus")
    status = wait_job(api, job)
    assert_contract(status, "AsyncQueryStatus")
    page = api.get(f"{JOBS}/{job}/results", pageSize=40).json()
    assert page["conversations"] and "cursor" in page
    assert_contract(page, "AnalyticsConversationAsyncQueryResponse")
    assert any("attributes" in p for c in page["conversations"] for p in c["participants"])
    assert_contract(api.get(f"{JOBS}/availability").json(),
                    "DataAvailabilityResponse")
    failed = api.post(JOBS, {"interval": day_interval(past_day)},
                      fault="job_outcome=FAILED;job_delay_seconds=0").json()["jobId"]
    assert_contract(wait_job(api, failed), "AsyncQueryStatus")


def test_full_day_of_async_results_matches_sdk(api: Api, past_day) -> None:  # type: ignore[no-untyped-def]
    """Every conversation of the day, not a sample: all media types, transfers, crossers."""
    from genesys_assets_tests.sandbox.conftest import all_job_results

    job = api.post(JOBS,
                   {"interval": day_interval(past_day)}).json()["jobId"]
    wait_job(api, job)
    convs = all_job_results(api, job, page_size=500)
    assert len(convs) > 150
    assert_contract({"conversations": convs}, "AnalyticsConversationAsyncQueryResponse")
    media = {s["mediaType"] for c in convs for p in c["participants"] for s in p["sessions"]}
    assert media == {"voice", "message", "email", "callback"}


def test_sync_query_and_aggregates(api: Api, past_day) -> None:  # type: ignore[no-untyped-def]
    body = {"interval": day_interval(past_day), "paging": {"pageSize": 100, "pageNumber": 1}}
    r = api.post("/api/v2/analytics/conversations/details/query", body)
    assert r.status_code == 200
    assert_contract(r.json(), "AnalyticsConversationQueryResponse")
    assert all("attributes" not in p for c in r.json()["conversations"] for p in c["participants"])
    agg = api.post("/api/v2/analytics/conversations/aggregates/query", {
        "interval": day_interval(past_day), "granularity": "PT6H", "groupBy": ["wrapUpCode"],
        "metrics": ["nConnected", "tAcw", "tHandle", "tTalk"]})
    assert agg.status_code == 200 and agg.json()["results"]
    assert_contract(agg.json(), "ConversationAggregateQueryResponse")


def _in_progress_at_noon(emulator: GenesysEmulator, day: date) -> bool:
    noon = parse_ms(f"{day.isoformat()}T12:00:00Z")
    index = emulator.store.day(day).index
    return any(start <= noon < end for start, end in zip(index.starts, index.ends, strict=True))


def test_conversations_in_progress_show_nothing_that_has_not_happened_yet(
        api: Api, past_day, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    past_day = latest_day_with(past_day, lambda day: _in_progress_at_noon(api.gc, day),  # not so on 2026-06-06
                               "a conversation in progress at noon")
    noon = parse_ms(f"{past_day.isoformat()}T12:00:00Z")
    monkeypatch.setattr(api.gc.analytics, "now_ms", lambda: noon)
    truth = {c["conversationId"]: c for c in api.gc.conversations_for_day(past_day)}
    got = []
    for number in range(1, 4):
        r = api.post("/api/v2/analytics/conversations/details/query",
                     {"interval": day_interval(past_day), "paging": {"pageSize": 100, "pageNumber": number}})
        assert_contract(r.json(), "AnalyticsConversationQueryResponse")
        got += r.json().get("conversations", [])
    assert got and len(got) == r.json()["totalHits"]
    live = [c for c in got if parse_ms(truth[c["conversationId"]]["conversationEnd"]) > noon]
    assert live, "the sandbox day has conversations in progress at noon"
    for c in live:
        assert "conversationEnd" not in c
        for p in c["participants"]:
            for s in p["sessions"]:
                assert all(parse_ms(m["emitDate"]) <= noon for m in s.get("metrics", []))
                for seg in s["segments"]:
                    assert parse_ms(seg["segmentStart"]) <= noon
                    assert parse_ms(seg.get("segmentEnd", seg["segmentStart"])) <= noon
                    assert "segmentEnd" in seg or "disconnectType" not in seg
    for c in got:
        if c not in live:
            whole = truth[c["conversationId"]]
            for p in whole["participants"]:
                p.pop("attributes", None)
            assert c == whole
    agg = api.post("/api/v2/analytics/conversations/aggregates/query", {
        "interval": day_interval(past_day), "granularity": "PT6H", "metrics": ["nConnected", "tHandle"]}).json()
    buckets = {d["interval"].split("/")[0] for r in agg["results"] for d in r["data"]}
    assert buckets and all(parse_ms(b) < noon for b in buckets)  # nothing emitted after noon is counted yet


def test_messaging_shapes(api: Api, past_day) -> None:  # type: ignore[no-untyped-def]
    convs = [c for c in api.gc.conversations_for_day(past_day)
             if c["participants"][0]["sessions"][0]["mediaType"] == "message"]
    assert convs
    with_media = 0
    for conv in convs[:15]:
        cid = conv["conversationId"]
        mc = api.get(f"/api/v2/conversations/messages/{cid}")
        assert mc.status_code == 200
        assert_contract(mc.json(), "MessageConversation")
        ids = [m["messageId"] for p in mc.json()["participants"] for m in p.get("messages", [])]
        bulk = api.post(f"/api/v2/conversations/messages/{cid}/messages/bulk", ids, useNormalizedMessage="true")
        assert bulk.status_code == 200
        assert_contract(bulk.json(), "TextMessageListing")
        assert len(bulk.json()["entities"]) == len(ids)
        with_media += sum(1 for e in bulk.json()["entities"] if e["normalizedMessage"].get("content"))
    assert with_media >= 0


def test_upload_url_shape(api: Api) -> None:
    md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    r = api.post("/api/v2/uploads/recordings", {"fileName": "call.wav", "contentMd5": md5,
                                                 "contentType": "audio/wav", "signedUrlTimeoutSeconds": 60,
                                                 "serverSideEncryption": "AES256"})
    assert r.status_code == 200
    assert_contract(r.json(), "UploadUrlResponse")


def test_an_upload_url_without_a_timeout_is_valid_for_600_seconds(api: Api) -> None:
    before = int(time.time())
    r = api.post("/api/v2/uploads/recordings", {"fileName": "call.wav"})
    expires = int(parse_qs(urlsplit(r.json()["url"]).query)["X-Expires"][0])
    assert before + 600 <= expires <= int(time.time()) + 600  # the SDK's UploadUrlRequest default


def test_an_existing_job_is_readable_with_the_agent_scoped_permission(
        api: Api, past_day) -> None:  # type: ignore[no-untyped-def]
    job = api.post(JOBS, {"interval": day_interval(past_day)}).json()["jobId"]
    assert wait_job(api, job)["state"] == "FULFILLED"
    api.gc.add_client("contract-agent-scope", "s3cret", ["analytics:agentConversationDetail:view"])
    agent = Api(api.gc, "contract-agent-scope", "s3cret")
    assert agent.get(f"{JOBS}/{job}").json()["state"] == "FULFILLED"
    assert agent.get(f"{JOBS}/{job}/results", pageSize=5).status_code == 200
    assert agent.delete(f"{JOBS}/{job}").status_code == 204
    api.gc.add_client("contract-queues-only", "s3cret", ["routing:queue:view"])
    refused = Api(api.gc, "contract-queues-only", "s3cret").get(f"{JOBS}/{job}")
    assert refused.status_code == 403
    assert "analytics:agentConversationDetail:view" in refused.json()["message"]


def test_fulfilled_results_expire_at_the_expiration_date_the_status_reports(
        api: Api, past_day, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    job = api.post(JOBS, {"interval": day_interval(past_day)}).json()["jobId"]
    status = wait_job(api, job)
    assert status["state"] == "FULFILLED"
    expires_ms = parse_ms(status["expirationDate"])
    monkeypatch.setattr(api.gc, "_now_ms", lambda: expires_ms - 1)
    assert api.get(f"{JOBS}/{job}").json()["state"] == "FULFILLED"
    assert api.get(f"{JOBS}/{job}/results", pageSize=5).status_code == 200
    monkeypatch.setattr(api.gc, "_now_ms", lambda: expires_ms)
    expired = api.get(f"{JOBS}/{job}").json()
    assert expired["state"] == "EXPIRED" and expired["expirationDate"] == status["expirationDate"]
    assert_contract(expired, "AsyncQueryStatus")
    gone = api.get(f"{JOBS}/{job}/results", pageSize=5)
    assert gone.status_code == 400 and "EXPIRED" in gone.json()["message"]
    assert_contract(gone.json(), "ErrorBody")


def test_deleting_a_running_job_cancels_it_and_deleting_a_finished_one_removes_it(
        api: Api, past_day) -> None:  # type: ignore[no-untyped-def]
    body = {"interval": day_interval(past_day)}
    running = api.post(JOBS, body,
                       fault="job_delay_seconds=30").json()["jobId"]
    assert api.delete(f"{JOBS}/{running}").status_code == 204
    cancelled = api.get(f"{JOBS}/{running}").json()
    assert cancelled["state"] == "CANCELLED" and "completionDate" in cancelled
    assert_contract(cancelled, "AsyncQueryStatus")
    refused = api.get(f"{JOBS}/{running}/results")
    assert refused.status_code == 400 and "CANCELLED" in refused.json()["message"]
    assert api.delete(f"{JOBS}/{running}").status_code == 204
    assert api.get(f"{JOBS}/{running}").status_code == 404

    finished = api.post(JOBS, body).json()["jobId"]
    assert wait_job(api, finished)["state"] == "FULFILLED"
    assert api.delete(f"{JOBS}/{finished}").status_code == 204
    assert api.get(f"{JOBS}/{finished}").status_code == 404
    assert api.get(f"{JOBS}/{finished}/results").status_code == 404


@pytest.mark.parametrize("case", ["401", "403", "404", "400", "429", "503", "sync-400"])
def test_error_bodies_are_error_body(api: Api, case: str, past_day) -> None:  # type: ignore[no-untyped-def]
    gc = api.gc
    if case == "401":
        r = requests.get(f"{gc.base_url}/api/v2/routing/queues", headers={"Authorization": "Bearer nope"},
                         timeout=10)
    elif case == "403":
        gc.add_client("contract-limited", "s3cret", ["routing:queue:view"])
        r = Api(gc, "contract-limited", "s3cret").post("/api/v2/analytics/conversations/details/query",
                                                       {"interval": day_interval(past_day)})
    elif case == "404":
        r = api.get(f"{JOBS}/does-not-exist")
    elif case == "400":
        r = api.post(JOBS, {"order": "asc"})
    elif case == "429":
        r = api.get("/api/v2/routing/queues", fault="rate_429=1;retry_after=3")
        assert r.headers["Retry-After"] == "3"
    elif case == "503":
        gc.fail_next(503)
        r = api.get("/api/v2/routing/queues")
    else:
        r = api.post("/api/v2/analytics/conversations/details/query",
                     {"interval": day_interval(past_day), "paging": {"pageSize": 100, "pageNumber": 1001}})
    assert r.status_code == int(case.split("-")[-1]) if case != "sync-400" else r.status_code == 400
    body = r.json()
    assert_contract(body, "ErrorBody")
    assert {"message", "code", "status"} <= set(body)
    assert body["status"] == r.status_code


def test_interval_older_days_unaffected_by_clock(api: Api, past_day) -> None:  # type: ignore[no-untyped-def]
    """A day a month back is served the same way (the cache builds any day on demand)."""
    old = past_day - timedelta(days=30)
    r = api.post("/api/v2/analytics/conversations/details/query",
                 {"interval": day_interval(old), "paging": {"pageSize": 5, "pageNumber": 1}})
    assert r.status_code == 200 and r.json()["totalHits"] == 200
    assert_contract(r.json(), "AnalyticsConversationQueryResponse")
