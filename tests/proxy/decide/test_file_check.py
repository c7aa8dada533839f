"""``adaptive-proxy check`` names every problem of a file in one pass, by the rules of ``serve``
and the hot reload."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from proxy.config.reload import ConfigHolder
from proxy.config.schema import load_config
from proxy.decide.file_check import check_policy_file
from tests.cli import ROOT, run_cli

FILE = """
upstreams:
  mixtral: {{base_url: "http://127.0.0.1:9/v1", model: small}}
  gpt-4: {{base_url: "http://127.0.0.1:9/v1", model: big}}
policies:
  auto: {{type: route, cheap: {cheap}, expensive: gpt-4, threshold: {threshold},
          predictor_output: {output}}}
predictor: {predictor}
"""


def _write(
    path: Path,
    *,
    cheap: str = "mixtral",
    threshold: str = "0.2",
    output: str = "gain",
    predictor: str = "{type: hash}",
) -> Path:
    text = FILE.format(cheap=cheap, threshold=threshold, output=output, predictor=predictor)
    path.write_text(text, encoding="utf-8")
    return path


def _problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("  - ")]


def test_an_unknown_upstream_does_not_hide_an_unknown_predictor_output(tmp_path: Path) -> None:
    policy = _write(tmp_path / "policy.yaml", cheap="mixtrall", output="p_nope")
    result = run_cli("check", "--config", str(policy))
    assert result.returncode == 2, result.stderr
    lines = _problem_lines(result.stderr)
    assert len(lines) == 2, result.stderr
    assert "policies.auto.cheap: unknown upstream 'mixtrall'" in lines[0]
    assert "policies.auto.predictor_output" in lines[1] and "'p_nope'" in lines[1]


def test_a_file_that_does_not_validate_is_checked_for_every_class_of_problem(
    tmp_path: Path,
) -> None:
    policy = _write(tmp_path / "bad.yaml", cheap="mixtrall", threshold="high", output="p_nope")
    result = run_cli("check", "--config", str(policy))
    assert result.returncode == 2, result.stderr
    found = "\n".join(_problem_lines(result.stderr))
    assert "policies.auto.threshold" in found
    assert "unknown upstream 'mixtrall'" in found
    assert "'p_nope'" in found and "available: gain, p_strong, p_weak" in found

    model = tmp_path / "model"
    shutil.copytree(ROOT / "predictor_onnx" / "model", model)
    with (model / "head.onnx").open("ab") as head:
        head.write(b"tampered")
    broken = _write(
        tmp_path / "broken.yaml", threshold="high", predictor=f"{{type: onnx, path: {model}}}"
    )
    result = run_cli("check", "--config", str(broken))
    assert result.returncode == 2, result.stderr
    found = "\n".join(_problem_lines(result.stderr))
    assert "policies.auto.threshold" in found
    assert "predictor: " in found and "head.onnx" in found


def test_an_unset_variable_does_not_hide_the_other_problems(tmp_path: Path) -> None:
    policy = _write(tmp_path / "policy.yaml", cheap='"${CHEAP_UPSTREAM}"', threshold="high")
    result = run_cli("check", "--config", str(policy))
    assert result.returncode == 2, result.stderr
    found = "\n".join(_problem_lines(result.stderr))
    assert "policies.auto.cheap: environment variable CHEAP_UPSTREAM is not set" in found
    assert "policies.auto.threshold" in found


def _without_policies(path: Path, *, allowed: bool) -> Path:
    server = "server: {allow_empty_policies: true}\n" if allowed else ""
    upstreams = _write(path).read_text(encoding="utf-8").split("policies:")[0]
    path.write_text(server + upstreams + "policies: {}\npredictor: {type: hash}\n")
    return path


def _reload_accepts(path: Path, text: str, caplog: pytest.LogCaptureFixture) -> bool:
    """Whether a proxy serving a file with a policy accepts an edit to ``text``."""
    served = _write(path)
    holder = ConfigHolder(load_config(served, env={}), path=served, env={})
    served.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="adaptive_proxy.reload"):
        return asyncio.run(holder.reload())


def test_check_serve_and_reload_agree_on_a_file_without_policies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = _without_policies(tmp_path / "empty.yaml", allowed=False)
    result = run_cli("check", "--config", str(empty))
    assert result.returncode == 2 and "server.allow_empty_policies: true" in result.stderr
    result = run_cli("serve", "--config", str(empty), "--port", "0")
    assert result.returncode == 2 and "server.allow_empty_policies: true" in result.stderr
    text = empty.read_text(encoding="utf-8")
    assert _reload_accepts(tmp_path / "served.yaml", text, caplog) is False
    assert "server.allow_empty_policies: true" in caplog.text

    intended = _without_policies(tmp_path / "intended.yaml", allowed=True)
    result = run_cli("check", "--config", str(intended))
    assert result.returncode == 0, result.stderr
    assert "0 policies" in result.stdout
    text = intended.read_text(encoding="utf-8")
    assert _reload_accepts(tmp_path / "served.yaml", text, caplog) is True


def test_a_policy_too_broken_to_read_leaves_the_others_checked(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        """
upstreams:
  a: {base_url: "http://127.0.0.1:9/v1", model: a}
policies:
  broken: {type: ladder, lambda: 0.1, arms: 5}
  steps: {type: ladder, lambda: -1, arms: [{name: x, upstream: a, n: 1, predictor_output: p_zz}]}
predictor: {type: hash}
""",
        encoding="utf-8",
    )
    config, problems = check_policy_file(policy, env={})
    assert config is None
    found = dict(problems)
    assert "valid list" in found["policies.broken.arms"]
    assert "greater than or equal to 0" in found["policies.steps.lambda"]
    assert "'p_zz'" in found["policies.steps.arms.0.predictor_output"]
