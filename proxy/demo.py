"""``adaptive-proxy demo``: the replay upstream, the proxy, and a few OpenAI SDK requests.

Everything runs in this process on free loopback ports with the embedded default policy, so the
demo works on a fresh machine with no API key: real recorded answers of Mixtral and GPT-4 come back
through the proxy, and the table shows what the proxy decided for each prompt and why, whether the
answer it got was right by the recorded ground truth, and what adaptive routing cost and earned on
these prompts against sending all of them to the cheap or to the expensive model.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.config.defaults import default_config_text
from proxy.config.schema import Config, load_config, load_config_text
from proxy.demo_report import RoutedRow, print_comparison, verdict

_DEMO_PROMPT_IDS = (
    "gsm8k/0",
    "gsm8k/17",
    "mmlu/high_school_physics/3",
    "mmlu/professional_law/5",
    "mtbench/81/t1",
    "mtbench/81/t2",
)


async def _start_replay(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return runner, port


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _demo_config(config_path: str | None, base_url: str) -> Config:
    env = {**os.environ, "REPLAY_BASE_URL": base_url}
    if config_path:
        return load_config(config_path, env=env)
    return load_config_text(default_config_text(), env=env, source="<embedded default>")


def _pick_records(records: Sequence[Any]) -> list[Any]:
    by_id = {r.prompt_id: r for r in records}
    picked = [by_id[p] for p in _DEMO_PROMPT_IDS if p in by_id]
    return picked or list(records[:5])


async def run_demo(*, data_dir: Path | None, config_path: str | None) -> int:
    """Run the demo; returns the process exit code."""
    import openai

    from proxy.http.app import create_app
    from proxy.http.server import RunningSite, start_site
    from recorded_data import DataNotFoundError, resolve_data_dir
    from replay.server import build_store, create_replay_app

    try:
        data = resolve_data_dir(data_dir)
    except DataNotFoundError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    print(f"loading recorded answers from {data} …", flush=True)
    store = build_store(data)
    replay_runner, replay_port = await _start_replay(create_replay_app(store))
    proxy: RunningSite | None = None
    try:
        config = _demo_config(config_path, f"http://127.0.0.1:{replay_port}/v1")
        started = time.perf_counter()
        # The server ``serve`` runs, on a free loopback port.
        proxy = await start_site(create_app(config, env=os.environ))
        ready_ms = (time.perf_counter() - started) * 1000
        base_url = f"{proxy.url}/v1"
        print(
            f"replay upstream on :{replay_port}; proxy on {base_url} (ready in {ready_ms:.0f} ms)"
        )
        policy = "auto" if "auto" in config.policies else next(iter(config.policies))
        async with openai.AsyncOpenAI(base_url=base_url, api_key="demo", max_retries=0) as client:
            records = _pick_records(store.records())
            rows = await _show_routing(client, policy, records)
            await print_comparison(client, rows)
            if "auto-best-of-k" in config.policies:
                await _show_best_of_k(client, store.records())
    finally:
        if proxy is not None:
            await proxy.close()
        await replay_runner.cleanup()
    return 0


async def _show_routing(client: Any, policy: str, records: Sequence[Any]) -> list[RoutedRow]:
    print(f"\npolicy {policy!r}: route each prompt to Mixtral (cheap) or GPT-4 (expensive)")
    header = (
        f"{'prompt':<40} {'gain':>6} {'thresh':>6} {'arm':<9} {'answered by':<36} "
        f"{'recorded answer':<15} {'cache':<5} {'ms':>5}"
    )
    print(header)
    print("-" * len(header))
    rows: list[RoutedRow] = []
    for index, record in enumerate([*records, records[0]]):
        raw = await client.chat.completions.with_raw_response.create(
            model=policy, messages=list(record.messages)
        )
        completion = raw.parse()
        adaptive = (completion.model_extra or {}).get("adaptive", {})
        gain, threshold = adaptive.get("gain"), adaptive.get("threshold")
        row = RoutedRow(record, completion.model, float(adaptive.get("cost_usd") or 0.0))
        if index < len(records):
            rows.append(row)
        print(
            f"{_short(record.prompt_id + ': ' + record.messages[-1]['content'], 40):<40} "
            f"{gain if gain is None else f'{gain:+.3f}':>6} "
            f"{'-' if threshold is None else f'{threshold:.3f}':>6} "
            f"{raw.headers.get('x-adaptive-arm', '?'):<9} {_short(completion.model, 36):<36} "
            f"{verdict(record, completion.model):<15} "
            f"{raw.headers.get('x-adaptive-cache', '?'):<5} "
            f"{float(raw.headers.get('x-adaptive-decision-ms', 'nan')):>5.1f}"
        )
    print(
        "\nexpensive iff gain ≥ threshold (gain: predicted reward gain of GPT-4 over Mixtral);"
        "\nright/wrong is the recorded correctness of that model's answer (MT-Bench: GPT-4 judge"
        " score);\nthe last row repeats the first prompt: its decision comes from the cache"
    )
    return rows


async def _show_best_of_k(client: Any, records: Sequence[Any]) -> None:
    from proxy.execute.rerank_text import extract_answer

    gsm8k = [r for r in records if r.dataset == "gsm8k"][:3]
    print("\npolicy 'auto-best-of-k': n samples of real recorded solutions, majority vote\n")
    for record in gsm8k:
        raw = await client.chat.completions.with_raw_response.create(
            model="auto-best-of-k", messages=list(record.messages)
        )
        completion = raw.parse()
        answer = completion.choices[0].message.content or ""
        truth = extract_answer(str(record.extra.get("ground_truth", "")))
        got = extract_answer(answer)
        mark = "" if truth is None else ("right" if got == truth else f"wrong (truth {truth})")
        prompt = _short(record.prompt_id + ": " + record.messages[-1]["content"], 40)
        # The final answer, not the last line: recorded solutions often end in blank lines.
        shown = got if got is not None else "(no final answer)"
        print(
            f"{prompt:<40} n={raw.headers.get('x-adaptive-n', '?'):<3} → "
            f"{_short(shown, 36):<36} {mark}"
        )
