"""GenesysCloudResource pieces that need no server: regions, Retry-After parsing, page envelopes, limiter."""

from __future__ import annotations

import threading
import time
from email.utils import formatdate

import orjson
import pytest

from genesys_assets.resources.genesys_cloud import (
    REGION_DOMAINS,
    DetailsJobPage,
    GenesysCloudResource,
    GenesysConfigError,
    PaginationCapExceeded,
    RateLimiter,
    RegionConflictError,
    parse_retry_after,
    path_template,
    region_hosts,
    region_of_host,
    resolve_hosts,
    scan_page_envelope,
)

EXPECTED_DOMAINS = {
    "us_east_1": "mypurecloud.com",
    "eu_west_1": "mypurecloud.ie",
    "ap_southeast_2": "mypurecloud.com.au",
    "ap_northeast_1": "mypurecloud.jp",
    "eu_central_1": "mypurecloud.de",
    "us_west_2": "usw2.pure.cloud",
    "ca_central_1": "cac1.pure.cloud",
    "ap_northeast_2": "apne2.pure.cloud",
    "eu_west_2": "euw2.pure.cloud",
    "ap_south_1": "aps1.pure.cloud",
    "us_east_2": "use2.us-gov-pure.cloud",
    "sa_east_1": "sae1.pure.cloud",
    "me_central_1": "mec1.pure.cloud",
    "ap_northeast_3": "apne3.pure.cloud",
    "eu_central_2": "euc2.pure.cloud",
    "mx_central_1": "mxc1.pure.cloud",
    "ap_southeast_1": "apse1.pure.cloud",
}


# ------------------------------------------------------------------------------------------------ regions


def test_region_table_has_the_17_regions_and_their_hosts() -> None:
    assert REGION_DOMAINS == EXPECTED_DOMAINS
    assert len(REGION_DOMAINS) == 17
    for region, domain in EXPECTED_DOMAINS.items():
        hosts = region_hosts(region)
        assert hosts.api_base_url == f"https://api.{domain}"
        assert hosts.login_base_url == f"https://login.{domain}"


def test_region_names_are_normalised() -> None:
    assert region_hosts("eu-west-1").api_base_url == "https://api.mypurecloud.ie"
    assert region_hosts("US_EAST_1").login_base_url == "https://login.mypurecloud.com"
    assert region_hosts("mypurecloud.de").api_base_url == "https://api.mypurecloud.de"


def test_unknown_region_lists_the_valid_ones() -> None:
    resource = GenesysCloudResource(region="mars_north_1", client_id="id", client_secret="secret")
    with pytest.raises(GenesysConfigError) as info:
        resource.get_client()
    message = str(info.value)
    assert "mars_north_1" in message
    for region in EXPECTED_DOMAINS:
        assert region in message


def test_explicit_base_url_login_defaults_to_api_origin() -> None:
    hosts = resolve_hosts(None, "http://127.0.0.1:8123/")
    assert hosts.api_base_url == "http://127.0.0.1:8123"
    assert hosts.login_base_url == "http://127.0.0.1:8123"
    hosts = resolve_hosts("eu_west_1", None, None)
    assert hosts.login_base_url == "https://login.mypurecloud.ie"
    hosts = resolve_hosts(None, "http://127.0.0.1:1/api", "http://127.0.0.1:2")
    assert hosts.login_base_url == "http://127.0.0.1:2"
    with pytest.raises(ValueError, match="region"):
        resolve_hosts(None, None, None)


def test_explicit_base_url_takes_any_region_name_as_its_label() -> None:
    # A region Genesys opened after this list, or the emulator named for a residency test: the host decides.
    resource = GenesysCloudResource(region="mars_north_1", api_base_url="http://127.0.0.1:8123",
                                    client_id="id", client_secret="secret")
    hosts = resource.client_settings()
    assert (hosts.api_base_url, hosts.login_base_url) == ("http://127.0.0.1:8123", "http://127.0.0.1:8123")


def test_a_region_host_logs_in_at_its_region_login_host() -> None:
    hosts = resolve_hosts(None, "https://api.mypurecloud.ie/")
    assert hosts.login_base_url == "https://login.mypurecloud.ie"
    assert resolve_hosts("eu-west-1", "https://api.mypurecloud.ie") == hosts
    assert region_of_host("https://login.usw2.pure.cloud/oauth") == "us_west_2"
    assert region_of_host("http://127.0.0.1:8123") is None
    assert region_of_host("https://api.mypurecloud.ie.evil.example") is None
    assert region_of_host("https://API.MyPureCloud.ie.:443/api") == "eu_west_1"  # case, port, trailing dot
    with pytest.raises(RegionConflictError) as conflict:
        resolve_hosts("us_east_1", "https://user:s3cret@api.mypurecloud.ie.")
    assert "api.mypurecloud.ie. is eu_west_1" in str(conflict.value) and "s3cret" not in str(conflict.value)


def test_hosts_of_another_region_than_the_one_named_are_a_config_error() -> None:
    resource = GenesysCloudResource(region="eu_west_1", api_base_url="https://api.mypurecloud.com",
                                    client_id="id", client_secret="secret")
    with pytest.raises(GenesysConfigError) as info:
        resource.get_client()
    assert "'eu_west_1'" in str(info.value) and "api.mypurecloud.com is us_east_1" in str(info.value)
    with pytest.raises(RegionConflictError, match=r"login\.mypurecloud\.de is eu_central_1"):
        resolve_hosts(None, "https://api.mypurecloud.ie", "https://login.mypurecloud.de")
    with pytest.raises(RegionConflictError, match=r"login\.mypurecloud\.de is eu_central_1"):
        resolve_hosts("eu_west_1", None, "https://login.mypurecloud.de")


def test_missing_credentials_are_a_config_error() -> None:
    resource = GenesysCloudResource(region="us_east_1", client_id="", client_secret="")
    with pytest.raises(GenesysConfigError, match="GENESYS_CLIENT_ID"):
        resource.get_client()


def test_get_client_is_one_shared_client_per_resource() -> None:
    resource = GenesysCloudResource(region="us_east_1", client_id="id", client_secret="secret")
    clients: list[object] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        clients.append(resource.get_client())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in clients}) == 1


# ------------------------------------------------------------------------------------------ Retry-After


def test_parse_retry_after_seconds_dates_and_junk() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("999999", cap=120) == 120  # absurd values are capped
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0  # already past
    assert parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT", cap=300) == 300
    for junk in (None, "", "soon", "-1", "nan", "inf", "1e999", "Wed, 99 Foo 2026", "[1]"):
        assert parse_retry_after(junk) is None, junk


def test_path_template_hides_ids_and_query() -> None:
    job = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    assert (
        path_template(f"/api/v2/analytics/conversations/details/jobs/{job}/results?cursor=x&pageSize=1000")
        == "/api/v2/analytics/conversations/details/jobs/{id}/results"
    )
    assert path_template("/api/v2/routing/wrapupcodes") == "/api/v2/routing/wrapupcodes"
    assert path_template("/api/v2/users/12345") == "/api/v2/users/{id}"


# ------------------------------------------------------------------------------------- page envelopes


def _conv(i: int, attributes: dict[str, str] | None = None) -> dict:
    return {
        "conversationId": f"c-{i}",
        "conversationStart": "2024-01-15T00:00:00.000Z",
        "participants": [{"purpose": "customer", "attributes": attributes or {"k": "v"}, "sessions": []}],
    }


@pytest.mark.parametrize(
    "body",
    [
        {"conversations": [_conv(1), _conv(2)], "cursor": "abc", "dataAvailabilityDate": "2024-01-15T06:00:00Z"},
        {"conversations": [_conv(1)], "dataAvailabilityDate": "2024-01-15T06:00:00.000Z"},
        {"conversations": [], "cursor": "c2"},
        {"conversations": []},
        # an attribute *named* cursor inside a conversation must not be mistaken for the page cursor
        {"conversations": [_conv(1, {"cursor": "nested", "dataAvailabilityDate": "x"})], "cursor": "real"},
        {"conversations": [_conv(1, {"cursor": "nested"})], "dataAvailabilityDate": "2024-01-15T06:00:00Z"},
        # other key orders and schema drift after the cursor
        {"cursor": "first", "conversations": [_conv(1, {"cursor": "nested"})]},
        {"conversations": [_conv(1)], "cursor": "c", "newKey": {"cursor": "drift"}},
        {"dataAvailabilityDate": "2024-01-15T06:00:00Z", "conversations": [_conv(1)], "cursor": "z"},
    ],
)
def test_scan_page_envelope_agrees_with_a_full_parse(body: dict) -> None:
    for raw in (orjson.dumps(body), orjson.dumps(body, option=orjson.OPT_INDENT_2)):
        assert scan_page_envelope(raw) == (body.get("cursor"), body.get("dataAvailabilityDate"))
        page = DetailsJobPage.from_bytes(raw)
        assert page.raw is raw
        assert page.conversations == body["conversations"]
        if body.get("dataAvailabilityDate"):
            assert page.data_availability_date is not None
            assert page.data_availability_date.utcoffset().total_seconds() == 0


def test_scan_page_envelope_is_cheap_on_a_big_page() -> None:
    conversation = _conv(0, {f"k{i}": "v" * 40 for i in range(40)})
    raw = orjson.dumps({"conversations": [conversation] * 2000, "cursor": "next", "dataAvailabilityDate": None})
    assert len(raw) > 3_000_000
    t0 = time.perf_counter()
    for _ in range(20):
        assert scan_page_envelope(raw)[0] == "next"
    scan = (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    orjson.loads(raw)
    full = time.perf_counter() - t0
    assert scan < full / 5, (scan, full)


# --------------------------------------------------------------------------------------- rate limiter


def test_rate_limiter_bounds_the_rate_across_threads() -> None:
    limiter = RateLimiter(50.0)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert len(stamps) == 80
    span = stamps[-1] - stamps[0]
    assert span >= 79 / 50 * 0.97, span
    # No 0.2 s window holds more than its share; on a loaded machine each of the 8 threads may wake up late and
    # land in the same window once (the slots themselves stay spaced, as the span above proves).
    for i, start in enumerate(stamps):
        in_window = sum(1 for s in stamps[i:] if s - start < 0.2)
        assert in_window <= 0.2 * 50 + len(threads), in_window


def test_rate_limiter_disabled() -> None:
    limiter = RateLimiter(None)
    t0 = time.monotonic()
    for _ in range(1000):
        assert limiter.acquire() == 0.0
    assert time.monotonic() - t0 < 0.5


def test_pagination_cap_is_recognised_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    client = GenesysCloudResource(api_base_url="http://127.0.0.1:9", client_id="i", client_secret="s").get_client()
    asked: list[int] = []

    def fake_post_json(path: str, *, json: dict, **kw: object) -> dict:
        asked.append(json["paging"]["pageNumber"])
        return {"conversations": [_conv(i) for i in range(100)], "totalHits": 150_000}

    monkeypatch.setattr(client, "post_json", fake_post_json)
    body = {"interval": "2024-01-01T00:00:00Z/2024-03-01T00:00:00Z"}
    with pytest.raises(PaginationCapExceeded) as info:
        next(client.iter_details_query_pages(body))
    assert asked == [1]  # nothing past the first page was requested
    assert info.value.total_hits == 150_000
    assert "150,000" in str(info.value) and "Split the interval" in str(info.value)
