"""The aiohttp application: routes, the error middleware, and one ``cleanup_ctx`` per resource.

``create_app(config, *, predictor=None, cache=None)`` builds the app; resources (the upstream
session, the decision cache, the predictor, the config watcher) are created when the app starts
and released when it stops. Injected ``predictor``/``cache`` objects are used as given and left
for the caller to close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from proxy.cache import DecisionCache, build_cache
from proxy.config import Config, reference_problems
from proxy.decider import Decider, PolicyEngine
from proxy.errors import ConfigError, PredictorLoadError
from proxy.executor import RouteExecutor
from proxy.handlers import register_routes
from proxy.metrics import Metrics
from proxy.middleware import error_middleware
from proxy.policies.engine import AllocationEngine
from proxy.prediction import HashPredictor, Predictor, TablePredictor
from proxy.predictor_outputs import output_problems
from proxy.pricing import CostModel
from proxy.reload import ConfigHolder, Snapshot
from proxy.state import STATE, ProxyState
from proxy.upstream import UpstreamClient

log = logging.getLogger("adaptive_proxy")


def load_predictor(config: Config) -> Predictor | None:
    """Build the configured predictor (blocking: call it in an executor)."""
    spec = config.predictor
    if spec.type == "none":
        return None
    if spec.type == "hash":
        return HashPredictor()
    if spec.type == "table":
        assert spec.path is not None
        return TablePredictor.from_jsonl(spec.path)
    from predictor_onnx.runtime import OnnxPredictor

    predictor: Predictor = OnnxPredictor.load(
        Path(spec.path) if spec.path else None,
        max_batch_size=spec.max_batch_size,
        batch_window_ms=spec.batch_window_ms,
        threads=spec.threads,
        workers=spec.workers,
    )
    return predictor


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    upstream_cfgs = state.snapshot.config.upstreams
    connector = aiohttp.TCPConnector(
        limit=sum(u.max_connections for u in upstream_cfgs.values()),
        limit_per_host=0,
        ttl_dns_cache=300,
        keepalive_timeout=30,
    )
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
    )
    state.upstreams = UpstreamClient(
        upstream_cfgs, session, env=state.env, observe=state.metrics.observe_upstream
    )
    state.executor = RouteExecutor(state.upstreams, state.costs, state.metrics)
    try:
        yield
    finally:
        await session.close()


def _cache_ctx(injected: DecisionCache | None):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        state = app[STATE]
        spec = state.snapshot.config.cache
        cache = injected or build_cache(
            redis_url=spec.redis_url,
            ttl_s=spec.ttl_s,
            max_entries=spec.max_entries,
            timeout_s=spec.timeout_s,
            metrics=state.metrics,
        )
        state.cache = cache
        try:
            yield
        finally:
            if injected is None:
                await cache.aclose()

    return ctx


def _check_outputs(state: ProxyState, predictor: Predictor) -> None:
    """Refuse to start on a policy reading an output ``predictor`` lacks; guard reloads too."""
    outputs = frozenset(predictor.output_names)
    source = str(state.holder.path) if state.holder.path else None
    problems = output_problems(state.snapshot.config, outputs)
    if problems:
        raise ConfigError(problems, source=source)
    state.holder.add_check(lambda config: output_problems(config, outputs))


def _predictor_ctx(injected: Predictor | None, engine: PolicyEngine | None):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        state = app[STATE]
        config = state.snapshot.config
        predictor = injected
        if predictor is None:
            loop = asyncio.get_running_loop()
            try:
                predictor = await loop.run_in_executor(None, load_predictor, config)
            except PredictorLoadError as exc:
                raise PredictorLoadError(f"cannot start: {exc}") from None
        if predictor is not None:
            _check_outputs(state, predictor)
        state.predictor = predictor
        state.predictor_ready = True
        assert state.cache is not None
        state.decider = Decider(
            predictor=predictor,
            cache=state.cache,
            metrics=state.metrics,
            cost_model=state.costs,
            engine=engine,
            predictor_timeout_s=config.predictor.timeout_s,
        )
        try:
            yield
        finally:
            state.predictor_ready = False
            if injected is None and predictor is not None:
                await predictor.aclose()

    return ctx


async def _budget_redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """With ``cache.redis_url``, budget controllers share their state through Redis."""
    state = app[STATE]
    spec = state.snapshot.config.cache
    client = None
    if spec.redis_url and state.engine is not None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(
            spec.redis_url,
            socket_timeout=max(spec.timeout_s, 0.2),
            socket_connect_timeout=max(spec.timeout_s, 0.2),
        )
        state.engine.set_redis(client)
    try:
        yield
    finally:
        if client is not None:
            await client.aclose()


async def _reload_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    config = state.snapshot.config
    task: asyncio.Task[None] | None = None
    if state.holder.path is not None and config.server.reload:
        task = asyncio.create_task(
            state.holder.watch(config.server.reload_interval_s), name="adaptive-proxy-config-watch"
        )
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


def _apply_snapshot(state: ProxyState) -> Any:
    def listener(snapshot: Snapshot) -> None:
        if state.upstreams is not None:
            state.upstreams.update(snapshot.config.upstreams)
        state.costs.update_upstreams(snapshot.config.upstreams)

    return listener


def create_app(
    config: Config,
    *,
    predictor: Predictor | None = None,
    cache: DecisionCache | None = None,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    engine: AllocationEngine | None = None,
) -> web.Application:
    """The proxy application for ``config``.

    ``config_path`` enables live reload of that file; ``env`` supplies upstream API keys (the
    command line passes the process environment; nothing else reads it).
    """
    problems = reference_problems(config)
    if problems:
        raise ConfigError(problems)
    app = web.Application(
        middlewares=[error_middleware], client_max_size=config.server.max_body_bytes
    )
    holder = ConfigHolder(config, path=Path(config_path) if config_path else None, env=env)
    state = ProxyState(
        holder=holder, metrics=Metrics(), costs=CostModel(config.upstreams), env=dict(env or {})
    )
    state.engine = engine or AllocationEngine(state.costs, budget_metrics=state.metrics)
    holder.subscribe(_apply_snapshot(state))
    app[STATE] = state
    app.cleanup_ctx.append(_session_ctx)
    app.cleanup_ctx.append(_cache_ctx(cache))
    app.cleanup_ctx.append(_budget_redis_ctx)
    app.cleanup_ctx.append(_predictor_ctx(predictor, state.engine))
    app.cleanup_ctx.append(_reload_ctx)
    register_routes(app)
    return app
