"""The harness: alternating rounds (sides take turns, each reports a run it made, the median one), and a measured
child gets its arguments, credentials among them, where no other process can read them."""

from __future__ import annotations

import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import alternating_rounds, run_child


def test_rounds_alternate_and_each_side_reports_its_median_run() -> None:
    order: list[tuple[str, int]] = []
    seconds = {"ours": [3.0, 1.0, 2.0], "theirs": [9.0, 7.0, 8.0]}

    def side(name: str) -> Any:
        def run(r: int) -> dict[str, Any]:
            order.append((name, r))
            return {"seconds": seconds[name][r], "round": r}
        return run

    medians, note = alternating_rounds(3, {"ours": side("ours"), "theirs": side("theirs")})
    assert order == [("ours", 0), ("theirs", 0), ("ours", 1), ("theirs", 1), ("ours", 2), ("theirs", 2)]
    assert medians == {"ours": {"seconds": 2.0, "round": 2}, "theirs": {"seconds": 8.0, "round": 2}}
    assert "ours [3.0, 1.0, 2.0]" in note and "theirs [9.0, 7.0, 8.0]" in note


def child_report(args: dict[str, Any]) -> dict[str, Any]:
    """(a benchmark child) What it was given, and the command line every process on the machine could read."""
    return {"seconds": 0.0, "args": args, "cmdline": Path("/proc/self/cmdline").read_bytes().decode()}


def test_child_gets_its_arguments_off_the_command_line() -> None:
    secret = "sandbox-secret-" + secrets.token_hex(8)
    args = {"secret": secret, "folder": "/tmp/x", "rounds": 3}
    result = run_child("genesys_assets_tests.test_benchmark_harness:child_report", args)
    assert result["args"] == args  # all of them, intact
    assert "benchmarks.child" in result["cmdline"] and secret not in result["cmdline"]


def test_a_child_that_dies_before_reading_its_arguments_is_reported_by_its_exit_code(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Arguments larger than a pipe's buffer: the write waits for a reader, and the child exits without reading.
    monkeypatch.setattr(sys, "executable", shutil.which("false"))
    with pytest.raises(RuntimeError, match="failed with exit code 1"):
        run_child("genesys_assets_tests.test_benchmark_harness:child_report", {"commands": ["x" * 1024] * 1024})
