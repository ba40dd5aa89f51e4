"""When a FUSE round may stop early: alpha has stopped moving (``alpha_settled``) and the validation accuracies
say the candidate it settled on is better than its runner-up (``separated``). Alpha settling alone is not a
decision: two equal candidates settle too, and on noise."""
from __future__ import annotations

import torch

from tanas_core.requests import SearchBudget


def alpha_settled(history: list[torch.Tensor], step: int, warmup_steps: int, budget: SearchBudget) -> bool:
    """softmax(alpha) moved less than ``tolerance`` over the last ``window`` steps (after warm-up + min_steps)."""
    if step < warmup_steps + max(budget.min_steps, budget.window + 1):
        return False
    return float((history[-1] - history[-1 - budget.window]).abs().max()) < budget.tolerance


def separated(accuracies: list[list[float]], weights: torch.Tensor, window: int, images_per_step: int) -> bool:
    """Whether the validation accuracies of the last ``window`` alpha steps (``accuracies``: one list per step, one
    value per candidate) tell alpha's leader from its runner-up: the leader's mean is above the runner-up's by more
    than two standard errors of their difference (``window x images_per_step`` images each). Alpha can settle while
    the candidates validate alike: a choice inside the noise ("flat"), not a decision."""
    recent = torch.tensor(accuracies[-window:], dtype=torch.float64)
    if len(recent) < window:
        return False
    order = torch.argsort(weights, descending=True)
    leader, runner_up = recent[:, order[0]].mean(), recent[:, order[1]].mean()
    pooled = (leader + runner_up) / 2
    error = torch.sqrt(2 * pooled * (1 - pooled) / (window * images_per_step)).clamp_min(1e-12)
    return bool(leader - runner_up > 2 * error)
