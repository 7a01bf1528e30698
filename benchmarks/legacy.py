"""Scenario 4: a day of PureConnect InteractionSummary rows -> canonical Parquet (the legacy_interactions asset's work).

Ours: ``PureConnectResource.read_day`` (connectorx into Arrow, InteractionSummary in rowid ranges on parallel
connections) -> ``normalise_day`` (Polars; DuckDB's SHA-1 for the UUIDv5 ids) -> the three Parquet files the asset
writes. Baseline: a row-by-row Python normaliser written like seed 000's loop (DB-API cursor, one dict per row, a
``set`` for duplicates, ``zoneinfo`` per row, ``uuid5`` per row, ``pa.Table.from_pylist``, ``pq.write_table``),
reading the same rows with the same SQL (``sqlite_day_queries``, InteractionSummary as one statement).

Input: the sandbox site. ``build_site`` writes rows at ~1.5 ms each, which would take ~25 min for a million, so a
day of up to ``BASE_ROWS`` is built with the site's generator (traps included: duplicates, local-time rows,
end-before-start...) and copied in SQL with new InteractionIDs until the day holds the scale's row count.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.harness import Scale, ScenarioResult, alternating_rounds, at_least, bench_home, log, ratio, run_child

DAY = date(2024, 3, 5)
BASE_ROWS = 50_000
_CHILD_TABLES = ("InteractionWrapup", "InteractionCustomAttributes")
ROUNDS = 3  # alternating rounds per side: see benchmarks.harness.alternating_rounds


def prepare_site(rows: int) -> Path:
    """A site whose DAY holds about ``rows`` InteractionSummary rows (cached)."""
    from genesys_assets.sandbox.pureconnect_site import build_site

    root = bench_home() / "legacy" / f"site-{rows}"
    done = root / "READY"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    base = min(rows, BASE_ROWS)
    log(f"legacy: building a PureConnect site day of {base:,} interactions (cached under {root})")
    site = build_site(root, DAY, DAY, interactions_per_day=base)
    copies = max(1, round(rows / base))
    with sqlite3.connect(site.db_path) as con:
        originals = {t: con.execute(f"SELECT MAX(rowid) FROM {t}").fetchone()[0] or 0
                     for t in ("InteractionSummary", *_CHILD_TABLES)}
        for k in range(1, copies):
            # A copy with fresh ids: InteractionID moves by k million (the 6-digit row part is untouched), and
            # the 18-char InteractionIDKey (InteractionID + yyyymmdd) follows it.
            new_id = f"(InteractionID + {k * 1_000_000})"
            key = f"CAST({new_id} AS TEXT) || substr(InteractionIDKey, 11)"
            cols = [r[1] for r in con.execute("PRAGMA table_info(InteractionSummary)")]
            select = ", ".join(key if c == "InteractionIDKey" else new_id if c == "InteractionID" else c
                               for c in cols)
            con.execute(f"INSERT INTO InteractionSummary ({', '.join(cols)}) SELECT {select} FROM InteractionSummary "
                        f"WHERE rowid <= {originals['InteractionSummary']}")
            for table in _CHILD_TABLES:
                cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
                shifted = f"CAST(CAST(substr(InteractionIDKey, 1, 10) AS INTEGER) + {k * 1_000_000} AS TEXT)"
                select = ", ".join(f"{shifted} || substr(InteractionIDKey, 11)" if c == "InteractionIDKey" else c
                                   for c in cols)
                con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {table} "
                            f"WHERE rowid <= {originals[table]}")
    done.write_text(str(rows))
    return root


def _rows_of_day(root: Path) -> int:
    from genesys_assets.sandbox.pureconnect_site import PureConnectSite

    with sqlite3.connect(PureConnectSite.open(root).db_path) as con:
        return int(con.execute("SELECT COUNT(*) FROM InteractionSummary").fetchone()[0])


def child_ours(args: dict[str, Any]) -> dict[str, Any]:
    """read_day -> normalise_day -> the asset's three Parquet files."""
    from genesys_assets.lib import legacy_lake as paths
    from genesys_assets.lib.legacy_interactions import normalise_day
    from genesys_assets.lib.pii import AddressHasher
    from genesys_assets.resources.lake import Lake
    from genesys_assets.resources.pureconnect import PureConnectResource
    from genesys_assets.sandbox.pureconnect_site import PureConnectSite

    site = PureConnectSite.open(Path(args["site"]))
    lake = Lake(base_uri=args["out"])
    start = time.perf_counter()
    legacy = PureConnectResource(uri=site.uri).read_day(DAY)
    read = time.perf_counter() - start
    result = normalise_day(legacy, DAY, site.timezone, AddressHasher(args["key"]))
    normalise = time.perf_counter() - start - read
    written = paths.write_day(lake, paths.INTERACTIONS, DAY, "interactions.parquet", result.interactions)
    written += paths.write_day(lake, paths.quarantine_base("interactions"), DAY, "quarantine.parquet", result.rejects)
    written += paths.write_day(lake, paths.RECORDING_LINKS, DAY, "recording_links.parquet", result.recording_links)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "read_seconds": read, "normalise_seconds": normalise,
            "source_rows": result.stats["source_rows"], "accepted": result.interactions.height,
            "rejected": result.rejects.height, "bytes_written": written}


def child_seed(args: dict[str, Any]) -> dict[str, Any]:
    """The seed-000-style loop over the same rows."""
    from benchmarks.seed_legacy import normalise_rows
    from genesys_assets.resources.pureconnect import PureConnectResource
    from genesys_assets.sandbox.pureconnect_site import PureConnectSite

    site = PureConnectSite.open(Path(args["site"]))
    resource = PureConnectResource(uri=site.uri)
    start = time.perf_counter()
    # The same SQL as ours: InteractionSummary as one statement of the rowid-ordered read (the index-driven plain
    # query costs SQLite ~12 s of random page reads at 1M rows, which ours no longer pays either), and the keyed
    # tables driven by that rowid range (the same rows in the same order as the EXISTS queries, for less).
    queries = {name: sql if isinstance(sql, str) else sql[0]
               for name, sql in resource.sqlite_day_queries(DAY, partitions=1).items()}
    stats = normalise_rows(site.db_path, queries, DAY, site.timezone, args["key"], Path(args["out"]))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **stats}


def _figures(run: dict[str, Any], rows: int) -> dict[str, Any]:
    return {"seconds": round(run["seconds"], 3), "rows": rows, "rows_per_s": round(rows / run["seconds"]),
            "peak_rss_mib": run["peak_rss_mib"], "http_requests": 0,
            **{k: run[k] for k in ("accepted", "rejected") if k in run},
            **{k: round(run[k], 3) for k in ("read_seconds", "normalise_seconds") if k in run}}


def scenario_legacy(scale: Scale) -> ScenarioResult:
    from genesys_assets.sandbox.pureconnect_site import PureConnectSite

    root = prepare_site(scale.legacy_rows)
    rows = _rows_of_day(root)
    args = {"site": str(root), "key": "bench-pii-hash-key-0123456789"}
    # Both sides read the database only: warming the site's recordings too (1.8 GB at large) left the kernel
    # reclaiming page cache on the two cores while the variant ran (ours: 10-20 s from one run to the next).
    database = (PureConnectSite.open(root).db_path,)
    with tempfile.TemporaryDirectory(prefix="bench-legacy-", dir=bench_home()) as tmp:
        log(f"legacy: ours and the baseline (seed-000-style row loop) on {rows:,} rows")
        medians, rounds_note = alternating_rounds(ROUNDS, {
            "ours": lambda r: run_child("benchmarks.legacy:child_ours", {**args, "out": f"{tmp}/ours-{r}"},
                                        inputs=database),
            "row loop": lambda r: run_child("benchmarks.legacy:child_seed", {**args, "out": f"{tmp}/seed-{r}"},
                                            inputs=database)})
    ours, base = _figures(medians["ours"], rows), _figures(medians["row loop"], rows)
    res = ScenarioResult("legacy", f"4. Legacy normalisation: {rows:,} InteractionSummary rows -> canonical Parquet",
                         scale.name, ours, {"row_loop": base})
    speed = ratio(base["seconds"], ours["seconds"])
    res.ratios = {"throughput_vs_row_loop": speed, "rss_vs_row_loop": ratio(ours["peak_rss_mib"],
                                                                           base["peak_rss_mib"])}
    res.targets = [at_least("throughput vs row-by-row loop", speed, 10)]
    res.notes.append(f"ours: read_day {ours.get('read_seconds')} s (connectorx from the SQLite site), "
                     f"normalise_day {ours.get('normalise_seconds')} s, the rest writing Parquet")
    res.notes.append(rounds_note)
    res.notes.append(f"rows include the day's neighbours the site stores (window of the day +/- local offsets); "
                     f"built as {BASE_ROWS:,}-row site days copied with new ids above that size")
    return res

