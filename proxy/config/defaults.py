"""The embedded default policy: the demo against the replay upstream on port 8001.

`adaptive-proxy serve` without `--config`, and `adaptive-proxy demo`, run on it. It mirrors the
policies of `config.example.yaml` without the comments.
"""

from __future__ import annotations


def default_config_text() -> str:
    """The embedded default policy: the demo against the replay upstream on port 8001."""
    return _DEFAULT_CONFIG


_DEFAULT_CONFIG = """\
upstreams:
  mixtral:
    base_url: ${REPLAY_BASE_URL:-http://127.0.0.1:8001/v1}
    model: mistralai/Mixtral-8x7B-Instruct-v0.1
    price_in_per_mtok_usd: 0.6
    price_out_per_mtok_usd: 0.6
  gpt-4:
    base_url: ${REPLAY_BASE_URL:-http://127.0.0.1:8001/v1}
    model: gpt-4-1106-preview
    price_in_per_mtok_usd: 10.0
    price_out_per_mtok_usd: 30.0
  gsm8k-pool:
    base_url: ${REPLAY_BASE_URL:-http://127.0.0.1:8001/v1}
    model: gsm8k-pool
    price_in_per_mtok_usd: 0.6
    price_out_per_mtok_usd: 0.6
policies:
  auto:
    type: route
    cheap: mixtral
    expensive: gpt-4
    predictor_output: gain
    threshold: 0.15
    fallback: mixtral
  auto-best-of-k:
    type: best_of_k
    upstream: gsm8k-pool
    n_min: 1
    n_max: 6
    predictor_output: p_weak
    lambda: 0.05
    reranker: {type: vote}
"""
