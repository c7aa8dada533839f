"""The latency benchmark's report: figures as ratios to direct, targets beside them, PASS/MISS.

The report is a plain JSON-able dict (see :func:`bench.latency.run.run_benchmark`); this module
turns
it into the printed table.
"""

from __future__ import annotations

from typing import Any

from bench.latency.stall import TARGET_STALL_MS, format_stalls

# The targets for the cache-hit routed path, and the floor it quotes (a minimal aiohttp +
# uvloop passthrough on the same 2-core setup) for context.
TARGET_ADDED_P50_MS = 0.6
TARGET_RPS_C32 = 2500.0
TARGET_TTFB_OVERHEAD_MS = 1.0
TARGET_RSS_MB = {"hash": 150.0, "hash+auth": 150.0, "onnx": 250.0}
TARGET_READY_S = 3.0
FLOOR_CPU_US = 200.0

# Every figure a mode's report carries (the test checks that they are all present).
MODE_FIGURES = (
    "ready_s",
    "p50_ms",
    "p99_ms",
    "added_p50_ms",
    "added_p99_ms",
    "ttfb_p50_ms",
    "ttfb_overhead_ms",
    "rps",
    "cpu_us_per_request",
    "peak_rss_mb",
    "errors",
    "targets",
)
DIRECT_FIGURES = ("p50_ms", "p99_ms", "ttfb_p50_ms", "rps", "cpu_us_per_request", "peak_rss_mb")


def evaluate_targets(mode: str, figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of ``mode``: its limit, the measured value and whether it passed."""

    def target(value: float | None, limit: float, *, at_least: bool = False) -> dict[str, Any]:
        passed = value is not None and (value >= limit if at_least else value <= limit)
        return {"value": value, "limit": limit, "pass": passed}

    return {
        "added_p50_ms": target(figures["added_p50_ms"], TARGET_ADDED_P50_MS),
        "rps_c32": target(figures["rps"].get("32"), TARGET_RPS_C32, at_least=True),
        "ttfb_overhead_ms": target(figures["ttfb_overhead_ms"], TARGET_TTFB_OVERHEAD_MS),
        "peak_rss_mb": target(figures["peak_rss_mb"], TARGET_RSS_MB.get(mode, 150.0)),
        "ready_s": target(figures["ready_s"], TARGET_READY_S),
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(proxy: float | None, direct: float | None) -> str:
    if proxy is None or not direct:
        return "-"
    return f"{proxy / direct:.2f}x"


def _verdict(targets: dict[str, dict[str, Any]], name: str) -> str:
    item = targets[name]
    return "PASS" if item["pass"] else "MISS"


def format_report(report: dict[str, Any]) -> str:
    """The printed table: one block per proxy mode (skipped modes say why)."""
    direct = report["direct"]
    lines = [
        f"latency benchmark ({'quick' if report['quick'] else 'full'}): proxy on core "
        f"{report['cores']['proxy']}, upstream and load on core {report['cores']['load']}; "
        f"{report['counts']['latency']} sequential requests, "
        f"{report['counts']['throughput']} per throughput run",
    ]
    header = f"{'figure':<28}{'direct':>11}{'proxy':>11}{'ratio':>9}  {'target':<16}{'':>5}"
    for mode, figures in report["modes"].items():
        lines += ["", f"== mode: {mode} =="]
        if "skipped" in figures:
            lines.append(f"skipped: {figures['skipped']}")
            continue
        t = figures["targets"]
        rss_limit = TARGET_RSS_MB.get(mode, 150.0)
        rows = [
            ("ready time s", None, figures["ready_s"], f"<= {TARGET_READY_S:g} s", "ready_s"),
            ("latency p50 ms (c=1)", direct["p50_ms"], figures["p50_ms"], "", None),
            ("latency p99 ms (c=1)", direct["p99_ms"], figures["p99_ms"], "", None),
            (
                "added p50 ms",
                None,
                figures["added_p50_ms"],
                f"<= {TARGET_ADDED_P50_MS:g} ms",
                "added_p50_ms",
            ),
            ("added p99 ms", None, figures["added_p99_ms"], "", None),
            ("stream TTFB p50 ms", direct["ttfb_p50_ms"], figures["ttfb_p50_ms"], "", None),
            (
                "stream TTFB overhead ms",
                None,
                figures["ttfb_overhead_ms"],
                f"<= {TARGET_TTFB_OVERHEAD_MS:g} ms",
                "ttfb_overhead_ms",
            ),
        ]
        for c in report["concurrencies"]:
            key = str(c)
            rows.append(
                (
                    f"throughput req/s c={c}",
                    direct["rps"].get(key),
                    figures["rps"].get(key),
                    f">= {TARGET_RPS_C32:,.0f}" if c == 32 else "",
                    "rps_c32" if c == 32 else None,
                )
            )
        rows += [
            (
                "CPU us/request (c=32) [1]",
                direct["cpu_us_per_request"],
                figures["cpu_us_per_request"],
                f"(floor {FLOOR_CPU_US:g})",
                None,
            ),
            (
                "peak RSS MB [2]",
                direct["peak_rss_mb"],
                figures["peak_rss_mb"],
                f"<= {rss_limit:g} MB",
                "peak_rss_mb",
            ),
        ]
        lines.append(header)
        for label, d, p, limit, name in rows:
            verdict = _verdict(t, name) if name else ""
            lines.append(
                f"{label:<28}{_num(d):>11}{_num(p):>11}{_ratio(p, d):>9}  {limit:<16}{verdict:>5}"
            )
        lines.append(f"failed requests: {figures['errors']} (direct: {direct['errors']})")
    if "stalls" in report:
        lines += format_stalls(report["stalls"])
    lines += [
        "",
        "[1] direct column: the upstream server's own CPU per request; proxy: the proxy process.",
        "[2] direct column: the upstream server's peak RSS (VmHWM); proxy: the proxy process.",
        "[3] loop stall: the longest /health/liveness round trip (probed every 10 ms from another",
        f"    thread) overlapping the request; no request may stall the loop over "
        f"{TARGET_STALL_MS:g} ms.",
    ]
    return "\n".join(lines)
