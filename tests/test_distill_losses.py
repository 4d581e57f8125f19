"""Every distillation loss variant against values computed by hand."""

import math

import pytest
import torch

from harness.distill.losses import distillation_loss

# one position, vocabulary of 3
STUDENT = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])  # softmax = (0.5, 0.3, 0.2)
TEACHER = torch.tensor([[math.log(0.7), math.log(0.2), math.log(0.1)]])  # softmax = (0.7, 0.2, 0.1)
LABEL = torch.tensor([1])
KL = 0.7 * math.log(0.7 / 0.5) + 0.2 * math.log(0.2 / 0.3) + 0.1 * math.log(0.1 / 0.2)
PAIR = 0.7 - 0.5  # T = argmax student = token 0; P_teacher(T) − P_student(T)


@pytest.mark.parametrize(
    "variant, gamma, expected",
    [
        ("kl_only", 1.0, KL),
        ("eq5", 1.0, KL + PAIR),
        ("eq5", 0.5, KL + 0.5 * PAIR),
        ("hard_label", 1.0, KL + PAIR - math.log(0.3)),
        # released code: gap g = mean of the top-2 student logits minus the label's logit (logit space),
        # hinge max(0, g · min(|g|, 1)); here g = (ln 0.5 − ln 0.3) / 2 ≈ 0.255 < 1, so the term is g²
        ("released_pairwise", 2.0, KL + 2.0 * ((math.log(0.5) - math.log(0.3)) / 2) ** 2),
    ],
)
def test_loss_values_by_hand(variant, gamma, expected):
    got = distillation_loss(STUDENT, TEACHER, LABEL, variant, gamma).item()
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "logits, label, expected",
    [
        ([1.0, 0.6, 0.0], 2, 0.64),  # top-2 mean 0.8, label logit 0.0 → g = 0.8, hinge 0.8 · 0.8
        ([3.0, 1.0, -1.0], 2, 3.0),  # g = 3.0 ≥ 1: the factor is 1, hinge = g
        ([1.0, 0.6, 0.0], 0, 0.0),  # the label is the argmax: g = (0.6 − 1.0) / 2 < 0, no loss
    ],
)
def test_released_pairwise_against_the_released_formula(logits, label, expected):
    """max(0, g · min(|g|, 1)), g = mean(top-2 student logits) − student logit[label], computed by hand."""
    from harness.distill.losses import pairwise_released

    got = pairwise_released(torch.tensor([logits]), torch.tensor([label])).item()
    assert got == pytest.approx(expected, abs=1e-6)


def test_pairwise_term_is_zero_when_the_student_is_more_confident():
    student = torch.tensor([[math.log(0.8), math.log(0.1), math.log(0.1)]])
    kl = distillation_loss(student, TEACHER, LABEL, "kl_only", 1.0).item()
    assert distillation_loss(student, TEACHER, LABEL, "eq5", 1.0).item() == pytest.approx(kl, abs=1e-7)


def test_mean_over_positions_and_zero_at_the_teacher():
    two = distillation_loss(
        torch.cat([STUDENT, TEACHER]), torch.cat([TEACHER, TEACHER]), torch.tensor([1, 0]), "eq5", 1.0
    ).item()
    assert two == pytest.approx((KL + PAIR) / 2, abs=1e-6)
    assert distillation_loss(TEACHER, TEACHER, LABEL, "eq5", 1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_gradient_flows_to_the_student_only():
    s, t = STUDENT.clone().requires_grad_(), TEACHER.clone().requires_grad_()
    distillation_loss(s, t, LABEL, "eq5", 1.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown distillation loss 'mse'"):
        distillation_loss(STUDENT, TEACHER, LABEL, "mse", 1.0)
