"""Security: after a full demo-like run, no secret, token or clear customer number anywhere; scopes; uploads.

The run materializes every asset of every domain for one day against the sandbox with a real, persistent
DagsterInstance; then captured logs, the instance's storage (run and event logs), every lake file (decompressed
and decoded) and every warehouse table are scanned for the OAuth client secret, every access token the emulator
issued, and every customer number the sandbox generated (PureConnect RemoteID, emulator ani/dnis/addresses).
"""

from __future__ import annotations

import gzip
import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest
import requests

from genesys_assets.sandbox.conversations import CONTACT_CENTRE_LINES
from genesys_assets.sandbox.services import Sandbox
from genesys_assets_tests.reliability.platform import DAILY_ASSETS, DAY, UNPARTITIONED, run_domain
from genesys_assets_tests.support import failure_text

pytestmark = pytest.mark.timeout(600)
MIN_NUMBER_LENGTH = 7  # shorter values (codes, counts) would match by accident


def customer_numbers(sandbox: Sandbox) -> set[str]:
    """Every clear customer number the sandbox generated for DAY (PureConnect and the Genesys tenant).

    The contact centre's own lines are not customer data and stay clear (a PureConnect DNIS_LocalID): on a day
    whose legacy calls came in on the line an emulated call dialled, counting them failed the scan (DAY 2026-11-29).
    """
    site_db = Path(sandbox.endpoints.pureconnect_uri.removeprefix("sqlite://"))  # type: ignore[union-attr]
    with sqlite3.connect(site_db) as con:
        numbers = {r[0] for r in con.execute("SELECT RemoteID FROM InteractionSummary WHERE RemoteID IS NOT NULL")}
    for conv in sandbox.emulator.conversations_for_day(DAY):
        for p in conv["participants"]:
            for s in p.get("sessions") or []:
                numbers.update(str(s[k]) for k in ("ani", "dnis", "addressFrom", "addressTo", "sessionDnis")
                               if s.get(k))
    numbers -= set(CONTACT_CENTRE_LINES)
    return {n.removeprefix("tel:") for n in numbers if len(re.sub(r"\D", "", n)) >= MIN_NUMBER_LENGTH}


def _texts(path: Path) -> Iterator[str]:
    """A file as text a person could read: gzip and Parquet decoded, anything else as bytes."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        yield repr(pq.read_table(path).to_pylist())
        return
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    yield data.decode("utf-8", "replace")


def _warehouse_text(db: Path) -> str:
    parts = []
    with duckdb.connect(str(db), read_only=True) as con:
        for schema, name in con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall():
            parts.append(repr(con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def demo(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """Every asset for DAY in a fresh home, a persistent instance; (home, captured log text)."""
    home = tmp_path_factory.mktemp("demo")
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    records: list[str] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    assert sandbox.endpoints is not None
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            for domain in DAILY_ASSETS:
                if UNPARTITIONED[domain]:
                    result = run_domain(sandbox.endpoints, home, domain, unpartitioned=True, instance=instance)
                    assert result.success, failure_text(result)
                result = run_domain(sandbox.endpoints, home, domain, DAY, instance=instance)
                assert result.success, failure_text(result)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    yield home, "\n".join(records)


RAW_LANDING = "lake/raw/analytics/"


def _findings(demo: tuple[Path, str], sandbox: Sandbox) -> list[str]:
    home, logs = demo
    secrets = {"client secret": [sandbox.emulator.client_secret],
               "access token": sandbox.emulator.issued_tokens(),
               "customer number": sorted(customer_numbers(sandbox))}
    assert secrets["access token"] and len(secrets["customer number"]) > 50
    places: dict[str, list[str]] = {"captured logs": [logs]}
    for path in sorted(home.rglob("*")):
        if path.is_file() and path.suffix not in (".duckdb", ".wal"):
            places[str(path.relative_to(home))] = list(_texts(path))
    places["warehouse"] = [_warehouse_text(home / "warehouse.duckdb")]
    assert any(p.startswith("dagster/") for p in places), "the run metadata (instance storage) was not scanned"
    assert len(logs) > 1000, "nothing was captured from the logs"
    found = [f"{kind} in {where}" for kind, values in secrets.items() for where, texts in places.items()
             for text in texts for value in values if value and value in text]
    return sorted(set(found))


def test_no_secret_token_or_customer_number_anywhere(demo: tuple[Path, str], sandbox: Sandbox) -> None:
    found = [f for f in _findings(demo, sandbox) if RAW_LANDING not in f]
    assert found == [], found[:20]


def test_the_raw_landing_zone_holds_no_clear_customer_number(demo: tuple[Path, str], sandbox: Sandbox) -> None:
    assert [f for f in _findings(demo, sandbox) if RAW_LANDING in f] == []


def test_a_missing_permission_is_a_403_naming_it(sandbox: Sandbox, tmp_path: Path) -> None:
    emulator = sandbox.emulator
    needed = "analytics:conversationDetail:view"
    emulator.add_client("no-details", "no-details-secret-0123456789", ["analytics:conversationAggregate:view",
                                                                      "routing:*"])
    token = requests.post(f"{emulator.base_url}/oauth/token", auth=("no-details", "no-details-secret-0123456789"),
                          data={"grant_type": "client_credentials"}, timeout=10).json()["access_token"]
    answer = requests.get(f"{emulator.base_url}/api/v2/analytics/conversations/details/jobs/availability",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 403 and needed in answer.text
    result = run_domain(sandbox.endpoints, tmp_path, "analytics", DAY,  # type: ignore[arg-type]
                        client_id="no-details", client_secret="no-details-secret-0123456789")
    assert not result.success
    text = failure_text(result)
    assert needed in text and "no-details-secret" not in text


def test_presigned_upload_urls_expire(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    s = requests.Session()
    token = s.post(f"{emulator.base_url}/oauth/token", auth=(emulator.client_id, emulator.client_secret),
                   data={"grant_type": "client_credentials"}, timeout=10).json()["access_token"]
    s.headers["Authorization"] = f"Bearer {token}"
    url = f"{emulator.base_url}/api/v2/uploads/recordings"
    assert s.post(url, json={"fileName": "a.wav", "signedUrlTimeoutSeconds": 10**7}, timeout=10).status_code == 400
    # 3 s, not 1: the expiry counts from the whole second the URL was signed in (as S3's X-Amz-Date does).
    grant = s.post(url, json={"fileName": "a.wav", "signedUrlTimeoutSeconds": 3, "serverSideEncryption": "AES256"},
                   timeout=10).json()
    assert grant["headers"]["x-amz-server-side-encryption"] == "AES256"
    fresh = requests.put(grant["url"], data=b"RIFF", headers=grant["headers"], timeout=10)
    assert fresh.status_code == 200
    expires = int(re.search(r"X-Expires=(\d+)", grant["url"]).group(1))  # type: ignore[union-attr]
    time.sleep(max(0.0, expires - time.time()) + 1.05)  # the expiry is wall-clock time: nothing to await
    late = requests.put(grant["url"], data=b"RIFF", headers=grant["headers"], timeout=10)
    assert late.status_code == 403 and b"expired" in late.content
    tampered = requests.put(grant["url"].replace("X-Expires=", "X-Expires=9"), data=b"RIFF", timeout=10)
    assert tampered.status_code == 403


def test_staged_recordings_are_encrypted_at_rest(demo: tuple[Path, str], sandbox: Sandbox) -> None:
    s3 = sandbox.s3.client()
    bucket = sandbox.endpoints.staging_bucket  # type: ignore[union-attr]
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    assert keys
    assert {s3.head_object(Bucket=bucket, Key=k).get("ServerSideEncryption") for k in keys} == {"AES256"}
