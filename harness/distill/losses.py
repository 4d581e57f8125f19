"""Eq. 5 and its ablations, on the answer positions only (the prompt is given, not generated).

All variants take the student's and the teacher's logits at the answer positions ([positions, vocab]) and the
dataset's answer tokens, and return the mean over positions (Eq. 5 sums over positions; the mean keeps the
learning rate independent of the answer length and batch size).

- `eq5`: KL(teacher ‖ student) + γ · max(0, P_teacher(T) − P_student(T)), T = the student's argmax token: the
  student must be at least as confident as the teacher in the token it would generate.
- `kl_only`: without the pairwise term (RQ6).
- `hard_label`: Eq. 5 plus cross-entropy on the dataset's answer (RQ5).
- `label_ce`: cross-entropy on the dataset's answer alone: plain fine-tuning, not distillation (public LMMs).
- `released_pairwise`: KL + γ · max(0, g · min(|g|, 1)), g = mean(top-2 student logits) − student
  logit[label]: the pairwise term as the authors' later code release computes it (in logit space, against the
  label, not the teacher; the min(|g|, 1) factor makes it quadratic for gaps below one logit). The release's
  example weights it 0.1 against the KL term; here γ weighs it, as it weighs Eq. 5's term.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F

from harness.config.vocabulary import Variant
from harness.objectives import TopK, kl_teacher_student

# the schema's variants (spec.Variant) and plain fine-tuning on the labels (public LMMs)
VARIANTS = (*get_args(Variant), "label_ce")


def pairwise_eq5(student: torch.Tensor, teacher: torch.Tensor | TopK) -> torch.Tensor:
    """max(0, P_teacher(T) − P_student(T)) per position, T = argmax of the student. From a `TopK` teacher,
    P_teacher(T) is exact when T is among the teacher's k tokens and taken as 0 otherwise: the term is then
    short by at most the teacher's k-th largest probability (tests/test_topk.py)."""
    top = student.argmax(-1, keepdim=True)
    p_s = F.softmax(student, dim=-1).gather(-1, top).squeeze(-1)
    if isinstance(teacher, TopK):
        p_t = (teacher.log_probs().exp() * (teacher.ids == top)).sum(-1)
    else:
        p_t = F.softmax(teacher, dim=-1).gather(-1, top).squeeze(-1)
    return torch.clamp(p_t - p_s, min=0)


def pairwise_released(student: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """max(0, g · min(|g|, 1)) per position, g = mean(top-2 student logits) − student logit[label]."""
    gap = student.topk(2, dim=-1).values.mean(-1) - student.gather(-1, labels[:, None]).squeeze(-1)
    return torch.clamp(gap * gap.abs().clamp(max=1.0), min=0)


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor | TopK | None,
    labels: torch.Tensor,
    variant: str,
    gamma: float,
) -> torch.Tensor:
    """Mean over answer positions of the chosen variant. Shapes: [P, V], [P, V] (or a `TopK`), [P].
    Computed in float32 whatever the autocast dtype of the logits (harness/device.py): probabilities near
    one lose the pairwise term's differences in bfloat16."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown distillation loss '{variant}'; allowed: {', '.join(VARIANTS)}")
    student, labels = student.float(), labels.to(student.device)
    if variant == "label_ce":
        return F.cross_entropy(student, labels)
    if isinstance(teacher, torch.Tensor):
        teacher = teacher.detach()
    teacher = teacher.to(student.device, torch.float32)
    loss = kl_teacher_student(student, teacher)
    if variant in ("eq5", "hard_label"):
        loss = loss + gamma * pairwise_eq5(student, teacher)
    if variant == "hard_label":
        loss = loss + F.cross_entropy(student, labels, reduction="none")
    if variant == "released_pairwise":
        loss = loss + gamma * pairwise_released(student, labels)
    return loss.mean()
