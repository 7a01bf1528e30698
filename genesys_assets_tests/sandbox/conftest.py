"""Fixtures for the Genesys Cloud emulator tests: a small running tenant and an authenticated session."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests

from genesys_assets.sandbox.genesys_emulator import FaultConfig, GenesysEmulator

SMALL_DAY = 200
JOBS = "/api/v2/analytics/conversations/details/jobs"


class Api:
    """A thin client for tests: token on a pooled session, JSON helpers, per-request fault header."""

    def __init__(self, emulator: GenesysEmulator, client_id: str | None = None,
                 client_secret: str | None = None) -> None:
        self.gc = emulator
        self.base = emulator.base_url
        self.session = requests.Session()
        r = self.session.post(f"{self.base}/oauth/token", auth=(client_id or emulator.client_id,
                                                                client_secret or emulator.client_secret),
                              data={"grant_type": "client_credentials"}, timeout=10)
        r.raise_for_status()
        self.token = r.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def get(self, path: str, fault: str | None = None, **params: object) -> requests.Response:
        headers = {"X-Sandbox-Fault": fault} if fault else {}
        return self.session.get(self.base + path, params=params, headers=headers, timeout=30)

    def post(self, path: str, body: object, fault: str | None = None, headers: dict | None = None,
             **params: object) -> requests.Response:
        h = {**({"X-Sandbox-Fault": fault} if fault else {}), **(headers or {})}
        return self.session.post(self.base + path, json=body, params=params, headers=h, timeout=30)

    def put(self, path: str, body: object) -> requests.Response:
        return self.session.put(self.base + path, json=body, timeout=30)

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(self.base + path, timeout=30)


def day_interval(day: date, days: int = 1) -> str:
    return f"{day.isoformat()}T00:00:00.000Z/{(day + timedelta(days=days)).isoformat()}T00:00:00.000Z"


@pytest.fixture(scope="session")
def past_day() -> date:
    """A day comfortably older than the default availability lag."""
    return datetime.now(UTC).date() - timedelta(days=3)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GenesysEmulator]:
    state: Path = tmp_path_factory.mktemp("genesys-emulator")
    with GenesysEmulator(state, conversations_per_day=SMALL_DAY,
                         faults=FaultConfig(job_delay_seconds=0.2)) as gc:
        yield gc


@pytest.fixture(scope="module")
def api(emulator: GenesysEmulator) -> Api:
    return Api(emulator)


def wait_job(api: Api, job_id: str, timeout: float = 10.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = api.get(f"{JOBS}/{job_id}").json()
        if status["state"] not in ("QUEUED", "PENDING") or time.monotonic() > deadline:
            return status
        time.sleep(0.03)


def all_job_results(api: Api, job_id: str, page_size: int = 50) -> list[dict]:
    out: list[dict] = []
    cursor = None
    while True:
        params: dict = {"pageSize": page_size}
        if cursor:
            params["cursor"] = cursor
        page = api.get(f"{JOBS}/{job_id}/results", **params).json()
        out.extend(page.get("conversations", []))
        cursor = page.get("cursor")
        if not cursor:
            return out
