"""``genesys-assets``: run the sandbox, the Dagster UI, or the whole pipeline headless.

    genesys-assets sandbox           serve the sandbox services until interrupted
    genesys-assets dev               the sandbox (unless live) plus the Dagster UI and daemon
    genesys-assets demo              the sandbox, then every asset for each day, and a summary
    genesys-assets doctor            what is reachable and permitted, and how to fix what is not
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from genesys_assets import settings

if TYPE_CHECKING:
    from genesys_assets.sandbox.services import Sandbox

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# A fixed, long-complete window: the same days always produce the same data and the same summary.
DEFAULT_DEMO_START = date(2026, 11, 2)
DEFAULT_DEMO_END = date(2026, 11, 3)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from error


def days_between(start: date, end: date) -> list[date]:
    """The days from ``start`` to ``end``, both included."""
    if end < start:
        raise SystemExit(f"--end {end} is before --start {start}")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def prepare_dagster_home() -> Path:
    """A persistent DAGSTER_HOME under GENESYS_HOME with the project's dagster.yaml and pool limits."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)

    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        for pool, limit in settings.POOL_LIMITS.items():
            instance.event_log_storage.set_concurrency_slots(pool, limit)
    return home


def _stop_on_signal() -> threading.Event:
    """From now on SIGTERM sets the returned event and Ctrl-C raises KeyboardInterrupt, also when we were started
    with SIGINT ignored (a shell's background job: Python then installs no handler and the interrupt is lost).

    Installed before anything starts, so a signal that lands while the services start or announce themselves
    still stops them cleanly."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return stop


def _terminated(*_: object) -> None:
    raise SystemExit(128 + signal.SIGTERM)


def _sandbox(args: argparse.Namespace) -> Sandbox:
    """The sandbox a command starts. A SIGTERM then unwinds the command like Ctrl-C, so the sandbox stops and
    withdraws its endpoints file, which ``doctor`` and the assets would otherwise trust after the process is gone
    (``sandbox`` installs its own handler first, which is kept)."""
    from genesys_assets.sandbox.services import Sandbox

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
    return Sandbox(
        settings.genesys_home(), start=args.start, end=args.end,
        conversations_per_day=args.conversations_per_day, interactions_per_day=args.interactions_per_day,
    )


def cmd_sandbox(args: argparse.Namespace) -> int:
    stop = _stop_on_signal()
    with suppress(KeyboardInterrupt), _sandbox(args) as sandbox:
        assert sandbox.endpoints is not None
        if stop.is_set():  # SIGTERM while starting: nothing to announce
            return 0
        print(f"Sandbox running; endpoints and sandbox credentials in {sandbox.endpoints_file}")
        print(f"  Genesys Cloud API  {sandbox.endpoints.genesys_api_base_url}")
        print(f"  S3                 {sandbox.endpoints.s3_endpoint_url}")
        print(f"  PureConnect        {sandbox.endpoints.pureconnect_uri}")
        print(f"  data-lake webhook  {sandbox.endpoints.webhook_url}")
        print("Press Ctrl-C to stop.", flush=True)
        stop.wait()
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    live = settings.mode() == settings.LIVE
    env = dict(os.environ)
    context = nullcontext() if live else _sandbox(args)
    with context as sandbox:
        if sandbox is not None:
            assert sandbox.endpoints is not None
            env.update(sandbox.endpoints.to_env(), GENESYS_MODE=settings.SANDBOX)
        command = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
                   "-h", args.host, "-p", str(args.port)]
        print(f"{'Live' if live else 'Sandbox'} mode; Dagster UI on http://{args.host}:{args.port}", flush=True)
        return _serve_dagster(command, env)


#: How long what is left of Dagster's process group (code servers, runs the daemon launched) gets to end after
#: ``dagster dev`` exits, before it is killed.
DAGSTER_GROUP_GRACE_SECONDS = 30.0
#: What stops ``dev``: Ctrl-C, a service manager's or ``docker stop``'s SIGTERM, the terminal closing.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _serve_dagster(command: list[str], env: dict[str, str]) -> int:
    """Run ``dagster dev`` in a process group of its own until it exits; 128 + the signal if a SIGTERM or hangup
    stopped it.

    Every stop signal that reaches us is handed to the whole group once, as the Ctrl-C Dagster's webserver, daemon,
    code servers and runs all expect. At a terminal the group is its foreground job, as a shell would make it, so
    Ctrl-C and the hangup reach it directly and its own use of the terminal does not stop it. What is left of the
    group when ``dagster dev`` has exited is given ``DAGSTER_GROUP_GRACE_SECONDS`` (a further signal cuts it short)
    and then killed, so nothing of Dagster's runs on against a sandbox about to stop."""
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _: received.append(signum)) for signum in _STOP_SIGNALS}
    try:
        dagster = subprocess.Popen(command, env=env, cwd=settings.dagster_home(), process_group=0)
        with _terminal_given_to(dagster.pid):
            handed_on = 0
            while True:
                while handed_on < len(received):
                    _signal_group(dagster.pid, signal.SIGINT)
                    handed_on += 1
                with suppress(subprocess.TimeoutExpired):
                    code = dagster.wait(timeout=0.1)
                    break
        _end_group(dagster.pid, DAGSTER_GROUP_GRACE_SECONDS, received)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    stop = next((signum for signum in received if signum != signal.SIGINT), None)
    if stop is not None:
        return 128 + stop
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


def _signal_group(group: int, signum: int) -> None:
    """``signum`` to every process of ``group``, then SIGCONT: a process stopped by the terminal acts on it too."""
    with suppress(ProcessLookupError):
        os.killpg(group, signum)
        os.killpg(group, signal.SIGCONT)


@contextmanager
def _terminal_given_to(group: int) -> Iterator[None]:
    """``group`` as the foreground job of our terminal while the block runs, then us again; nothing to do when we
    have no terminal or are not its foreground job ourselves."""
    try:
        terminal = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        yield
        return
    try:
        if os.tcgetpgrp(terminal) != os.getpgrp():
            yield
            return
        # A background job changing the foreground (taking it back, here) would be stopped by SIGTTOU.
        ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            with suppress(OSError):  # ended already
                os.tcsetpgrp(terminal, group)
            _signal_group(group, signal.SIGCONT)  # in case it touched the terminal before it had it
            yield
        finally:
            with suppress(OSError):  # the terminal is gone (hung up)
                os.tcsetpgrp(terminal, os.getpgrp())
            signal.signal(signal.SIGTTOU, ttou)
    finally:
        os.close(terminal)


def _end_group(group: int, grace_seconds: float, received: list[int]) -> None:
    """Wait up to ``grace_seconds`` for every process of ``group`` to end, or until a signal is added to
    ``received`` (a second Ctrl-C: do not wait), then kill what is left."""
    deadline, signals = time.monotonic() + grace_seconds, len(received)
    with suppress(ProcessLookupError):
        while time.monotonic() < deadline and len(received) == signals:
            os.killpg(group, 0)  # signal 0: only asks whether any is left
            time.sleep(0.1)
        os.killpg(group, signal.SIGKILL)


def cmd_demo(args: argparse.Namespace) -> int:
    from genesys_assets.demo import run_demo

    try:
        return run_demo(days_between(args.start, args.end), _sandbox(args))
    except KeyboardInterrupt:  # Ctrl-C while the sandbox starts or stops: it has stopped
        print("genesys-assets demo: interrupted; the sandbox stopped.", file=sys.stderr)
        return 128 + signal.SIGINT


def cmd_doctor(args: argparse.Namespace) -> int:
    from genesys_assets.definitions import build_resources
    from genesys_assets.doctor import initialized, print_report, run_checks
    from genesys_assets.sandbox.services import SandboxEndpoints

    live = settings.mode() == settings.LIVE
    context = nullcontext() if live or SandboxEndpoints.load() else _sandbox(args)
    with context as sandbox:
        if sandbox is not None:
            assert sandbox.endpoints is not None
            os.environ.update(sandbox.endpoints.to_env())
        print(f"{'Live' if live else 'Sandbox'} mode: checking what the assets need.\n", flush=True)
        with initialized(build_resources()) as (resources, problems):
            checks = problems + run_checks(resources, os.environ.get("GENESYS_STAGING_BUCKET"))
        print_report(checks, sys.stdout)
    return 0 if all(check.ok for check in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genesys-assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def with_days(sub: argparse.ArgumentParser, help_range: str) -> None:
        sub.add_argument("--start", type=_day, default=DEFAULT_DEMO_START, help=f"first day {help_range}")
        sub.add_argument("--end", type=_day, default=DEFAULT_DEMO_END, help=f"last day {help_range}")
        sub.add_argument("--conversations-per-day", type=int, default=2000,
                         help="Genesys Cloud conversations the sandbox tenant has each day (default 2000)")
        sub.add_argument("--interactions-per-day", type=int, default=300,
                         help="PureConnect interactions the sandbox site has each day (default 300)")

    sandbox = commands.add_parser("sandbox", help="serve the sandbox services until interrupted")
    with_days(sandbox, "of PureConnect history to build (YYYY-MM-DD, inclusive)")
    sandbox.set_defaults(handler=cmd_sandbox)

    dev = commands.add_parser("dev", help="the sandbox (unless live) plus the Dagster UI and daemon")
    with_days(dev, "of PureConnect history to build in the sandbox (inclusive)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(handler=cmd_dev)

    demo = commands.add_parser("demo", help="materialize every asset for each day on the sandbox, headless")
    with_days(demo, "to materialize (YYYY-MM-DD, inclusive)")
    demo.set_defaults(handler=cmd_demo)

    doctor = commands.add_parser("doctor", help="check connectivity, token, permissions, bucket and database access")
    with_days(doctor, "of PureConnect history, if doctor has to start a sandbox itself")
    doctor.set_defaults(handler=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command in ("dev", "doctor"):  # the commands that follow the mode (sandbox and demo are sandbox-only)
        try:
            settings.mode()
        except ValueError as exc:  # half a credential, an unknown GENESYS_MODE: one line, not a traceback
            print(f"genesys-assets: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    raise SystemExit(args.handler(args))


if __name__ == "__main__":
    main()
