"""Scenario 2: API efficiency of ``conversation_details`` for one day against the sandbox tenant.

The emulator runs in the harness process (its memory is not the asset's); the asset is materialised with
``dg.materialize`` in a measured subprocess, with the sandbox resource tuning ``definitions.py`` uses and the
asset's own default config, then again with ``page_size`` at the API's maximum (what a user who cares about
requests would configure). Requests are counted on the server (the emulator's request log, every attempt, 429s
included). The floor is what any client must ask for: one job submit, one status poll, one reconciliation (sync
``totalHits``) query and the result pages at the maximum page size for every conversation the job returned,
counted on the server (the job's own result list: the day's conversations plus the neighbours with activity in
it, which the asset drops but must still read). The same day is then run with 20 % of requests answered 429
(Retry-After: 1): wall time vs the fault-free run, and the five tables' bytes must be identical.

Every run is launched as ``analytics_availability_sensor`` launches it: the real sensor is evaluated first (its
token and watermark requests are the sensor's, made once a tick for every day, and not counted), and the run
carries the watermark it saw in its tags, so it does not ask for it again. A run launched by hand asks: +1 request.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import Scale, ScenarioResult, at_most, bench_home, log, ratio, run_child, target

DAY = date(2024, 3, 5)
PII_KEY = "bench-pii-hash-key-0123456789"


def child_materialize(args: dict[str, Any]) -> dict[str, Any]:
    """Materialise conversation_details for DAY against the emulator at ``base_url``."""
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from genesys_assets.defs.analytics import assets as analytics_assets
    from genesys_assets.resources.genesys_cloud import GenesysCloudResource
    from genesys_assets.resources.lake import Lake
    from genesys_assets.resources.pii import PiiHashingResource
    from genesys_assets.sandbox.genesys_emulator import CLIENT_TUNING

    home = Path(args["home"])
    resources = {
        "genesys": GenesysCloudResource(
            api_base_url=args["base_url"], client_id=args["client_id"], client_secret=args["client_secret"],
            **CLIENT_TUNING),  # as definitions.py configures it in sandbox mode
        "lake": Lake(base_uri=str(home / "lake")),
        "warehouse": DuckDBResource(database=str(home / "warehouse.duckdb")),
        "pii": PiiHashingResource(hash_key=PII_KEY),
    }
    start = time.perf_counter()
    run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    if args.get("config"):
        run_config["ops"] = {"conversation_details": {"config": args["config"]}}
    result = dg.materialize([analytics_assets.conversation_details], resources=resources,
                            partition_key=DAY.isoformat(), run_config=run_config, tags=args["tags"])
    seconds = time.perf_counter() - start
    meta: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        m = event.step_materialization_data.materialization
        meta = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    part = f"year={DAY.year:04d}/month={DAY.month:02d}/day={DAY.day:02d}"
    digests = {str(f.relative_to(home)): hashlib.sha256(f.read_bytes()).hexdigest()
               for f in sorted((home / "lake" / "analytics").glob(f"*/{part}/*.parquet"))}
    return {"seconds": seconds, "rows": int(meta.get("rows", 0)), "raw_pages": int(meta.get("raw_pages", 0)),
            "client_requests": int(meta.get("api_requests", 0)), "client_throttled": int(meta.get("api_throttled", 0)),
            "seconds_waiting": float(meta.get("api_seconds_waiting", 0.0)),
            "seconds_waiting_for_api": round(sum(w.get("seconds_waiting_for_api", 0.0)
                                                 for w in (meta.get("windows_tried") or [{}])[-1].get("windows", [])),
                                             3),
            "digests": digests}


def _kind(method: str, path: str) -> str:
    if path.startswith("/oauth"):
        return "token"
    if "/details/jobs/" in path and path.endswith("/results"):
        return "result_page"
    if path.endswith("/details/jobs"):
        return "job_submit"
    if path.endswith("/details/jobs/availability"):
        return "availability"
    if "/details/jobs/" in path:
        return "job_delete" if method == "DELETE" else "job_poll"
    if path.endswith("/details/query"):
        return "sync_query"
    return path.split("?")[0]


def _sensor_tags(emulator: Any) -> dict[str, str]:
    """The tags ``analytics_availability_sensor`` gives its run request for DAY (the real sensor, one tick)."""
    import dagster as dg

    from genesys_assets.defs.analytics.sensors import START_DATE_ENV, analytics_availability_sensor
    from genesys_assets.resources.genesys_cloud import GenesysCloudResource
    from genesys_assets.sandbox.genesys_emulator import CLIENT_TUNING

    genesys = GenesysCloudResource(api_base_url=emulator.base_url, client_id=emulator.client_id,
                                   client_secret=emulator.client_secret, **CLIENT_TUNING)
    previous = os.environ.get(START_DATE_ENV)
    os.environ[START_DATE_ENV] = DAY.isoformat()  # the sensor's start date: DAY is the day it requests first
    try:
        with dg.build_sensor_context(resources={"genesys": genesys}) as context:
            tick = analytics_availability_sensor(context)
    finally:
        if previous is None:
            del os.environ[START_DATE_ENV]
        else:
            os.environ[START_DATE_ENV] = previous
    return dict(tick.run_requests[0].tags)


def _run(emulator: Any, home: Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    tags = _sensor_tags(emulator)
    emulator.clear_request_log()
    jobs_before = set(emulator.jobs.jobs)
    out = run_child("benchmarks.api:child_materialize", {
        "base_url": emulator.base_url, "client_id": emulator.client_id, "client_secret": emulator.client_secret,
        "home": str(home), "config": config, "tags": tags})
    log_entries = [e for e in emulator.request_log() if not e["path"].startswith("/__sandbox__")]
    out["http_requests"] = len(log_entries)
    out["by_kind"] = dict(Counter(_kind(e["method"], e["path"]) for e in log_entries))
    out["answered_429"] = sum(1 for e in log_entries if e["status"] == 429)
    # What each job of this run returned, from the server's side: the floor's page count comes from it.
    out["job_results"] = [len(job.refs or []) for job_id, job in emulator.jobs.jobs.items()
                          if job_id not in jobs_before]
    return out


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    return {"seconds": round(run["seconds"], 3), "rows_per_s": round(run["rows"] / run["seconds"]),
            "peak_rss_mib": run["peak_rss_mib"], "http_requests": run["http_requests"], "rows": run["rows"],
            "result_pages": run["raw_pages"], "answered_429": run["answered_429"], "requests_by_kind": run["by_kind"]}


def scenario_api(scale: Scale) -> ScenarioResult:
    from genesys_assets.defs.analytics.assets import ConversationDetailsConfig
    from genesys_assets.sandbox.genesys_emulator import FaultConfig, GenesysEmulator
    from genesys_assets.sandbox.genesys_emulator_analytics import JOB_MAX_PAGE_SIZE

    n = scale.api_conversations
    state = bench_home() / "api" / f"tenant-{n}"
    with GenesysEmulator(state, conversations_per_day=n, faults=FaultConfig()) as emulator:
        for d in (DAY - timedelta(days=1), DAY):
            emulator.store.day(d)  # generate (or load) the days before anything is timed
        with tempfile.TemporaryDirectory(prefix="bench-api-", dir=bench_home()) as tmp:
            log(f"api: conversation_details for a day of {n:,} conversations, fault-free")
            clean = _run(emulator, Path(tmp) / "clean")
            emulator.set_faults(rate_429=0.2, retry_after="1")
            log("api: the same day with 20 % of requests answered 429 (Retry-After: 1)")
            faulty = _run(emulator, Path(tmp) / "faulty")
            emulator.set_faults(rate_429=0.0)
            log(f"api: the same day with page_size={JOB_MAX_PAGE_SIZE} (the API's maximum), fault-free")
            max_pages = _run(emulator, Path(tmp) / "max-page", {"page_size": JOB_MAX_PAGE_SIZE})
            emulator.set_faults(rate_429=0.2, retry_after="1")
            log(f"api: page_size={JOB_MAX_PAGE_SIZE} with 20 % of requests answered 429")
            max_faulty = _run(emulator, Path(tmp) / "max-page-faulty", {"page_size": JOB_MAX_PAGE_SIZE})
            emulator.set_faults(rate_429=0.0)
    landed = clean["raw_pages"]
    returned = clean["job_results"]
    floor_pages = sum(max(1, math.ceil(count / JOB_MAX_PAGE_SIZE)) for count in returned)
    floor = floor_pages + 2 * len(returned) + 1  # pages + per job one submit and one poll + one reconciliation
    default_page_size = ConversationDetailsConfig().page_size
    ours = _figures(clean)
    at_max = _figures(max_pages)
    res = ScenarioResult("api", f"2. API efficiency: conversation_details for one day of {n:,} conversations",
                         scale.name, ours)
    res.baselines["floor"] = {"http_requests": floor, "result_pages": floor_pages}
    res.baselines["fault_free"] = ours
    res.figures = {**ours, "with_429": _figures(faulty), f"page_size_{JOB_MAX_PAGE_SIZE}": at_max,
                   f"page_size_{JOB_MAX_PAGE_SIZE}_with_429": _figures(max_faulty)}
    req_ratio = ratio(max_pages["http_requests"], floor)
    wall_ratio = ratio(faulty["seconds"], clean["seconds"])
    wall_ratio_max = ratio(max_faulty["seconds"], max_pages["seconds"])
    identical = clean["digests"] == faulty["digests"] and bool(clean["digests"])
    identical_max = clean["digests"] == max_pages["digests"] == max_faulty["digests"]
    res.ratios = {"requests_vs_floor_at_max_page_size": req_ratio,
                  f"requests_vs_floor_at_page_size_{default_page_size}": ratio(clean["http_requests"], floor),
                  # the OAuth token every run must also fetch, on top of the floor
                  "requests_vs_floor_plus_token_at_max_page_size": ratio(max_pages["http_requests"], floor + 1),
                  "wall_429_vs_fault_free": wall_ratio, "wall_429_vs_fault_free_at_max_page_size": wall_ratio_max}
    res.targets = [
        at_most("requests vs floor", req_ratio, 1.1,
                note=f"asset run with page_size={JOB_MAX_PAGE_SIZE} (the API max); at its default page_size "
                     f"{default_page_size}: {clean['http_requests']} requests = "
                     f"{ratio(clean['http_requests'], floor)}x"),
        at_most("wall time with 20% 429 vs fault-free", wall_ratio, 1.5,
                note=f"default page_size {default_page_size}"),
        at_most("wall time with 20% 429 vs fault-free at max page size", wall_ratio_max, 1.5),
        target("output identical with 429s", "identical", float(identical), identical),
        target("output identical at max page size (+429s)", "identical", None, identical_max),
    ]
    res.notes.append(f"floor {floor}: {floor_pages} result pages for the {sum(returned):,} conversations the job "
                     f"returned (the day's plus neighbours) at {JOB_MAX_PAGE_SIZE:,} (the emulator's maximum page "
                     f"size; Genesys's SDK documents none), {len(returned)} submit + "
                     f"{len(returned)} poll, 1 sync totalHits query; the OAuth token every run needs is not counted "
                     "in it; each run is launched as the availability sensor launches it, with the watermark the "
                     "sensor saw (a run launched by hand asks for it: +1 request)")
    res.notes.append(f"at page_size {JOB_MAX_PAGE_SIZE}: {max_pages['http_requests']} requests "
                     f"{max_pages['by_kind']}; bytes identical to the default run: "
                     f"{max_pages['digests'] == clean['digests']}")
    res.notes.append("Retry-After slept / of it not hidden by the page pipeline (the pipeline stood waiting for the "
                     f"API, fetch latency included): default page size {faulty['seconds_waiting']} s / "
                     f"{faulty['seconds_waiting_for_api']} s (fault-free {clean['seconds_waiting_for_api']} s); "
                     f"at {JOB_MAX_PAGE_SIZE:,} {max_faulty['seconds_waiting']} s / "
                     f"{max_faulty['seconds_waiting_for_api']} s (fault-free {max_pages['seconds_waiting_for_api']} s)")
    res.notes.append(f"fault-free requests by kind {clean['by_kind']}; with 429s {faulty['by_kind']} "
                     f"({faulty['answered_429']} answered 429); result pages landed {landed}")
    return res
