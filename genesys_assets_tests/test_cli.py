"""The commands a newcomer runs: ``sandbox``, ``demo`` and ``dev`` work from a clean GENESYS_HOME."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from genesys_assets.cli import build_parser, days_between
from genesys_assets.sandbox.genesys_emulator import GenesysEmulator
from genesys_assets_tests.support import processes_in_session

SMALL = ["--conversations-per-day", "150", "--interactions-per-day", "40"]
ENDPOINT_KEYS = {"genesys_api_base_url", "client_id", "client_secret", "s3_endpoint_url", "pureconnect_uri",
                 "webhook_url"}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENESYS_", "DAGSTER_", "AWS_", "PURECONNECT_"))}
    env["GENESYS_HOME"] = str(home)
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "genesys_assets.cli", *args]


def _wait_for(path: Path, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"exited early with {process.returncode}: {output}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.02)  # soon after: the SIGTERM test must land before the demo's first Dagster run (see its note)


@pytest.mark.parametrize("command", ["doctor", "dev"])
def test_half_a_credential_is_one_line_naming_the_missing_one(command: str, tmp_path: Path) -> None:
    env = {**_env(tmp_path), "GENESYS_CLIENT_ID": "an-id"}
    done = subprocess.run(_command(command), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "genesys-assets: GENESYS_CLIENT_ID is set but GENESYS_CLIENT_SECRET is not: set both for live mode (a "
        "Genesys Cloud OAuth client-credentials client), or GENESYS_MODE=sandbox to run on the sandbox"]


def test_days_are_inclusive_and_ordered() -> None:
    args = build_parser().parse_args(["demo", "--start", "2026-11-02", "--end", "2026-11-04"])
    assert [d.isoformat() for d in days_between(args.start, args.end)] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    with pytest.raises(SystemExit, match="before"):
        days_between(args.end, args.start)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--start", "02/11/2026"])


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sigint", ["default", "ignored", "terminated"])
def test_sandbox_serves_until_interrupted_and_cleans_up(tmp_path: Path, sigint: str) -> None:
    """Ctrl-C stops it, also when started with SIGINT ignored (as a shell starts a background job); so does
    SIGTERM (a service manager's stop)."""
    home = tmp_path / "home"
    # Output to a file, not an unread pipe: a full pipe would block the sandbox's shutdown logging forever.
    log = (tmp_path / "sandbox.log").open("w+")
    process = subprocess.Popen(_command("sandbox", "--start", "2026-11-02", "--end", "2026-11-02", *SMALL),
                               env=_env(home), stdout=log, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=_ignore_sigint if sigint == "ignored" else None)
    endpoints_file = home / "sandbox" / "endpoints.json"
    try:
        _wait_for(endpoints_file, process, 120)
        endpoints = json.loads(endpoints_file.read_text())
        assert endpoints.keys() >= ENDPOINT_KEYS
        assert oct(endpoints_file.stat().st_mode & 0o777) == "0o600"
        for url in (endpoints["genesys_api_base_url"], endpoints["s3_endpoint_url"]):
            assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{endpoints['genesys_api_base_url']}/__sandbox__/webhooks", timeout=10) as r:
            assert r.status == 200
        assert Path(endpoints["pureconnect_uri"].removeprefix("sqlite://")).is_file()
    finally:
        process.send_signal(signal.SIGTERM if sigint == "terminated" else signal.SIGINT)
        code = process.wait(timeout=60)
        log.seek(0)
        assert code == 0, log.read()
    assert not endpoints_file.exists()  # a stale file must never point at servers that are gone


# Ctrl-C delivered while the sandbox announces its endpoints (it has published endpoints.json just before): the
# moment a script that waits for that file, as the test above does, is most likely to send it.
_CTRL_C_WHILE_ANNOUNCING = """
import builtins, os, signal, sys
from genesys_assets import cli

def announce(*args, **kwargs):
    builtins.print(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)

cli.print = announce
cli.main(sys.argv[1:])
"""


def _run_sandbox_signalled(script: str, home: Path, *script_args: str) -> subprocess.CompletedProcess[str]:
    """``genesys-assets sandbox`` run by ``script`` (which signals it at a set point) until it exits by itself;
    checks that it exited cleanly and withdrew its endpoints."""
    done = subprocess.run([sys.executable, "-c", script, *script_args, "sandbox", "--start", "2026-11-02", "--end",
                           "2026-11-02", *SMALL], env=_env(home), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert not (home / "sandbox" / "endpoints.json").exists()
    return done


def test_ctrl_c_while_the_sandbox_announces_itself_still_stops_it_cleanly(tmp_path: Path) -> None:
    assert "Sandbox running" in _run_sandbox_signalled(_CTRL_C_WHILE_ANNOUNCING, tmp_path / "home").stdout


def _assert_refused(base_url: str) -> None:
    """Nothing listens on the port any more (not a hung server, not an HTTP error)."""
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"{base_url}/__sandbox__/webhooks", timeout=5)
    assert isinstance(refused.value.reason, ConnectionRefusedError), refused.value


# SIGTERM (a service manager's stop) delivered while the sandbox starts: the emulator serves, S3 does not yet.
# raise_signal runs the handler before it returns, so the signal has landed before S3 starts.
_SIGTERM_WHILE_STARTING = """
import signal, sys
from genesys_assets import cli
from genesys_assets.sandbox.s3 import SandboxS3

start_s3 = SandboxS3.start

def terminated_first(self):
    signal.raise_signal(signal.SIGTERM)
    return start_s3(self)

SandboxS3.start = terminated_first
cli.main(sys.argv[1:])
"""


def test_sigterm_while_the_sandbox_starts_stops_it_without_announcing_it(tmp_path: Path) -> None:
    """A service manager that stops the sandbox before it is up gets a clean exit and no endpoints to use: none
    printed, and the file withdrawn by the sandbox's stop (its servers are threads of the process, so they end
    with it)."""
    assert _run_sandbox_signalled(_SIGTERM_WHILE_STARTING, tmp_path / "home").stdout == ""


def test_a_start_that_fails_part_way_stops_what_already_started(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from genesys_assets.sandbox.s3 import SandboxS3
    from genesys_assets.sandbox.services import Sandbox

    def interrupted(self: SandboxS3) -> SandboxS3:
        raise KeyboardInterrupt  # Ctrl-C after the emulator is serving, before S3 is

    monkeypatch.setattr(SandboxS3, "start", interrupted)
    sandbox = Sandbox(tmp_path, start=date(2026, 11, 2), end=date(2026, 11, 2), conversations_per_day=10,
                      interactions_per_day=5)
    sandbox.endpoints_file.parent.mkdir(parents=True, exist_ok=True)
    sandbox.endpoints_file.write_text("{}")  # another sandbox's, in the same home: not this one's to withdraw
    with pytest.raises(KeyboardInterrupt):
        sandbox.start()
    assert sandbox.emulator.base_url  # it had started ...
    _assert_refused(sandbox.emulator.base_url)  # ... and no longer answers
    assert sandbox.endpoints_file.read_text() == "{}"


def test_a_second_ctrl_c_while_stopping_still_stops_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genesys_assets.sandbox.s3 import SandboxS3
    from genesys_assets.sandbox.services import Sandbox

    sandbox = Sandbox(tmp_path, start=date(2026, 11, 2), end=date(2026, 11, 2), conversations_per_day=10,
                      interactions_per_day=5).start()
    real_stop = SandboxS3.stop

    def interrupted(self: SandboxS3) -> None:
        real_stop(self)
        raise KeyboardInterrupt  # Ctrl-C again while the servers stop

    monkeypatch.setattr(SandboxS3, "stop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sandbox.stop()
    _assert_refused(sandbox.emulator.base_url)
    assert not sandbox.endpoints_file.exists()


def test_demo_materializes_every_asset_and_keeps_run_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / ".genesys"  # as the default GENESYS_HOME: a dot directory above the lake must not hide it
    done = subprocess.run(_command("demo", "--start", "2026-11-02", "--end", "2026-11-02", *SMALL),
                          env=_env(home), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrapup_codes" in done.stdout
    assert "FAILED" not in done.stdout
    assert (home / "dagster" / "dagster.yaml").is_file()
    assert list((home / "dagster").rglob("runs.db")), "run history is not in the persistent DAGSTER_HOME"
    # The package's progress lines reach each run's event log (dagster.yaml: managed_python_loggers).
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))  # the copied dagster.yaml names its storage by it
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        events = [e for run in instance.get_runs() for e in instance.all_logs(run.run_id)]
    messages = [e.user_message for e in events]
    # Every asset that writes rows says how many in the metadata the UI charts across partitions.
    counted = {e.dagster_event.asset_key.to_user_string(): e.dagster_event.event_specific_data.materialization.metadata
               for e in events if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"}
    missing = sorted(key for key, md in counted.items() if "dagster/row_count" not in md)
    assert len(counted) == 11 and missing == ["warehouse_views"], missing
    for asset, key in (("legacy_interactions", "quarantine_path"), ("staged_recordings", "manifest_path"),
                       ("cloud_interactions", "ledger_path"), ("id_maps", "path")):
        assert Path(counted[asset][key].value).is_file(), (asset, key)  # where the output is, as the UI shows it
    assert counted["staged_recordings"]["staged_to"].value.startswith("s3://")
    for asset in ("warehouse_views", "legacy_audit_tables"):
        assert counted[asset]["database"].value == str(home / "warehouse.duckdb")
    calling_the_api = ("conversation_details", "wrapup_codes", "id_maps", "cloud_interactions", "webchat_archive")
    assert all({"api_requests", "api_throttled", "api_server_errors"} <= set(counted[a]) for a in calling_the_api)
    # Every check result says in one line what it found.
    checks = {(e.dagster_event.event_specific_data.asset_check_key.name): e.dagster_event.event_specific_data
              for e in events if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert len(checks) == 13 and sorted(name for name, c in checks.items() if not c.description) == []
    for line in ("Recordings of 2026-11-02 checked and uploaded: ", "Interaction records posted: ",
                 "Web messaging conversations of 2026-11-02 archived this run: ",
                 "Conversations of 2026-11-02T00:00:00.000Z/2026-11-03T00:00:00.000Z fetched and flattened: ",
                 "Landed pages of 2026-11-02 re-flattened: "):
        assert any(line in m for m in messages), line
    assert (home / "lake" / "analytics" / "dimensions" / "wrapup_codes" / "wrapup_codes.parquet").is_file()
    assert not (home / "sandbox" / "endpoints.json").exists()
    # The client secret never reaches the output, the run history, the lake or the warehouse.
    secret = GenesysEmulator(tmp_path / "probe").client_secret.encode()
    assert secret not in (done.stdout + done.stderr).encode()
    for path in home.rglob("*"):
        if path.is_file() and "sandbox" not in path.relative_to(home).parts:
            assert secret not in path.read_bytes(), f"client secret found in {path}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _still_running(sid: int, seconds: float) -> list[str]:
    """The processes of session ``sid`` still running after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while (alive := processes_in_session(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_dev_serves_the_ui_with_the_assets_and_stops_cleanly(tmp_path: Path, stop: str) -> None:
    """Ctrl-C in a terminal reaches the whole process group; a service manager's or ``docker stop``'s SIGTERM
    reaches our process only, which hands it on to Dagster and waits for its services to shut down."""
    home, port = tmp_path / "home", _free_port()
    # Output to a file, not a pipe: a pipe's end would also wait for any process left holding it.
    log = (tmp_path / "dev.log").open("w+")
    process = subprocess.Popen(_command("dev", "--port", str(port), "--start", "2026-11-02", "--end", "2026-11-02",
                                        *SMALL), env=_env(home), stdout=log, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.seek(0) or log.read()
            try:
                query = json.dumps({"query": "{ assetNodes { assetKey { path } groupName } }"}).encode()
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as answer:
                    nodes = json.loads(answer.read())["data"]["assetNodes"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the Dagster UI did not come up"
                time.sleep(1)
        assert {"path": ["wrapup_codes"]} in [n["assetKey"] for n in nodes]
        assert (home / "sandbox" / "endpoints.json").is_file()
    finally:
        if stop == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: our process group, not Dagster's own
        else:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
            leftover = _still_running(process.pid, seconds=5)  # killed at the end of the grace: being reaped
        finally:
            for pid in processes_in_session(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    log.seek(0)
    output = log.read()
    assert process.returncode in ((0, 130) if stop == "ctrl-c" else (128 + signal.SIGTERM,)), output
    # Ctrl-C reaches the whole process group: a run the sensors launched meanwhile may print the interrupt's
    # traceback from inside Dagster. None may come from our code.
    assert not re.search(r'File "[^"]*/genesys_assets/', output), output
    assert "Dagster services shut down" in output, output
    assert not leftover, f"still running after the stop: {leftover}"
    assert not (home / "sandbox" / "endpoints.json").exists()


def test_sigterm_during_the_demo_stops_its_sandbox_and_withdraws_its_endpoints(tmp_path: Path) -> None:
    """A service manager's stop of a command that started a sandbox: the sandbox stops and its endpoints file goes
    (a stale one would send doctor and the assets to servers that are gone). Signalled as soon as the endpoints
    appear; the test below signals at set points during and between the demo's Dagster runs."""
    home = tmp_path / "home"
    endpoints = home / "sandbox" / "endpoints.json"
    demo = subprocess.Popen(_command("demo", "--start", "2026-11-02", "--end", "2026-11-02", *SMALL), env=_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(endpoints, demo, 120)
        demo.send_signal(signal.SIGTERM)
        _, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 128 + signal.SIGTERM, stderr
    assert not endpoints.exists()


# The demo, signalled by itself at one set point of its first Dagster run (argv[1] names it, argv[2] the signal).
_SIGNAL_DURING_THE_DEMO = """
import os, signal, sys, threading
import dagster as dg
from dagster._core.instance import DagsterInstance
from genesys_assets import cli, demo

point, signum = sys.argv.pop(1), getattr(signal, sys.argv.pop(1))
fired = threading.Event()

def fire(here):
    if here == point and not fired.is_set():
        fired.set()
        os.kill(os.getpid(), signum)

handle_new_event = DagsterInstance.handle_new_event

def seen(self, event, *args, **kwargs):
    result = handle_new_event(self, event, *args, **kwargs)
    if event.dagster_event is not None:
        fire(event.dagster_event.event_type.name)  # STEP_START, RUN_SUCCESS: Dagster's handler holds the signal
    return result

DagsterInstance.handle_new_event = seen
outcomes = demo._outcomes

def between_runs(*args):
    fire("between runs")  # Dagster has put back its own idea of the handlers
    return outcomes(*args)

demo._outcomes = between_runs
import requests
request = requests.Session.request

def in_a_step(self, *args, **kwargs):
    if threading.current_thread() is threading.main_thread():
        fire("in a step")  # an asset's own code calling the API
    return request(self, *args, **kwargs)

requests.Session.request = in_a_step
cli.main(sys.argv[1:])
"""


@pytest.mark.parametrize(("point", "signum", "started_with_sigint"), [
    *[(point, signum, "default") for point in ("STEP_START", "in a step", "RUN_SUCCESS", "between runs")
      for signum in (signal.SIGTERM, signal.SIGINT)],
    ("between runs", signal.SIGTERM, "ignored"),  # a script's background job: Dagster puts SIG_IGN back on SIGTERM
])
def test_a_signal_during_a_demo_run_stops_the_demo(tmp_path: Path, point: str, signum: signal.Signals,
                                                   started_with_sigint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster puts its own handler on SIGINT and SIGTERM while a run is in process and only records the signal
    there, then SIGINT's handler on both; the demo still stops after that run instead of going on to the next,
    exits 128 + the signal, prints what ran, and withdraws its endpoints."""
    home = tmp_path / "home"
    preexec = _ignore_sigint if started_with_sigint == "ignored" else None
    done = subprocess.run([sys.executable, "-c", _SIGNAL_DURING_THE_DEMO, point, signum.name, "demo", "--start",
                           "2026-11-02", "--end", "2026-11-02", *SMALL], env=_env(home), capture_output=True,
                          text=True, timeout=300, preexec_fn=preexec)
    assert done.returncode == 128 + signum, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"genesys-assets demo: stopped by {signum.name} after 1 run(s)" in done.stdout, done.stdout[-3000:]
    assert "wrapup_codes" in done.stdout  # the summary of the run it stopped after
    assert not (home / "sandbox" / "endpoints.json").exists()
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert len(instance.get_runs()) == 1  # the run it was in (or had just finished), no later one
