"""Policy file validation, environment expansion, versions, and `adaptive-proxy check`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.config.defaults import default_config_text
from proxy.config.schema import load_config, load_config_text
from proxy.wire.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

BASE = """
upstreams:
  cheap: {base_url: "http://127.0.0.1:1/v1", model: small}
  strong: {base_url: "http://127.0.0.1:1/v1", model: big}
policies:
  auto: {type: route, cheap: cheap, expensive: strong, threshold: 0.2}
  other: {type: route, cheap: cheap, expensive: strong, threshold: 0.5}
"""


def problems(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env=env or {})
    return dict(info.value.problems)


def test_example_and_embedded_defaults_are_valid() -> None:
    config = load_config(ROOT / "config.example.yaml", env={})
    assert {"auto", "auto-best-of-k"} <= set(config.policies)
    assert config.upstreams["mixtral"].model == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert config.upstreams["gpt-4"].model == "gpt-4-1106-preview"
    assert config.upstreams["mixtral"].base_url == "http://127.0.0.1:8001/v1"
    assert load_config_text(default_config_text(), env={}).policies["auto"].type == "route"


def test_every_problem_is_reported_with_its_yaml_path() -> None:
    found = problems("""
upstreams:
  a: {model: x, base_url: "http://h/v1", pricez: 1}
  b: {model: y}
policies:
  p: {type: route, cheap: a, expensive: a}
  q: {type: best_of_k, upstream: a, n_min: 5, n_max: 2}
  r: {type: route, cheap: a, expensive: a, threshold: 1, lambda: 2}
  s: {type: magic}
cache: {ttl_s: -1}
""")
    assert "unknown key" in found["upstreams.a.pricez"]
    assert "base_url" in found["upstreams.b"]
    assert "threshold, lambda or budget" in found["policies.p"]
    assert "n_min" in found["policies.q"]
    assert "only one of" in found["policies.r"]
    assert "magic" in found["policies.s"]
    assert "greater than 0" in found["cache.ttl_s"]


def test_unknown_upstream_reference_names_the_known_ones() -> None:
    found = problems(
        BASE.replace("expensive: strong, threshold: 0.2", "expensive: nope, threshold: 0.2")
    )
    assert found == {"policies.auto.expensive": "unknown upstream 'nope' (known: cheap, strong)"}


def test_env_expansion_with_defaults_and_missing_variables() -> None:
    text = BASE.replace(
        '"http://127.0.0.1:1/v1", model: small', '"${URL:-http://d/v1}", model: "${M}"'
    )
    config = load_config_text(text, env={"M": "from-env"})
    assert config.upstreams["cheap"].base_url == "http://d/v1"
    assert config.upstreams["cheap"].model == "from-env"
    assert "M is not set" in problems(text, env={})["upstreams.cheap.model"]


def test_api_key_must_be_an_env_var_name_not_a_key() -> None:
    text = BASE.replace("model: small}", "model: small, api_key_env: sk-live-123}")
    assert "NAME of an environment variable" in problems(text)["upstreams.cheap"]


def test_policy_version_changes_only_for_the_edited_policy() -> None:
    before = load_config_text(BASE, env={})
    after = load_config_text(BASE.replace("threshold: 0.5", "threshold: 0.6"), env={})
    assert before.policy_version("auto") == after.policy_version("auto")
    assert before.policy_version("other") != after.policy_version("other")


def test_invalid_yaml_is_one_clear_problem() -> None:
    found = problems("upstreams: [unclosed")
    assert "not valid YAML" in found[""]


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    assert main(["check", "--config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("threshold: 0.2", "threshold: high"))
    assert main(["check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "policies.auto.threshold" in err and "bad.yaml" in err
    assert main(["check", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_problems_name_the_variable_never_its_expanded_value() -> None:
    secret = "sk-live-0123456789abcdef"
    text = BASE.replace(
        "auto: {type: route, cheap: cheap,", 'auto: {type: route, cheap: "${SOME_KEY}",'
    )
    assert "${SOME_KEY}" in text
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env={"SOME_KEY": secret})
    message = str(caught.value)
    assert secret not in message
    assert "unknown upstream '${SOME_KEY}'" in message


def test_yaml_syntax_error_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("upstreams:\n  a: {base_url: x\npolicies: [\n")
    assert main(["check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:9: not valid YAML" in err
    assert "line 2, column 6" in err  # where the unclosed mapping started


def test_a_bad_number_does_not_hide_an_unknown_upstream() -> None:
    found = problems(
        BASE.replace("expensive: strong, threshold: 0.2", "expensive: ghost, threshold: high")
        + "  bok: {type: best_of_k, upstream: cheap, n_max: 0,"
        " reranker: {type: judge, upstream: judge-ghost}}\n"
    )
    assert "policies.auto.threshold" in found and "policies.bok.n_max" in found
    assert "unknown upstream 'ghost'" in found["policies.auto.expensive"]
    assert "unknown upstream 'judge-ghost'" in found["policies.bok.reranker.upstream"]


def test_check_verifies_the_predictor_files_as_serve_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(ROOT / "predictor_onnx" / "model", model)
    with (model / "head.onnx").open("ab") as head:
        head.write(b"tampered")
    policy = tmp_path / "policy.yaml"
    policy.write_text(BASE + f"predictor: {{type: onnx, path: {model}}}\n")
    assert main(["check", "--config", str(policy)]) == 2
    err = capsys.readouterr().err
    assert "predictor" in err and "head.onnx" in err
