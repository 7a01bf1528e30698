"""Resumability: a run that crashes or is killed mid-day continues from its checkpoint (same job, next cursor)
when the job is still valid, starts the day cleanly otherwise, and the final files are byte-identical either way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest

from genesys_assets.lib.pii import AddressHasher
from genesys_assets.lib.webchat_archive import ArchiveSettings, archive_day, build_manifest, publish, verify_day
from genesys_assets.lib.webchat_parts import CHECKPOINT_NAME, Checkpoint
from genesys_assets.resources.lake import Lake
from genesys_assets.sandbox.conversations import parse_ms
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.messaging.conftest import (
    ARCHIVE_CONFIG,
    DAY,
    archive,
    genesys_resource,
    make_resources,
    materialization,
    part_bytes,
)
from genesys_assets_tests.support import kill_mid_run

HASHER = AddressHasher("k" * 32)
SETTINGS = ArchiveSettings(page_size=ARCHIVE_CONFIG["page_size"],
                           part_max_bytes=int(ARCHIVE_CONFIG["part_max_mb"] * 1024 * 1024))
JOBS = "/api/v2/analytics/conversations/details/jobs"


class Crash(Exception):
    """Stands for the process dying."""


class CrashingClient:
    """The real client, except that asking for results page ``crash_at`` raises."""

    def __init__(self, client: Any, crash_at: int) -> None:
        self._client, self._crash_at, self.pages = client, crash_at, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def iter_details_job_pages(self, job_id: str, page_size: int = 1000, cursor: str | None = None) -> Any:
        for page in self._client.iter_details_job_pages(job_id, page_size, cursor):
            self.pages += 1
            if self.pages == self._crash_at:
                raise Crash
            yield page


def _crash(client: Any, work: Path, at: int) -> Checkpoint:
    """Archive until results page ``at`` is asked for, then die; returns the checkpoint left behind."""
    with pytest.raises(Crash):
        archive_day(CrashingClient(client, crash_at=at), DAY, work, HASHER, SETTINGS)
    saved = Checkpoint.load(work)
    assert saved is not None and saved.job_id and saved.pages == at - 1
    return saved


def _publish(client: Any, home: Path, work: Path) -> Any:
    run = archive_day(client, DAY, work, HASHER, SETTINGS)
    publish(Lake(base_uri=str(home / "lake")), DAY, work, build_manifest(run.checkpoint, region="sandbox", run={}))
    return run


def _submitted(emu: GenesysEmulator) -> int:
    return sum(1 for r in emu.request_log() if r["method"] == "POST" and r["path"] == JOBS)


def test_crash_resumes_from_the_checkpoint_with_the_same_job(
    emu: GenesysEmulator, tmp_path: Path, clean_run: tuple[Path, dg.ExecuteInProcessResult]
) -> None:
    client = genesys_resource(emu).get_client()
    work = tmp_path / "work"
    saved = _crash(client, work, at=4)
    assert saved.cursor and saved.conversations_written > 0
    emu.clear_request_log()
    run = _publish(client, tmp_path, work)
    assert run.resumed and run.resumed_from_page == 3 and run.restart_reason is None
    assert _submitted(emu) == 0, "the same job is read on"
    results = [r for r in emu.request_log() if r["path"].startswith(JOBS + "/") and r["path"].endswith("/results")]
    assert len(results) == run.pages_this_run, "pages 1-3 are not read again"
    assert run.checkpoint.pages == 3 + run.pages_this_run
    assert part_bytes(tmp_path) == part_bytes(clean_run[0])


@pytest.mark.parametrize("gone", ["deleted", "expired"])
def test_invalid_job_or_other_settings_start_the_day_cleanly(
    emu: GenesysEmulator, tmp_path: Path, clean_run: tuple[Path, dg.ExecuteInProcessResult], gone: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = genesys_resource(emu).get_client()
    work = tmp_path / "work"
    saved = _crash(client, work, at=3)
    if gone == "deleted":
        client.delete_details_job(saved.job_id)
    else:  # resumed after the results' expirationDate
        expires_ms = parse_ms(client.details_job_status(saved.job_id)["expirationDate"])
        monkeypatch.setattr(emu, "_now_ms", lambda: expires_ms)
    emu.clear_request_log()
    run = _publish(client, tmp_path, work)
    assert not run.resumed and run.restart_reason and saved.job_id in run.restart_reason
    if gone == "expired":
        assert "EXPIRED" in run.restart_reason
    assert _submitted(emu) == 1
    assert part_bytes(tmp_path) == part_bytes(clean_run[0])

    _crash(client, work, at=3)
    other = ArchiveSettings(page_size=7, part_max_bytes=SETTINGS.part_max_bytes)
    rerun = archive_day(client, DAY, work, HASHER, other)
    assert not rerun.resumed and "other settings" in (rerun.restart_reason or "")


def test_killed_process_resumes_and_files_are_byte_identical(
    emu: GenesysEmulator, tmp_path: Path, clean_run: tuple[Path, dg.ExecuteInProcessResult]
) -> None:
    config = {**ARCHIVE_CONFIG, "fetch_workers": 1, "work_dir": str(tmp_path / "work")}
    args = {"base_url": emu.base_url, "client_id": emu.client_id, "client_secret": emu.client_secret,
            "home": str(tmp_path), "day": DAY.isoformat(), "config": config}
    checkpoint = tmp_path / "work" / "webchat_archive" / f"day={DAY.isoformat()}" / CHECKPOINT_NAME
    children: list[subprocess.Popen] = []

    def kill_once_two_pages_are_saved(entry: dict) -> None:
        """On the emulator's serving thread, before the answer leaves: the child cannot finish meanwhile."""
        try:
            pages = orjson.loads(checkpoint.read_bytes()).get("pages", 0)
        except (OSError, orjson.JSONDecodeError):
            return
        if pages >= 2 and children and children[0].returncode is None:
            children[0].send_signal(signal.SIGKILL)  # once: a reaped child is not signalled again

    with emu.request_hook(kill_once_two_pages_are_saved):
        child = subprocess.Popen(
            [sys.executable, "-m", "genesys_assets_tests.messaging.archive_child", json.dumps(args)],
            cwd=Path(__file__).resolve().parents[2], env={**os.environ}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        children.append(child)
        kill_mid_run(child)
    saved = Checkpoint.load(checkpoint.parent)
    assert saved is not None and not saved.pages_done and saved.pages >= 2
    assert part_bytes(tmp_path) == {}, "nothing published by the killed run"

    emu.clear_request_log()
    result = archive(make_resources(emu, tmp_path), tmp_path, **{"fetch_workers": 1})
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    meta = materialization(result)
    assert meta["resumed"] is True and meta["resumed_from_page"] == saved.pages
    assert _submitted(emu) == 0
    assert part_bytes(tmp_path) == part_bytes(clean_run[0]), "byte-identical to the uninterrupted run"


def test_a_day_without_web_messaging_publishes_an_empty_verified_archive(emu: GenesysEmulator, tmp_path: Path) -> None:
    future = datetime.now(UTC).date() + timedelta(days=7)  # past the availability watermark: the job finds none
    client = genesys_resource(emu).get_client()
    run = archive_day(client, future, tmp_path / "work", HASHER, SETTINGS)
    assert run.checkpoint.pages_done and run.checkpoint.conversations_written == 0 and run.checkpoint.parts == []
    lake = Lake(base_uri=str(tmp_path / "lake"))
    manifest = build_manifest(run.checkpoint, region="sandbox", run={})
    publish(lake, future, tmp_path / "work", manifest)
    assert manifest["records"] == manifest["bytes"] == 0 and manifest["files"] == []
    assert verify_day(lake, future).ok
