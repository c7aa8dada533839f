"""Policies and the predictor agree at load time: `check`, `serve` and the hot reload refuse a
policy that reads an output the loaded predictor does not produce."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from proxy.cli import main
from proxy.config.schema import load_config
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.http.state import CONFIG
from proxy.wire.errors import ConfigError
from tests.proxy.config.test_reload import wait_for
from tests.servers import running

POLICY = """
server: {{reload_interval_s: 0.05}}
predictor: {{type: {predictor}}}
upstreams:
  cheap: {{base_url: "http://127.0.0.1:9/v1", model: small}}
  strong: {{base_url: "http://127.0.0.1:9/v1", model: big}}
policies:
  auto: {{type: route, cheap: cheap, expensive: strong, threshold: 0.2,
          predictor_output: {output}}}
  ladder:
    type: ladder
    lambda: 0.1
    arms:
      - {{name: c, upstream: cheap, n: 1, predictor_output: p_weak}}
      - {{name: s, upstream: strong, n: 1, predictor_output: {arm_output}}}
"""


def _write(path: Path, *, predictor: str, output: str, arm_output: str = "p_strong") -> Path:
    path.write_text(POLICY.format(predictor=predictor, output=output, arm_output=arm_output))
    return path


def test_check_refuses_an_output_the_shipped_predictor_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write(tmp_path / "good.yaml", predictor="onnx", output="gain_175b")
    assert main(["check", "--config", str(good)]) == 0
    bad = _write(tmp_path / "bad.yaml", predictor="onnx", output="gain_xl", arm_output="p_huge")
    assert main(["check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err
    assert "policies.auto.predictor_output" in err and "'gain_xl'" in err and "'auto'" in err
    assert "policies.ladder.arms.1.predictor_output" in err and "'p_huge'" in err
    assert "available: gain, gain_175b, gain_6b, gain_chat, p_175b_finetuning" in err


def test_check_names_a_broken_predictor_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.yaml"
    text = POLICY.format(predictor="onnx", output="gain", arm_output="p_strong")
    path.write_text(text.replace("{type: onnx}", f"{{type: onnx, path: {tmp_path / 'none'}}}"))
    assert main(["check", "--config", str(path)]) == 2
    assert "predictor: " in capsys.readouterr().err


def test_serve_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "bad.yaml", predictor="hash", output="p_nope")
    assert main(["serve", "--config", str(bad), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "'p_nope'" in err and "available: gain, p_strong, p_weak" in err


async def test_app_with_an_injected_predictor_refuses_to_start(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path / "p.yaml", predictor="hash", output="p_nope"), env={})
    with pytest.raises(ConfigError, match=r"policies\.auto\.predictor_output.*'p_nope'"):
        async with running(create_app(config, predictor=HashPredictor())):
            pass


async def test_reload_rejects_the_edit_and_keeps_the_old_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "policy.yaml", predictor="hash", output="gain")
    app = create_app(load_config(path, env={}), config_path=path, predictor=HashPredictor())
    body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
    async with running(app) as url, aiohttp.ClientSession() as session:
        holder = app[CONFIG]
        with caplog.at_level(logging.ERROR, logger="adaptive_proxy.reload"):
            _write(path, predictor="hash", output="p_nope")

            async def rejected() -> bool:
                return holder.last_error is not None

            await wait_for(rejected)
        assert "'p_nope'" in caplog.text
        kept = holder.snapshot.config.policies["auto"]
        assert getattr(kept, "predictor_output", None) == "gain"
        async with session.post(f"{url}/v1/adaptive/decide", json=body) as response:
            assert response.status == 200
            decision = await response.json()
        assert decision["arm"] in ("cheap", "expensive")
        async with session.get(f"{url}/health/readiness") as response:
            assert "p_nope" in (await response.json())["config_error"]
