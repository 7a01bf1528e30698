"""The printed table: one block per scenario, ours next to each baseline, the ratio and the target verdicts."""

from __future__ import annotations

from typing import Any

_COLUMNS = (("seconds", "s"), ("rows_per_s", "rows/s"), ("mb_per_s", "MB/s"), ("peak_rss_mib", "RSS MiB"),
            ("http_requests", "HTTP req"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _row(label: str, figures: dict[str, Any]) -> str:
    return f"  {label:<28}" + "".join(f"{_cell(figures.get(k)):>13}" for k, _ in _COLUMNS)


def render_table(report: dict[str, Any]) -> str:
    lines = [f"genesys-assets benchmarks, scale={report['scale']}, {report['machine']['cpus']} CPUs, "
             f"total {report['total_seconds']} s, load average at end {report['machine']['load_average_at_end']}"]
    header = f"  {'':<28}" + "".join(f"{name:>13}" for _, name in _COLUMNS)
    for res in report["scenarios"].values():
        lines += ["", res["title"], header]
        figures = res["figures"]
        if "points" in figures:
            for size, point in figures["points"].items():
                lines.append(_row(f"ours @ {int(size):,}", point))
        else:
            nested = {k: v for k, v in figures.items() if isinstance(v, dict) and "seconds" in v}
            if not nested or "seconds" in figures:
                lines.append(_row("ours", figures))
            for name, part in nested.items():
                lines.append(_row(f"ours {name}", part))
            for name, base in res["baselines"].items():
                lines.append(_row(f"baseline {name}", base))
        ratios = ", ".join(f"{k} {v}" for k, v in res["ratios"].items() if v is not None)
        if ratios:
            lines.append(f"  ratios: {ratios}")
        for t in res["targets"]:
            verdict = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
            note = f"  ({t['note']})" if t["note"] else ""
            lines.append(f"  target {t['name']}: {t['value']} wanted {t['wanted']} -> {verdict}{note}")
        lines += [f"  note: {n}" for n in res["notes"]]
    return "\n".join(lines)
