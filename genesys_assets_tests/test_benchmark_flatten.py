"""The flatten and scaling scenarios compare medians of alternating runs, not single runs minutes apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import flatten
from benchmarks.flatten_data import PageSet
from benchmarks.harness import Scale

# the flatten scenario at 100 conversations, scaling points at 10 and 100 (the other scenarios unused)
SCALE = Scale("t", 100, (10, 100), 0, 0, 0, 0, baseline_a_max=0)
# seconds per call, in call order, for each child a scenario starts (each test starts from the first)
SECONDS = {"child_ours": [9.0, 5.0, 7.0], "child_parse_floor": [2.0, 4.0, 3.0]}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    made: list[str] = []

    def pages(n: int) -> PageSet:
        return PageSet(tmp_path / f"pages-{n}.ndjson", pages=1, conversations=n, day_conversations=n, bytes=10**6)

    def run_child(target: str, args: dict[str, Any], **_: Any) -> dict[str, Any]:
        name = target.split(":")[1]
        made.append(name)
        seconds = SECONDS[name][sum(1 for m in made if m == name) - 1]
        written = int(Path(args["pages"]).stem.removeprefix("pages-"))  # ours checks it wrote the whole day
        return {"seconds": seconds, "peak_rss_mib": seconds * 10, "rows": {"conversations": written}}

    monkeypatch.setattr(flatten, "prepare_pages", pages)
    monkeypatch.setattr(flatten, "run_child", run_child)
    monkeypatch.setattr(flatten, "bench_home", lambda: tmp_path)
    return made


def test_flatten_alternates_ours_and_the_floor_and_reads_their_medians(calls: list[str]) -> None:
    res = flatten.scenario_flatten(SCALE)
    assert calls == ["child_ours", "child_parse_floor"] * 3
    assert res.figures["seconds"] == 7.0 and res.figures["peak_rss_mib"] == 70.0  # ours' median run, whole
    assert res.baselines["B_parse_floor"]["seconds"] == 3.0
    assert res.ratios["time_vs_B"] == round(7.0 / 3.0, 3)
    assert any("ours [9.0, 5.0, 7.0]" in n and "B_parse_floor [2.0, 4.0, 3.0]" in n for n in res.notes)


def test_scaling_points_are_medians_of_three_runs(calls: list[str]) -> None:
    largest = {"seconds": 100.0, "peak_rss_mib": 50.0, "day_conversations": 100}
    res = flatten.scenario_scaling(SCALE, largest)
    assert calls == ["child_ours"] * 3  # the largest point is the flatten scenario's, not run again
    assert res.figures["points"]["10"]["seconds"] == 7.0
    assert res.ratios["time_beyond_linear_10_to_100"] == round(100.0 / 7.0 / 10, 3)
