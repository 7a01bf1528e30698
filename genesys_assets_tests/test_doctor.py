"""``genesys-assets doctor`` says what is missing and how to fix it, against the sandbox's real services."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from genesys_assets.definitions import build_resources
from genesys_assets.doctor import Check, initialized, print_report, run_checks
from genesys_assets.resources.genesys_cloud import GenesysCloudResource
from genesys_assets.sandbox.services import Sandbox

DAY = date(2026, 11, 2)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(tmp_path_factory.mktemp("doctor"), start=DAY, end=DAY, conversations_per_day=20,
                 interactions_per_day=10) as running:
        yield running


@pytest.fixture
def env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    assert sandbox.endpoints is not None
    values = {**sandbox.endpoints.to_env(), "GENESYS_MODE": "sandbox", "GENESYS_HOME": str(tmp_path)}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def _doctor(bucket: str | None) -> dict[str, Check]:
    with initialized(build_resources()) as (resources, problems):
        return {check.name: check for check in problems + run_checks(resources, bucket)}


def test_everything_passes_on_a_healthy_sandbox(env: dict[str, str]) -> None:
    checks = _doctor(env["GENESYS_STAGING_BUCKET"])
    assert [name for name, check in checks.items() if not check.ok] == []
    assert "permission analytics:conversationDetail:view" in checks


def test_a_missing_permission_is_named_with_the_assets_that_need_it(
    sandbox: Sandbox, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.emulator.add_client("limited-client", "limited-secret-0123456789",
                                ["routing:*", "conversation:message:view", "migration:*"])
    monkeypatch.setenv("GENESYS_CLIENT_ID", "limited-client")
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "limited-secret-0123456789")
    checks = _doctor(env["GENESYS_STAGING_BUCKET"])
    missing = checks["permission analytics:conversationDetail:view"]
    assert not missing.ok
    assert "conversation_details" in missing.detail and "webchat_archive" in missing.detail
    assert "add analytics:conversationDetail:view to a role" in missing.fix
    assert checks["permission routing:queue:view"].ok
    report = io.StringIO()
    print_report(list(checks.values()), report)
    assert "limited-secret-0123456789" not in report.getvalue()


def test_wrong_credentials_bucket_and_database_each_say_what_to_fix(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "not-the-secret")
    monkeypatch.setenv("PURECONNECT_URI", f"sqlite://{tmp_path}/no-such-dir/I3_IC.sqlite")
    checks = _doctor("no-such-bucket")
    assert not checks["Genesys Cloud login"].ok and "GENESYS_CLIENT_SECRET" in checks["Genesys Cloud login"].fix
    assert "not-the-secret" not in checks["Genesys Cloud login"].detail
    assert not checks["recording staging bucket"].ok
    assert "GENESYS_STAGING_BUCKET" in checks["recording staging bucket"].fix
    assert not checks["PureConnect database"].ok and "PURECONNECT_URI" in checks["PureConnect database"].fix
    assert checks["lake writable"].ok


def test_an_unset_bucket_and_a_short_hash_key_fail(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_PII_HASH_KEY", "k3y-x")
    checks = _doctor(None)
    assert not checks["recording staging bucket"].ok and "not set" in checks["recording staging bucket"].detail
    short = checks["pii configuration"]
    assert not short.ok and short.detail.startswith("ValueError: GENESYS_PII_HASH_KEY must be at least 16 characters")
    assert "k3y-x" not in short.detail  # the key itself is never shown
    assert checks["PII hash key"].detail.startswith("not checked")


def test_a_setting_that_stops_a_resource_is_reported_and_the_rest_still_checked(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PURECONNECT_URI")
    monkeypatch.delenv("GENESYS_PII_HASH_KEY")
    monkeypatch.setenv("GENESYS_REGION", "mars")
    monkeypatch.delenv("GENESYS_API_BASE_URL")
    monkeypatch.delenv("GENESYS_LOGIN_BASE_URL", raising=False)
    checks = _doctor(env["GENESYS_STAGING_BUCKET"])
    unset = checks["pureconnect configuration"]
    assert (unset.ok, unset.detail) == (False, "PURECONNECT_URI is not set") and "set PURECONNECT_URI" in unset.fix
    assert checks["pii configuration"].detail == "GENESYS_PII_HASH_KEY is not set"
    region = checks["genesys configuration"]
    assert not region.ok and "Unknown Genesys Cloud region 'mars'" in region.detail and "us_east_1" in region.detail
    for skipped, resource in (("PureConnect database", "pureconnect"), ("PII hash key", "pii"),
                              ("Genesys Cloud login", "genesys")):
        assert checks[skipped].detail == f"not checked: the {resource} resource could not be set up (see above)"
    assert checks["lake writable"].ok and checks["warehouse"].ok and checks["recording staging bucket"].ok
    report = io.StringIO()
    print_report(list(checks.values()), report)
    assert "Traceback" not in report.getvalue() and env["GENESYS_CLIENT_SECRET"] not in report.getvalue()


def test_an_unreachable_api_host_is_named_with_the_network_fix(env: dict[str, str]) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    genesys = GenesysCloudResource(api_base_url=closed, login_base_url=closed, client_id="id",
                                   client_secret="secret-0123456789", max_attempts=1)
    with initialized({"genesys": genesys}) as (resources, problems):
        assert problems == []
        login = run_checks(resources, None)[0]
    assert not login.ok and f"reaching {closed}" in login.detail
    assert "network path to the API host" in login.fix and "GENESYS_CLIENT_SECRET" not in login.fix


def test_an_unstated_recording_source_audio_is_named_with_what_to_do(env: dict[str, str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert _doctor(env["GENESYS_STAGING_BUCKET"])["recording source audio"].ok  # the sandbox states raw
    monkeypatch.delenv("PURECONNECT_RECORDING_AUDIO")
    check = _doctor(env["GENESYS_STAGING_BUCKET"])["recording source audio"]
    assert not check.ok and "PURECONNECT_RECORDING_AUDIO" in check.detail and "security team" in check.fix


def test_a_phone_column_the_table_does_not_have_is_named_with_the_columns_it_has(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PURECONNECT_PHONE_CUSTOM_COLUMNS", raising=False)
    assert _doctor(env["GENESYS_STAGING_BUCKET"])["custom attribute phone columns"].detail.startswith("none named")
    monkeypatch.setenv("PURECONNECT_PHONE_CUSTOM_COLUMNS", "CustomString2, CustomNum1")
    check = _doctor(env["GENESYS_STAGING_BUCKET"])["custom attribute phone columns"]
    assert check.ok and check.detail == "every value of CustomString2, CustomNum1 is hashed"
    monkeypatch.setenv("PURECONNECT_PHONE_CUSTOM_COLUMNS", "CustomString2,CallbackPhone")
    check = _doctor(env["GENESYS_STAGING_BUCKET"])["custom attribute phone columns"]
    assert not check.ok and "names CallbackPhone, which InteractionCustomAttributes does not have" in check.detail
    assert "CustomString6" in check.detail and "PURECONNECT_PHONE_CUSTOM_COLUMNS" in check.fix
