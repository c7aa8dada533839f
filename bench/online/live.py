"""``bench --online --live``: the online benchmark lived through the real proxy over HTTP.

The same stream as :mod:`bench.online.simulate` (the suite's prompts in
``numpy.random.default_rng(seed).permutation`` order, optionally its first ``limit``), but every
part is the deployment's own:

* the replay upstream and the proxy run as real servers (:mod:`bench.live`); the proxy's config
  has one ``learn: true`` route policy over the suite's pair, its ``learning:`` store a temporary
  SQLite file, ``refit_every`` / ``min_labels`` the simulator's tuned settings for the suite
  (:mod:`bench.online.choice`) and a short ``poll_s``;
* the predictor is a table of the simulator's own prior (``p_weak`` / ``p_strong`` / ``gain``)
  with each prompt's encoder embedding, so the learned head corrects exactly what the
  simulator's does;
* the learner is the real process, ``adaptive-proxy learn --config FILE``, beside the proxy;
* the client is the OpenAI SDK, one request at a time in stream order; each answer's
  ``x-request-id`` is labelled through ``POST /v1/adaptive/feedback`` as ``--feedback`` says,
  from the suite's recorded rewards; ``GET /v1/adaptive/learning`` is read every few requests.

What differs from the simulator, by construction (measured in the result's ``live`` section):

* the threshold rule: a route policy has no "share of the last N requests" rule; the closest it
  has is ``budget: {kind: fraction_expensive, target: expensive_share, window: N}``, which
  re-solves λ on the last N decisions, so the route is ``gain ≥ λ · (expected cost_expensive −
  expected cost_cheap)`` (cost-weighted by the prompt's length), λ re-solved on a swap;
* promotions arrive asynchronously: the learner polls the store every ``poll_s`` and fits in its
  own process while requests keep flowing (the simulator fits between two requests);
* the learner process reads only ``refit_every`` and ``min_labels`` from ``learning:``; its
  promotion rule and ``l2`` grid are the production defaults, not a tuned candidate's;
* exploration is the proxy's: it labels a route's explored pair only by a judge upstream
  (``learning.judge``; a route has no answer pattern) and runs none it cannot label; the replay
  upstream is no judge, so ``--explore`` sets ``learning.explore_fraction`` but nothing is
  explored (:data:`EXPLORE_NOTE`, in the result).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.online.simulate import OnlineSettings, Trace
from bench.online.suite import OnlineSuite
from proxy.learn.learner import LearnerSettings

POLICY = "router"
ARMS = ("cheap", "expensive")
#: What ``--explore`` does live: the proxy explores a route only where it can label the pair.
EXPLORE_NOTE = (
    "learning.explore_fraction is set, but the proxy labels a route's explored pair only by a "
    "judge upstream (learning.judge; a route policy has no answer pattern) and runs no "
    "exploration it cannot label; the replay upstream is no judge, so no request is explored"
)
#: How often (requests) the learning report is read during the stream.
REPORT_EVERY = 10
#: The checkout the learner process imports (the same code as this process).
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveOnlineOptions:
    """How the live run is driven (the stream itself is :class:`OnlineSettings`)."""

    #: Stream only the first ``limit`` prompts of the shuffled order (``None``: all).
    limit: int | None = None
    #: The proxy's and the learner's ``learning.poll_s``.
    poll_s: float = 0.2
    #: After the last request, wait at most this long for the learner to finish its due refits.
    drain_s: float = 120.0


@dataclass
class LiveRun:
    """What the live run saw, beside the :class:`Trace` the result is built from."""

    suite: OnlineSuite
    trace: Trace
    info: dict[str, Any] = field(default_factory=dict)


def stream_order(n: int, seed: int, limit: int | None) -> np.ndarray[Any, np.dtype[np.intp]]:
    """The simulator's order (:func:`bench.online.simulate.simulate`), cut at ``limit``."""
    order = np.random.default_rng(seed).permutation(n)
    return order if limit is None else order[:limit]


def streamed_suite(suite: OnlineSuite, order: Any) -> OnlineSuite:
    """``suite``'s prompts in stream order (row ``k`` is the ``k``-th request)."""
    rows = np.asarray(order, dtype=np.intp)
    return replace(
        suite,
        prompt_ids=tuple(suite.prompt_ids[i] for i in rows),
        embedding=suite.embedding[rows],
        prior=suite.prior[rows],
        reward=suite.reward[rows],
        cost_usd=suite.cost_usd[rows],
    )


def suite_conversations(
    suite: OnlineSuite, data_dir: Path
) -> tuple[list[list[dict[str, Any]]], tuple[str, str]]:
    """Each prompt's recorded messages (the replay upstream knows them) and the pair's arm keys;
    ``ValueError`` for a suite that is not one of the RouteLLM suites' pairs."""
    from bench.routing.suites import ARMS as SUITE_ARMS
    from bench.routing.suites import SUITES, build_suite
    from recorded_data.records import load_records

    spec = SUITES.get(suite.name)
    if spec is None or not spec.pairs:
        raise ValueError(
            f"--live streams the RouteLLM suites' prompts through the replay upstream; "
            f"{suite.name!r} is not one of them"
        )
    pair = spec.pairs[0]
    keys = (pair.cheap, pair.expensive)
    models = tuple(SUITE_ARMS[k].model for k in keys)
    if models != suite.arm_models:
        raise ValueError(f"{suite.name}: arms {suite.arm_models} are not the suite's {models}")
    data = build_suite(spec, load_records(data_dir))
    by_id = dict(zip(data.prompt_ids, data.messages, strict=True))
    missing = [p for p in suite.prompt_ids if p not in by_id]
    if missing:
        raise ValueError(f"{suite.name}: {len(missing)} prompts not recorded (e.g. {missing[0]})")
    return [[dict(m) for m in by_id[p]] for p in suite.prompt_ids], keys


def write_prior_table(
    path: Path, suite: OnlineSuite, conversations: Sequence[Sequence[Mapping[str, Any]]]
) -> None:
    """The table predictor's file: the suite's prior and each prompt's embedding."""
    with path.open("w", encoding="utf-8") as fh:
        for k, messages in enumerate(conversations):
            p_weak, p_strong = float(suite.prior[k, 0]), float(suite.prior[k, 1])
            row = {
                "messages": [dict(m) for m in messages],
                "predictions": {"p_weak": p_weak, "p_strong": p_strong, "gain": p_strong - p_weak},
                "embedding": [round(float(x), 6) for x in suite.embedding[k]],
            }
            fh.write(json.dumps(row) + "\n")


def live_config_yaml(
    replay_url: str,
    arm_keys: Sequence[str],
    table: Path,
    store: Path,
    settings: OnlineSettings,
    learner: LearnerSettings,
    options: LiveOnlineOptions,
    *,
    n_entries: int,
) -> str:
    """The proxy's (and the learner's) config: one ``learn: true`` route policy."""
    import yaml

    from bench import live

    doc = yaml.safe_load(live.policy_yaml(replay_url, arm_keys, {}, table, n_entries=n_entries))
    doc["policies"] = {
        POLICY: {
            "type": "route",
            "cheap": live.upstream_name(arm_keys[0]),
            "expensive": live.upstream_name(arm_keys[1]),
            "predictor_output": "gain",
            "budget": {
                "kind": "fraction_expensive",
                "target": settings.expensive_share,
                "window": settings.calibration_requests,
            },
            "learn": True,
        }
    }
    doc["learning"] = {
        "store": str(store),
        # The stream spans minutes; nothing may expire, no explored run be refused for budget.
        "retention_days": 365,
        "explore_fraction": settings.explore_fraction,
        "explore_budget_usd_per_day": 1e6,
        "refit_every": learner.refit_every,
        "min_labels": learner.min_labels,
        "poll_s": options.poll_s,
    }
    return str(yaml.safe_dump(doc, sort_keys=False))


def _feedback_body(settings: OnlineSettings, request_id: str, reward: Any, arm: int) -> Any:
    if settings.feedback == "arm_rewards":
        return {
            "request_id": request_id,
            "arm_rewards": {ARMS[0]: float(reward[0]), ARMS[1]: float(reward[1])},
        }
    if settings.feedback == "reward":
        return {"request_id": request_id, "reward": float(reward[arm])}
    return None


async def _post_feedback(session: Any, url: str, body: Any) -> int:
    """Post one label; the id's record may still sit in the log's queue (404): retry a little."""
    for _ in range(50):
        async with session.post(url, json=body) as resp:
            if resp.status == 202:
                return int((await resp.json()).get("accepted", 1))
            if resp.status != 404:
                raise RuntimeError(f"feedback answered {resp.status}: {await resp.text()}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"feedback: request {body['request_id']} never logged")


async def _report(session: Any, url: str) -> dict[str, Any]:
    async with session.get(url) as resp:
        resp.raise_for_status()
        doc: dict[str, Any] = await resp.json()
    return dict(doc["policies"][POLICY])


async def _start_learner(config_path: Path, log_path: Path) -> asyncio.subprocess.Process:
    """``adaptive-proxy learn --config FILE`` as its own process (its log in ``log_path``)."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    log_file = await asyncio.to_thread(open, log_path, "wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy.cli",
            "learn",
            "--config",
            str(config_path),
            stdout=log_file,
            stderr=log_file,
            env={**os.environ, "PYTHONPATH": path},
        )
    finally:
        log_file.close()


async def _stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
    return int(process.returncode or 0)


async def _drain(
    session: Any,
    url: str,
    store: Any,
    *,
    sent_labels: int,
    learner: LearnerSettings,
    options: LiveOnlineOptions,
) -> dict[str, Any]:
    """Wait (at most ``drain_s``) until the learner has done every refit the labels made due:
    all labels sent are in the store and fewer than ``refit_every`` arrived since its last fit
    (the learner's own rule); then two polls for the proxy to pick up a promotion. The report
    then."""
    started = time.monotonic()
    while time.monotonic() - started < options.drain_s:
        total = sum((await store.label_totals(POLICY)).values())
        state = await store.learner_state(POLICY)
        if total >= sent_labels and (
            total < learner.min_labels or total - state.labels_at_fit < learner.refit_every
        ):
            break
        await asyncio.sleep(options.poll_s)
    await asyncio.sleep(2 * options.poll_s)
    return await _report(session, url)


async def run_live_online(
    suite: OnlineSuite,
    settings: OnlineSettings,
    learner: LearnerSettings,
    *,
    data_dir: Path,
    workdir: Path,
    options: LiveOnlineOptions,
    progress: bool = True,
) -> LiveRun:
    """Stream ``suite`` through a live proxy with the learner process beside it."""
    from aiohttp import ClientSession
    from openai import AsyncOpenAI
    from tqdm import tqdm

    from bench import live
    from proxy.config.schema import load_config_text
    from proxy.http.app import create_app
    from proxy.learn.wiring import build_store

    started = time.monotonic()
    order = stream_order(suite.n, settings.seed, options.limit)
    streamed = streamed_suite(suite, order)
    conversations, arm_keys = await asyncio.to_thread(suite_conversations, streamed, data_dir)
    n = streamed.n
    table = workdir / "prior.jsonl"
    await asyncio.to_thread(write_prior_table, table, streamed, conversations)
    replay_runner, replay_url = await live.start_replay(data_dir)
    config_path = workdir / "proxy.yaml"
    yaml_text = live_config_yaml(
        replay_url,
        arm_keys,
        table,
        workdir / "outcomes.sqlite3",
        settings,
        learner,
        options,
        n_entries=n,
    )
    await asyncio.to_thread(config_path.write_text, yaml_text, encoding="utf-8")
    gain = np.empty(n)
    expensive = np.zeros(n, dtype=bool)
    labels = np.zeros(n, dtype=np.int64)
    versions: list[str] = []
    promotions: list[dict[str, Any]] = []
    routed_usd = 0.0
    replay_mismatch = 0
    learner_log = workdir / "learner.log"
    # Open by design: the benchmark is this loopback proxy's only client.
    config = load_config_text(yaml_text)
    proxy = await live.start_proxy(create_app(config, warn_if_open=False))
    process = await _start_learner(config_path, learner_log)
    try:
        learning_url = f"{proxy.url}/v1/adaptive/learning"
        feedback_url = f"{proxy.url}/v1/adaptive/feedback"
        async with (
            ClientSession() as session,
            AsyncOpenAI(
                base_url=f"{proxy.url}/v1", api_key="bench", max_retries=2, timeout=120.0
            ) as client,
        ):
            first = await _report(session, learning_url)
            prior_version = version = str(first["model_version"])
            accepted = 0
            bar = tqdm(total=n, desc=f"{suite.name} online live", unit="req", disable=not progress)
            for step in range(n):
                conversation: Any = conversations[step]  # recorded, not SDK-typed
                raw = await client.chat.completions.with_raw_response.create(
                    model=POLICY, messages=conversation
                )
                completion = raw.parse()
                extra = completion.model_extra or {}
                arm = 1 if raw.headers.get("x-adaptive-arm") == ARMS[1] else 0
                replay = extra.get("replay") or {}
                replay_mismatch += replay.get("arm") != arm_keys[arm]
                adaptive = extra.get("adaptive") or {}
                cost = adaptive.get("cost_usd")
                routed_usd += float(cost) if cost is not None else 0.0
                # The body's gain is full precision (the header's has four decimals).
                served_gain = adaptive.get("gain", raw.headers.get("x-adaptive-gain"))
                gain[step] = float("nan") if served_gain is None else float(served_gain)
                expensive[step] = bool(arm)
                body = _feedback_body(
                    settings, raw.headers["x-request-id"], streamed.reward[step], arm
                )
                if body is not None:
                    accepted += await _post_feedback(session, feedback_url, body)
                labels[step] = accepted
                if (step + 1) % REPORT_EVERY == 0 or step == n - 1:
                    now = str((await _report(session, learning_url))["model_version"])
                    if now != version:
                        promotions.append({"request": step, "status": "promoted", "version": now})
                        version = now
                versions.append(version)
                bar.update(1)
            bar.close()
            store = build_store(config)
            try:
                final = await _drain(
                    session,
                    learning_url,
                    store,
                    sent_labels=accepted,
                    learner=learner,
                    options=options,
                )
            finally:
                await store.aclose()
    finally:
        learner_rc = await _stop(process)
        await proxy.close()
        await replay_runner.cleanup()
    explore_usd = float(final.get("explore_spend_usd") or 0.0)
    static = streamed.prior[:, 1] - streamed.prior[:, 0]
    served = streamed.cost_usd[np.arange(n), expensive.astype(int)]
    # Exploration spend is the proxy's (per request it is not reported): spread evenly, in the
    # suite's cost units (the proxy's routed spend scaled to the suite's for the same requests).
    scale = float(served.sum()) / routed_usd if routed_usd > 0 else 1.0
    trace = Trace(
        order=np.arange(n),
        score=gain,
        static_score=static,
        expensive=expensive,
        explored=np.zeros(n, dtype=bool),
        explore_cost_usd=np.full(n, explore_usd * scale / max(n, 1)),
        labels=labels,
        head_version=versions,
        seconds=time.monotonic() - started,
    )
    head_served = np.abs(gain - static) > 1e-6
    info = {
        "prior_version": prior_version,
        "promotions": promotions,
        "final_learning": final,
        "first_promotion_request": promotions[0]["request"] if promotions else None,
        "requests_served_by_learned_head": int(head_served.sum()),
        "frac_expensive": float(expensive.mean()) if n else None,
        "replay_arm_mismatches": int(replay_mismatch),
        "proxy_routed_usd": routed_usd,
        "explore_spend_usd": explore_usd,
        "learner_exit_status": learner_rc,
        "learner_log_tail": (
            await asyncio.to_thread(learner_log.read_text, errors="replace")
        ).splitlines()[-8:],
    }
    info["config_yaml"] = yaml_text
    return LiveRun(streamed, trace, info)
