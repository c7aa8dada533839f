"""Run the multi-sample suites: measure offline, check operating points live, write results.

Writes ``<suite>.json`` per suite and ``multisample.png`` (quality against mean samples per
prompt, one panel per suite) into the output folder.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.multisample.suite import evaluate_multisample_suite
from recorded_data.multisample import MULTISAMPLE_SUITES

__all__ = ["plot_multisample", "run_multisample_suites"]

METHOD_STYLE = {
    "uniform": ("uniform best-of-k", "black", "o-"),
    "adaptive": ("adaptive (prompt predictor)", "tab:blue", "-"),
    "sequential": ("sequential (verifier stop)", "tab:green", "-"),
    "adaptive_sequential": ("adaptive + sequential", "tab:purple", "-"),
    "oracle": ("split-sample oracle (prompt-only limit)", "tab:red", "--"),
    "oracle_sequential": ("oracle prior + sequential", "tab:orange", ":"),
}


def _frontier(curve: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    xs, ys, best = [], [], -1.0
    for s, q in sorted((float(a), float(b)) for a, b in curve):
        best = max(best, q)
        xs.append(s)
        ys.append(best)
    return xs, ys


def plot_multisample(out_dir: Path) -> Path | None:
    """``multisample.png`` from every multi-sample result in ``out_dir`` (None if there is none)."""
    docs = [
        json.loads((out_dir / f"{n}.json").read_text(encoding="utf-8"))
        for n in MULTISAMPLE_SUITES
        if (out_dir / f"{n}.json").is_file()
    ]
    if not docs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(docs), figsize=(5.2 * len(docs), 4.2), squeeze=False)
    for ax, doc in zip(axes[0], docs, strict=True):
        methods = {**doc["methods"], **doc.get("extra_methods", {})}
        for key, (label, color, style) in METHOD_STYLE.items():
            if key in methods:
                xs, ys = _frontier(methods[key]["curve"])
                ax.plot(xs, ys, style, color=color, label=label, markersize=3)
        ax.set_xscale("log", base=2)
        ax.set_xlim(1, 50)
        ax.set_xlabel("mean samples per prompt")
        ax.set_ylabel("quality (expected, exact)")
        oracle_note = " (oracle verifier)" if doc.get("oracle_verifier") else ""
        ax.set_title(f"{doc['suite']}{oracle_note}, n={doc['n_prompts']}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out_dir / "multisample.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


async def run_multisample_suites(
    data_dir: Path,
    out_dir: Path,
    names: Sequence[str],
    *,
    quick: bool,
    n_boot: int,
    live: bool,
    progress: bool,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Measure each named suite, run its live check, write ``<suite>.json``; returns the docs."""
    from bench import live as live_servers

    loop = asyncio.get_running_loop()
    docs: dict[str, dict[str, Any]] = {}
    replay = None
    try:
        if live:
            replay, replay_url = await live_servers.start_replay(data_dir)
        for name in names:
            log(f"suite {name} …")
            measure = functools.partial(
                evaluate_multisample_suite,
                data_dir,
                name,
                quick=quick,
                n_boot=n_boot,
                seed=seed,
                progress=progress,
                log=log,
            )
            run = await loop.run_in_executor(None, measure)
            doc = run.doc
            doc["live"] = {"checks": [], "error": None}
            if replay is not None:
                from bench.multisample.live import live_operating_points

                log(f"  {name}: live operating points through the proxy …")
                try:
                    with tempfile.TemporaryDirectory(prefix="adaptive-ms-") as tmp:
                        doc["live"]["checks"] = await live_operating_points(
                            run.suite,
                            run.tables,
                            run.p_hat,
                            run.steps,
                            run.prior_first,
                            replay_url,
                            Path(tmp),
                        )
                except Exception as exc:  # the offline figures stand; the report says why
                    doc["live"]["error"] = f"{type(exc).__name__}: {exc}"
                    log(f"  live run failed for {name}: {doc['live']['error']}")
            await loop.run_in_executor(None, _write, out_dir, name, doc)
            docs[name] = doc
    finally:
        if replay is not None:
            await replay.cleanup()
    await loop.run_in_executor(None, plot_multisample, out_dir)
    return docs


def _write(out_dir: Path, name: str, doc: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
