"""deploy/grafana/adaptive-proxy.json: every series its queries name is one the proxy exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from openai import AsyncOpenAI

from proxy.http.app import create_app
from replay.store import ReplayStore
from tests.proxy.http.dashboard_workload import (
    ENV,
    MASTER,
    dashboard_config,
    send_workload,
    steering,
)
from tests.servers import running

BOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "adaptive-proxy.json"
SERIES = re.compile(r"\badaptive_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_names(text: str) -> set[str]:
    """Every series name ``/metrics`` declares or carries samples of."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def board_queries() -> list[tuple[str, str]]:
    board: dict[str, Any] = json.loads(BOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


async def test_every_metric_the_board_queries_is_in_metrics(
    replay_base_url: str, replay_store: ReplayStore
) -> None:
    config = dashboard_config(replay_base_url, auth=True)
    async with running(create_app(config, predictor=steering(), env=ENV)) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0) as client:
            await send_workload(client, replay_store)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
    exported = exported_names(text)
    queries = board_queries()
    assert len(queries) >= 18
    missing = {
        (title, name)
        for title, expr in queries
        for name in SERIES.findall(expr)
        if name not in exported
    }
    assert not missing
    # The workload filled the series of the board's main panels (not just declared them).
    for name in (
        "adaptive_requests_total",
        "adaptive_cost_usd_total",
        "adaptive_samples_per_request_bucket",
        "adaptive_sequential_stops_total",
        "adaptive_cascade_requests_total",
        "adaptive_cascade_agreement_total",
        "adaptive_budget_lambda",
        "adaptive_upstream_seconds_bucket",
        "adaptive_client_spend_usd_total",
    ):
        assert any(line.startswith(name + "{") for line in text.splitlines()), name


def test_a_name_the_proxy_does_not_export_is_caught() -> None:
    exported = exported_names("# TYPE adaptive_x_seconds histogram\nadaptive_y_total 1.0\n")
    assert exported == {
        "adaptive_x_seconds_bucket",
        "adaptive_x_seconds_sum",
        "adaptive_x_seconds_count",
        "adaptive_y_total",
    }
    assert "adaptive_requests" not in exported
