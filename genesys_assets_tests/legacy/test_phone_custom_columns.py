"""legacy_interactions against the sandbox site with a phone custom column its InteractionCustomAttributes lacks."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import date
from pathlib import Path

import pytest

from genesys_assets.defs.legacy import assets as legacy
from genesys_assets.resources.pureconnect import LegacyDay, PureConnectResource
from genesys_assets_tests.legacy.conftest import Env
from genesys_assets_tests.support import failure_text, step_failure


@pytest.mark.parametrize("given_as", ["environment", "config"])
def test_an_unknown_phone_column_stops_the_day_before_it_is_read(
        env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given_as: str) -> None:
    """A misspelt phone column would leave the site's phone numbers in clear, so the day stops: before its read (the
    long part of a day), writing nothing, naming the wrong name and the columns there are to choose from."""
    reads: list[date] = []
    read_day = PureConnectResource.read_day

    def recorded_read_day(resource: PureConnectResource, day: date) -> LegacyDay:
        reads.append(day)
        return read_day(resource, day)

    monkeypatch.setattr(PureConnectResource, "read_day", recorded_read_day)
    setting = "CustomString2, CallbackPhone"
    monkeypatch.delenv("PURECONNECT_PHONE_CUSTOM_COLUMNS", raising=False)
    run_config: dict = {}
    if given_as == "environment":
        monkeypatch.setenv("PURECONNECT_PHONE_CUSTOM_COLUMNS", setting)
    else:
        run_config = {"ops": {"legacy_interactions": {"config": {"phone_custom_columns": setting}}}}
    lake = tmp_path / "lake"

    result = env.materialize(resources=env.resources(lake_dir=lake), selection=[legacy.legacy_interactions],
                             raise_on_error=False, run_config=run_config)

    step_failure(result)  # exactly one step failed: this one
    error = failure_text(result)
    assert error.startswith("legacy_interactions: ")
    with contextlib.closing(sqlite3.connect(env.site.db_path)) as con:
        columns = [row[1] for row in con.execute("PRAGMA table_info(InteractionCustomAttributes)")]
    values = [c for c in columns if c not in ("InteractionIDKey", "SiteID", "SeqNo")]
    source = "PURECONNECT_PHONE_CUSTOM_COLUMNS" if given_as == "environment" else "the config's phone_custom_columns"
    assert f"{source} names CallbackPhone, which InteractionCustomAttributes does not have" in error
    assert f"its columns are {', '.join(values)}" in error and "CustomString6" in values
    assert reads == []
    assert not [path for path in lake.rglob("*") if path.is_file()]
