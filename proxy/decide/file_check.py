"""``adaptive-proxy check``: every problem of a policy file, in one pass.

Loading (:func:`~proxy.config.schema.parse_config_text`) collects the YAML, ``${VAR}``, schema and
upstream-reference problems. This adds what ``serve`` and the hot reload refuse beyond loading,
with the same functions they use: the predictor's files and hashes, the predictor outputs the
policies read (:mod:`proxy.decide.output_checks`), and a file with no policy
(:func:`~proxy.config.schema.empty_policies_problems`). A file that does not validate is still
checked
for all of them, on its policies built without validation (:mod:`proxy.config.unvalidated_refs`),
so fixing
one class of problem never reveals another.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from proxy.config.schema import (
    Config,
    ParsedConfig,
    PredictorConfig,
    Problem,
    ServerConfig,
    empty_policies_problems,
    parse_config_text,
    read_config_text,
)
from proxy.config.unvalidated_refs import loose, loose_policies
from proxy.decide.output_checks import policy_output_problems
from proxy.decide.predictors import predictor_outputs
from proxy.wire.errors import PredictorLoadError


def check_policy_file(
    path: str | Path, *, env: Mapping[str, str]
) -> tuple[Config | None, list[Problem]]:
    """The validated config (None if it does not validate) and every problem of the file.

    Raises :class:`~proxy.wire.errors.ConfigError` only when the file cannot be read.
    """
    source = str(Path(path))
    parsed = parse_config_text(read_config_text(path), env=env, source=source)
    return parsed.config, parsed.problems + parsed.beyond_unset(serving_problems(parsed))


def serving_problems(parsed: ParsedConfig) -> list[Problem]:
    """What ``serve`` and the reload would refuse beyond loading, for a valid file or not."""
    raw = parsed.expanded
    if raw is None:
        return []  # not a YAML mapping: nothing more can be read from it
    config = parsed.config
    problems: list[Problem] = []
    spec = config.predictor if config is not None else _loose_predictor(raw)
    policies: Mapping[str, Any] = config.policies if config is not None else loose_policies(raw)
    if spec is not None:
        try:
            outputs = predictor_outputs(spec)
        except (PredictorLoadError, OSError, ValueError) as exc:
            problems.append(("predictor", str(exc)))
        else:
            if outputs is not None:
                problems += policy_output_problems(policies, outputs)
    subject = config if config is not None else _loose_config(raw)
    if subject is not None:
        problems += empty_policies_problems(subject)
    return problems


def _loose_predictor(raw: dict[str, Any]) -> PredictorConfig | None:
    """The predictor section if it validates on its own (else the schema problems say why)."""
    section = raw.get("predictor")
    try:
        return PredictorConfig.model_validate({} if section is None else section)
    except ValidationError:
        return None


def _loose_config(raw: dict[str, Any]) -> Config | None:
    """Enough of an invalid file for the file-level rules: its policies and server section."""
    policies = raw.get("policies", {})
    server = raw.get("server") or {}
    upstreams = raw.get("upstreams")
    if not isinstance(policies, dict) or not isinstance(server, dict):
        return None  # the schema problems already name these sections
    return Config.model_construct(
        upstreams=upstreams if isinstance(upstreams, dict) else {},
        policies=policies,
        server=loose(ServerConfig, server),
    )
