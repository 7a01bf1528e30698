"""What the Dagster UI shows about each asset before it has run: columns of the tables with a fixed schema."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from genesys_assets.lib.schemas import WRAPUP_FACTS_SCHEMA
from genesys_assets.lib.webchat_audit import AUDIT_SCHEMA


@pytest.mark.parametrize(("asset", "schema"), [("wrapup_facts", WRAPUP_FACTS_SCHEMA),
                                                ("webchat_audit_events", AUDIT_SCHEMA)])
def test_fixed_schema_tables_show_their_columns(asset: str, schema: object, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_HOME", str(tmp_path))
    from genesys_assets.definitions import build_definitions

    node = build_definitions().get_repository_def().asset_graph.get(dg.AssetKey(asset))
    columns = node.metadata["dagster/column_schema"].columns
    assert [(c.name, c.constraints.nullable) for c in columns] == [(f.name, f.nullable) for f in schema]  # type: ignore[attr-defined]
