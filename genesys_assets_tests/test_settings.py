"""Mode selection and state locations: one place decides, and the user can force it."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesys_assets import settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GENESYS_MODE", "GENESYS_CLIENT_ID", "GENESYS_CLIENT_SECRET", "GENESYS_HOME", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)


def test_sandbox_without_credentials() -> None:
    assert settings.mode() == settings.SANDBOX


def test_live_when_both_credentials_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_CLIENT_ID", "id")
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "secret")
    assert settings.mode() == settings.LIVE


@pytest.mark.parametrize(("given", "missing"), [("GENESYS_CLIENT_ID", "GENESYS_CLIENT_SECRET"),
                                                ("GENESYS_CLIENT_SECRET", "GENESYS_CLIENT_ID")])
def test_half_a_credential_is_refused_not_run_as_the_sandbox(monkeypatch: pytest.MonkeyPatch, given: str,
                                                              missing: str) -> None:
    monkeypatch.setenv(given, "value-0123456789")
    monkeypatch.setenv(missing, "  ")  # blank is unset
    with pytest.raises(ValueError, match=f"{given} is set but {missing} is not") as refused:
        settings.mode()
    assert "value-0123456789" not in str(refused.value) and "GENESYS_MODE=sandbox" in str(refused.value)
    monkeypatch.setenv("GENESYS_MODE", "sandbox")  # the way to say so on purpose
    assert settings.mode() == settings.SANDBOX


def test_genesys_mode_forces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_CLIENT_ID", "id")
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "secret")
    monkeypatch.setenv("GENESYS_MODE", "Sandbox")
    assert settings.mode() == settings.SANDBOX
    monkeypatch.setenv("GENESYS_MODE", "production")
    with pytest.raises(ValueError, match="'sandbox' or 'live'"):
        settings.mode()


def test_state_lives_under_genesys_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENESYS_HOME", str(tmp_path))
    assert settings.dagster_home() == tmp_path / "dagster"
    assert settings.endpoints_file() == tmp_path / "sandbox" / "endpoints.json"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    assert settings.dagster_home() == tmp_path / "elsewhere"


@pytest.mark.parametrize(("raw", "expected"), [(None, 60.0), ("", 60.0), ("  ", 60.0), ("90", 90.0), ("1.5", 1.5)])
def test_a_numeric_setting_is_read_or_defaults(monkeypatch: pytest.MonkeyPatch, raw: str | None,
                                              expected: float) -> None:
    if raw is not None:
        monkeypatch.setenv("SOME_MINUTES", raw)
    assert settings.env_number("SOME_MINUTES", 60, low=0) == expected


@pytest.mark.parametrize(("raw", "integer", "message"), [
    ("abc", False, "SOME_SETTING must be a number, got 'abc'"),
    ("2.5", True, "SOME_SETTING must be a whole number, got '2.5'"),
    ("-1", False, "SOME_SETTING must be >= 0 and <= 1, got '-1'"),
    ("1.01", False, "SOME_SETTING must be >= 0 and <= 1, got '1.01'"),
    ("nan", False, "SOME_SETTING must be a finite number, got 'nan'"),
    ("inf", False, "SOME_SETTING must be a finite number, got 'inf'"),
])
def test_a_bad_numeric_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, raw: str, integer: bool,
                                                  message: str) -> None:
    monkeypatch.setenv("SOME_SETTING", raw)
    with pytest.raises(ValueError) as refused:
        settings.env_number("SOME_SETTING", 0.1, integer=integer, low=0, high=1)
    assert str(refused.value) == f"{message}; unset it to use the default 0.1"
