"""legacy_interactions against the sandbox site with phone custom columns: named ones hashed, an unknown one refused."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from datetime import date
from pathlib import Path

import orjson
import pytest

from genesys_assets.defs.legacy import assets as legacy
from genesys_assets.lib import legacy_lake as paths
from genesys_assets.resources.pureconnect import LegacyDay, PureConnectResource
from genesys_assets_tests.legacy.conftest import DAY, Env
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


@pytest.mark.parametrize(("env_setting", "config_setting", "hashed", "clear"), [
    ("CustomString1", None, "CustomString1", "CustomString2"),
    ("CustomString1", "CustomString2", "CustomString2", "CustomString1"),  # the asset's config wins
])
def test_the_named_phone_columns_are_hashed_in_the_lake(
        env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env_setting: str, config_setting: str | None,
        hashed: str, clear: str) -> None:
    """Every value of a column the site keeps numbers in is hashed (the sandbox's CustomString1 holds ACCT-…
    references, CustomString2 a tier); the other columns keep theirs; the run says which columns it hashed."""
    monkeypatch.setenv("PURECONNECT_PHONE_CUSTOM_COLUMNS", env_setting)
    run_config = ({"ops": {"legacy_interactions": {"config": {"phone_custom_columns": config_setting}}}}
                  if config_setting else {})
    resources = env.resources(lake_dir=tmp_path / "lake")
    result = env.materialize(resources=resources, selection=[legacy.legacy_interactions], run_config=run_config)

    [materialization] = result.asset_materializations_for_node("legacy_interactions")
    assert materialization.metadata["phone_custom_columns"].value == hashed
    canonical = paths.read_day(resources["lake"], paths.INTERACTIONS, DAY, "interactions.parquet")
    assert canonical is not None
    custom = [orjson.loads(v) for v in canonical["custom_attributes"].drop_nulls()]
    with contextlib.closing(sqlite3.connect(env.site.db_path)) as con:
        source = {row[0] for row in con.execute(f"SELECT {hashed} FROM InteractionCustomAttributes") if row[0]}
    stored = {c[hashed] for c in custom if c.get(hashed)}
    assert source and stored and not source & stored
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in stored)
    assert any(c.get(clear) and not re.fullmatch(r"[0-9a-f]{32}", c[clear]) for c in custom)
