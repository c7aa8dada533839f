"""Start an aiohttp application as a real server on an ephemeral loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from proxy.http.server import start_site
from proxy.http.state import CONFIG


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:0; yield its URL.

    A proxy app (from :func:`proxy.http.app.create_app`) is started exactly as ``serve`` starts
    it (:func:`proxy.http.server.start_site`); any other app (a fake upstream, the replay
    server) on a plain runner with handler cancellation on.
    """
    if CONFIG in app:
        proxy = await start_site(app)
        try:
            yield proxy.url
        finally:
            await proxy.close()
        return
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
