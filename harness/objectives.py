"""What pruning and distillation measure a model by: the answer positions, the answer cross-entropy, the KL to
the teacher, and the batches that carry the teacher's outputs.

Why one module: importance against the teacher (harness/prune/importance.py) and distillation
(harness/distill/loop.py, harness/distill/losses.py) must see the same answer positions, the same KL and the
same cached teacher logits, so both import them from here rather than one from the other.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness import parallel
from harness.config.compression import Compression
from harness.data.collate import IGNORE, answer_ids, pixel_values, qformer_kwargs, training_batch
from harness.device import autocast, current, on
from harness.models.blip2 import lm_logits, query_outputs

Batch = dict[str, torch.Tensor]


def answer_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that predict the answer tokens ([P, V]) and those tokens ([P])."""
    targets = labels[:, 1:].to(logits.device)
    mask = targets != IGNORE
    return logits[:, :-1][mask], targets[mask]


class TopK(NamedTuple):
    """The teacher's logits at the answer positions as stored for a large vocabulary: the k largest, their
    token ids and the log-sum-exp over the whole vocabulary, [P, k], [P, k], [P] (compression.teacher_logits).
    Exact for the k tokens' probabilities; the rest of the vocabulary is known only as one remaining mass."""

    values: torch.Tensor
    ids: torch.Tensor
    lse: torch.Tensor

    def log_probs(self) -> torch.Tensor:
        return self.values - self.lse[:, None]

    def to(self, device, dtype=torch.float32) -> TopK:
        return TopK(self.values.to(device, dtype), self.ids.to(device), self.lse.to(device, dtype))


def top_k_of(logits: torch.Tensor, k: int) -> TopK:
    values, ids = logits.float().topk(min(k, logits.shape[-1]), dim=-1)
    return TopK(values, ids, logits.float().logsumexp(-1))


# `teacher_logits: auto` keeps the whole vocabulary while that cache stays within this many bytes
FULL_LOGITS_LIMIT = 2 * 2**30


def cached_top_k(compression: Compression, processor, split, vocab_size: int) -> int | None:
    """The k `teacher_batches` keeps for `split`, or None for the whole vocabulary:
    compression.teacher_logits, 'auto' choosing the whole vocabulary while answer positions × vocabulary ×
    4 bytes stays within FULL_LOGITS_LIMIT (a blip2-opt-2.7b's 12k samples of ~5 answer tokens: 12 GB)."""
    positions = 0  # read by 'auto' only
    if compression.teacher_logits == "auto":
        tokens = {a: len(answer_ids(processor, a)) for a in set(split["answer"])}
        positions = sum(tokens[a] for a in split["answer"])
    return top_k_kept(compression, positions, vocab_size)


def top_k_kept(compression: Compression, positions: int, vocab_size: int) -> int | None:
    """The k kept of a cache of `positions` answer positions (None: the whole vocabulary), by
    compression.teacher_logits; also how `python -m harness plan` sizes the cache."""
    if compression.teacher_logits != "auto":
        return None if compression.teacher_logits == "full" else compression.teacher_top_k
    return None if positions * vocab_size * 4 <= FULL_LOGITS_LIMIT else compression.teacher_top_k


def teacher_of(batch: Batch) -> torch.Tensor | TopK:
    """The teacher's answer-position outputs a batch carries: full logits, or their top k."""
    if "teacher_logits" in batch:
        return batch["teacher_logits"]
    return TopK(batch["teacher_top_values"], batch["teacher_top_ids"], batch["teacher_lse"])


# the least remaining mass the top-k KL distinguishes: float32 cannot tell 1 − m from 1 much below it, and
# the gradient of log m grows as 1/m
_MIN_MASS = 1e-6


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − e^x) for x ≤ 0 (the log of the mass outside the top k), stable at both ends, with the mass
    floored at `_MIN_MASS`; each branch sees only inputs where it is finite, so no gradient is NaN."""
    x = x.clamp(max=math.log1p(-_MIN_MASS))
    near = x > -math.log(2)
    other = torch.full_like(x, -1.0)
    a = torch.log(-torch.expm1(torch.where(near, x, other)))
    b = torch.log1p(-torch.exp(torch.where(near, other, x)))
    return torch.where(near, a, b)


def kl_teacher_student(student: torch.Tensor, teacher: torch.Tensor | TopK) -> torch.Tensor:
    """KL(teacher ‖ student) per position. From a `TopK` teacher: the KL of both distributions coarsened to
    the teacher's k tokens plus one bucket for the rest of the vocabulary. By the chain rule the full KL is
    this plus r · KL(teacher ‖ student restricted to the rest), r the teacher's remaining mass, so it is a
    lower bound, short by that term only (tests/test_topk.py checks the identity)."""
    if isinstance(teacher, torch.Tensor):
        t = F.log_softmax(teacher, dim=-1)
        return (t.exp() * (t - F.log_softmax(student, dim=-1))).sum(-1)
    s = F.log_softmax(student.float(), dim=-1)
    t_k, s_k = teacher.log_probs(), s.gather(-1, teacher.ids)
    t_rest, s_rest = _log1mexp(t_k.logsumexp(-1)), _log1mexp(s_k.logsumexp(-1))
    return (t_k.exp() * (t_k - s_k)).sum(-1) + t_rest.exp() * (t_rest - s_rest)


def _answer_logits(model, batch: Batch) -> torch.Tensor:
    """The model's logits on a batch: from cached query outputs when the batch has them (vision side
    frozen), else through the whole model from pixels (when the vision tower or Q-Former is pruned)."""
    if "query_output" in batch:
        return lm_logits(
            model, batch["query_output"], batch["input_ids"], batch["attention_mask"], batch["labels"]
        )
    batch = on(batch, model.device)
    if not model.config.use_decoder_only_language_model:  # T5: its decoder takes the answer
        queries = query_outputs(model, batch["pixel_values"], **qformer_kwargs(batch))
        return lm_logits(model, queries, batch["input_ids"], batch["attention_mask"], batch["labels"])
    return model(
        pixel_values=batch["pixel_values"],
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        **qformer_kwargs(batch),
    ).logits


def answer_cross_entropy(model, batch: Batch) -> torch.Tensor:
    """Cross-entropy on the answer tokens."""
    logits = _answer_logits(model, batch)
    labels = batch["labels"][:, 1:].flatten().to(logits.device)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels, ignore_index=IGNORE)


def answer_kl_to_teacher(model, batch: Batch) -> torch.Tensor:
    """Mean KL(teacher ‖ model) on the answer positions, against the logits `teacher_batches` cached."""
    student, _ = answer_positions(_answer_logits(model, batch), batch["labels"])
    return kl_teacher_student(student, teacher_of(batch).to(student.device)).mean()


@torch.no_grad()
def teacher_batches(
    teacher,
    processor,
    split,
    batch_size: int,
    progress: bool = False,
    *,
    student=None,
    with_pixels: bool = False,
    top_k: int | None = None,
) -> list[Batch]:
    """D_d or D_p as batches, with everything that does not change while the student is trained or pruned:
    token ids, the query outputs of the student's frozen vision side (`student` defaults to the teacher;
    `with_pixels` keeps the pixels instead, for when the vision tower or Q-Former is pruned), and the
    teacher's logits at the answer positions (float32 under any autocast; with `teacher` None, only the
    answer tokens, and no language model runs).
    Computed on the current device (harness/device.py) and kept in CPU memory: a real model's full-vocabulary
    logits for 12k samples are gigabytes, so each batch goes to the device only when used. `top_k`: keep
    only the k largest logits and the log-sum-exp (`TopK`) instead of the whole vocabulary."""
    student = teacher if student is None else student
    for m in (student, teacher):
        if m is not None:
            m.eval()
    if teacher is None:  # no language model runs: the student's vision side and the answer tokens only
        return _teacher_batches(teacher, processor, split, batch_size, progress, student, with_pixels, top_k)
    # under fsdp, the teacher's language model split across the devices
    return parallel.sharded_call(
        teacher,
        lambda: _teacher_batches(
            teacher, processor, split, batch_size, progress, student, with_pixels, top_k
        ),
    )


def _teacher_batches(teacher, processor, split, batch_size, progress, student, with_pixels, top_k) -> list:
    out = []
    for i in tqdm(
        range(0, len(split), batch_size), desc="teacher outputs", disable=not progress, leave=False
    ):
        rows = split[i : i + batch_size]
        b = on(training_batch(processor, rows["question"], rows["answer"]))
        pixels = pixel_values(processor, rows["image"]).to(current().device)
        with autocast():
            if with_pixels:
                b["pixel_values"] = pixels
            else:
                b["query_output"] = query_outputs(student, pixels, **qformer_kwargs(b))
            if teacher is None:  # the answer tokens alone, for a loss on the labels (label_ce)
                targets = b["labels"][:, 1:]
                b["answer_tokens"] = targets[targets != IGNORE]
            else:
                own = teacher is student and not with_pixels
                queries = b["query_output"] if own else query_outputs(teacher, pixels, **qformer_kwargs(b))
                logits = lm_logits(teacher, queries, b["input_ids"], b["attention_mask"], b["labels"])
                answers, b["answer_tokens"] = answer_positions(logits, b["labels"])
                if top_k is None:
                    b["teacher_logits"] = answers.float()
                else:
                    t = top_k_of(answers, top_k)
                    b["teacher_top_values"], b["teacher_top_ids"], b["teacher_lse"] = t
        out.append(on(b, torch.device("cpu")))
    return out
