"""Several sandboxes in one GENESYS_HOME (a ``demo`` started while a ``sandbox`` runs) share its endpoints.json.

The file is the latest sandbox's; a sandbox withdraws it on stop only while it is still the one it wrote, so the
first to stop does not leave the user's Dagster without the endpoints of a newer sandbox that still runs. These
start real sandboxes (small, under a second) and stop them through ``Sandbox.stop``, the path every command's
exit, Ctrl-C and SIGTERM take.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from genesys_assets.sandbox import services
from genesys_assets.sandbox.services import Sandbox, SandboxEndpoints, _endpoints_lock

DAY = date(2026, 11, 2)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[], Sandbox]]:
    """Starts small sandboxes, all in the home ``tmp_path``; stops any a failing test left running."""
    started: list[Sandbox] = []

    def start_one() -> Sandbox:
        sandbox = Sandbox(tmp_path, start=DAY, end=DAY, conversations_per_day=10, interactions_per_day=5).start()
        started.append(sandbox)
        return sandbox

    yield start_one
    for sandbox in started:
        if sandbox.endpoints is not None:  # its stop clears them
            sandbox.stop()


def _assert_refused(base_url: str) -> None:
    """Nothing listens on the port any more: the stop went on to the servers."""
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"{base_url}/__sandbox__/webhooks", timeout=5)
    assert isinstance(refused.value.reason, ConnectionRefusedError), refused.value


def test_stopping_the_older_sandbox_leaves_the_newer_ones_endpoints(
        start: Callable[[], Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug: the older sandbox's stop removed the file the newer, still running one had written over it."""
    older, newer = start(), start()
    older.stop()
    monkeypatch.setenv("GENESYS_HOME", str(tmp_path))
    assert SandboxEndpoints.load() == newer.endpoints  # as the assets' resources read it
    assert oct(newer.endpoints_file.stat().st_mode & 0o777) == "0o600"  # sandbox credentials: this user's alone
    assert not list(newer.dir.glob(".tmp-*")) and not list(newer.dir.glob("running/.tmp-*"))  # no temporary file left


def test_the_newer_sandbox_still_withdraws_its_own_endpoints_after_the_older_one_stopped(
        start: Callable[[], Sandbox]) -> None:
    """Ownership is by what the file says, not by stop order: the file still the newer one's goes with its stop."""
    older, newer = start(), start()
    older.stop()
    assert newer.endpoints_file.is_file()
    newer.stop()
    assert not newer.endpoints_file.exists()  # a stale file must never point at servers that are gone


@pytest.mark.parametrize("write", [
    pytest.param(lambda path: path.write_text('{"genesys_api_base_url": "http://127.0.0.1:'), id="truncated"),
    pytest.param(lambda path: path.write_bytes(b"\xff\xfe{}"), id="not-utf8"),
    pytest.param(lambda path: path.write_text("[]"), id="not-an-object"),
    pytest.param(lambda path: path.write_text(json.dumps({"genesys_api_base_url": "http://127.0.0.1:1"})),
                 id="no-owner"),  # an older version's sandbox, which marks no owner
    pytest.param(lambda path: (path.unlink(), path.mkdir()), id="unreadable"),
])
def test_an_endpoints_file_that_is_not_provably_ours_at_stop_is_left_and_the_stop_completes(
        start: Callable[[], Sandbox], write: Callable[[Path], object]) -> None:
    """Corrupt, unreadable or unmarked at stop time: it is not the file this sandbox wrote whole (perhaps an older
    version's sandbox writing in place right now), so it stays for whoever wrote it, and the servers still stop."""
    sandbox = start()
    write(sandbox.endpoints_file)
    before = sandbox.endpoints_file.read_bytes() if sandbox.endpoints_file.is_file() else None
    base_url = sandbox.emulator.base_url
    sandbox.stop()
    assert sandbox.endpoints_file.exists()
    if before is not None:
        assert sandbox.endpoints_file.read_bytes() == before
    _assert_refused(base_url)


def test_a_reader_part_way_through_the_file_reads_a_whole_one_while_another_sandbox_publishes(
        start: Callable[[], Sandbox], tmp_path: Path) -> None:
    """A sandbox writes its file whole and renames it into place: a reader (or another sandbox's stop) gets the
    previous file or the new one, never the old one truncated and rewritten under it."""
    older = start()
    with older.endpoints_file.open("rb", buffering=0) as reader:  # unbuffered: read(10) reads 10 bytes, no more
        head = reader.read(10)
        start()
        (tmp_path / "as-read.json").write_bytes(head + reader.read())
    assert SandboxEndpoints.load(tmp_path / "as-read.json") == older.endpoints


def test_a_stop_withdraws_only_once_no_other_sandbox_holds_the_endpoints_lock(start: Callable[[], Sandbox]) -> None:
    """Without the lock, another sandbox's write could land between the stop's check of the owner and its unlink,
    and the stop would remove that newer file."""
    sandbox = start()
    stopping = threading.Thread(target=sandbox.stop)
    with _endpoints_lock(sandbox.endpoints_file):  # as another sandbox publishing
        stopping.start()
        stopping.join(timeout=1.0)
        assert stopping.is_alive() and sandbox.endpoints_file.is_file()  # the stop waits for it
    stopping.join(timeout=10)
    assert not stopping.is_alive() and not sandbox.endpoints_file.exists()


def test_when_the_newer_sandbox_stops_first_the_home_gets_the_older_ones_endpoints_back(
        start: Callable[[], Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``demo`` run beside a long-running ``sandbox``: once it ends, the user's Dagster finds the sandbox again."""
    monkeypatch.setenv("GENESYS_HOME", str(tmp_path))
    older, newer = start(), start()
    assert SandboxEndpoints.load() == newer.endpoints
    newer.stop()
    assert SandboxEndpoints.load() == older.endpoints
    assert oct(older.endpoints_file.stat().st_mode & 0o777) == "0o600"
    older.stop()
    assert SandboxEndpoints.load() is None and not list((tmp_path / "sandbox" / "running").iterdir())


def _process_started(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
@pytest.mark.parametrize("since", ["gone", "pid given to another process"])
def test_a_killed_sandboxs_endpoints_are_never_handed_back(
        start: Callable[[], Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, since: str) -> None:
    """A sandbox killed (SIGKILL) never withdrew its entry: a stop passes over it, to the one still running; also
    when its pid now belongs to a live process (here: this one) that started at another time."""
    monkeypatch.setenv("GENESYS_HOME", str(tmp_path))
    running = start()
    started = int(_process_started(os.getpid()))
    if since == "gone":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        pid = gone.pid
    else:
        pid, started = os.getpid(), started - 1
    killed = running._running / f"{pid}-{started}-0123456789abcdef.json"
    killed.write_text(json.dumps({"genesys_api_base_url": "http://127.0.0.1:9", "owner": killed.stem}))
    newer = start()
    newer.stop()
    assert SandboxEndpoints.load() == running.endpoints
    assert not killed.exists()


def test_a_stop_that_cannot_get_the_endpoints_lock_says_so_and_still_stops_the_servers(
        start: Callable[[], Sandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = start()
    api = sandbox.emulator.base_url
    monkeypatch.setattr(services, "ENDPOINTS_LOCK_TIMEOUT", 0.2)
    with _endpoints_lock(sandbox.endpoints_file), \
            pytest.raises(services.EndpointsLockTimeout, match=r"another sandbox has held .*endpoints\.json\.lock "
                                                               r"for over 0\.2s; stop the other sandboxes"):
        sandbox.stop()
    _assert_refused(api)
    assert sandbox.endpoints_file.is_file()  # not withdrawn: its owner can still do it (the fixture's stop)
