"""webchat_archive end to end on the sandbox tenant: content, checks, manifest, audit, webhook."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest

from genesys_assets.lib.webchat_archive import lake_prefix, verify_day
from genesys_assets.lib.webchat_record import ALLOW_LIST, keys_outside
from genesys_assets.resources.lake import Lake
from genesys_assets.sandbox.conversations import web_messages
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.messaging.conftest import (
    DAY,
    genesys_resource,
    materialization,
    part_bytes,
    web_messaging_truth,
)


def _records(home: Path) -> list[dict]:
    out = []
    for data in part_bytes(home).values():
        out += [orjson.loads(line) for line in gzip.decompress(data).splitlines()]
    return out


def test_day_archives_exactly_the_web_messaging_conversations_with_bodies(
    clean_run: tuple[Path, dg.ExecuteInProcessResult], emulator: GenesysEmulator
) -> None:
    home, result = clean_run
    assert result.success
    truth = web_messaging_truth(emulator)
    records = _records(home)
    assert len(truth) > 20
    assert [r["id"] for r in records] != []
    assert sorted(r["id"] for r in records) == sorted(truth), "exactly the day's web messaging conversations"
    assert len({r["id"] for r in records}) == len(records)
    other_media = {c["conversationId"] for c in emulator.conversations_for_day(DAY)} - set(truth)
    assert other_media and not other_media & {r["id"] for r in records}
    media_seen = 0
    for record in records:
        conv = truth[record["id"]]
        assert record["type"] == "webmessaging" and record["mediaType"] == "message"
        assert record["startTime"] == conv["conversationStart"] and record["endTime"] == conv["conversationEnd"]
        assert record["participants"] == [
            {"id": p["participantId"], "type": p["purpose"], "name": p.get("participantName")}
            for p in conv["participants"]
        ]
        expected = {m["messageId"]: m for m in web_messages(conv)}
        assert {m["id"] for m in record["messages"]} == set(expected)
        for message in record["messages"]:
            source = expected[message["id"]]
            assert message["text"] == source["text"] and message["text"]
            assert message["direction"] == source["direction"]
            if source["media"]:
                media_seen += 1
                assert message["media"] == [{"id": source["media"]["id"], "url": source["media"]["url"],
                                             "mediaType": "image/png", "name": "screenshot.png",
                                             "contentLengthBytes": source["media"]["contentLengthBytes"]}]
            else:
                assert message["media"] == []
        assert [m["timestamp"] for m in record["messages"]] == sorted(m["timestamp"] for m in record["messages"])
        assert keys_outside(record) == []
    assert media_seen > 0, "some messages carry attachments in the sandbox"
    # Nothing beyond the allow-list: no addresses, routing ids, queue or user references anywhere.
    text = b"".join(gzip.decompress(d) for d in part_bytes(home).values())
    for forbidden in (b"queueId", b"userId", b"fromAddress", b"toAddress", b"attributes", b"sessions", b"selfUri"):
        assert forbidden not in text
    assert set(record) == set(ALLOW_LIST)


def test_checks_pass_and_metadata_reports_the_run(clean_run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    home, result = clean_run
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"webchat_archive_count", "webchat_archive_integrity", "webchat_archive_messages_complete"}
    assert all(e.passed for e in checks.values()), {k: e.metadata for k, e in checks.items()}
    assert checks["webchat_archive_messages_complete"].metadata["sampled"].value == 20
    meta = materialization(result)
    files = part_bytes(home)
    assert meta["records"] == meta["rows"] == len(_records(home))
    assert meta["files"] == len(files) > 1, "small parts roll over"
    assert meta["bytes_compressed"] == sum(len(b) for b in files.values())
    assert meta["bytes_raw"] == sum(len(gzip.decompress(b)) for b in files.values())
    assert meta["compression_ratio"] > 2
    assert meta["api_requests"] > meta["records"] * 2 and meta["api_retries"] == 0
    assert meta["throughput_records_per_second"] > 0 and meta["region"] == "sandbox"
    assert meta["resumed"] is False and meta["webhook_delivered"] is True


def test_manifest_lists_every_file_with_sha256(clean_run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    home, _ = clean_run
    folder = home / "lake" / "webchat" / f"year={DAY.year:04d}" / f"month={DAY.month:02d}" / f"day={DAY.day:02d}"
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    files = part_bytes(home)
    names = [f"part-{i:04d}.ndjson.gz" for i in range(len(files))]
    assert [f["path"] for f in manifest["files"]] == list(files) == names
    for entry in manifest["files"]:
        data = files[entry["path"]]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
        assert entry["records"] == len(gzip.decompress(data).splitlines())
    assert manifest["compression"] == "gzip" and manifest["region"] == "sandbox" and manifest["format"] == "ndjson"
    assert manifest["records"] == sum(f["records"] for f in manifest["files"])
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, "manifest.json"])
    assert not (home / "work" / "webchat_archive" / f"day={DAY.isoformat()}").exists(), "work folder removed"


def test_audit_event_in_lake_and_warehouse(clean_run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    home, result = clean_run
    events = sorted((home / "lake" / "audit" / "events" / "source=webchat_archive" / f"day={DAY}").glob("*.json"))
    assert len(events) == 1
    event = orjson.loads(events[0].read_bytes())
    meta = materialization(result)
    assert event["event_type"] == "ARCHIVE_EXPORT_COMPLETED"
    assert event["records"] == meta["records"] and event["bytes"] == meta["bytes_compressed"]
    assert event["destination"].endswith(f"webchat/year={DAY.year:04d}/month={DAY.month:02d}/day={DAY.day:02d}")
    assert event["data_classification"] and event["retention_directive"] and event["day"] == DAY.isoformat()
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT event_id, event_type, records, bytes, day FROM audit_events").fetchall()
    assert rows == [(event["event_id"], "ARCHIVE_EXPORT_COMPLETED", event["records"], event["bytes"], DAY)]
    assert materialization(result, "webchat_audit_events")["rows"] == 1


def test_webhook_received_one_post_with_the_promised_fields(
    clean_run: tuple[Path, dg.ExecuteInProcessResult],
) -> None:
    _, result = clean_run
    deliveries = result.deliveries  # type: ignore[attr-defined]
    assert len(deliveries) == 1
    payload = deliveries[0]["payload"]
    meta = materialization(result)
    assert payload["status"] == "completed" and payload["day"] == DAY.isoformat()
    assert payload["recordsArchived"] == meta["records"]
    assert payload["storageConsumedBytes"] == meta["bytes_compressed"]
    assert payload["throughputMBps"] >= 0 and payload["throughputRecordsPerSecond"] > 0
    assert payload["completionTimestamp"].endswith("Z")
    assert payload["dataResidency"] == "sandbox" and payload["compressionApplied"] == "gzip"
    headers = {k.lower(): v for k, v in deliveries[0]["headers"].items()}
    assert headers["idempotency-key"].startswith(f"webchat_archive/{DAY.isoformat()}/")


def test_definitions_wire_the_messaging_domain(
    emu: GenesysEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project's Definitions (resources picked by mode, defaults from the environment) archive a day."""
    from genesys_assets.definitions import build_definitions
    from genesys_assets.defs.partitions import DAILY

    for key, value in {"GENESYS_MODE": "sandbox", "GENESYS_HOME": str(tmp_path), "GENESYS_API_BASE_URL": emu.base_url,
                       "GENESYS_CLIENT_ID": emu.client_id, "GENESYS_CLIENT_SECRET": emu.client_secret,
                       "DATA_LAKE_WEBHOOK_URL": emu.base_url + "/__sandbox__/webhooks/data-lake",
                       "GENESYS_PII_HASH_KEY": "k" * 32, "PURECONNECT_URI": "sqlite://"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GENESYS_REGION", raising=False)
    monkeypatch.delenv("ALLOWED_REGIONS", raising=False)
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = [dg.AssetKey("webchat_archive"), dg.AssetKey("webchat_audit_events")]
    for key in keys:
        node = graph.get(key)
        assert node.group_name == "messaging" and node.partitions_def == DAILY
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and set(a.keys) & set(keys)]
    checks = [c for c in defs.asset_checks or [] if {k.asset_key for k in c.check_keys} & set(keys)]
    assert len(checks) == 3
    before = len(emu.webhook_deliveries())
    with dg.DagsterInstance.ephemeral() as instance:
        # The project's resources, except the Genesys client's pacing (5 requests/s by default) for speed.
        resources = {**defs.resources, "genesys": genesys_resource(emu)}
        result = dg.materialize([*assets, *checks], partition_key=DAY.isoformat(), resources=resources,
                                instance=instance)
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    assert materialization(result)["records"] == len(web_messaging_truth(emu))
    assert (tmp_path / "lake" / "webchat" / f"year={DAY.year:04d}").is_dir()
    assert (tmp_path / "warehouse.duckdb").is_file()
    assert len(emu.webhook_deliveries()) == before + 1


def test_integrity_verification_catches_tampering(
    clean_run: tuple[Path, dg.ExecuteInProcessResult], tmp_path: Path
) -> None:
    shutil.copytree(clean_run[0] / "lake", tmp_path / "lake")
    lake = Lake(base_uri=str(tmp_path / "lake"))
    assert verify_day(lake, DAY).ok
    folder = tmp_path / "lake" / lake_prefix(DAY)
    first, second = sorted(folder.glob("part-*.ndjson.gz"))[:2]
    lines = gzip.decompress(first.read_bytes()).splitlines()
    leaked = orjson.loads(lines[0]) | {"routingData": {"queueId": "q"}}
    first.write_bytes(gzip.compress(b"\n".join([orjson.dumps(leaked), lines[0], *lines[1:]]) + b"\n"))
    second.write_bytes(second.read_bytes()[:-20])
    problems = " | ".join(verify_day(lake, DAY).problems)
    assert "sha256 does not match" in problems
    assert "keys outside the allow-list ['routingData']" in problems
    assert "duplicate id" in problems
    assert "does not decompress fully" in problems
