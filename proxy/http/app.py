"""The aiohttp application: routes, the error middleware, and one ``cleanup_ctx`` per resource.

``create_app(config, *, predictor=None, cache=None)`` builds the app; resources (the upstream
session, the decision cache, the predictor, the config watcher) are created when the app starts
and released when it stops. Injected ``predictor``/``cache`` objects are used as given and left
for the caller to close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import aiohttp
from aiohttp import web

from proxy.auth.guard import Authenticator
from proxy.auth.store import AuthStore, MemoryAuthStore, RedisAuthStore
from proxy.config.reload import ConfigHolder, Snapshot
from proxy.config.schema import Config, reference_problems
from proxy.decide.cache import DecisionCache, build_cache
from proxy.decide.decider import Decider
from proxy.decide.output_checks import output_problems
from proxy.decide.prediction import Predictor, UnknownPromptError
from proxy.decide.predictors import load_predictor
from proxy.execute.registry import Executors
from proxy.http.access_middleware import access_log_ctx, add_response_headers, proxy_middleware
from proxy.http.auth import register_admin_routes
from proxy.http.cache_redis import cache_redis
from proxy.http.dashboard import register_dashboard_routes
from proxy.http.drain import DRAIN, Drain
from proxy.http.handlers import register_routes
from proxy.http.learning import register_learning_routes
from proxy.http.outcomes import learning_ctx
from proxy.http.passthrough import register_passthrough_routes
from proxy.http.response_homes import response_homes_ctx
from proxy.http.responses_api import register_responses_routes
from proxy.http.state import (
    AUTH,
    BUDGETS,
    CACHE,
    CONFIG,
    COSTS,
    DECIDER,
    EXECUTORS,
    LEARNING,
    METRICS,
    POLICY_CONTEXT,
    PREDICTOR,
    UPSTREAMS,
    Learning,
)
from proxy.http.stats_ctx import stats_ctx
from proxy.http.tracing import TRACING, tracing_parts
from proxy.observe.metrics import Metrics
from proxy.observe.tracing import UpstreamObserver
from proxy.policies.base import PolicyContext
from proxy.policies.budget.controllers import BudgetControllers
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel
from proxy.upstream.redact import Redactor
from proxy.wire.errors import ConfigError, PredictorLoadError
from proxy.wire.tokens import warm as warm_token_counter

log = logging.getLogger("adaptive_proxy")

# The conversation of the warm-up prediction made before the proxy reports ready.
WARM_UP_MESSAGES = ({"role": "user", "content": "What is 17 * 23? Answer with a number."},)


def _session_ctx(env: Mapping[str, str]):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        upstream_cfgs = app[CONFIG].snapshot.config.upstreams
        metrics, costs = app[METRICS], app[COSTS]
        connector = aiohttp.TCPConnector(
            limit=sum(u.max_connections for u in upstream_cfgs.values()),
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=30,
        )
        session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
        )
        tracing = app.get(TRACING)
        observe: UpstreamObserver = metrics.observe_upstream
        if tracing is not None:
            observe = tracing.upstream_observer(observe)
        upstreams = UpstreamClient(
            upstream_cfgs,
            session,
            env=env,
            observe=observe,
            redactor=Redactor.from_config(app[CONFIG].snapshot.config, env),
            count_bad_response=metrics.upstream_bad_response,
        )
        app[UPSTREAMS] = upstreams
        # Each policy class picks its executor in proxy.execute.registry.
        app[EXECUTORS] = Executors.build(upstreams, session, costs, metrics, env, steps=tracing)
        try:
            yield
        finally:
            await session.close()

    return ctx


def _cache_ctx(injected: DecisionCache | None):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        spec = app[CONFIG].snapshot.config.cache
        cache = injected or build_cache(
            redis_url=spec.redis_url,
            ttl_s=spec.ttl_s,
            max_entries=spec.max_entries,
            timeout_s=spec.timeout_s,
            metrics=app[METRICS],
            max_connections=spec.max_connections,
            health_check_interval_s=spec.health_check_interval_s,
            l1_ttl_s=spec.l1_ttl_s,
            l1_max_entries=spec.l1_max_entries,
        )
        app[CACHE] = cache
        try:
            yield
        finally:
            if injected is None:
                await cache.aclose()

    return ctx


def _check_outputs(holder: ConfigHolder, predictor: Predictor) -> None:
    """Refuse to start on a policy reading an output ``predictor`` lacks; guard reloads too."""
    outputs = frozenset(predictor.output_names)
    source = str(holder.path) if holder.path else None
    problems = output_problems(holder.snapshot.config, outputs)
    if problems:
        raise ConfigError(problems, source=source)
    holder.add_check(lambda config: output_problems(config, outputs))


async def warm_up(predictor: Predictor, timeout_s: float) -> None:
    """One real prediction, so that no request pays the predictor's first-call costs.

    A failure is logged, not raised: requests then fall back to their policy's default arm, as
    they would for any prediction failure.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await predictor.predict([[dict(m) for m in WARM_UP_MESSAGES]])
    except UnknownPromptError:
        pass  # a prediction table without this prompt: there is nothing to warm
    except Exception as exc:
        log.warning("predictor warm-up prediction failed (%s: %s)", type(exc).__name__, exc)


def _predictor_ctx(injected: Predictor | None):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG].snapshot.config
        predictor = injected
        loop = asyncio.get_running_loop()
        # Decisions count prompt tokens: build the encoding now (in a thread, beside the
        # predictor's load), not on the event loop during the first request.
        counter = loop.run_in_executor(None, warm_token_counter)
        try:
            if predictor is None:
                predictor = await loop.run_in_executor(None, load_predictor, config.predictor)
        except PredictorLoadError as exc:
            raise PredictorLoadError(f"cannot start: {exc}") from None
        finally:
            await counter
        if predictor is not None:
            _check_outputs(app[CONFIG], predictor)
            # Before PREDICTOR is set (and the server listens): ready means warm.
            await warm_up(predictor, config.predictor.timeout_s)
        app[PREDICTOR] = predictor
        app[DECIDER] = Decider(
            predictor=predictor,
            cache=app[CACHE],
            metrics=app[METRICS],
            context=app[POLICY_CONTEXT],
            predictor_timeout_s=config.predictor.timeout_s,
        )
        try:
            yield
        finally:
            if injected is None and predictor is not None:
                await predictor.aclose()

    return ctx


async def _budget_redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """With ``cache.redis_url``, budget controllers and arm costs share state through Redis."""
    spec = app[CONFIG].snapshot.config.cache
    client = cache_redis(spec)
    if client is not None:
        app[BUDGETS].set_redis(client)
        await app[COSTS].share_through(client, timeout_s=max(spec.timeout_s, 0.2))
    try:
        yield
    finally:
        if client is not None:
            await app[BUDGETS].flush()  # observations still queued reach Redis first
            await app[COSTS].flush()
            await client.aclose()


def _auth_ctx(env: Mapping[str, str], *, warn_if_open: bool):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG].snapshot.config
        spec = config.server.auth
        if spec is None:
            app[AUTH] = None
            if warn_if_open:
                logging.getLogger("adaptive_proxy.auth").warning(
                    "no server.auth: the proxy is open; every request is served without a key"
                )
            yield
            return
        redis_url = spec.redis_url or config.cache.redis_url
        store: AuthStore = MemoryAuthStore()
        if redis_url:
            import redis.asyncio as aioredis

            client = aioredis.from_url(
                redis_url, socket_timeout=spec.timeout_s, socket_connect_timeout=spec.timeout_s
            )
            store = RedisAuthStore(client)
        try:
            auth = Authenticator(spec, env=env, store=store, metrics=app[METRICS])
        except ValueError as exc:
            await store.aclose()
            raise ConfigError([("server.auth.master_key_envs", str(exc))]) from None
        app[AUTH] = auth
        log.info(
            "auth on: %d key(s) in the file, counters and run-time keys in %s",
            len(spec.keys),
            store.backend,
        )
        try:
            yield
        finally:
            await auth.flush()  # spend booked by the last requests is not lost
            await store.aclose()

    return ctx


async def _reload_ctx(app: web.Application) -> AsyncIterator[None]:
    holder = app[CONFIG]
    config = holder.snapshot.config
    task: asyncio.Task[None] | None = None
    if holder.path is not None and config.server.reload:
        task = asyncio.create_task(
            holder.watch(config.server.reload_interval_s, config.server.reload_settle_s),
            name="adaptive-proxy-config-watch",
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


def _apply_snapshot(app: web.Application, env: Mapping[str, str]) -> Callable[[Snapshot], None]:
    def listener(snapshot: Snapshot) -> None:
        upstreams = app.get(UPSTREAMS)
        if upstreams is not None:
            # Secrets follow the config: a reload may add a key or a secret header.
            redactor = Redactor.from_config(snapshot.config, env)
            upstreams.update(snapshot.config.upstreams, redactor=redactor)
        app[COSTS].update_upstreams(snapshot.config.upstreams)
        auth, spec = app.get(AUTH), snapshot.config.server.auth
        if auth is not None and spec is not None:
            auth.update(spec)

    return listener


def create_app(
    config: Config,
    *,
    predictor: Predictor | None = None,
    cache: DecisionCache | None = None,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    warn_if_open: bool = True,
) -> web.Application:
    """The proxy application for ``config``.

    ``config_path`` enables live reload of that file; ``env`` supplies upstream API keys (the
    command line passes the process environment; nothing else reads it). ``warn_if_open=False``
    drops the start-up warning about a policy without ``server.auth``: for a tool that starts
    the proxy on loopback as its own only client (the benchmark), an open proxy is the intent.
    """
    problems = reference_problems(config)
    if problems:
        raise ConfigError(problems)
    # Tracing (with server.otel only) outermost, then one middleware: the access log, then
    # errors, then auth; the access log sees the final status of every response, errors
    # included; auth errors are rendered like any other.
    tracing_middlewares, tracing_ctxs = tracing_parts(config)
    app = web.Application(
        middlewares=[*tracing_middlewares, proxy_middleware],
        client_max_size=config.server.max_body_bytes,
    )
    app.on_response_prepare.append(add_response_headers)
    holder = ConfigHolder(config, path=Path(config_path) if config_path else None, env=env)
    metrics = Metrics()
    costs = CostModel(config.upstreams)
    budgets = BudgetControllers(metrics=metrics)
    app[CONFIG] = holder
    app[METRICS] = metrics
    app[COSTS] = costs
    app[BUDGETS] = budgets
    app[POLICY_CONTEXT] = PolicyContext(costs=costs, budgets=budgets)
    app[DRAIN] = Drain()
    app[LEARNING] = Learning()
    holder.subscribe(_apply_snapshot(app, dict(env or {})))
    app.cleanup_ctx.extend(tracing_ctxs)  # before the session: upstream calls are traced
    app.cleanup_ctx.append(access_log_ctx)
    app.cleanup_ctx.append(_session_ctx(dict(env or {})))
    app.cleanup_ctx.append(_auth_ctx(dict(env or {}), warn_if_open=warn_if_open))
    app.cleanup_ctx.append(_cache_ctx(cache))
    app.cleanup_ctx.append(_budget_redis_ctx)
    app.cleanup_ctx.append(_predictor_ctx(predictor))
    app.cleanup_ctx.append(learning_ctx(dict(env or {})))
    app.cleanup_ctx.append(_reload_ctx)
    app.cleanup_ctx.append(response_homes_ctx)
    app.cleanup_ctx.append(stats_ctx)
    register_routes(app)
    register_admin_routes(app)
    register_responses_routes(app)  # before the passthrough routes, which serve the rest
    register_learning_routes(app)
    register_passthrough_routes(app)
    register_dashboard_routes(app)
    return app
