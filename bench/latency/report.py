"""The latency benchmark's report: figures as ratios to direct, targets beside them, PASS/MISS.

The report is a plain JSON-able dict (see :func:`bench.latency.run.run_benchmark`); this module
turns
it into the printed table.
"""

from __future__ import annotations

from typing import Any

from bench.latency.stall import TARGET_STALL_MS, format_stalls

# The targets (issue 20), as ratios and differences to the floor (a minimal aiohttp + uvloop
# passthrough measured in the same run), so that they hold on any machine.
TARGET_RPS_C32_VS_FLOOR = {"passthrough": 0.75, "hash": 0.70, "hash+auth": 0.70, "onnx": 0.70}
TARGET_CPU_US_ROUTED = 250.0
ROUTED_MODES = frozenset({"hash", "onnx"})
TARGET_P50_OVER_FLOOR_MS = 0.3
TARGET_P99_OVER_FLOOR_MS = 1.0
TARGET_TTFB_OVER_FLOOR_MS = 0.3
TARGET_RSS_MB = {"onnx": 150.0}
TARGET_RSS_MB_WITHOUT_PREDICTOR = 80.0
TARGET_READY_S = 3.0

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
# What every mode but the floor carries under ``vs_floor``.
FLOOR_RELATIVE_FIGURES = (
    "p50_over_floor_ms",
    "p99_over_floor_ms",
    "ttfb_over_floor_ms",
    "rps_c32_vs_floor",
    "cpu_vs_floor",
)


def floor_relative(figures: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    """A mode's figures against the floor's of the same run (differences in ms, ratios)."""

    def diff(name: str) -> float | None:
        a, b = figures.get(name), floor.get(name)
        return None if a is None or b is None else a - b

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    return {
        "p50_over_floor_ms": diff("p50_ms"),
        "p99_over_floor_ms": diff("p99_ms"),
        "ttfb_over_floor_ms": diff("ttfb_p50_ms"),
        "rps_c32_vs_floor": ratio(figures["rps"].get("32"), floor["rps"].get("32")),
        "cpu_vs_floor": ratio(figures["cpu_us_per_request"], floor["cpu_us_per_request"]),
    }


def evaluate_targets(mode: str, figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of ``mode``: its limit, the measured value and whether it passed."""

    def target(value: float | None, limit: float, *, at_least: bool = False) -> dict[str, Any]:
        passed = value is not None and (value >= limit if at_least else value <= limit)
        return {"value": value, "limit": limit, "pass": passed}

    rss_limit = TARGET_RSS_MB.get(mode, TARGET_RSS_MB_WITHOUT_PREDICTOR)
    out = {
        "peak_rss_mb": target(figures["peak_rss_mb"], rss_limit),
        "ready_s": target(figures["ready_s"], TARGET_READY_S),
    }
    vs = figures.get("vs_floor")
    if vs is not None:
        out["p50_over_floor_ms"] = target(vs["p50_over_floor_ms"], TARGET_P50_OVER_FLOOR_MS)
        out["p99_over_floor_ms"] = target(vs["p99_over_floor_ms"], TARGET_P99_OVER_FLOOR_MS)
        out["ttfb_over_floor_ms"] = target(vs["ttfb_over_floor_ms"], TARGET_TTFB_OVER_FLOOR_MS)
        out["rps_c32_vs_floor"] = target(
            vs["rps_c32_vs_floor"], TARGET_RPS_C32_VS_FLOOR.get(mode, 0.70), at_least=True
        )
    if mode in ROUTED_MODES:
        out["cpu_us_per_request"] = target(figures["cpu_us_per_request"], TARGET_CPU_US_ROUTED)
    return out


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
    machine = report.get("machine")
    if machine:
        lines.append(
            f"machine: {machine['cpu']}, {machine['cpu_count']} cores, load average "
            f"{machine['load_average_start'][0]:.2f} at the start"
        )
    header = f"{'figure':<28}{'direct':>11}{'proxy':>11}{'ratio':>9}  {'target':<16}{'':>5}"
    for mode, figures in report["modes"].items():
        lines += ["", f"== mode: {mode} =="]
        if "skipped" in figures:
            lines.append(f"skipped: {figures['skipped']}")
            continue
        t = figures["targets"]
        vs = figures.get("vs_floor") or {}

        def limit(name: str, text: str, t: dict[str, Any] = t) -> str:
            return text.format(t[name]["limit"]) if name in t else ""

        rows: list[tuple[str, float | None, float | None, str, str | None]] = [
            ("ready time s", None, figures["ready_s"], limit("ready_s", "<= {:g} s"), "ready_s"),
            ("latency p50 ms (c=1)", direct["p50_ms"], figures["p50_ms"], "", None),
            ("latency p99 ms (c=1)", direct["p99_ms"], figures["p99_ms"], "", None),
            ("added p50 ms", None, figures["added_p50_ms"], "", None),
            ("added p99 ms", None, figures["added_p99_ms"], "", None),
            ("stream TTFB p50 ms", direct["ttfb_p50_ms"], figures["ttfb_p50_ms"], "", None),
            ("stream TTFB overhead ms", None, figures["ttfb_overhead_ms"], "", None),
        ]
        if vs:
            rows += [
                (
                    "p50 over the floor ms",
                    None,
                    vs["p50_over_floor_ms"],
                    limit("p50_over_floor_ms", "<= {:g} ms"),
                    "p50_over_floor_ms",
                ),
                (
                    "p99 over the floor ms",
                    None,
                    vs["p99_over_floor_ms"],
                    limit("p99_over_floor_ms", "<= {:g} ms"),
                    "p99_over_floor_ms",
                ),
                (
                    "TTFB over the floor ms",
                    None,
                    vs["ttfb_over_floor_ms"],
                    limit("ttfb_over_floor_ms", "<= {:g} ms"),
                    "ttfb_over_floor_ms",
                ),
            ]
        for c in report["concurrencies"]:
            key = str(c)
            rows.append(
                (
                    f"throughput req/s c={c}",
                    direct["rps"].get(key),
                    figures["rps"].get(key),
                    "",
                    None,
                )
            )
        if vs:
            rows.append(
                (
                    "c=32 req/s x the floor",
                    None,
                    vs["rps_c32_vs_floor"],
                    limit("rps_c32_vs_floor", ">= {:g}x"),
                    "rps_c32_vs_floor",
                )
            )
        rows += [
            (
                "CPU us/request (c=32) [1]",
                direct["cpu_us_per_request"],
                figures["cpu_us_per_request"],
                limit("cpu_us_per_request", "<= {:g} us"),
                "cpu_us_per_request" if "cpu_us_per_request" in t else None,
            ),
            (
                "peak RSS MB [2]",
                direct["peak_rss_mb"],
                figures["peak_rss_mb"],
                limit("peak_rss_mb", "<= {:g} MB"),
                "peak_rss_mb",
            ),
        ]
        lines.append(header)
        for label, d, p, text, name in rows:
            verdict = _verdict(t, name) if name else ""
            lines.append(
                f"{label:<28}{_num(d):>11}{_num(p):>11}{_ratio(p, d):>9}  {text:<16}{verdict:>5}"
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
