"""One request, one config: a reload landing while a request is in flight applies to the next.

The predictor below rewrites the policy file and reloads it while the proxy is deciding a
request, so the reload lands between the request's decision and its execution. The request
must still run with the settings of the config it was decided under (its keep-alive interval,
its policy version), not a mix of the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from proxy.config.reload import ConfigHolder
from proxy.config.schema import load_config, load_config_text
from proxy.decide.prediction import HashPredictor, Messages
from proxy.http.app import create_app
from proxy.http.state import CONFIG
from proxy.wire.protocol import SSE_KEEPALIVE
from tests.proxy.fake_upstream import completion
from tests.servers import running

POLICY = """
server: {{reload: false, keepalive_interval_s: {keepalive_s}}}
upstreams:
  gated: {{base_url: "{url}", model: gated-model, supports_n: false,
          price_in_per_mtok_usd: 1.0, price_out_per_mtok_usd: 1.0}}
policies:
  sample: {{type: best_of_k, upstream: gated, n_min: {n}, n_max: {n}, predictor_output: p_weak,
           lambda: 0.01, reranker: {{type: vote}}}}
"""
# Validated under this one: keep-alives every 10 ms while the samples are drawn.
BEFORE = {"keepalive_s": 0.01, "n": 3}
# Reloaded mid-request: no keep-alive for an hour, and another policy version.
AFTER = {"keepalive_s": 3600, "n": 2}
MARK = "reload while deciding me"


class ReloadingPredictor:
    """A hash predictor that, asked about a conversation with :data:`MARK`, first rewrites the
    policy file and reloads it (once)."""

    def __init__(self, path: Path, text: str) -> None:
        self._inner = HashPredictor()
        self._path, self._text = path, text
        self.holder: ConfigHolder | None = None
        self.reloaded = False

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._inner.output_names

    async def predict(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        marked = any(MARK in str(m.get("content")) for messages in batch for m in messages)
        if marked and self.holder is not None and not self.reloaded:
            self._path.write_text(self._text)
            self.reloaded = await self.holder.reload()
        return await self._inner.predict(batch)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def gated_upstream(gate: asyncio.Event) -> AsyncIterator[str]:
    """An upstream that answers each completion only once ``gate`` is set."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await gate.wait()
        return web.json_response(completion(str(body["model"]), "42"))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with running(app) as url:
        yield f"{url}/v1"


async def test_a_reload_mid_request_does_not_mix_configs(tmp_path: Path) -> None:
    gate = asyncio.Event()
    async with gated_upstream(gate) as upstream_url:
        path = tmp_path / "policy.yaml"
        path.write_text(POLICY.format(url=upstream_url, **BEFORE))
        after = POLICY.format(url=upstream_url, **AFTER)
        before_config = load_config(path, env={})
        predictor = ReloadingPredictor(path, after)
        app = create_app(before_config, config_path=path, predictor=predictor, env={})
        predictor.holder = app[CONFIG]
        body = {
            "model": "sample",
            "stream": True,
            "messages": [{"role": "user", "content": MARK}],
        }
        async with running(app) as url, aiohttp.ClientSession() as http:
            async with asyncio.timeout(30), http.post(f"{url}/v1/chat/completions", json=body) as r:
                assert r.status == 200
                keepalives, adaptive = 0, []
                async for line in r.content:
                    if line == SSE_KEEPALIVE[:-1]:
                        # The upstream answers once the client has seen the proxy keep the
                        # stream alive: with the reloaded hour-long interval it never would.
                        keepalives += 1
                        gate.set()
                    elif line.startswith(b"data: {"):
                        adaptive += [orjson.loads(line[6:]).get("adaptive")]
                n_header = r.headers["x-adaptive-n"]
            assert predictor.reloaded
            assert keepalives >= 1
            assert n_header == "3"
            assert adaptive[0]["policy_version"] == before_config.policy_version("sample")
            # The reload did land: the next request is decided under the new config.
            decide = {"model": "sample", "messages": [{"role": "user", "content": "next"}]}
            async with http.post(f"{url}/v1/adaptive/decide", json=decide) as r:
                assert r.status == 200
                after_version = load_config_text(after, env={}).policy_version("sample")
                assert (await r.json())["policy_version"] == after_version
