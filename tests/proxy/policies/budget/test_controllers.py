"""The controllers of every budgeted policy: λ re-solved on demand (a learned head swapped in)."""

from __future__ import annotations

import pytest

from proxy.policies.allocation import DecisionProblem
from proxy.policies.budget.controllers import BudgetControllers
from proxy.policies.budget.solve import solve_lambda
from proxy.policies.route import RoutePolicy

POLICY = RoutePolicy.model_validate(
    {
        "type": "route",
        "cheap": "small",
        "expensive": "large",
        "budget": {"kind": "fraction_expensive", "target": 0.3, "window": 100},
    }
)


async def test_resolve_solves_lambda_from_the_window_at_once() -> None:
    controllers = BudgetControllers()
    assert await controllers.resolve("router") is None  # no request yet: nothing to solve
    controller = controllers.controller("router", "v1", POLICY)
    assert controller is not None
    problems = [
        DecisionProblem.route(0.5, 0.5 + i / 100, cost_cheap=0.001, cost_expensive=0.01)
        for i in range(40)
    ]
    for problem in problems:
        await controller.observe(problem, 0, cost_usd=0.001, n_samples=1, expensive=False)
    lam = await controllers.resolve("router")
    # The λ at which re-deciding the window sends 30 % of it to the expensive arm.
    assert lam == pytest.approx(solve_lambda(problems, "fraction_expensive", 0.3, half_life=12.5))
    assert lam is not None and lam > 0
    assert (await controller.snapshot())["lambda"] == lam
