"""Replay upstream: an OpenAI-compatible server that answers with REAL recorded model outputs.

``POST /v1/chat/completions`` looks the prompt up in a :class:`~replay.store.ReplayStore`
and returns the recorded answer of the requested model in the exact OpenAI schema (``n``,
``stream``, ``stream_options.include_usage``). ``POST /v1/responses`` serves the same answers
in the Responses API's shape (:mod:`replay.responses`). ``GET /v1/models`` lists the served
models. Each
response carries an extra top-level ``"replay": {"prompt_id", "arm", "arms"}`` object (OpenAI
clients ignore unknown fields) so the benchmark can join outcomes; correctness itself is never
sent, so nothing leaks into the proxy's decisions.

Run it with ``adaptive-proxy replay-upstream [--data-dir DIR]`` (see :func:`register_cli`)
or ``python -m replay``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.wire.errors import InvalidRequestError, ProxyError
from proxy.wire.tokens import count_message_tokens, count_tokens
from replay.app_state import (
    CONVERSATIONS_KEY,
    LATENCY_KEY,
    STORE_KEY,
    Conversations,
    LatencyModel,
    check_effort,
    lookup_answers,
    split_chunks,
)
from replay.multisample import (
    VERIFY_STORE_KEY,
    MultiSampleStore,
    build_multisample_store,
    verify_handler,
)
from replay.responses import create_response
from replay.store import ReplayAnswer, ReplayStore, build_store

__all__ = [
    "STORE_KEY",
    "LatencyModel",
    "ReplayStore",
    "build_store",
    "create_replay_app",
    "main",
    "register_cli",
]

log = logging.getLogger(__name__)
_MAX_N = 128


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as exc:
        return web.json_response(exc.to_dict(), status=exc.status, headers=exc.headers)


def _parse(body: Any) -> tuple[str, list[dict[str, Any]], int, bool, bool, int | None]:
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' must be a non-empty string", param="model")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("'messages' must be a non-empty list", param="messages")
    if not all(isinstance(m, dict) for m in messages):
        raise InvalidRequestError("each message must be an object", param="messages")
    n = 1 if body.get("n") is None else body["n"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= _MAX_N:
        raise InvalidRequestError(f"'n' must be an integer in [1, {_MAX_N}]", param="n")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise InvalidRequestError("'seed' must be an integer", param="seed")
    return model, messages, n, stream, include_usage, seed


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _count_all(messages: list[dict[str, Any]], texts: Sequence[str]) -> tuple[int, list[int]]:
    return count_message_tokens(messages), [count_tokens(t) for t in texts]


async def _chat(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from exc
    model, messages, n, stream, include_usage, seed = _parse(body)
    check_effort(model, body.get("reasoning_effort"), param="reasoning_effort")
    answers = lookup_answers(request.app, model, messages, n=n, seed=seed)
    loop = asyncio.get_running_loop()
    # tiktoken is CPU work (and loads its BPE file on first use): keep it off the event loop.
    prompt_tokens, completion = await loop.run_in_executor(
        None, _count_all, messages, [a.text for a in answers]
    )
    latency = request.app[LATENCY_KEY]
    base = {
        "id": f"chatcmpl-replay-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "replay",
    }
    replay = {
        "prompt_id": answers[0].prompt_id,
        "arm": answers[0].arm,
        "arms": [a.arm for a in answers],
    }
    usage = _usage(prompt_tokens, sum(completion))
    if not stream:
        delay_s = latency.delay_s(max(completion), first=True)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": a.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i, a in enumerate(answers)
        ]
        payload = {**base, "object": "chat.completion", "choices": choices, "usage": usage}
        return web.json_response({**payload, "replay": replay})
    return await _stream(request, base, replay, answers, usage if include_usage else None, latency)


async def _stream(
    request: web.Request,
    base: dict[str, Any],
    replay: dict[str, Any],
    answers: list[ReplayAnswer],
    usage: dict[str, int] | None,
    latency: LatencyModel,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    extra: dict[str, Any] = {"usage": None} if usage is not None else {}

    async def send(choices: list[dict[str, Any]], **fields: Any) -> None:
        chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra, **fields}
        await response.write(f"data: {json.dumps({**chunk, 'replay': replay})}\n\n".encode())

    first = True
    for index, answer in enumerate(answers):
        role = {"role": "assistant", "content": ""}
        await send([{"index": index, "delta": role, "logprobs": None, "finish_reason": None}])
        for piece in split_chunks(answer.text):
            tokens = count_tokens(piece) if latency.per_token_ms > 0 else 0
            delay_s = latency.delay_s(tokens, first=first)
            first = False
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            delta = {"content": piece}
            await send([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}])
        await send([{"index": index, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
    if usage is not None:
        await send([], usage=usage)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _models(request: web.Request) -> web.Response:
    multisample = request.app.get(VERIFY_STORE_KEY)
    models = (*request.app[STORE_KEY].models, *(multisample.models if multisample else ()))
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "replay"} for m in models]
    return web.json_response({"object": "list", "data": data})


def create_replay_app(
    store: ReplayStore,
    *,
    latency: LatencyModel | None = None,
    multisample: MultiSampleStore | None = None,
) -> web.Application:
    """The replay upstream as an aiohttp application (no delay unless ``latency`` is given);
    with ``multisample`` it also serves the multi-sample models and ``POST /v1/verify``."""
    app = web.Application(middlewares=[_errors])
    app[STORE_KEY] = store
    app[LATENCY_KEY] = latency or LatencyModel()
    app[CONVERSATIONS_KEY] = Conversations()
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/responses", create_response)
    app.router.add_get("/v1/models", _models)
    if multisample is not None:
        app[VERIFY_STORE_KEY] = multisample
        app.router.add_post("/v1/verify", verify_handler)
    return app


async def _serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(None, build_store, Path(args.data_dir))
    multisample = await loop.run_in_executor(None, build_multisample_store, Path(args.data_dir))
    latency = LatencyModel(ttft_ms=args.ttft_ms, per_token_ms=args.per_token_ms)
    runner = web.AppRunner(create_replay_app(store, latency=latency, multisample=multisample))
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except OSError as exc:
            # A port in use is an operator's everyday mistake: one line, as ``serve`` says it.
            print(
                f"adaptive-proxy: cannot listen on {args.host}:{args.port}: {exc.strerror}",
                file=sys.stderr,
            )
            return 1
        port = runner.addresses[0][1] if runner.addresses else args.port
        # On stdout whatever the logging setup: users need the address to point a config at.
        n_models = len(store.models) + (len(multisample.models) if multisample else 0)
        print(
            f"replay upstream serving {len(store)} prompts for {n_models} models "
            f"on http://{args.host}:{port}/v1",
            flush=True,
        )
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Also when started in the background, where SIGINT is inherited as ignored.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("replay upstream stopping")
    finally:
        await runner.cleanup()
    return 0


def _run(args: argparse.Namespace) -> int:
    from recorded_data import DataNotFoundError, resolve_data_dir

    try:
        args.data_dir = resolve_data_dir(args.data_dir)
    except DataNotFoundError as exc:
        log.error("%s", exc)
        return 2
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay-upstream`` sub-command; its ``func`` returns an exit code."""
    parser = subparsers.add_parser(
        "replay-upstream",
        help="serve real recorded model answers as an OpenAI-compatible upstream",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="recorded data (default: $ADAPTIVE_DATA_DIR, else the bundled copy)",
    )
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="simulated time to first token")
    parser.add_argument("--per-token-ms", type=float, default=0.0, help="simulated ms per token")
    parser.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m replay [replay-upstream options]``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m replay")
    sub = parser.add_subparsers(dest="command")
    register_cli(sub)
    args = parser.parse_args(["replay-upstream", *(argv or ())])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
