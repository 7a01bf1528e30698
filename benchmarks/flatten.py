"""Scenario 1 (flatten a day of details-job pages into the lake's five tables) and scenario 5 (its scaling).

Ours is ``replay_pass`` as the wrapup_facts asset and a replay run it (``DayFlattener`` fed page by page, the pages read
ahead on a thread). Baseline A is the seed-style loop (:mod:`benchmarks.seed_flatten`); baseline B is the floor:
``pyarrow.json`` parsing the same pages into Arrow with a block larger than a page, and nothing else. Each variant
runs in its own subprocess on the same page file.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from benchmarks.flatten_data import DAY, PageSet, iter_pages, prepare_pages
from benchmarks.harness import (
    Scale,
    ScenarioResult,
    alternating_rounds,
    at_least,
    at_most,
    bench_home,
    log,
    ratio,
    run_child,
)

HMAC_KEY = "bench-pii-hash-key-0123456789"
FLATTEN_ROUNDS = 3  # ours and the floor alternate: this machine's speed drifts by +-30 % within minutes
_TABLES = ("conversations", "participants", "sessions", "segments", "wrapup_facts")


def _labels() -> Any:
    """The wrap-up code dimension as of the day (one version per code), as the wrapup_facts asset reads it."""
    import polars as pl

    from genesys_assets.sandbox.directory import build_directory

    codes = build_directory().wrapup_codes
    return pl.DataFrame({"wrap_up_code_id": [c.id for c in codes],
                         "wrap_up_code_label": [c.name_as_of(DAY) for c in codes]})


def _out_dir(args: dict[str, Any]) -> Path:
    out = Path(args["out"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def child_ours(args: dict[str, Any]) -> dict[str, Any]:
    """Ours: ``replay_pass`` (the wrapup_facts asset's and a replay's path: DayFlattener fed page by page, pages
    read ahead on a thread) into the five tables."""
    from genesys_assets.lib.analytics_extract import replay_pass
    from genesys_assets.lib.conversation_details import TABLES
    from genesys_assets.lib.pii import AddressHasher

    out = _out_dir(args)
    labels = _labels()
    hasher = AddressHasher(HMAC_KEY)
    start = time.perf_counter()
    result = replay_pass(iter_pages(args["pages"]), DAY, out / "work", hasher, labels=labels, tables=TABLES)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": result.rows, "bytes_written": sum(result.bytes_written.values()),
            "duplicates": result.duplicate_conversations, "neighbours": result.dropped_neighbours}


def child_seed(args: dict[str, Any]) -> dict[str, Any]:
    """Baseline A: the seed-style loop."""
    from benchmarks.seed_flatten import SeedFlattener

    out = _out_dir(args)
    labels = dict(_labels().iter_rows())
    start = time.perf_counter()
    flattener = SeedFlattener(DAY, out / "tables", HMAC_KEY, labels)
    for raw in iter_pages(args["pages"]):
        flattener.add_page(raw)
    rows = flattener.finish()
    seconds = time.perf_counter() - start
    written = sum(f.stat().st_size for f in (out / "tables").rglob("*.parquet"))
    return {"seconds": seconds, "rows": rows, "bytes_written": written}


def child_parse_floor(args: dict[str, Any]) -> dict[str, Any]:
    """Baseline B: pyarrow.json into Arrow (schema inferred, one block per page) and nothing else."""
    import pyarrow.json as pj

    start = time.perf_counter()
    conversations = 0
    for raw in iter_pages(args["pages"]):
        block = 1 << max(20, (len(raw) + 1024).bit_length())
        table = pj.read_json(io.BytesIO(raw), read_options=pj.ReadOptions(block_size=block))
        conversations += len(table.column("conversations").combine_chunks().flatten())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": {"conversations": conversations}}


def _figures(run: dict[str, Any], pages: PageSet) -> dict[str, Any]:
    seconds = run["seconds"]
    return {
        "seconds": round(seconds, 3),
        "conversations": pages.conversations,
        "day_conversations": pages.day_conversations,
        "rows_per_s": round(pages.conversations / seconds),
        "mb_per_s": round(pages.bytes / 1e6 / seconds, 1),
        "input_mb": round(pages.bytes / 1e6, 1),
        "peak_rss_mib": run["peak_rss_mib"],
        "http_requests": 0,
        **({"rows_out": run["rows"]} if "rows" in run else {}),
    }


def _run_ours(pages: PageSet, tmp: str) -> dict[str, Any]:
    log(f"flatten: ours on {pages.day_conversations:,} conversations")
    run = run_child("benchmarks.flatten:child_ours", {"pages": str(pages.path), "out": tmp}, inputs=(pages.path,))
    if run["rows"]["conversations"] != pages.day_conversations:
        raise AssertionError(f"ours wrote {run['rows']['conversations']} conversations, "
                             f"expected {pages.day_conversations}")
    return run


def _run_floor(pages: PageSet) -> dict[str, Any]:
    return run_child("benchmarks.flatten:child_parse_floor", {"pages": str(pages.path)}, inputs=(pages.path,))


def measure_ours(conversations: int) -> tuple[dict[str, Any], str]:
    """Ours at one size (a scaling point): the median of ``FLATTEN_ROUNDS`` runs, and the note with every run."""
    pages = prepare_pages(conversations)
    label = f"ours @ {conversations:,}"
    with tempfile.TemporaryDirectory(prefix="bench-flatten-", dir=bench_home()) as tmp:
        runs, note = alternating_rounds(FLATTEN_ROUNDS, {label: lambda _: _run_ours(pages, tmp)})
    return _figures(runs[label], pages), note


def scenario_flatten(scale: Scale) -> ScenarioResult:
    n = scale.conversations
    pages = prepare_pages(n)
    with tempfile.TemporaryDirectory(prefix="bench-flatten-", dir=bench_home()) as tmp:
        log("flatten: ours and baseline B (pyarrow.json parse only), alternating")
        runs, rounds_note = alternating_rounds(FLATTEN_ROUNDS, {
            "ours": lambda _: _run_ours(pages, tmp),
            "B_parse_floor": lambda _: _run_floor(pages),
        })
        ours, b = _figures(runs["ours"], pages), _figures(runs["B_parse_floor"], pages)
        res = ScenarioResult("flatten", f"1. Flatten {n:,} conversations of details-job pages -> 5 Parquet tables",
                             scale.name, ours)
        res.baselines["B_parse_floor"] = b
        res.notes.append(rounds_note)
        if n <= scale.baseline_a_max:
            log("flatten: baseline A (seed-style loop)")
            a = _figures(run_child("benchmarks.flatten:child_seed", {"pages": str(pages.path), "out": tmp},
                                   inputs=(pages.path,)), pages)
            res.baselines["A_seed_loop"] = a
        else:
            a = None
            res.notes.append(f"baseline A skipped above {scale.baseline_a_max:,} conversations")
    speedup = ratio(a["seconds"], ours["seconds"]) if a else None
    vs_floor = ratio(ours["seconds"], b["seconds"])
    res.ratios = {"throughput_vs_A": speedup, "time_vs_B": vs_floor,
                  "rss_vs_A": ratio(ours["peak_rss_mib"], a["peak_rss_mib"]) if a else None}
    res.targets = [
        at_least("throughput vs baseline A", speedup, 10),
        at_most("time vs baseline B (x)", vs_floor, 1.5),
        at_most("peak RSS MiB", ours["peak_rss_mib"], 512, note=f"at {n:,} conversations (target read at 1M)"),
    ]
    return res


def scenario_scaling(scale: Scale, largest: dict[str, Any] | None) -> ScenarioResult:
    """Scenario 1 at growing sizes: time per conversation and peak RSS must stay flat."""
    points: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for n in scale.scaling:
        if largest is not None and n == largest.get("day_conversations"):
            points[str(n)] = largest
        else:
            points[str(n)], note = measure_ours(n)
            notes.append(note)
    sizes = sorted(points, key=int)
    res = ScenarioResult("scaling", f"5. Scaling of scenario 1 over {', '.join(f'{int(s):,}' for s in sizes)}",
                         scale.name, {"points": points})
    res.notes.extend(notes)
    smallest = points[sizes[0]]
    res.baselines[f"at_{sizes[0]}"] = smallest
    for lo, hi in pairwise(sizes):
        growth = int(hi) / int(lo)
        t = points[hi]["seconds"] / points[lo]["seconds"] / growth
        res.ratios[f"time_beyond_linear_{lo}_to_{hi}"] = round(t, 3)
        res.targets.append(at_most(f"time beyond linear {int(lo):,}->{int(hi):,} (per {growth:g}x)", t, 1.2))
    if "100000" in points and "1000000" in points:
        m = points["1000000"]["peak_rss_mib"] / points["100000"]["peak_rss_mib"]
        res.ratios["rss_1M_vs_100k"] = round(m, 3)
        res.targets.append(at_most("peak RSS 1M / 100k", m, 1.3))
    else:
        m = points[sizes[-1]]["peak_rss_mib"] / points[sizes[0]]["peak_rss_mib"]
        res.ratios[f"rss_{sizes[-1]}_vs_{sizes[0]}"] = round(m, 3)
        res.notes.append("the RSS target (1M vs 100k) is read at --scale large")
    return res
