"""What pruning and distillation measure a model by: the answer positions, the answer cross-entropy, the KL to
the teacher, and the batches that carry the teacher's outputs.

Why one module: importance against the teacher (harness/prune/importance.py) and distillation
(harness/distill/loop.py, harness/distill/losses.py) must see the same answer positions, the same KL and the
same cached teacher logits, so both import them from here rather than one from the other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.data.collate import IGNORE, pixel_values, qformer_kwargs, training_batch
from harness.device import autocast, current, on
from harness.models.blip2 import lm_logits, query_outputs

Batch = dict[str, torch.Tensor]


def answer_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that predict the answer tokens ([P, V]) and those tokens ([P])."""
    targets = labels[:, 1:].to(logits.device)
    mask = targets != IGNORE
    return logits[:, :-1][mask], targets[mask]


def kl_teacher_student(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) per position."""
    t = F.log_softmax(teacher, dim=-1)
    return (t.exp() * (t - F.log_softmax(student, dim=-1))).sum(-1)


def _answer_logits(model, batch: Batch) -> torch.Tensor:
    """The model's logits on a batch: from cached query outputs when the batch has them (vision side
    frozen), else through the whole model from pixels (when the vision tower or Q-Former is pruned)."""
    if "query_output" in batch:
        return lm_logits(model, batch["query_output"], batch["input_ids"], batch["attention_mask"])
    batch = on(batch, model.device)
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
    return kl_teacher_student(student, batch["teacher_logits"].to(student.device)).mean()


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
) -> list[Batch]:
    """D_d or D_p as batches, with everything that does not change while the student is trained or pruned:
    token ids, the query outputs of the student's frozen vision side (`student` defaults to the teacher;
    `with_pixels` keeps the pixels instead, for when the vision tower or Q-Former is pruned), and the
    teacher's logits at the answer positions (none when `teacher` is None, float32 under any autocast).
    Computed on the current device (harness/device.py) and kept in CPU memory: a real model's full-vocabulary
    logits for 12k samples are gigabytes, so each batch goes to the device only when used."""
    student = teacher if student is None else student
    for m in (student, teacher):
        if m is not None:
            m.eval()
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
            if teacher is not None:
                own = teacher is student and not with_pixels
                queries = b["query_output"] if own else query_outputs(teacher, pixels, **qformer_kwargs(b))
                logits = lm_logits(teacher, queries, b["input_ids"], b["attention_mask"])
                answers, b["answer_tokens"] = answer_positions(logits, b["labels"])
                b["teacher_logits"] = answers.float()
        out.append(on(b, torch.device("cpu")))
    return out
