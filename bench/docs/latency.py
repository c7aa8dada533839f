"""The docs' overhead block (:mod:`bench.docs.run`): the proxy against the minimal aiohttp
passthrough of the same run (``bench/results/latency.json``, written by
``python -m bench.latency --json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.docs.format import num

Results = Mapping[str, Mapping[str, Any]]

SOURCES = ("latency.json",)
# The modes the table shows, in its order, and how it names them.
MODES = (
    ("passthrough", "passthrough (an upstream model)"),
    ("hash", "route, hash predictor (cache hit)"),
    ("onnx", "route, ONNX predictor (cache hit)"),
)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{num(value, 2)} ms"


def _verdict(figures: Mapping[str, Any], name: str) -> str:
    target = figures["targets"].get(name)
    if target is None:
        return ""
    sign = "≥" if name == "rps_c32_vs_floor" else "≤"
    return f" ({'met' if target['pass'] else 'missed'}: {sign} {target['limit']:g})"


def overhead_table(results: Results) -> str:
    """Each mode's figures as ratios and differences to the floor, with the targets."""
    run = results["latency"]
    machine = run["machine"]
    floor = run["modes"]["floor"]
    lines = [
        f"`python -m bench.latency --json bench/results/latency.json` on {machine['cpu']} "
        f"({machine['cpu_count']} cores, the proxy pinned to one; load average "
        f"{num(machine['load_average_start'][0], 1)} at the start, "
        f"{'quick' if run['quick'] else 'full'} counts, {machine['date']}). The floor, a minimal "
        f"aiohttp + uvloop passthrough, did {run['modes']['floor']['rps']['32']:,.0f} req/s at "
        f"c=32 with {floor['cpu_us_per_request']:,.0f} µs of CPU per request and "
        f"{floor['peak_rss_mb']:.0f} MB peak RSS; read the ratios, not the absolute figures.",
        "",
        "| | c=32 req/s × the floor | CPU µs / request | c=1 p50 / p99 over the floor "
        "| stream TTFB p50 over the floor | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for mode, label in MODES:
        figures = run["modes"].get(mode)
        if figures is None or "skipped" in figures:
            continue
        vs = figures["vs_floor"]
        cpu = figures["cpu_us_per_request"]
        lines.append(
            f"| {label} | {num(vs['rps_c32_vs_floor'], 2)}×{_verdict(figures, 'rps_c32_vs_floor')} "
            f"| {cpu:,.0f} ({num(vs['cpu_vs_floor'], 2)}× the floor)"
            f"{_verdict(figures, 'cpu_us_per_request')} "
            f"| {_ms(vs['p50_over_floor_ms'])}{_verdict(figures, 'p50_over_floor_ms')} / "
            f"{_ms(vs['p99_over_floor_ms'])}{_verdict(figures, 'p99_over_floor_ms')} "
            f"| {_ms(vs['ttfb_over_floor_ms'])}{_verdict(figures, 'ttfb_over_floor_ms')} "
            f"| {figures['peak_rss_mb']:.0f} MB{_verdict(figures, 'peak_rss_mb')} |"
        )
    return "\n".join(lines)
