"""Teacher outputs kept as top-k logits plus the log-sum-exp (compression.teacher_logits: top_k): what the KL
and Eq. 5's pairwise term computed from them miss, against the full vocabulary, and that training on them
stays finite."""

import pytest
import torch
import torch.nn.functional as F

import harness.objectives as objectives
from harness.config.loading import load_profile
from harness.distill.losses import distillation_loss, pairwise_eq5
from harness.objectives import TopK, cached_top_k, kl_teacher_student, top_k_of


def _logits(p: int = 16, v: int = 50, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(p, v, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", [1, 8, 25])
def test_topk_kl_is_the_full_kl_less_the_rest_mass_times_the_kl_of_the_rest(k):
    """Chain rule: KL = KL(coarsened to the k tokens + one bucket) + r · KL(teacher ‖ student on the rest)."""
    student, teacher = _logits(seed=1), _logits(seed=2)
    full = kl_teacher_student(student, teacher)
    coarse = kl_teacher_student(student, top_k_of(teacher, k))
    t, s = F.log_softmax(teacher, -1), F.log_softmax(student, -1)
    rest = torch.ones_like(t, dtype=torch.bool).scatter(-1, teacher.topk(k, -1).indices, False)
    t_rest = torch.where(rest, t, -torch.inf).logsumexp(-1)  # log r
    s_rest = torch.where(rest, s, -torch.inf).logsumexp(-1)
    within = torch.where(
        rest, (t - t_rest[:, None]).exp() * ((t - t_rest[:, None]) - (s - s_rest[:, None])), 0
    )
    assert torch.allclose(coarse + t_rest.exp() * within.sum(-1), full, atol=1e-5)
    assert (coarse <= full + 1e-6).all()


def test_topk_over_the_whole_vocabulary_is_the_full_kl():
    student, teacher = _logits(seed=3), _logits(seed=4)
    exact = kl_teacher_student(student, teacher)
    assert torch.allclose(kl_teacher_student(student, top_k_of(teacher, 50)), exact, atol=1e-5)


def test_pairwise_term_from_topk_is_exact_inside_and_short_by_at_most_the_kth_probability_outside():
    student, teacher = _logits(seed=5), _logits(seed=6)
    for k in (1, 5, 20):
        top = top_k_of(teacher, k)
        exact, approx = pairwise_eq5(student, teacher), pairwise_eq5(student, top)
        inside = (top.ids == student.argmax(-1, keepdim=True)).any(-1)
        assert torch.allclose(approx[inside], exact[inside], atol=1e-6)
        kth = top.log_probs()[:, -1].exp()
        assert ((exact - approx)[~inside] >= -1e-6).all() and (
            (exact - approx)[~inside] <= kth[~inside] + 1e-6
        ).all()


def test_training_on_topk_outputs_stays_finite_when_the_student_puts_all_its_mass_on_them():
    teacher = _logits(seed=7)
    top = top_k_of(teacher, 4)
    student = torch.full((16, 50), -60.0)
    student.scatter_(-1, top.ids[:, :1], 60.0)  # every position: all mass on the teacher's first token
    student.requires_grad_(True)
    labels = top.ids[:, 0]
    loss = distillation_loss(student, top, labels, "eq5", 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_auto_keeps_the_full_vocabulary_until_the_cache_would_pass_the_limit(monkeypatch):
    from tests.helpers import tiny

    _, proc = tiny()
    split = {"answer": ["red", "dark blue"] * 10}
    c = load_profile("smoke").compression
    assert cached_top_k(c, proc, split, 300) is None  # 20 samples × a few tokens × 300 × 4 bytes
    monkeypatch.setattr(objectives, "FULL_LOGITS_LIMIT", 100)
    assert cached_top_k(c, proc, split, 300) == c.teacher_top_k == 64
    forced = c.model_copy(update={"teacher_logits": "full"})
    assert cached_top_k(forced, proc, split, 300) is None


def test_stored_top_k_are_the_largest_logits_their_log_probabilities_and_read_back():
    from harness.data.collate import training_batch
    from harness.models.blip2 import lm_logits, query_outputs
    from harness.objectives import answer_positions, teacher_of
    from tests.helpers import tiny

    model, proc = tiny()
    b = training_batch(proc, ["What is the background color of this ad?"] * 2, ["red", "blue"])
    with torch.no_grad():
        q = query_outputs(model, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
        full, _ = answer_positions(lm_logits(model, q, b["input_ids"], b["attention_mask"]), b["labels"])
    stored = top_k_of(full, 7)
    assert isinstance(
        teacher_of(
            {"teacher_top_values": stored.values, "teacher_top_ids": stored.ids, "teacher_lse": stored.lse}
        ),
        TopK,
    )
    assert torch.equal(stored.values, full.topk(7, -1).values) and torch.allclose(
        stored.lse, full.logsumexp(-1)
    )
    assert torch.allclose(stored.log_probs(), F.log_softmax(full, -1).gather(-1, stored.ids))
