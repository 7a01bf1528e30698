"""How ``genesys-assets dev`` stops Dagster, which runs in a process group of its own: each stop signal is handed
to the whole group once, at a terminal the group is the foreground job, and nothing of it outlives ``dev``."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from genesys_assets_tests.support import ends_within

# Stands in for `dagster dev`: starts a process of its group that ignores Ctrl-C (a stuck run), counts the Ctrl-Cs
# it gets itself until it has slept a while, and exits with the count, leaving that process behind.
_DAGSTER_DEV = """
import signal, subprocess, sys, time
stuck = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                          "print(flush=True); time.sleep(120)"], stdout=subprocess.PIPE)
stuck.stdout.readline()
received = []
signal.signal(signal.SIGINT, lambda *_: received.append(1))
print(stuck.pid, flush=True)
time.sleep(1.5)
sys.exit(len(received))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_dev_hands_a_signal_to_dagsters_group_once_then_ends_what_is_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals) -> None:
    """A signal that lands while Dagster starts (before we have it in hand) is still handed on, once, as the Ctrl-C
    Dagster expects; what is left of its group after it exits is killed once the grace period is over."""
    from genesys_assets import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "DAGSTER_GROUP_GRACE_SECONDS", 0.5)
    children: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def starts_then_signalled(command: list[str], **kwargs: object) -> subprocess.Popen:
        child = real_popen(command, stdout=subprocess.PIPE, text=True, **kwargs)
        children.append(child)
        assert child.stdout is not None
        children.append(int(child.stdout.readline()))  # its handler is in place; the stuck process's pid
        signal.raise_signal(signum)
        return child

    monkeypatch.setattr(cli.subprocess, "Popen", starts_then_signalled)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    code = cli._serve_dagster([sys.executable, "-c", _DAGSTER_DEV], dict(os.environ))
    dagster, stuck = children
    dagster.stdout.close()
    assert dagster.returncode == 1  # one Ctrl-C
    assert code == (128 + signal.SIGTERM if signum == signal.SIGTERM else 1)  # else what Dagster exited with
    assert ends_within(stuck, 10), "the process Dagster left behind is still running"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers


# Stands in for `dagster dev` at a terminal: says its pid, then writes a tick every 0.1 s; Ctrl-C ends it cleanly.
_DAGSTER_AT_A_TERMINAL = """
import os, signal, sys, time
signal.signal(signal.SIGINT, lambda *_: (print("dagster interrupted", flush=True), sys.exit(0)))
print("dagster pid", os.getpid(), flush=True)
for n in range(600):
    print("tick", n, flush=True)
    time.sleep(0.1)
"""

# `genesys-assets dev`'s way of serving Dagster, in a terminal (argv: "tostop" or not, DAGSTER_HOME).
_DEV_AT_A_TERMINAL = """
import os, sys, termios
if sys.argv[1] == "tostop":  # a background job's write to the terminal stops it
    attrs = termios.tcgetattr(0)
    attrs[3] |= termios.TOSTOP
    termios.tcsetattr(0, termios.TCSANOW, attrs)
os.environ["DAGSTER_HOME"] = sys.argv[2]
from genesys_assets.cli import _serve_dagster
code = _serve_dagster([sys.executable, "-c", sys.argv[3]], dict(os.environ))
try:
    print("dev exit", code, flush=True)
except OSError:  # the terminal is gone
    os._exit(code)
sys.exit(code)
"""


class _Terminal:
    """``dev`` run in a pseudo-terminal, the session's controlling terminal: what a person at a shell sees."""

    def __init__(self, tmp_path: Path, tostop: bool) -> None:
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the child: becomes dev
            os.execv(sys.executable, [sys.executable, "-c", _DEV_AT_A_TERMINAL, "tostop" if tostop else "-",
                                      str(tmp_path), _DAGSTER_AT_A_TERMINAL])
        self.output = ""

    def read_until(self, text: str, seconds: float = 20) -> str:
        deadline = time.monotonic() + seconds
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} did not appear: {self.output[-2000:]!r}"
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.output += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the terminal's other side is closed: everything on it has exited
                    break
        return self.output

    def exit_status(self, seconds: float = 20) -> int:
        deadline = time.monotonic() + seconds
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, "dev did not exit"
            time.sleep(0.05)

    def dagster_pid(self) -> int:
        return int(self.read_until("tick 0").split("dagster pid", 1)[1].split()[0])


@pytest.mark.parametrize("tostop", [False, True], ids=["terminal", "terminal with tostop"])
def test_ctrl_c_at_a_terminal_reaches_dagster_which_was_never_stopped_by_writing_to_it(
        tmp_path: Path, tostop: bool) -> None:
    """Dagster's group is the terminal's foreground job: its writes go on (with ``stty tostop`` a background job
    would be stopped at its first), and Ctrl-C reaches it, which ends ``dev`` with Dagster's own exit code."""
    terminal = _Terminal(tmp_path, tostop)
    dagster = terminal.dagster_pid()
    terminal.read_until("tick 3")  # writing to the terminal, not stopped
    os.write(terminal.master, b"\x03")  # Ctrl-C
    assert "dagster interrupted" in terminal.read_until("dev exit 0")
    assert terminal.exit_status() == 0
    assert ends_within(dagster, 10)
    os.close(terminal.master)


def test_closing_the_terminal_stops_dagster_and_dev(tmp_path: Path) -> None:
    """The terminal window closes (or ssh drops): the hangup ends Dagster's group and ``dev`` (128 + SIGHUP), which
    then stops its sandbox; nothing is left running."""
    terminal = _Terminal(tmp_path, tostop=False)
    dagster = terminal.dagster_pid()
    terminal.read_until("tick 3")
    os.close(terminal.master)
    assert terminal.exit_status() == 128 + signal.SIGHUP
    assert ends_within(dagster, 10)


def test_a_second_signal_cuts_the_grace_short_and_the_rest_of_dagster_is_killed() -> None:
    from genesys_assets import cli

    ignores_ctrl_c = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(120)"
    stuck = subprocess.Popen([sys.executable, "-c", ignores_ctrl_c], process_group=0)
    received: list[int] = [signal.SIGTERM]
    second = threading.Timer(0.3, received.append, [signal.SIGINT])  # a second Ctrl-C while it waits
    second.start()
    started = time.monotonic()
    cli._end_group(stuck.pid, 60, received)
    assert stuck.wait(timeout=10) == -signal.SIGKILL
    assert time.monotonic() - started < 10  # not the 60 s of grace


def test_dagster_killed_by_a_signal_exits_dev_with_128_plus_it(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from genesys_assets import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert cli._serve_dagster([sys.executable, "-c", killed], dict(os.environ)) == 128 + signal.SIGKILL
