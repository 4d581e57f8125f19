"""Training the stand-in teacher the way BLIP-2 is trained: two stages.

Why two stages: trained end to end from scratch in one generative stage, the five-task mix learns the
background colour and little else (README, "How the teacher is trained"). So stage 1 trains the vision
tower, query tokens and Q-Former alone, with one linear probe per task on the flattened query outputs
(representation learning); stage 2 freezes the vision side, caches its query outputs once, and trains the
projection and the language model generatively on the prompts. Both stages use warm-up + cosine and
gradient clipping, and log per-task learning curves on the validation split.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import Blip2ForConditionalGeneration, Blip2Processor, get_cosine_schedule_with_warmup

from harness.data.collate import IGNORE, pixel_values, training_batch
from harness.models.blip2 import lm_logits, query_outputs
from harness.models.stand_in import new_model
from harness.profile import Profile
from harness.store import load_teacher, save_teacher, teacher_dir, teacher_key


def columns(split, names=("image", "task", "question", "answer")) -> dict[str, list]:
    """Plain Python lists of a split's columns (a `datasets` column cannot be indexed by a tensor)."""
    return {n: list(split[n]) for n in names}


def image_labels(split) -> dict[str, list[str]]:
    """Per-task labels of each image for stage 1: the `image_<task>` columns, "" where unknown."""
    return {c.removeprefix("image_"): list(split[c]) for c in split.column_names if c.startswith("image_")}


def _schedule(optimizer: torch.optim.Optimizer, steps: int, warmup_frac: float):
    return get_cosine_schedule_with_warmup(optimizer, max(1, int(warmup_frac * steps)), steps)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def encode_images(processor: Blip2Processor, images, batch_size: int = 256) -> torch.Tensor:
    return torch.cat(
        [pixel_values(processor, images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )


@torch.no_grad()
def cache_query_outputs(model: Blip2ForConditionalGeneration, pixels: torch.Tensor, batch_size: int = 256):
    """Q-Former outputs of every image, computed once (the vision side is frozen from here on)."""
    model.eval()
    return torch.cat(
        [query_outputs(model, pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    )


def train_vision_stage(
    model, pixels, labels: dict[str, list[str]], val, cfg: dict, generator, progress: bool
):
    """Stage 1: vision tower + Q-Former with one linear probe per task (representation learning).

    `labels[task][i]` is what image i shows for that task ("" where unknown); every image supervises every
    task it is annotated for."""
    label_sets = {t: sorted({a for a in v if a}) for t, v in sorted(labels.items())}
    width = model.config.num_query_tokens * model.config.qformer_config.hidden_size
    heads = torch.nn.ModuleDict({t: torch.nn.Linear(width, len(ls)) for t, ls in label_sets.items()})

    def targets(lab: dict[str, list[str]]) -> dict[str, torch.Tensor]:
        return {
            t: torch.tensor([label_sets[t].index(a) if a in label_sets[t] else IGNORE for a in lab[t]])
            for t in label_sets
        }

    y, y_val = targets(labels), targets(val["labels"])
    params = [
        *model.vision_model.parameters(),
        model.query_tokens,
        *model.qformer.parameters(),
        *heads.parameters(),
    ]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01)
    steps = cfg["epochs"] * math.ceil(len(pixels) / cfg["batch_size"])
    sched = _schedule(opt, steps, cfg["warmup"])
    log = []
    bar = tqdm(total=steps, desc="teacher stage 1 (vision + Q-Former)", disable=not progress, leave=False)
    for epoch in range(cfg["epochs"]):
        model.train()
        for idx in _batches(len(pixels), cfg["batch_size"], generator):
            feats = query_outputs(model, pixels[idx]).flatten(1)
            loss = sum(F.cross_entropy(heads[t](feats), y[t][idx], ignore_index=IGNORE) for t in label_sets)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        feats = cache_query_outputs(model, val["pixels"]).flatten(1)
        acc = {}
        with torch.no_grad():
            for t in label_sets:
                known = y_val[t] != IGNORE
                acc[t] = round(
                    (heads[t](feats[known]).argmax(-1) == y_val[t][known]).float().mean().item(), 4
                )
        log.append({"stage": 1, "epoch": epoch + 1, "probe_accuracy": acc})
    bar.close()
    return log


@torch.no_grad()
def answer_accuracy(
    model, processor, queries, questions, answers, tasks, batch_size: int = 256
) -> dict[str, float]:
    """Teacher-forced accuracy per task: every answer token (and EOS) is the argmax. Cheap learning curve."""
    model.eval()
    hits: dict[str, list[bool]] = {}
    for i in range(0, len(questions), batch_size):
        b = training_batch(processor, questions[i : i + batch_size], answers[i : i + batch_size])
        logits = lm_logits(model, queries[i : i + batch_size], b["input_ids"], b["attention_mask"])
        pred, gold = logits[:, :-1].argmax(-1), b["labels"][:, 1:]
        ok = ((pred == gold) | (gold == IGNORE)).all(-1)
        for t, o in zip(tasks[i : i + batch_size], ok.tolist(), strict=True):
            hits.setdefault(t, []).append(o)
    return {t: round(sum(v) / len(v), 4) for t, v in sorted(hits.items())}


def train_language_stage(
    model, processor, queries, questions, answers, val, cfg, generator, progress
) -> list[dict]:
    """Stage 2: projection + language model, generatively, on cached query outputs."""
    params = [*model.language_projection.parameters(), *model.language_model.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01)
    steps = cfg["epochs"] * math.ceil(len(queries) / cfg["batch_size"])
    sched = _schedule(opt, steps, cfg["warmup"])
    log = []
    bar = tqdm(total=steps, desc="teacher stage 2 (language model)", disable=not progress, leave=False)
    for epoch in range(cfg["epochs"]):
        model.train()
        for idx in _batches(len(queries), cfg["batch_size"], generator):
            b = training_batch(processor, [questions[k] for k in idx], [answers[k] for k in idx])
            logits = lm_logits(model, queries[idx], b["input_ids"], b["attention_mask"])
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1), b["labels"][:, 1:].flatten(), ignore_index=IGNORE
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"teacher stage 2, epoch {epoch + 1}: loss is {loss.item()}")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        acc = answer_accuracy(
            model, processor, val["queries"], val["questions"], val["answers"], val["tasks"]
        )
        log.append({"stage": 2, "epoch": epoch + 1, "answer_accuracy": acc})
    bar.close()
    return log


def train_teacher(model, processor, data, cfg: dict, seed: int, progress: bool = True) -> dict:
    """Train `model` in place on `data` (train and validation splits); returns the training log."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train, val = columns(data["train"]), columns(data["validation"])
    pixels = encode_images(processor, train["image"])
    v = {
        "pixels": encode_images(processor, val["image"]),
        "tasks": val["task"],
        "answers": val["answer"],
        "questions": val["question"],
        "labels": image_labels(data["validation"]),
    }
    log = train_vision_stage(
        model, pixels, image_labels(data["train"]), v, cfg["vision_stage"], generator, progress
    )
    t1 = time.perf_counter()
    for p in [*model.vision_model.parameters(), model.query_tokens, *model.qformer.parameters()]:
        p.requires_grad_(False)
    queries = cache_query_outputs(model, pixels)
    v["queries"] = cache_query_outputs(model, v["pixels"])
    log += train_language_stage(
        model,
        processor,
        queries,
        train["question"],
        train["answer"],
        v,
        cfg["language_stage"],
        generator,
        progress,
    )
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    t2 = time.perf_counter()
    return {
        "curves": log,
        "seconds": {
            "vision_stage": round(t1 - t0, 1),
            "language_stage": round(t2 - t1, 1),
            "total": round(t2 - t0, 1),
        },
    }


def get_teacher(profile: Profile, cache_dir: Path, data, progress: bool = True):
    """(model, processor, folder, training log) of the profile's teacher: trained and stored on first use,
    loaded from the store afterwards."""
    target = teacher_dir(profile, cache_dir)
    stored = profile.teacher.checkpoint is None  # else the user's own checkpoint: read, never removed
    loaded = load_teacher(target, stored)
    if loaded is None:
        model, processor = new_model(profile, data)
        log = train_teacher(
            model, processor, data, profile.teacher.model_dump(), profile.teacher.seed, progress
        )
        save_teacher(target, model, processor, {"key": teacher_key(profile), **log})
        loaded = load_teacher(target, stored)
    model, processor, log = loaded
    return model, processor, target, log
