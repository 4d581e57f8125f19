"""Per-task classification accuracy by greedy generation (the paper's metric).

The answer is generated after the prompt, through the model's own `generate` (image to text, end to end),
then compared with the label by exact match after normalisation.
"""

from __future__ import annotations

import re

import torch
from tqdm.auto import tqdm
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from harness.data.collate import answer_ids, pixel_values, prompt_batch, qformer_kwargs


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


def evaluate(model, processor, split, batch_size: int, progress: bool = False) -> dict:
    """Accuracy per task and overall on a dataset split (columns image, task, question, answer)."""
    split = {n: list(split[n]) for n in ("image", "task", "question", "answer")}
    preds = generate_answers(
        model,
        processor,
        split["image"],
        split["question"],
        max_answer_tokens(processor, split["answer"]),
        batch_size=batch_size,
        progress=progress,
    )
    per_task: dict[str, list[bool]] = {}
    for task, pred, gold in zip(split["task"], preds, split["answer"], strict=True):
        per_task.setdefault(task, []).append(normalize(pred) == normalize(gold))
    tasks = {t: sum(v) / len(v) for t, v in sorted(per_task.items())}
    hits = [h for v in per_task.values() for h in v]
    return {"per_task": tasks, "overall": sum(hits) / len(hits), "n": len(hits), "predictions": preds}


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
