"""Gradient accumulation (compression.micro_batch_size): the micro-batches of one logical batch take the step
the whole batch takes, with the same loss, however unevenly the answer positions fall between them."""

import copy

import pytest
import torch

from harness.config.files import SpecError
from harness.config.loading import load_profile
from harness.data.collate import training_batch
from harness.distill.loop import distill
from harness.models.blip2 import lm_logits, query_outputs
from harness.objectives import answer_positions
from tests.helpers import tiny

QUESTIONS = ["What is the background color of this ad?", "Which brand logo appears in this ad?"] * 4
# answers of 1 to 4 words: the micro-batches below hold different numbers of answer positions
ANSWERS = ["red", "none", "dark blue", "big red sale", "green", "a b c d", "red", "none"]


def _batch(teacher, proc, rows: slice) -> dict:
    b = training_batch(proc, QUESTIONS[rows], ANSWERS[rows])
    n = len(b["input_ids"])
    with torch.no_grad():
        b["query_output"] = query_outputs(
            teacher, torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(rows.start))
        )
        logits = lm_logits(teacher, b["query_output"], b["input_ids"], b["attention_mask"])
    b["teacher_logits"], b["answer_tokens"] = answer_positions(logits, b["labels"])
    return b


def test_micro_batches_take_the_step_and_report_the_loss_of_the_whole_batch():
    teacher, proc = tiny(seed=0)
    student, _ = tiny(seed=1)  # another model, so that the KL and its gradient are far from zero
    whole = _batch(teacher, proc, slice(0, 8))
    micro = [_batch(teacher, proc, slice(i, i + 2)) for i in range(0, 8, 2)]
    for m, i in zip(micro, range(0, 8, 2), strict=True):  # the same samples and the same query outputs
        rows = slice(i, i + 2)
        m["query_output"] = whole["query_output"][rows]
        with torch.no_grad():
            logits = lm_logits(teacher, m["query_output"], m["input_ids"], m["attention_mask"])
        m["teacher_logits"], m["answer_tokens"] = answer_positions(logits, m["labels"])
    assert len({len(m["answer_tokens"]) for m in micro}) > 1  # uneven: a plain mean of means would differ
    a, b = copy.deepcopy(student), copy.deepcopy(student)
    loss_whole = distill(a, [whole], 2.0, 1e-3, "eq5", 1.0, seed=0)
    loss_micro = distill(b, micro, 2.0, 1e-3, "eq5", 1.0, seed=0, accumulate=4)
    assert loss_micro == pytest.approx(loss_whole, rel=1e-5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-5), name


def test_micro_batch_size_must_divide_the_batch():
    with pytest.raises(
        SpecError, match=r"compression.micro_batch_size': micro_batch_size \(12\) must divide"
    ):
        load_profile("smoke", {"compression": {"micro_batch_size": 12}})
    plain, micro = load_profile("smoke"), load_profile("smoke", {"compression": {"micro_batch_size": 8}})
    assert plain.compression.micro == plain.compression.batch_size  # unset: the whole batch at once
    assert (micro.compression.micro, micro.compression.accumulation) == (8, micro.compression.batch_size // 8)


def test_activation_checkpointing_keeps_the_result_and_fewer_activations():
    """The same steps with the blocks' activations recomputed in backward: equal losses and weights, fewer
    tensors saved for backward, and the student handed back without checkpointing."""
    teacher, proc = tiny(seed=0)
    student, _ = tiny(seed=1)
    batch = _batch(teacher, proc, slice(0, 8))
    saved, runs = [], {}
    for checkpointing in (False, True):
        model, total = copy.deepcopy(student), [0]

        def pack(t, total=total):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            losses = distill(model, [batch], 2.0, 1e-3, "eq5", 1.0, seed=0, checkpointing=checkpointing)
        runs[checkpointing], saved = (losses, model), [*saved, total[0]]
        assert not model.language_model.is_gradient_checkpointing
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    for pa, pb in zip(runs[False][1].parameters(), runs[True][1].parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-5)
    assert saved[1] < 0.7 * saved[0]
