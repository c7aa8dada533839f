"""Live driver: the replay upstream and the proxy as real HTTP servers, the OpenAI SDK as client.

For one suite it writes the out-of-fold prediction table and a policy YAML (one policy per
operating point), starts the proxy on a free port against the replay upstream, and sends every
prompt to every policy with ``openai.AsyncOpenAI`` (bounded concurrency, progress bar). What it
records per request is what a user's client sees: the ``x-adaptive-*`` headers, the ``adaptive``
object, the answering ``model``, ``usage`` and the replay's ``prompt_id``/``arm`` tag.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.routing.suites import ARMS
from proxy.http.server import RunningSite, start_site


@dataclass(frozen=True)
class LiveResult:
    """One request through the proxy, as the client saw it."""

    prompt_id: str
    policy: str
    arm: str
    model: str
    replay_prompt_id: str | None
    replay_arm: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    answer: str
    cache: str | None


async def start_server(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve an upstream ``app`` (the replay server) on a free loopback port; returns the runner
    and ``http://127.0.0.1:PORT``. The proxy starts with :func:`start_proxy` instead."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def start_proxy(app: web.Application) -> RunningSite:
    """The proxy ``app`` on a free loopback port, started as ``serve`` starts it."""
    return await start_site(app)


def write_table(
    path: Path,
    messages: Sequence[Sequence[Mapping[str, Any]]],
    predictions: Sequence[Mapping[str, float]],
) -> None:
    """The proxy's table predictor file: one ``{"messages", "predictions"}`` object a line."""
    with path.open("w", encoding="utf-8") as fh:
        for msgs, preds in zip(messages, predictions, strict=True):
            fh.write(
                json.dumps({"messages": [dict(m) for m in msgs], "predictions": dict(preds)}) + "\n"
            )


def upstream_name(arm_key: str) -> str:
    """YAML upstream name of an arm (``weak`` → ``arm-weak``)."""
    return f"arm-{arm_key.replace('_', '-')}"


def policy_yaml(
    replay_base_url: str,
    arm_keys: Sequence[str],
    policies: Mapping[str, Any],
    table_path: Path,
    *,
    n_entries: int,
) -> str:
    """A policy file in the proxy's YAML shape: one upstream per arm, the given policies,
    the table predictor, and a cache large enough that no entry is evicted mid-run."""
    import yaml

    upstreams = {
        upstream_name(k): {
            "provider": "openai",
            "base_url": f"{replay_base_url}/v1",
            "model": ARMS[k].model,
            "price_in_per_mtok_usd": ARMS[k].price_in_per_mtok_usd,
            "price_out_per_mtok_usd": ARMS[k].price_out_per_mtok_usd,
            "timeout_s": 60,
            "retries": 1,
        }
        for k in arm_keys
    }
    doc = {
        "upstreams": upstreams,
        "policies": dict(policies),
        "predictor": {"type": "table", "path": str(table_path)},
        "cache": {"max_entries": max(1000, 2 * n_entries), "ttl_s": 3600},
    }
    return str(yaml.safe_dump(doc, sort_keys=False))


def _parse(prompt_id: str, policy: str, raw: Any) -> LiveResult:
    completion = raw.parse()
    extra = completion.model_extra or {}
    adaptive = extra.get("adaptive") or {}
    replay = extra.get("replay") or {}
    usage = completion.usage
    headers = raw.headers
    cost = adaptive.get("cost_usd")
    return LiveResult(
        prompt_id=prompt_id,
        policy=policy,
        arm=str(headers.get("x-adaptive-arm") or adaptive.get("arm") or ""),
        model=str(completion.model),
        replay_prompt_id=replay.get("prompt_id"),
        replay_arm=replay.get("arm"),
        prompt_tokens=int(usage.prompt_tokens) if usage else 0,
        completion_tokens=int(usage.completion_tokens) if usage else 0,
        cost_usd=float(cost) if cost is not None else None,
        answer=str(completion.choices[0].message.content or ""),
        cache=headers.get("x-adaptive-cache"),
    )


async def send_all(
    base_url: str,
    policies: Sequence[str],
    prompt_ids: Sequence[str],
    messages: Sequence[Sequence[Mapping[str, Any]]],
    *,
    concurrency: int = 32,
    progress: bool = True,
    desc: str = "",
) -> dict[str, list[LiveResult]]:
    """Every prompt to every policy through the OpenAI SDK; results in prompt order."""
    from openai import AsyncOpenAI
    from tqdm import tqdm

    gate = asyncio.Semaphore(concurrency)
    total = len(policies) * len(prompt_ids)
    out: dict[str, list[LiveResult | None]] = {p: [None] * len(prompt_ids) for p in policies}
    async with AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key="bench", max_retries=2, timeout=120.0
    ) as client:
        with tqdm(total=total, desc=desc, disable=not progress, unit="req", mininterval=1.0) as bar:

            async def one(policy: str, i: int) -> None:
                async with gate:
                    conversation: Any = [dict(m) for m in messages[i]]  # recorded, not SDK-typed
                    raw = await client.chat.completions.with_raw_response.create(
                        model=policy, messages=conversation
                    )
                out[policy][i] = _parse(prompt_ids[i], policy, raw)
                bar.update(1)

            for policy in policies:
                # One policy at a time: each sweep point is a separate, complete client run.
                await asyncio.gather(*(one(policy, i) for i in range(len(prompt_ids))))
    return {p: [r for r in rs if r is not None] for p, rs in out.items()}


async def run_live(
    replay_base_url: str,
    yaml_text: str,
    policies: Sequence[str],
    prompt_ids: Sequence[str],
    messages: Sequence[Sequence[Mapping[str, Any]]],
    *,
    concurrency: int = 32,
    progress: bool = True,
    desc: str = "",
) -> dict[str, list[LiveResult]]:
    """Start the proxy from ``yaml_text``, send every prompt to every policy, stop the proxy."""
    from proxy.config.schema import load_config_text
    from proxy.http.app import create_app

    config = load_config_text(yaml_text)
    # Open by design: the benchmark is this loopback proxy's only client.
    proxy = await start_proxy(create_app(config, warn_if_open=False))
    try:
        return await send_all(
            proxy.url,
            policies,
            prompt_ids,
            messages,
            concurrency=concurrency,
            progress=progress,
            desc=desc,
        )
    finally:
        await proxy.close()


async def start_replay(data_dir: Path) -> tuple[web.AppRunner, str]:
    """The replay upstream (every recorded prompt) on a free port."""
    from replay.multisample import build_multisample_store
    from replay.server import build_store, create_replay_app

    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(None, build_store, data_dir)
    multisample = await loop.run_in_executor(None, build_multisample_store, data_dir)
    return await start_server(create_replay_app(store, multisample=multisample))
