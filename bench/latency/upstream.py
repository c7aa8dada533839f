"""The latency benchmark's upstream: a tiny aiohttp + uvloop OpenAI-compatible server.

It answers every ``POST /v1/chat/completions`` with the same small completion (JSON, or SSE when
``stream`` is true) and does as little work as possible, so that what the benchmark measures is
the proxy, not the upstream. With ``--forward URL`` it is instead the *floor*: a minimal
passthrough to ``URL``. Run as ``python -m bench.latency.upstream --port 0``: it prints
``PORT <n>`` on stdout once it listens and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

COMPLETION_TEXT = "The answer is 42."
_USAGE = {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}


def _completion(model: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": COMPLETION_TEXT},
                    "finish_reason": "stop",
                }
            ],
            "usage": _USAGE,
        }
    )


def _chunk(model: str, delta: dict[str, str], finish: str | None) -> bytes:
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _usage_chunk(model: str) -> bytes:
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [],
        "usage": _USAGE,
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _chat(request: web.Request) -> web.StreamResponse:
    data = orjson.loads(await request.read())
    model = str(data.get("model", "bench"))
    if not data.get("stream"):
        return web.Response(body=_completion(model), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk(model, {"role": "assistant", "content": ""}, None))
    for word in COMPLETION_TEXT.split(" "):
        await response.write(_chunk(model, {"content": word + " "}, None))
    await response.write(_chunk(model, {}, "stop"))
    if (data.get("stream_options") or {}).get("include_usage"):
        await response.write(_usage_chunk(model))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def create_fast_app() -> web.Application:
    """The upstream application (chat completions only)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    return app


SESSION_KEY = web.AppKey("forward_session", aiohttp.ClientSession)


def create_floor_app(upstream_url: str) -> web.Application:
    """The floor: a minimal passthrough (one shared session, body forwarded as is, no checks).

    It is what the issue calls the floor of any Python proxy on this stack; the benchmark runs it
    like the proxy so that the proxy's figures can be read against it on the same machine.
    """
    target = URL(upstream_url.rstrip("/") + "/chat/completions")
    headers = {"Content-Type": "application/json"}

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session = request.app[SESSION_KEY]
        async with session.post(target, data=body, headers=headers) as upstream:
            if upstream.content_type != "text/event-stream":
                return web.Response(
                    body=await upstream.read(),
                    status=upstream.status,
                    content_type="application/json",
                )
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            app[SESSION_KEY] = session
            yield

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_get("/health/readiness", ready)
    return app


async def _serve(port: int, forward: str | None) -> None:
    app = create_floor_app(forward) if forward else create_fast_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.latency.upstream``."""
    parser = argparse.ArgumentParser(prog="python -m bench.latency.upstream")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--forward", metavar="URL", help="serve the floor passthrough to URL")
    args = parser.parse_args(argv)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(_serve(args.port, args.forward))
    return 0


if __name__ == "__main__":
    sys.exit(main())
