"""``python -m benchmarks run [--scale small|medium|large] [--json PATH] [--only SCENARIO ...]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import SCALE_SIZES, SCALES, Scale, ScenarioResult, log
from benchmarks.report import render_table

SCENARIOS = ("flatten", "api", "recordings", "legacy", "scaling")


def _runners() -> dict[str, Callable[[Scale, dict[str, ScenarioResult]], ScenarioResult]]:
    from benchmarks import api, flatten, legacy, recordings

    def scaling(scale: Scale, done: dict[str, ScenarioResult]) -> ScenarioResult:
        first = done.get("flatten")
        return flatten.scenario_scaling(scale, first.figures if first else None)

    return {
        "flatten": lambda scale, done: flatten.scenario_flatten(scale),
        "scaling": scaling,
        "legacy": lambda scale, done: legacy.scenario_legacy(scale),
        "api": lambda scale, done: api.scenario_api(scale),
        "recordings": lambda scale, done: recordings.scenario_recordings(scale),
    }


def run(scale_name: str, only: list[str] | None, json_path: Path | None) -> dict[str, Any]:
    scale = SCALE_SIZES[scale_name]
    runners = _runners()
    done: dict[str, ScenarioResult] = {}
    started = time.perf_counter()
    # Flatten first: scaling reuses its largest point. Heavy runs are sequential (2 cores, shared machine).
    order = ["flatten", "scaling", "legacy", "api", "recordings"]
    for key in order:
        if only and key not in only:
            continue
        log(f"scenario {key} at scale {scale_name}")
        done[key] = runners[key](scale, done)
    report = {
        "scale": scale_name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_end": list(os.getloadavg())},
        "total_seconds": round(time.perf_counter() - started, 1),
        "scenarios": {key: res.as_json() for key, res in done.items()},
    }
    print(render_table(report))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str))
        log(f"JSON written to {json_path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the scenarios and print the table")
    p.add_argument("--scale", choices=SCALES, default="small")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--only", nargs="*", choices=SCENARIOS, help="run only these scenarios")
    args = parser.parse_args(argv)
    run(args.scale, args.only, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
