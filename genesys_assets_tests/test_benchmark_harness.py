"""The harness's alternating rounds: sides take turns, and each side reports a run it made, the median one."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import alternating_rounds


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
