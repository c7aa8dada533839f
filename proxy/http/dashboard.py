"""``GET /dashboard`` (static page, shipped in the package) and ``GET /v1/adaptive/stats``.

The page and its files are served without a key: they hold no data. The data comes from
``GET /v1/adaptive/stats?window_s=3600``, which with ``server.auth`` needs a master key (the
page asks for it and keeps it in the tab's session storage).
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from proxy.auth.store import AuthStoreError
from proxy.http.state import AUTH, CLIENT, CONFIG, COSTS
from proxy.http.stats_ctx import MAX_WINDOW_S, STATS, STATS_STORE, policy_info
from proxy.observe.stats_view import build_stats
from proxy.wire.errors import InvalidRequestError, PermissionDeniedError, ServiceUnavailableError

STATIC_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
DEFAULT_WINDOW_S = 3600


def _static(name: str) -> bytes:
    return resources.files("proxy.http").joinpath("dashboard_static", name).read_bytes()


async def dashboard_page(request: web.Request) -> web.Response:
    """``GET /dashboard``: the page (its data is fetched by its script)."""
    body = await asyncio.to_thread(_static, "index.html")
    return web.Response(
        body=body,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
    )


# Everything from this origin only: no CDN, no inline script.
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"


async def dashboard_file(request: web.Request) -> web.Response:
    """``GET /dashboard/{name}``: the page's script and style sheet."""
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    body = await asyncio.to_thread(_static, name)
    return web.Response(
        body=body, content_type=content_type, charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


def _window(request: web.Request) -> int:
    raw = request.query.get("window_s", str(DEFAULT_WINDOW_S))
    try:
        window_s = int(raw)
    except ValueError:
        window_s = 0
    if not 1 <= window_s <= MAX_WINDOW_S:
        raise InvalidRequestError(
            f"window_s must be a whole number of seconds in [1, {MAX_WINDOW_S}]; got {raw!r}",
            param="window_s",
        )
    return window_s


async def _clients(request: web.Request) -> list[dict[str, Any]] | None:
    """Every key's spend today and this month against its limits (auth on); never the key."""
    auth = request.app.get(AUTH)
    if auth is None:
        return None
    return [
        {
            "name": spend.name,
            "source": spend.source,
            "spend_today_usd": spend.spend_today_usd,
            "spend_this_month_usd": spend.spend_this_month_usd,
            "limit_usd_per_day": spend.limits.spend_limit_usd_per_day,
            "limit_usd_per_month": spend.limits.spend_limit_usd_per_month,
        }
        for spend in await auth.key_spends(time.time())
    ]


async def stats(request: web.Request) -> web.Response:
    """``GET /v1/adaptive/stats?window_s=3600``: per-policy aggregates of every replica."""
    client = request.get(CLIENT)
    if request.app.get(AUTH) is not None and (client is None or not client.is_master):
        raise PermissionDeniedError("the stats need a master key")
    window_s = _window(request)
    recorder, store = request.app.get(STATS), request.app.get(STATS_STORE)
    if recorder is None or store is None:
        raise ServiceUnavailableError("the proxy is still starting")
    now_s = int(time.time())
    try:
        # This replica's latest requests count at once, not at the next background flush.
        await recorder.flush(store)
        rows = await store.read(now_s - window_s - recorder.slot_s)
        clients = await _clients(request)
    except AuthStoreError as exc:
        raise ServiceUnavailableError(f"the key store is unreachable ({exc})") from None
    except Exception as exc:  # Redis down or slow: the page says so and keeps polling
        raise ServiceUnavailableError(
            f"the stats store is unreachable ({type(exc).__name__}: {exc})"
        ) from None
    info = policy_info(request.app[CONFIG], request.app[COSTS])

    def build() -> bytes:
        body = build_stats(
            rows, window_s=window_s, now_s=now_s, slot_s=recorder.slot_s, policies=info
        )
        body["backend"] = store.backend
        body["clients"] = clients
        return orjson.dumps(body)

    body = await asyncio.to_thread(build)
    return web.Response(body=body, content_type="application/json")


def register_dashboard_routes(app: web.Application) -> None:
    """Attach the dashboard page, its files and the stats endpoint."""
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/{name}", dashboard_file)
    app.router.add_get("/v1/adaptive/stats", stats)
