"""The benchmark suites: which recorded prompts, which arms, what each arm costs.

Cost model (documented; every figure in the report derives from it):

* Mixtral-8x7B and GPT-4 cost what their API prices say: tokens of the prompt (OpenAI chat
  counting) × input price + tokens of the recorded answer × output price. Prices per million
  tokens: Mixtral $0.60 / $0.60, GPT-4-1106 $10 / $30.
* The GSM8K decoding procedures (Cobbe et al. 2021) are priced per parameter, anchored on
  Mixtral's price per *active* parameter ($0.60 per Mtok for 12.9 B active): 6 B ≈ $0.279 and
  175 B ≈ $8.14 per Mtok, input and output alike. ``*_finetuning`` is one sample (prompt + the
  recorded solution). ``*_verification`` is best-of-100: the prompt once, 100 sampled solutions
  (each as long as the recorded one), and a same-size verifier reading prompt + solution for each
  of the 100 candidates.

For the multi-arm ladder each arm's *documented cost per request* is its mean over the suite;
the policy decides with those means and is charged the realised per-prompt cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
GPT4 = "gpt-4-1106-preview"
MIXTRAL_ACTIVE_PARAMS_B = 12.9
MIXTRAL_PRICE_PER_MTOK_USD = 0.6
VERIFIER_SAMPLES = 100


def per_param_price(params_b: float) -> float:
    """USD per million tokens of a dense model priced like Mixtral per active parameter."""
    return MIXTRAL_PRICE_PER_MTOK_USD * params_b / MIXTRAL_ACTIVE_PARAMS_B


@dataclass(frozen=True)
class Arm:
    """One decoding arm: its reward key in ``Record.rewards`` and how the replay serves it."""

    key: str
    label: str
    model: str
    price_in_per_mtok_usd: float
    price_out_per_mtok_usd: float
    samples: int = 1  # > 1: best-of-``samples`` with a same-size verifier

    def cost_usd(self, prompt_tokens: int, answer_tokens: int) -> float:
        """Cost of one request under the documented cost model."""
        p_in = self.price_in_per_mtok_usd / 1e6
        p_out = self.price_out_per_mtok_usd / 1e6
        if self.samples == 1:
            return prompt_tokens * p_in + answer_tokens * p_out
        return (
            prompt_tokens * p_in
            + self.samples * answer_tokens * p_out
            + self.samples * (prompt_tokens + answer_tokens) * p_in
        )


ARMS: Mapping[str, Arm] = {
    "weak": Arm("weak", "Mixtral-8x7B", MIXTRAL, 0.6, 0.6),
    "strong": Arm("strong", "GPT-4-1106", GPT4, 10.0, 30.0),
    "6b_finetuning": Arm(
        "6b_finetuning",
        "6B, 1 sample",
        "gsm8k-6b-finetuning",
        per_param_price(6),
        per_param_price(6),
    ),
    "6b_verification": Arm(
        "6b_verification",
        "6B, best-of-100 + verifier",
        "gsm8k-6b-verification",
        per_param_price(6),
        per_param_price(6),
        VERIFIER_SAMPLES,
    ),
    "175b_finetuning": Arm(
        "175b_finetuning",
        "175B, 1 sample",
        "gsm8k-175b-finetuning",
        per_param_price(175),
        per_param_price(175),
    ),
    "175b_verification": Arm(
        "175b_verification",
        "175B, best-of-100 + verifier",
        "gsm8k-175b-verification",
        per_param_price(175),
        per_param_price(175),
        VERIFIER_SAMPLES,
    ),
}


@dataclass(frozen=True)
class Pair:
    """A cheap/expensive arm pair routed on one predictor output (``expensive iff score ≥ t``)."""

    name: str
    cheap: str
    expensive: str
    score_output: str


@dataclass(frozen=True)
class SuiteSpec:
    """What a suite measures."""

    name: str
    dataset: str
    description: str
    quality_name: str
    pairs: tuple[Pair, ...] = ()
    ladder_arms: tuple[str, ...] = ()
    # Per-request cost: "tokens" (API pricing per prompt) or "documented" (arm mean, constant).
    cost_basis: str = "tokens"


SUITES: Mapping[str, SuiteSpec] = {
    "routellm-gsm8k": SuiteSpec(
        "routellm-gsm8k",
        "gsm8k",
        "GSM8K, Mixtral vs GPT-4 (RouteLLM's recorded outcomes)",
        "accuracy",
        (Pair("main", "weak", "strong", "gain"),),
    ),
    "routellm-mmlu": SuiteSpec(
        "routellm-mmlu",
        "mmlu",
        "MMLU, Mixtral vs GPT-4 (RouteLLM's recorded outcomes)",
        "accuracy",
        (Pair("main", "weak", "strong", "gain"),),
    ),
    "routellm-mtbench": SuiteSpec(
        "routellm-mtbench",
        "mtbench",
        "MT-Bench, Mixtral vs GPT-4, GPT-4 judge score (score − 1)/9, each turn a request",
        "normalised judge score",
        (Pair("main", "weak", "strong", "gain"),),
    ),
    "gsm8k-procedures": SuiteSpec(
        "gsm8k-procedures",
        "gsm8k",
        "GSM8K, one sample vs best-of-100 + verifier (Cobbe et al.), 175B (headline) and 6B",
        "accuracy",
        (
            Pair("175b", "175b_finetuning", "175b_verification", "gain_175b"),
            Pair("6b", "6b_finetuning", "6b_verification", "gain_6b"),
        ),
        cost_basis="documented",
    ),
    "gsm8k-ladder": SuiteSpec(
        "gsm8k-ladder",
        "gsm8k",
        "GSM8K, six arms (6B/175B single and verified, Mixtral, GPT-4), price-of-compute ladder",
        "accuracy",
        (),
        (
            "6b_finetuning",
            "175b_finetuning",
            "weak",
            "strong",
            "6b_verification",
            "175b_verification",
        ),
    ),
}


@dataclass
class SuiteData:
    """Per-prompt arrays of one suite: rewards and realised costs (prompts × arms)."""

    spec: SuiteSpec
    prompt_ids: list[str]
    messages: list[tuple[dict[str, Any], ...]]
    arm_keys: tuple[str, ...]
    reward: npt.NDArray[np.float64]
    cost_usd: npt.NDArray[np.float64]
    prompt_tokens: npt.NDArray[np.int64]
    meta: dict[str, Any] = field(default_factory=dict)

    def col(self, arm_key: str) -> int:
        """Column of an arm in ``reward``/``cost_usd``."""
        return self.arm_keys.index(arm_key)

    @property
    def n(self) -> int:
        """Number of prompts."""
        return len(self.prompt_ids)


def suite_arm_keys(spec: SuiteSpec) -> tuple[str, ...]:
    """The arms a suite uses, in a fixed order."""
    if spec.ladder_arms:
        return spec.ladder_arms
    keys: list[str] = []
    for pair in spec.pairs:
        keys += [k for k in (pair.cheap, pair.expensive) if k not in keys]
    return tuple(keys)


def build_suite(spec: SuiteSpec, records: Sequence[Any]) -> SuiteData:
    """Arrays of a suite from ``recorded_data.records.Record`` objects (its dataset's records that
    carry every arm's reward)."""
    from proxy.wire.tokens import count_message_tokens, count_tokens

    keys = suite_arm_keys(spec)
    chosen = [r for r in records if r.dataset == spec.dataset and all(k in r.rewards for k in keys)]
    n, k = len(chosen), len(keys)
    reward = np.zeros((n, k))
    cost = np.zeros((n, k))
    ptok = np.zeros(n, dtype=np.int64)
    for i, rec in enumerate(chosen):
        ptok[i] = count_message_tokens([dict(m) for m in rec.messages])
        for j, key in enumerate(keys):
            reward[i, j] = float(rec.rewards[key])
            # MMLU records carry no answer text; its answers are a letter (one token).
            answer_tokens = max(1, count_tokens(str(rec.responses.get(key, ""))))
            cost[i, j] = ARMS[key].cost_usd(int(ptok[i]), answer_tokens)
    if spec.cost_basis == "documented" and n:
        cost = np.broadcast_to(cost.mean(axis=0), cost.shape).copy()
    if spec.ladder_arms and n:
        # Cheapest arm first, so an exact tie in a λ sweep goes to the cheaper arm.
        order = np.argsort(cost.mean(axis=0), kind="stable")
        keys = tuple(keys[j] for j in order)
        reward, cost = reward[:, order], cost[:, order]
    return SuiteData(
        spec, [r.prompt_id for r in chosen], [r.messages for r in chosen], keys, reward, cost, ptok
    )


def subsample_records(records: Sequence[Any], per_dataset: int, seed: int = 0) -> list[Any]:
    """A seeded random subset of at most ``per_dataset`` prompt groups per dataset (``--quick``);
    records of one group (the two turns of an MT-Bench question) stay together."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for rec in records:
        seen = groups.setdefault(rec.dataset, [])
        if not seen or seen[-1] != rec.group_id:
            seen.append(rec.group_id)
    keep: set[str] = set()
    for ids in groups.values():
        unique = list(dict.fromkeys(ids))
        take = rng.choice(len(unique), size=min(per_dataset, len(unique)), replace=False)
        keep.update(unique[int(t)] for t in take)
    return [r for r in records if r.group_id in keep]
