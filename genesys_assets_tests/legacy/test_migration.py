"""End to end against the sandbox: a day migrates completely, re-runs change nothing, no clear number anywhere."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from genesys_assets.defs.legacy import assets as legacy
from genesys_assets.defs.legacy import checks
from genesys_assets.lib import legacy_lake as paths
from genesys_assets.lib.legacy_interactions import (
    END_BEFORE_START,
    UNKNOWN_DIRECTION,
    UNKNOWN_MEDIA_TYPE,
    normalise_day,
)
from genesys_assets.lib.pii import AddressHasher
from genesys_assets.resources.pureconnect import PureConnectResource
from genesys_assets_tests.legacy.conftest import DAY, Env
from genesys_assets_tests.support import step_failure

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture(scope="module")
def first_run(env: Env, instance: dg.DagsterInstance):
    result = env.materialize(instance=instance)
    assert result.success
    return result


def _lake(env: Env, base: str, name: str) -> pl.DataFrame:
    frame = paths.read_day(env.resources()["lake"], base, DAY, name)
    assert frame is not None
    return frame


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_rows_that_end_before_they_start_are_repaired_and_warned_about(env: Env, first_run,
                                                                        instance: dg.DagsterInstance) -> None:
    canonical = _lake(env, paths.INTERACTIONS, "interactions.parquet")
    repaired = canonical.filter(pl.col("end_before_start_repaired"))
    assert repaired.height > 0 and (repaired["start_time"] <= repaired["end_time"]).all()
    warnings = [e.user_message for e in instance.all_logs(first_run.run_id)
                if e.level == logging.WARNING and "ended before they started" in e.user_message]
    assert len(warnings) == 1 and warnings[0].startswith(f"{repaired.height} row(s) ended before they started")
    assert repaired["x_legacy_id"][0] in warnings[0]


def test_a_day_migrates_completely(env: Env, first_run) -> None:
    assert _checks(first_run) == {"legacy_interactions_integrity": True, "legacy_reconciliation": True,
                                  "legacy_recordings_playback": True, "legacy_mapping_coverage": True}
    canonical = _lake(env, paths.INTERACTIONS, "interactions.parquet")
    rejects = _lake(env, paths.quarantine_base("interactions"), "quarantine.parquet")
    ledger = _lake(env, paths.INGEST_LEDGER, "ledger.parquet")
    traps = env.site.trap_rows(DAY)
    legacy_ids = {f"{s}:{k}:{q}" for k, s, q in (r for rows in traps.values() for r in rows)}
    assert legacy_ids  # the sandbox really has traps

    def ids(rows):
        return {f"{s}:{k}:{q}" for k, s, q in rows}

    # Every source row is accounted for exactly once: the sandbox's own row count for the day.
    stats = env.site.day_stats(DAY)
    assert canonical.height + rejects.height == stats.summary_rows
    # Traps end where they should.
    reasons = dict(zip(rejects["x_legacy_id"], rejects["reason"], strict=True))
    assert {reasons[i] for i in ids(traps["unknown_code"])} <= {UNKNOWN_DIRECTION, UNKNOWN_MEDIA_TYPE}
    assert Counter(rejects.filter(pl.col("outcome") == "skipped_duplicate")["x_legacy_id"]) == Counter(
        ids(traps["true_duplicate"]))
    assert ids(traps["true_duplicate"]) <= set(canonical["x_legacy_id"])  # one copy ingested
    converted = canonical.filter(pl.col("local_time_converted"))
    assert set(converted["x_legacy_id"]) == ids(traps["local_time_only"])
    assert (converted["timezone_source"] == "site_timezone:America/New_York").all()
    repaired = set(canonical.filter(pl.col("end_before_start_repaired"))["x_legacy_id"])
    crossed = {i for i, r in reasons.items() if r == END_BEFORE_START}
    assert repaired | crossed == ids(traps["end_before_start"])
    for twin_trap in ("key_collision", "seqno_recreated"):  # two distinct interactions, two distinct ids
        twins = canonical.filter(pl.col("x_legacy_id").is_in(list(ids(traps[twin_trap]))))
        assert twins.height == len(traps[twin_trap]) and twins["id"].n_unique() == twins.height
    # Mapping: unmapped agents on the fallback user, special characters survive, never the default by accident.
    by_legacy = dict(zip(ledger["x_legacy_id"], ledger["agent_mapping"], strict=True))
    assert {by_legacy[i] for i in ids(traps["unmapped_agent"]) if i in by_legacy} == {"fallback"}
    special = canonical.filter(pl.col("x_legacy_id").is_in(list(ids(traps["special_char_id"]))))
    assert special["agent_legacy_id"].str.contains(r"['#]").any() or special["queue_legacy_id"].str.contains(
        "[&/]").any()
    ledger_special = ledger.filter(pl.col("x_legacy_id").is_in(special["x_legacy_id"].to_list()))
    assert set(ledger_special["agent_mapping"]) <= {"mapped", "none"}
    assert set(ledger_special["queue_mapping"]) <= {"mapped", "none"}
    # The target holds exactly the ingested ids, each with x_legacy_id and raw timestamps as attributes.
    target = env.sandbox.emulator.target
    stored = [target.get(i) for i in ledger["id"]]
    assert all(stored)
    assert {r["customAttributes"]["x_legacy_id"] for r in stored} == set(ledger["x_legacy_id"])
    assert all(r["customAttributes"]["x_raw_start_time"] for r in stored)


def test_every_recording_codec_ends_playable_or_quarantined(env: Env, first_run) -> None:
    manifest = _lake(env, paths.RECORDINGS_MANIFEST, "manifest.parquet")
    kinds = {rid: kind for kind, rids in env.site.recording_kinds(DAY).items() for rid in rids}
    outcome = {(kinds[r["recording_id"]], r["status"], r["reason"], r["codec_out"], r["content_type"])
               for r in manifest.to_dicts()}
    expected_broken = {"sasf": "sasf_needs_export", "zero_byte": "zero_byte", "truncated": "truncated",
                       "missing": "missing_file"}
    for kind, status, reason, codec_out, content_type in outcome:
        if kind in expected_broken:
            assert (status, reason) == ("quarantined", expected_broken[kind])
        else:
            assert status == "staged" and content_type == "audio/wav"
            assert codec_out in {"pcm_s16le", "pcm_mulaw", "pcm_alaw"}
            if kind in ("amr_nb", "g726", "gsm610"):
                assert codec_out == "pcm_s16le"  # transcoded for the Cloud player
    staged = manifest.filter(pl.col("status") == "staged")
    assert staged["key"].str.contains(r"^recordings/year=2026/month=11/day=03/[0-9a-f]{64}\.wav$").all()
    s3 = env.resources()["recordings_s3"].get_client()
    retention = next(r for r in staged.to_dicts() if "retention=7y" in r["tags"])
    head = s3.head_object(Bucket=retention["bucket"], Key=retention["key"])
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "audio/wav"
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=retention["bucket"],
                                                                 Key=retention["key"])["TagSet"]}
    assert tags["retention"] == "7y" and tags["source-audio"] == "raw"  # the sandbox states raw audio
    assert staged["tags"].str.contains("source-audio=raw").all()
    # Payloads link the staged recording with its duration in ms.
    record = env.sandbox.emulator.target.get(staged["interaction_id"][0])
    recording = record["segments"][0]["recording"]
    assert recording["url"].endswith(staged["key"][0]) and recording["duration"] == staged["duration_ms"][0]


def _lake_bytes(lake_dir: Path) -> dict[str, bytes]:
    keep = (paths.INTERACTIONS, paths.QUARANTINE, paths.RECORDING_LINKS, paths.RECORDINGS_MANIFEST,
            paths.INGEST_LEDGER)
    return {str(p.relative_to(lake_dir)): p.read_bytes() for p in lake_dir.rglob("*")
            if p.is_file() and str(p.relative_to(lake_dir)).startswith(keep)}


def test_raw_source_audio_is_warned_about(first_run, instance: dg.DagsterInstance) -> None:
    warnings = [e.user_message for e in instance.all_logs(first_run.run_id)
                if e.level == logging.WARNING and "raw audio" in e.user_message]
    assert len(warnings) == 1 and "source-audio=raw" in warnings[0]


def test_recordings_wait_until_the_source_audio_is_stated(env: Env, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 001's PII-masking edge case: whether the files keep what the UI masked is the security team's answer."""
    lake_dir = tmp_path / "lake"
    resources = env.resources(lake_dir=lake_dir)
    assert env.materialize(resources=resources, selection=[legacy.legacy_interactions]).success
    for value in (None, "unknown"):
        if value is None:
            monkeypatch.delenv("PURECONNECT_RECORDING_AUDIO")
        else:
            monkeypatch.setenv("PURECONNECT_RECORDING_AUDIO", value)
        result = env.materialize(resources=resources, selection=[legacy.staged_recordings], raise_on_error=False)
        message = step_failure(result).error.message
        assert "PURECONNECT_RECORDING_AUDIO" in message and "'raw' or 'masked'" in message
    assert paths.read_day(resources["lake"], paths.RECORDINGS_MANIFEST, DAY, "manifest.parquet") is None  # none run


def test_the_playback_check_fails_on_a_damaged_or_a_missing_staged_recording(env: Env, first_run) -> None:
    # Seed 000's playback audit: a recording that no longer plays back must fail the check, naming it.
    staged = _lake(env, paths.RECORDINGS_MANIFEST, "manifest.parquet").filter(pl.col("status") == "staged")
    damaged, missing = staged.row(0, named=True), staged.row(1, named=True)
    s3 = env.resources()["recordings_s3"].get_client()
    saved = {}
    for row in (damaged, missing):  # kept aside and put back, so the module's later tests see the day as staged
        backup = f"test-backup/{row['key']}"
        s3.copy_object(Bucket=row["bucket"], Key=backup, CopySource={"Bucket": row["bucket"], "Key": row["key"]},
                       ServerSideEncryption="AES256")
        saved[row["key"]] = backup
    try:
        s3.put_object(Bucket=damaged["bucket"], Key=damaged["key"], Body=b"RIFF\0\0\0\0WAVE" + b"\0" * 64,
                      ContentType=damaged["content_type"], ServerSideEncryption="AES256")
        s3.delete_object(Bucket=missing["bucket"], Key=missing["key"])
        # The check alone, on the day (a run of a check has no assets to take the partition from: the tag gives it).
        result = dg.materialize([legacy.staged_recordings, checks.legacy_recordings_playback],
                                resources=env.resources(), tags={"dagster/partition": DAY.isoformat()},
                                selection=dg.AssetSelection.checks(checks.legacy_recordings_playback),
                                run_config={"ops": {"staged_recordings_legacy_recordings_playback": {
                                    "config": {"sample_size": 10**6}}}},
                                raise_on_error=False)
        (evaluation,) = result.get_asset_check_evaluations()
        failures = evaluation.metadata["failures"].value
        assert not evaluation.passed and evaluation.metadata["failed"].value == 2
        assert evaluation.metadata["sampled"].value == staged.height
        assert "sha256 of the fetched object differs from the manifest" in failures[damaged["recording_id"]]
        assert failures[missing["recording_id"]] == ["GET failed: NoSuchKey"]
    finally:
        for key, backup in saved.items():
            s3.copy_object(Bucket=damaged["bucket"], Key=key, CopySource={"Bucket": damaged["bucket"], "Key": backup},
                           ServerSideEncryption="AES256")
            s3.delete_object(Bucket=damaged["bucket"], Key=backup)


def test_rerun_ingests_nothing_twice_and_rewrites_identical_files(env: Env, first_run) -> None:
    lake_dir = env.home / "lake"
    before = _lake_bytes(lake_dir)
    count = env.sandbox.emulator.target.count()
    again = env.materialize()
    assert again.success and all(_checks(again).values())
    assert env.sandbox.emulator.target.count() == count
    assert _lake_bytes(lake_dir) == before
    meta = {m.step_materialization_data.materialization.asset_key.to_user_string():
            m.step_materialization_data.materialization.metadata for m in again.get_asset_materialization_events()}
    assert meta["cloud_interactions"]["replayed_batches"].value == meta["cloud_interactions"]["batches"].value
    assert meta["staged_recordings"]["uploaded"].value == 0


def test_extraction_needs_no_cloud_and_keeps_legacy_ids(env: Env, tmp_path: Path) -> None:
    """Seed 001's trap: extraction must not map ids. legacy_interactions reads PureConnect only: it runs with Genesys
    Cloud unreachable and no id maps in its lake, and its records hold legacy ids, never Cloud user or queue ids."""
    resources = env.resources(lake_dir=tmp_path / "lake", api_base_url="http://127.0.0.1:9", max_attempts=1)
    result = env.materialize(resources=resources, selection=[legacy.legacy_interactions])
    assert result.success
    canonical = paths.read_day(resources["lake"], paths.INTERACTIONS, DAY, "interactions.parquet")
    assert canonical is not None and canonical.height > 0
    assert canonical["agent_legacy_id"].drop_nulls().len() > 0
    assert not {"agent_user_id", "queue_id", "wrapup_code_id"} & set(canonical.columns)


def _clear_numbers(env: Env) -> set[str]:
    with env.site.connect() as con:
        values = [r[0] for r in con.execute("SELECT RemoteID FROM InteractionSummary") if r[0]]
    digits = {re.sub(r"\D", "", v) for v in values}
    return {d for d in digits if len(d) >= 7}


def test_no_clear_customer_number_anywhere(env: Env, first_run, caplog: pytest.LogCaptureFixture) -> None:
    numbers = _clear_numbers(env)
    assert numbers
    texts: list[str] = []
    for path in (env.home / "lake").rglob("*"):
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            texts += [str(v) for c in frame.columns for v in frame[c].to_list()]
        elif path.is_file():
            texts.append(path.read_text(errors="replace"))
    with duckdb.connect(str(env.home / "warehouse.duckdb"), read_only=True) as con:
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            texts += [str(row) for row in con.execute(f'SELECT * FROM "{table}"').fetchall()]
    texts += [str(env.sandbox.emulator.target.get(i)) for i in
              _lake(env, paths.INGEST_LEDGER, "ledger.parquet")["id"]]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(e) for e in first_run.all_events]
    blob = re.sub(r"[\s().\-+/]", "", "\n".join(texts))
    leaked = sorted(n for n in numbers if n in blob)
    assert not leaked, f"clear customer numbers found: {leaked[:5]}"


def test_without_a_site_timezone_local_rows_are_quarantined(env: Env) -> None:
    resource = PureConnectResource(uri=env.site.uri)
    hasher = AddressHasher("k" * 32)
    days = env.site.days()
    quarantined: set[str] = set()
    for day in days:
        result = normalise_day(resource.read_day(day), day, None, hasher)
        assert not result.interactions["local_time_converted"].any()
        quarantined |= set(result.quarantined.filter(pl.col("reason") == "ambiguous_timezone")["x_legacy_id"])
    local = {f"{s}:{k}:{q}" for d in days for k, s, q in env.site.trap_rows(d)["local_time_only"]}
    # Each local-only row is quarantined exactly once, in the day its raw text falls on (edge days may spill).
    inner = {f"{s}:{k}:{q}" for k, s, q in env.site.trap_rows(DAY)["local_time_only"]}
    assert inner <= quarantined <= local | quarantined
    with pytest.raises(ValueError, match="not an IANA timezone"):
        normalise_day(resource.read_day(DAY), DAY, "America/Nowhere", hasher)
