"""GenesysCloudResource against the sandbox tenant emulator, under each injected fault.

One emulator serves the module (loopback, started here); each test resets its faults and request log.
Timings are measured on the emulator's side (its request log), not the client's.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import dagster as dg
import orjson
import pytest
import requests

from genesys_assets.resources.data_lake_webhook import DataLakeWebhookResource
from genesys_assets.resources.genesys_cloud import (
    DetailsJobCancelled,
    DetailsJobExpired,
    DetailsJobFailed,
    DetailsJobTimeout,
    GenesysApiError,
    GenesysAuthError,
    GenesysCloudClient,
    GenesysCloudResource,
    GenesysPermissionError,
    GenesysRetriesExhausted,
    PaginationCapExceeded,
)
from genesys_assets.sandbox.genesys_emulator import FaultConfig, GenesysEmulator

USERS = "/api/v2/users"
JOBS = "/api/v2/analytics/conversations/details/jobs"
QUERY = "/api/v2/analytics/conversations/details/query"
DAY = (datetime.now(UTC) - timedelta(days=3)).date()
BASE_FAULTS = FaultConfig(job_delay_seconds=0.2)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GenesysEmulator]:
    with GenesysEmulator(
        tmp_path_factory.mktemp("genesys-emulator"), conversations_per_day=200, faults=BASE_FAULTS
    ) as emu:
        yield emu


@pytest.fixture
def emu(emulator: GenesysEmulator) -> GenesysEmulator:
    """The module's emulator with default faults and an empty request log."""
    emulator.set_faults(**dataclasses.asdict(BASE_FAULTS))
    clear_log(emulator)
    return emulator


def make_resource(emu: GenesysEmulator, **overrides: Any) -> GenesysCloudResource:
    """A resource on the emulator with fast retries and polls (tests override what they measure)."""
    config: dict[str, Any] = {
        "api_base_url": emu.base_url,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "requests_per_second": 0,
        "max_attempts": 6,
        "request_deadline_seconds": 30,
        "timeout_seconds": 10,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "job_poll_initial_seconds": 0.05,
        "job_poll_max_seconds": 0.2,
        "job_deadline_seconds": 20,
    }
    config.update(overrides)
    return GenesysCloudResource(**config)


def settled_log(emu: GenesysEmulator) -> list[dict[str, Any]]:
    """The request log once the emulator has written it (it logs just after sending each answer)."""
    time.sleep(0.1)
    return emu.request_log()


def clear_log(emu: GenesysEmulator) -> None:
    """Empty the request log once the answers already sent have been logged."""
    time.sleep(0.1)
    emu.clear_request_log()


def api_log(emu: GenesysEmulator, path_prefix: str = "/api/v2") -> list[dict[str, Any]]:
    return [r for r in settled_log(emu) if r["path"].split("?")[0].startswith(path_prefix)]


def token_requests(emu: GenesysEmulator) -> list[dict[str, Any]]:
    return [r for r in settled_log(emu) if r["path"].split("?")[0] == "/oauth/token"]


def gap_after_first(log: list[dict[str, Any]], status: int) -> tuple[dict[str, Any], float]:
    """The first request answered ``status`` and the seconds until the next request to the same path."""
    for i, entry in enumerate(log):
        if entry["status"] == status:
            later = [e for e in log[i + 1 :] if e["path"] == entry["path"]]
            assert later, f"no retry after {entry}"
            return entry, later[0]["time"] - entry["time"]
    raise AssertionError(f"no {status} in {log}")


def run_threads(n: int, target: Callable[[], Any]) -> list[Any]:
    """Run ``target`` in n threads released together; return results, re-raising the first error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def day_interval(day: date) -> str:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    return f"{start:%Y-%m-%dT%H:%M:%S.000Z}/{end:%Y-%m-%dT%H:%M:%S.000Z}"


# ----------------------------------------------------------------------------------------- Retry-After


def test_retry_after_seconds_is_honoured(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    client.get_json(USERS, params={"pageSize": 1})  # token first: the fault hits the API call
    clear_log(emu)
    emu.fail_next(429, count=1, retry_after="2")
    t0 = time.monotonic()
    assert client.get_json(USERS, params={"pageSize": 1})["entities"]
    elapsed = time.monotonic() - t0
    _, gap = gap_after_first(api_log(emu), 429)
    assert 1.95 <= gap <= 3.5, gap  # Retry-After: 2, plus at most 0.2 s jitter and a loaded machine's latency
    assert elapsed >= 2.0
    stats = client.stats()
    assert stats["throttled"] == 1 and stats["retries"] == 1
    assert stats["seconds_waiting"] >= 2.0


def test_retry_after_http_date_is_honoured(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    client.get_json(USERS, params={"pageSize": 1})
    clear_log(emu)
    # The header has one-second resolution: wait until just after a second boundary, aim 2 s later.
    time.sleep(1.02 - (time.time() % 1.0))
    retry_at = time.time() + 2.0
    emu.fail_next(429, count=1, retry_after=formatdate(retry_at, usegmt=True))
    client.get_json(USERS, params={"pageSize": 1})
    first, gap = gap_after_first(api_log(emu), 429)
    expected = parsedate_to_datetime(formatdate(retry_at, usegmt=True)).timestamp() - first["time"]
    assert expected > 1.0
    assert expected - 0.1 <= gap <= expected + 1.5, (gap, expected)


def test_junk_retry_after_falls_back_to_backoff(emu: GenesysEmulator) -> None:
    client = make_resource(emu, backoff_base_seconds=0.05, backoff_max_seconds=0.1).get_client()
    client.get_json(USERS, params={"pageSize": 1})
    clear_log(emu)
    emu.fail_next(429, count=2, retry_after="in a moment")
    client.get_json(USERS, params={"pageSize": 1})
    log = api_log(emu)
    assert [e["status"] for e in log] == [429, 429, 200]
    assert log[-1]["time"] - log[0]["time"] < 1.0  # backoff ceilings 0.05 s, 0.1 s: not a long wait
    assert client.stats()["throttled"] == 2


def test_per_request_fault_header_gives_typed_error_after_max_attempts(emu: GenesysEmulator) -> None:
    client = make_resource(emu, max_attempts=3).get_client()
    client.get_json(USERS, params={"pageSize": 1})
    clear_log(emu)
    t0 = time.monotonic()
    with pytest.raises(GenesysRetriesExhausted) as info:
        client.post_json(
            JOBS,
            json={"interval": day_interval(DAY)},
            headers={"X-Sandbox-Fault": "rate_429=1;retry_after=0.5"},
        )
    error = info.value
    assert error.attempts == 3 and error.status == 429
    message = str(error)
    assert f"POST {JOBS}" in message and "3 attempt" in message and "last status 429" in message
    assert 1.0 <= time.monotonic() - t0 < 3.0  # two Retry-After waits of 0.5 s
    assert [e["status"] for e in api_log(emu)] == [429, 429, 429]


def test_deadline_gives_typed_error(emu: GenesysEmulator) -> None:
    resource = make_resource(
        emu, max_attempts=50, request_deadline_seconds=1.5, extra_headers={"X-Sandbox-Fault": "rate_5xx=1"}
    )
    client = resource.get_client()
    t0 = time.monotonic()
    with pytest.raises(GenesysRetriesExhausted) as info:
        client.get_json(USERS, params={"pageSize": 1})
    assert time.monotonic() - t0 < 3.0
    message = str(info.value)
    assert "deadline" in message and "attempt" in message
    assert "last status 5" in message
    assert info.value.attempts >= 2


# ----------------------------------------------------------------------------------------------- tokens


def test_one_token_for_8_concurrent_callers_at_start_and_after_expiry(emu: GenesysEmulator) -> None:
    emu.set_faults(token_ttl_seconds=2)
    client = make_resource(emu).get_client()
    pages = run_threads(8, lambda: client.get_json(USERS, params={"pageSize": 5}))
    assert all(p["entities"] for p in pages)
    assert len(token_requests(emu)) == 1
    assert client.stats()["token_refreshes"] == 1

    time.sleep(2.1)  # the token has expired for everyone
    clear_log(emu)
    run_threads(8, lambda: client.get_json(USERS, params={"pageSize": 5}))
    assert len(token_requests(emu)) == 1
    assert [e["status"] for e in api_log(emu)] == [200] * 8  # refreshed before use, not after a 401
    assert client.stats()["token_refreshes"] == 2


def test_401_mid_run_refreshes_the_token_and_succeeds(emu: GenesysEmulator) -> None:
    emu.set_faults(token_ttl_seconds=1)
    client = make_resource(emu).get_client()
    client.get_json(USERS, params={"pageSize": 1})
    # The server expires the token while the client still trusts it (revocation, clock skew).
    assert client._token is not None
    client._token.refresh_at += 3600
    time.sleep(1.1)
    clear_log(emu)
    assert client.get_json(USERS, params={"pageSize": 1})["entities"]
    assert client.stats()["token_refreshes"] == 2
    statuses = [(e["path"].split("?")[0], e["status"]) for e in settled_log(emu)]
    assert statuses == [(USERS, 401), ("/oauth/token", 200), (USERS, 200)]


def _intercept(client: Any, request: Callable[..., Any]) -> None:
    """The client's HTTP session sends through ``request(send, method, url, **kw)`` (``send`` being what it sent
    through before): a test changes what one request meets without a server-side fault."""
    client._session.request = functools.partial(request, client._session.request)


def _before_each_users_request(client: Any, emu: GenesysEmulator, steps: list[str]) -> None:
    """Before the client's n-th request to USERS: "revoke" every token server-side, "503" the request, or "drop"
    its connection."""

    def request(send: Callable[..., Any], method: str, url: str, **kw: Any) -> Any:
        if USERS in url and steps:
            step = steps.pop(0)
            if step == "revoke":
                emu.revoke_tokens()
            elif step == "503":
                emu.fail_next(503)
            elif step == "drop":
                raise requests.exceptions.ConnectionError("connection reset by peer")
        return send(method, url, **kw)

    _intercept(client, request)


def test_a_token_expiring_again_after_a_retry_is_refreshed_again(emu: GenesysEmulator) -> None:
    """401, refresh, 503 and its wait, and the new token has expired too: refreshed again, not an error."""
    client = make_resource(emu).get_client()
    client.get_json(USERS, params={"pageSize": 1})
    clear_log(emu)
    _before_each_users_request(client, emu, ["revoke", "503", "revoke"])
    assert client.get_json(USERS, params={"pageSize": 1})["entities"]
    statuses = [(e["path"].split("?")[0], e["status"]) for e in settled_log(emu)]
    assert statuses == [(USERS, 401), ("/oauth/token", 200), (USERS, 503), (USERS, 401), ("/oauth/token", 200),
                        (USERS, 200)]
    assert client.stats()["token_refreshes"] == 3


def test_a_token_expiring_during_a_connection_retry_is_refreshed_again(emu: GenesysEmulator) -> None:
    """401, refresh, a dropped connection and its backoff, and the new token has expired too: refreshed again."""
    client = make_resource(emu).get_client()
    client.get_json(USERS, params={"pageSize": 1})
    clear_log(emu)
    _before_each_users_request(client, emu, ["revoke", "drop", "revoke"])
    assert client.get_json(USERS, params={"pageSize": 1})["entities"]
    statuses = [(e["path"].split("?")[0], e["status"]) for e in settled_log(emu)]
    assert statuses == [(USERS, 401), ("/oauth/token", 200), (USERS, 401), ("/oauth/token", 200), (USERS, 200)]
    assert client.stats()["connection_errors"] == 1


def test_a_token_refused_right_after_its_refresh_is_final(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    client.get_json(USERS, params={"pageSize": 1})
    clear_log(emu)
    _before_each_users_request(client, emu, ["revoke", "revoke"])
    with pytest.raises(GenesysAuthError):
        client.get_json(USERS, params={"pageSize": 1})
    statuses = [(e["path"].split("?")[0], e["status"]) for e in settled_log(emu)]
    assert statuses == [(USERS, 401), ("/oauth/token", 200), (USERS, 401)]


def test_refused_credentials_fail_fast_for_all_waiting_threads(emu: GenesysEmulator) -> None:
    client = make_resource(emu, client_secret="not-the-secret").get_client()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.get_json(USERS)
        except GenesysAuthError as exc:
            errors.append(exc)

    run_threads(8, call)
    assert len(errors) == 8
    assert "GENESYS_CLIENT_SECRET" in str(errors[0]) and "POST /oauth/token" in str(errors[0])
    assert len(token_requests(emu)) < 8  # threads queued behind the failed fetch did not each retry


def test_token_endpoint_faults_are_retried(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    emu.fail_next(503, count=1)
    emu_first = client.get_json(USERS, params={"pageSize": 1})
    assert emu_first["entities"]
    assert [e["status"] for e in token_requests(emu)] == [503, 200]


# --------------------------------------------------------------------------------- 5xx, dropped connections


def test_5xx_and_dropped_connections_are_retried(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    expected = list(client.iter_entities(USERS, params={"state": "any"}, page_size=5))
    assert len(expected) > 40
    clear_log(emu)
    emu.fail_next(503, count=2)
    assert client.get_json(USERS, params={"pageSize": 1})["entities"]
    emu.fail_next(0, count=2)  # connections dropped without an answer
    assert client.get_json(USERS, params={"pageSize": 1})["entities"]
    stats = client.stats()
    assert stats["server_errors"] == 2
    assert stats["connection_errors"] == 2

    # every attempt dropped (before the answer or mid-body): bounded, and the error names the last failure
    emu_client = make_resource(emu, max_attempts=8).get_client()
    emu_client.get_json(USERS, params={"pageSize": 1})
    clear_log(emu)
    with pytest.raises(GenesysRetriesExhausted) as info:
        emu_client.get_json(USERS, params={"pageSize": 1}, headers={"X-Sandbox-Fault": "rate_drop=1"})
    assert info.value.attempts == 8 and info.value.status is None
    assert info.value.last_error in ("ChunkedEncodingError", "ConnectionError")
    assert f"GET {USERS}" in str(info.value) and "8 attempt" in str(info.value)
    assert f"reaching {emu.base_url.rstrip('/')}" in str(info.value)  # which host could not be reached
    assert "drop-mid-body" in {e.get("fault") for e in settled_log(emu)}

    # and at a rate, while paging: the same entities, nothing lost or doubled
    emu.set_faults(rate_5xx=0.2, rate_drop=0.15)
    before = client.stats()
    again = list(client.iter_entities(USERS, params={"state": "any"}, page_size=5))
    assert again == expected
    faults = client.stats_since(before)
    assert faults["server_errors"] + faults["connection_errors"] >= 1
    assert faults["retries"] == faults["server_errors"] + faults["connection_errors"]


# ------------------------------------------------------------------------------------------------- 403


def test_403_names_the_missing_permission(emu: GenesysEmulator) -> None:
    emu.add_client("limited", "limited-secret", permissions=["routing:queue:view"])
    client = make_resource(emu, client_id="limited", client_secret="limited-secret").get_client()
    with pytest.raises(GenesysPermissionError) as info:
        client.submit_details_job({"interval": day_interval(DAY)})
    error = info.value
    assert error.status == 403
    assert "analytics:conversationDetail:view" in error.permissions
    message = str(error)
    assert "analytics:conversationDetail:view" in message
    assert "role" in message and f"POST {JOBS}" in message
    assert "limited-secret" not in message


def test_other_4xx_is_an_api_error_with_status_and_code(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    with pytest.raises(GenesysApiError) as info:
        client.post_json(JOBS, json={"order": "asc"})  # no interval
    assert info.value.status == 400
    assert "400" in str(info.value) and f"POST {JOBS}" in str(info.value)


# ------------------------------------------------------------------------------------------ details jobs


def test_details_job_pages_hold_exactly_the_ground_truth(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    truth = {c["conversationId"]: c for c in emu.conversations_for_day(DAY)}
    assert len(truth) >= 150

    job_id = client.submit_details_job({"interval": day_interval(DAY), "order": "asc", "orderBy": "conversationStart"})
    status = client.wait_for_details_job(job_id)
    assert status["state"] == "FULFILLED"
    assert client.stats()["seconds_polling_jobs"] > 0
    pages = list(client.iter_details_job_pages(job_id, page_size=50))
    assert len(pages) >= 4
    assert all(p.cursor for p in pages[:-1]) and pages[-1].cursor is None
    for page in pages:
        parsed = orjson.loads(page.raw)
        assert page.conversations == parsed["conversations"]
        assert page.cursor == parsed.get("cursor")
        assert page.data_availability_date is not None and page.data_availability_date.tzinfo is not None

    resumed = list(client.iter_details_job_pages(job_id, page_size=50, cursor=pages[1].cursor))
    assert [p.raw for p in resumed] == [p.raw for p in pages[2:]]

    got = [c for p in pages for c in p.conversations]
    ids = [c["conversationId"] for c in got]
    assert len(ids) == len(set(ids)), "a conversation came back twice"
    day_start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    started_today = {
        c["conversationId"]
        for c in got
        if day_start <= datetime.fromisoformat(c["conversationStart"]) < day_start + timedelta(days=1)
    }
    assert started_today == set(truth)
    for conversation in got:  # neighbours had activity during the day
        if conversation["conversationId"] not in truth:
            assert datetime.fromisoformat(conversation["conversationStart"]) < day_start
    # the exact bytes of a conversation survive (no dict round trip)
    sample = next(iter(truth))
    assert next(c for c in got if c["conversationId"] == sample) == truth[sample]


@pytest.mark.parametrize(("outcome", "error"), [("FAILED", DetailsJobFailed), ("EXPIRED", DetailsJobExpired)])
def test_details_job_terminal_failures_raise_typed_errors(
    emu: GenesysEmulator, outcome: str, error: type[Exception]
) -> None:
    emu.set_faults(job_outcome=outcome, job_delay_seconds=0.1)
    client = make_resource(emu).get_client()
    job_id = client.submit_details_job({"interval": day_interval(DAY)})
    with pytest.raises(error) as info:
        client.wait_for_details_job(job_id)
    assert info.value.job_id == job_id and info.value.state == outcome
    assert job_id in str(info.value)
    if outcome == "FAILED":
        assert info.value.error_message
        assert info.value.error_message in str(info.value)


def test_a_job_someone_else_cancels_raises_cancelled(emu: GenesysEmulator) -> None:
    emu.set_faults(job_delay_seconds=30)
    client = make_resource(emu).get_client()
    job_id = client.submit_details_job({"interval": day_interval(DAY)})
    client.delete_details_job(job_id)  # another client, or an admin, cancels it while it runs
    with pytest.raises(DetailsJobCancelled) as info:
        client.wait_for_details_job(job_id)
    assert info.value.job_id == job_id and info.value.state == "CANCELLED"
    assert job_id in str(info.value)


def test_stuck_details_job_is_deleted_at_the_deadline(emu: GenesysEmulator) -> None:
    emu.set_faults(job_outcome="STUCK")
    client = make_resource(
        emu, job_poll_initial_seconds=0.05, job_poll_max_seconds=0.2, job_deadline_seconds=2.0
    ).get_client()
    job_id = client.submit_details_job({"interval": day_interval(DAY)})
    t0 = time.monotonic()
    with pytest.raises(DetailsJobTimeout) as info:
        client.wait_for_details_job(job_id)
    assert 2.0 <= time.monotonic() - t0 < 5.0
    assert "deleted" in str(info.value) and job_id in str(info.value)
    log = settled_log(emu)
    polls = [e for e in log if e["method"] == "GET" and e["path"].split("?")[0] == f"{JOBS}/{job_id}"]
    assert 4 <= len(polls) <= 25  # 0.05, 0.1, 0.2, 0.2... (~12 in 2 s), not a busy loop
    assert any(e["method"] == "DELETE" and e["path"].split("?")[0] == f"{JOBS}/{job_id}" for e in log)


def test_data_availability_date_is_aware_utc_and_lags(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    available = client.data_availability_date()
    assert available.tzinfo is not None and available.utcoffset() == timedelta(0)
    lag = (datetime.now(UTC) - available).total_seconds()
    assert 21600 - 120 <= lag <= 21600 + 3700, lag


# ------------------------------------------------------------------------------------------ sync query


def test_sync_query_pages_and_total_hits(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    body = {"interval": day_interval(DAY), "order": "asc", "orderBy": "conversationStart"}
    total = client.details_query_total_hits(body)
    pages = list(client.iter_details_query_pages(body, page_size=100))
    ids = [c["conversationId"] for p in pages for c in p.get("conversations", [])]
    assert len(ids) == total == len(set(ids))
    assert set(ids) >= {c["conversationId"] for c in emu.conversations_for_day(DAY)}


def test_sync_cap_is_recognised_before_the_refused_page(tmp_path: Any) -> None:
    """A real day of 101,000 conversations: one request, then the typed error (not 1,000 pages, then a 400)."""
    with GenesysEmulator(tmp_path, conversations_per_day=101_000) as big:
        # the emulator generates the day on the first query (several seconds): a long read timeout
        client = make_resource(big, timeout_seconds=120, request_deadline_seconds=240).get_client()
        body = {"interval": day_interval(DAY)}
        with pytest.raises(PaginationCapExceeded) as info:
            next(client.iter_details_query_pages(body))
        assert info.value.total_hits == 101_000
        assert "101,000" in str(info.value) and "Split the interval" in str(info.value)
        queries = [e for e in settled_log(big) if e["path"] == QUERY]
        assert len(queries) == 1


def test_server_pagination_refusal_maps_to_cap_error(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    body = {"interval": day_interval(DAY), "paging": {"pageSize": 100, "pageNumber": 1001}}
    with pytest.raises(PaginationCapExceeded) as info:
        client.post_json(QUERY, json=body)
    assert info.value.status == 400
    assert "Split the interval" in str(info.value)


def test_aggregates_query(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    answer = client.aggregates_query(
        {"interval": day_interval(DAY), "granularity": "P1D", "groupBy": ["wrapUpCode"], "metrics": ["nConnected"]}
    )
    assert isinstance(answer.get("results"), list)


# ---------------------------------------------------------------------------------------- rate limiter


def test_rate_limiter_bounds_request_rate_across_threads(emu: GenesysEmulator) -> None:
    client = make_resource(emu, requests_per_second=20).get_client()
    client.get_json(USERS, params={"pageSize": 1})
    clear_log(emu)
    run_threads(8, lambda: [client.get_json(USERS, params={"pageSize": 1}) for _ in range(5)])
    times = sorted(e["time"] for e in api_log(emu, USERS))
    assert len(times) == 40
    span = times[-1] - times[0]
    assert span >= 39 / 20 * 0.95, span  # 40 requests at 20/s take at least 1.95 s
    for i, start in enumerate(times):
        # + one per thread: threads that wake late (a loaded machine) send together, as in the unit test
        assert sum(1 for t in times[i:] if t - start < 0.5) <= 0.5 * 20 + 8
    assert client.stats()["seconds_waiting"] > 1.0


# --------------------------------------------------------------------------------------------- secrets


def _answer_token_with(client: Any, access_token: str) -> None:
    """The token endpoint (as seen by the client) answers 200 with ``access_token``."""

    def request(send: Callable[..., Any], method: str, url: str, **kw: Any) -> Any:
        if not url.endswith("/oauth/token"):
            return send(method, url, **kw)
        answer = requests.Response()
        answer.status_code, answer.url = 200, url
        answer._content = orjson.dumps({"access_token": access_token, "expires_in": 3600})
        return answer

    _intercept(client, request)


@pytest.mark.parametrize("token", ["tok-5ecret\n", "tok 5ecret", "tok-5ecret\x00"])
def test_a_token_that_is_no_header_value_is_refused_without_quoting_it(emu: GenesysEmulator, token: str) -> None:
    client = make_resource(emu).get_client()
    _answer_token_with(client, token)
    with pytest.raises(GenesysAuthError) as info:
        client.get_json(USERS)
    assert "not a bearer token" in str(info.value) and "5ecret" not in str(info.value)


def test_a_request_that_cannot_be_sent_names_the_error_type_only(emu: GenesysEmulator) -> None:
    client = make_resource(emu).get_client()
    client.get_json(USERS, params={"pageSize": 1})

    def refuse(send: Callable[..., Any], method: str, url: str, **kw: Any) -> Any:
        raise requests.exceptions.InvalidHeader("Invalid return character in header value: 'Bearer 5ecret'")

    _intercept(client, refuse)
    with pytest.raises(GenesysApiError) as info:
        client.get_json(USERS)
    assert "InvalidHeader" in str(info.value) and "5ecret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_resource_reprs_mask_header_values_and_the_webhook_path() -> None:
    resource = GenesysCloudResource(client_id="id-1", client_secret="s-1", region="us_east_1",
                                    extra_headers={"X-Api-Key": "k-5ecret"})
    hook = DataLakeWebhookResource(url="https://user:pw@hooks.example.com:8443/services/T0/B5ecret?code=c5ecret")
    for text in (repr(resource), str(resource), repr(resource.client_settings()), repr(hook), str(hook)):
        assert "5ecret" not in text and "pw" not in text
    assert "X-Api-Key" in repr(resource) and "hooks.example.com:8443" in repr(hook)
    ipv6 = DataLakeWebhookResource(url="https://[::1]:9000/services/T0/B5ecret")
    assert "https://[::1]:9000/**********" in repr(ipv6) and "5ecret" not in repr(ipv6)


def test_secrets_never_appear_in_reprs_errors_or_logs(emu: GenesysEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emu.add_client("leaky-id-7f3a", "leaky-secret-9c1e", permissions=["routing:queue:view"])
    emu.set_faults(token_ttl_seconds=60)
    resource = make_resource(emu, client_id="leaky-id-7f3a", client_secret="leaky-secret-9c1e", max_attempts=3)
    client = resource.get_client()
    captured: list[BaseException] = []
    client.get_json("/api/v2/routing/queues", params={"pageSize": 1})
    emu.fail_next(503, count=1)
    emu.fail_next(0, count=1)
    client.get_json("/api/v2/routing/queues", params={"pageSize": 1})
    for call in (
        lambda: client.submit_details_job({"interval": day_interval(DAY)}),  # 403
        lambda: client.get_json(USERS, headers={"X-Sandbox-Fault": "rate_429=1;retry_after=0"}),
    ):
        with pytest.raises(GenesysApiError) as info:
            call()
        captured.append(info.value)
    bad = make_resource(emu, client_id="leaky-id-7f3a", client_secret="wrong-secret-55aa").get_client()
    with pytest.raises(GenesysApiError) as info:
        bad.get_json(USERS)
    captured.append(info.value)

    token = client._token.secret.reveal() if client._token else ""
    assert token
    secrets = [
        "leaky-id-7f3a",
        "leaky-secret-9c1e",
        "wrong-secret-55aa",
        token,
        base64.b64encode(b"leaky-id-7f3a:leaky-secret-9c1e").decode(),
    ]
    ours = [r for r in caplog.records if r.name.startswith(("genesys_assets.resources", "urllib3", "requests"))]
    assert any(r.name.startswith("genesys_assets.resources") for r in ours)
    texts = [
        repr(resource),
        str(resource),
        repr(client),
        str(client.stats()),
        "\n".join(r.getMessage() for r in ours),
    ]
    for exc in captured:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc)), str(vars(exc))]
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret leaked into: {text[:200]}"


# --------------------------------------------------------------------------------------------- dagster


def test_resource_in_an_asset_shares_one_client_and_reports_stats(emu: GenesysEmulator) -> None:
    seen: list[GenesysCloudClient] = []

    @dg.asset
    def users_count(genesys: GenesysCloudResource) -> dg.MaterializeResult:
        clients = run_threads(4, genesys.get_client)
        seen.extend(clients)
        client = clients[0]
        before = client.stats()
        n = sum(1 for _ in client.iter_entities(USERS, params={"state": "any"}))
        mine = client.stats_since(before)
        assert mine["requests"] >= 1 and mine["bytes_received"] > 0
        return dg.MaterializeResult(metadata={"users": n, **client.stats()})

    result = dg.materialize([users_count], resources={"genesys": make_resource(emu)})
    assert result.success
    assert len({id(c) for c in seen}) == 1
    metadata = result.asset_materializations_for_node("users_count")[0].metadata
    assert set(metadata) == {
        "users",
        "requests",
        "retries",
        "throttled",
        "server_errors",
        "connection_errors",
        "token_refreshes",
        "bytes_received",
        "bytes_sent",
        "seconds_waiting",
        "seconds_polling_jobs",
    }
    assert metadata["users"].value > 0
    assert metadata["token_refreshes"].value == 1
    assert metadata["requests"].value >= 2
