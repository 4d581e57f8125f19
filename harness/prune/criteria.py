"""Importance criteria, one object each: how one parameter (and its accumulated gradient) is scored before
the scores are summed over the structures that own it (harness/prune/importance.py).

Why objects: a criterion was an if-chain inside the scoring loop, and adding one meant finding every branch.
Now a criterion is one class here plus its name in harness/registry.py (where the schema's `criterion`
Literal and the report's "needs a gradient" come from), as Torch-Pruning keeps one Importance per criterion.
"""

from __future__ import annotations

import torch


class FirstOrder:
    """Eq. 1: |∂L/∂θ · θ|, the first-order loss change when θ is set to zero."""

    needs_gradient, joint = True, False

    def score(self, p: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        if grad is None:
            return torch.zeros_like(p)
        # one float32 copy of one parameter at a time, whatever the weights' dtype
        return grad.to(torch.float32, copy=True).mul_(p).abs_()


class FirstOrderJoint:
    """∂L/∂θ · θ with its sign: summed over a structure, then its absolute value (`joint`), the first-order
    change when the structure's parameters shrink together (baseline B7)."""

    needs_gradient, joint = True, True

    def score(self, p: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        if grad is None:
            return torch.zeros_like(p)
        return grad.to(torch.float32, copy=True).mul_(p)


class L1:
    """|θ|: weight magnitude."""

    needs_gradient, joint = False, False

    def score(self, p: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        return p.float().abs()


class L2:
    """θ²: squared weight magnitude (summed per structure: the structure's squared L2 norm)."""

    needs_gradient, joint = False, False

    def score(self, p: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        w = p.float()
        return w * w


class Random:
    """No score per parameter: each structure draws its importance from a seeded generator."""

    needs_gradient, joint = False, False
    score = None
