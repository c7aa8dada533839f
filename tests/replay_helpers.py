"""What tests on the replay upstream share: the server, its models as upstreams, its records.

:func:`replay_upstream` serves it; :func:`replay_upstreams` is the ``upstreams:`` entries for
the recorded models at their recorded prices, to be put into a test's policy file; the record
helpers pick questions by what their recorded answers say.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from aiohttp.test_utils import TestServer

from proxy.execute.rerank_text import extract_answer
from recorded_data.records import MODEL_STRONG, MODEL_WEAK, Record
from replay.server import LatencyModel, create_replay_app
from replay.store import ReplayStore


@asynccontextmanager
async def replay_upstream(
    store: ReplayStore, *, latency: LatencyModel | None = None
) -> AsyncIterator[str]:
    """A replay upstream on an ephemeral port, answering after ``latency``; yields ``…/v1``."""
    server = TestServer(create_replay_app(store, latency=latency), port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/v1"))
    finally:
        await server.close()


def replay_upstreams(
    url: str, *, checker: bool = True, pool: bool = False, pool_supports_n: bool = False
) -> str:
    """``mixtral``, ``checker`` (the 6B sample), ``gpt-4`` and, with ``pool``, ``pool`` (the
    six GSM8K solutions; one per call unless ``pool_supports_n``) on the replay at ``url``,
    as YAML lines indented under ``upstreams:``."""
    lines = [
        f'  mixtral: {{base_url: "{url}", model: "{MODEL_WEAK}", price_in_per_mtok_usd: 0.6,',
        "            price_out_per_mtok_usd: 0.6}",
    ]
    if checker:
        lines += [
            f'  checker: {{base_url: "{url}", model: gsm8k-6b-finetuning,'
            " price_in_per_mtok_usd: 0.28,",
            "            price_out_per_mtok_usd: 0.28}",
        ]
    lines += [
        f'  gpt-4: {{base_url: "{url}", model: "{MODEL_STRONG}", price_in_per_mtok_usd: 10,',
        "          price_out_per_mtok_usd: 30}",
    ]
    if pool:
        supports_n = "" if pool_supports_n else " supports_n: false,"
        lines += [
            f'  pool: {{base_url: "{url}", model: gsm8k-pool,{supports_n}',
            "         price_in_per_mtok_usd: 0.6, price_out_per_mtok_usd: 0.6}",
        ]
    return "\n".join(lines)


def record_by_id(store: ReplayStore, prompt_id: str) -> Record:
    """The record of ``prompt_id`` (``gsm8k/5``, ``mtbench/85/t1``)."""
    return next(r for r in store.records() if r.prompt_id == prompt_id)


def cheap_answers(record: Record) -> tuple[str | None, str | None]:
    """The final answers of Mixtral and of the 6B sample (a cascade's two cheap stages)."""
    return (
        extract_answer(record.responses["weak"]),
        extract_answer(record.responses["6b_finetuning"]),
    )


def checked_gsm8k(store: ReplayStore) -> Iterator[Record]:
    """The GSM8K questions with a 6B sample, so a cascade's checker stage can answer them."""
    return (r for r in store.records() if r.dataset == "gsm8k" and "6b_finetuning" in r.responses)
