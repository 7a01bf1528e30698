"""Smoke test of the performance harness: ``--scale small`` runs every scenario and writes complete JSON.

It is part of the default suite (CI runs it: 100 s in a fresh clone, data generation included). No thresholds are
asserted (CI machines vary); the targets are read from ``--scale large`` on a quiet machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("flatten", "api", "recordings", "legacy", "scaling")


@pytest.mark.timeout(900)  # ~100 s on a quiet machine; a loaded CI runner may take several times that
def test_small_scale_writes_every_scenario_with_figures_and_baselines(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "GENESYS_BENCH_HOME": os.environ.get("GENESYS_BENCH_HOME", str(REPO / ".genesys" / "bench"))}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--scale", "small", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["scale"] == "small"
    assert set(report["scenarios"]) == set(SCENARIOS)
    for name, scenario in report["scenarios"].items():
        assert scenario["figures"], name
        if name == "recordings" and not (shutil.which("aws") and shutil.which("ffmpeg")):
            # Its baselines are external programs (awscli, ffmpeg); without them the report says how to get them.
            assert any("not installed" in note for note in scenario["notes"]), scenario["notes"]
            continue
        assert scenario["baselines"], name
        assert scenario["ratios"], name
        assert scenario["targets"], name
        for target in scenario["targets"]:
            assert {"name", "wanted", "value", "met"} <= set(target), (name, target)
    flatten = report["scenarios"]["flatten"]
    assert flatten["figures"]["seconds"] > 0 and flatten["figures"]["peak_rss_mib"] > 0
    assert {"A_seed_loop", "B_parse_floor"} <= set(flatten["baselines"])
    assert report["scenarios"]["api"]["figures"]["http_requests"] > 0
    assert "Flatten" in proc.stdout  # the printed table
