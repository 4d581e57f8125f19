"""Per-task classification accuracy by greedy generation (the paper's metric).

The answer is generated after the prompt, through the model's own `generate` (image to text, end to end),
then compared with the label by exact match after normalisation.

Why a teacher-forced pass first: greedy decoding yields the label token for token, then EOS, exactly when
the argmax at every answer position of one forward pass over prompt + label + EOS is that token. One pass
scores those samples, and only the others are generated (an answer spelled in other tokens, or followed by
punctuation, can still match after normalisation). The verdicts are those of generation alone, at a fraction
of its cost (tests/test_evaluate.py compares them on a trained model).
"""

from __future__ import annotations

import re

import torch
from tqdm.auto import tqdm
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from harness.data.collate import (
    IGNORE,
    answer_ids,
    length_order,
    pixel_values,
    prompt_batch,
    qformer_kwargs,
    training_batch,
)
from harness.report.paired import pack


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def max_answer_tokens(processor: Blip2Processor, answers) -> int:
    return max(len(answer_ids(processor, a)) for a in set(answers))


@torch.inference_mode()
def generate_answers(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    images,
    questions,
    max_new_tokens: int,
    batch_size: int = 64,
    progress: bool = False,
) -> list[str]:
    """Greedy answers for (image, question) pairs."""
    model.eval()
    out = []
    for i in tqdm(range(0, len(questions), batch_size), desc="evaluate", disable=not progress, leave=False):
        b = prompt_batch(processor, questions[i : i + batch_size])
        gen = model.generate(
            pixel_values=pixel_values(processor, images[i : i + batch_size]),
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            **qformer_kwargs(b),
            max_new_tokens=max_new_tokens,
            do_sample=False,
        )
        # decoder-only generate returns the prompt followed by the new tokens
        out += processor.tokenizer.batch_decode(gen[:, b["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


@torch.inference_mode()
def forced_matches(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    images,
    questions,
    answers,
    batch_size: int,
) -> list[bool]:
    """Whether greedy decoding would produce each answer token for token and then EOS: the argmax of one
    teacher-forced pass over prompt + answer + EOS equals every answer token."""
    model.eval()
    out = []
    for i in range(0, len(questions), batch_size):
        b = training_batch(processor, questions[i : i + batch_size], answers[i : i + batch_size])
        logits = model(
            pixel_values=pixel_values(processor, images[i : i + batch_size]),
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            **qformer_kwargs(b),
        ).logits
        labels = b["labels"][:, 1:]
        out += ((logits[:, :-1].argmax(-1) == labels) | (labels == IGNORE)).all(-1).tolist()
    return out


KNOWLEDGE_GROUPS = ("seen", "unseen")


def evaluate(model, processor, split, batch_size: int, progress: bool = False) -> dict:
    """Accuracy per task, overall, and on knowledge questions about advertisers seen / unseen in D_d (when the
    split has a `knowledge_group` column), with each sample's correctness, on a dataset split."""
    groups = list(split["knowledge_group"]) if "knowledge_group" in split.column_names else []
    split = {n: list(split[n]) for n in ("image", "task", "question", "answer")}
    # batches of similar length, which leaves every sample's verdict as it is and saves the padding
    order = length_order(processor, split["question"], split["answer"])
    images, questions, answers = ([split[c][k] for k in order] for c in ("image", "question", "answer"))
    forced = forced_matches(model, processor, images, questions, answers, batch_size)
    rest = [i for i, hit in enumerate(forced) if not hit]
    generated = generate_answers(
        model,
        processor,
        [images[i] for i in rest],
        [questions[i] for i in rest],
        max_answer_tokens(processor, answers),
        batch_size=batch_size,
        progress=progress,
    )
    preds = list(split["answer"])  # what greedy decoding yields wherever the forced pass matches
    for i, p in zip(rest, generated, strict=True):
        preds[order[i]] = p
    correct = [normalize(p) == normalize(g) for p, g in zip(preds, split["answer"], strict=True)]
    per_task: dict[str, list[bool]] = {}
    for task, hit in zip(split["task"], correct, strict=True):
        per_task.setdefault(task, []).append(hit)
    knowledge = {
        g: sum(h) / len(h) if (h := [c for c, k in zip(correct, groups, strict=True) if k in want]) else None
        for g, want in (("all", KNOWLEDGE_GROUPS), *((g, (g,)) for g in KNOWLEDGE_GROUPS))
    }
    return {
        "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
        "overall": sum(correct) / len(correct),
        "n": len(correct),
        "knowledge": knowledge if groups else {},
        "correct": correct,
        "predictions": preds,
    }


def accuracy_record(acc: dict) -> dict:
    """The fields of a result's `Accuracy` (harness/results.py) from an `evaluate` result."""
    return {
        **acc["per_task"],
        "overall": acc["overall"],
        "n_test": acc["n"],
        **{("knowledge" if g == "all" else f"knowledge_{g}"): v for g, v in acc["knowledge"].items()},
        "correct": pack(acc["correct"]),
    }


def oracle_ceiling(split) -> dict:
    """Expected accuracy of an oracle that knows every image's true attributes: what SynthAd's label noise
    and unidentifiable content samples (hidden product, ambiguous title: a coin flip) leave reachable."""
    per_task: dict[str, list[float]] = {}
    cols = split.select_columns(["task", "answer", "clean_answer", "icon_visible", "title_kind"])
    for row in cols:
        hit = float(row["answer"] == row["clean_answer"])
        if row["task"] == "content" and not row["icon_visible"] and row["title_kind"] == "ambiguous":
            hit *= 0.5
        per_task.setdefault(row["task"], []).append(hit)
    hits = [h for v in per_task.values() for h in v]
    return {
        "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
        "overall": sum(hits) / len(hits),
    }
