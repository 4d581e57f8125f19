"""Training the stand-in teacher the way BLIP-2 is trained: two stages, after a text-only LM pretraining.

Why two stages: trained end to end from scratch in one generative stage, the five-task mix learns the
background colour and little else (docs/teacher.md). So stage 1 trains the vision
tower, query tokens and Q-Former alone, with one linear probe per task on the flattened query outputs
(representation learning); stage 2 freezes the vision side, caches its query outputs once, and trains the
projection and the language model generatively on the prompts. Both stages use warm-up + cosine and
gradient clipping, and log per-task learning curves on the validation split. Before both, the language model
is pretrained on text about the advertiser catalogue (harness/data/catalogue.py), as AntGLM was pretrained
on text before the multimodal stages: the teacher then knows more than D_d can teach back.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from harness import parallel
from harness.cache import entry_lock
from harness.config.files import SpecError
from harness.config.profile import LanguageStage, Pretraining, Profile, Teacher, TrainStage
from harness.data.collate import IGNORE, pixel_values, training_batch
from harness.models.blip2 import lm_logits, query_outputs
from harness.models.stand_in import new_model, teacher_catalogue_questions, teacher_corpus
from harness.store import load_teacher, save_teacher, teacher_dir, teacher_key
from harness.train import train


def columns(split, names=("image", "task", "question", "answer")) -> dict[str, list]:
    """Plain Python lists of a split's columns (a `datasets` column cannot be indexed by a tensor)."""
    return {n: list(split[n]) for n in names}


def image_labels(split) -> dict[str, list[str]]:
    """Per-task labels of each image for stage 1: the `image_<task>` columns, "" where unknown."""
    return {c.removeprefix("image_"): list(split[c]) for c in split.column_names if c.startswith("image_")}


def _stage(
    model, params, n: int, loss_fn, cfg: TrainStage, generator, desc: str, after_epoch, progress
) -> None:
    """One stage of the recipe: every epoch a fresh permutation of the `n` samples, in batches of sample
    indices; AdamW with weight decay 0.01, warm-up over `cfg.warmup` of the steps (at least one)."""
    epochs = []
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=generator)
        epochs.append([order[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)])
    steps = sum(len(e) for e in epochs)
    warmup = max(1, int(cfg.warmup * steps))
    train(
        model,
        params,
        epochs,
        loss_fn,
        lr=cfg.lr,
        weight_decay=0.01,
        warmup_steps=warmup,
        desc=desc,
        progress=progress,
        after_epoch=after_epoch,
    )


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
    model, pixels, labels: dict[str, list[str]], val, cfg: TrainStage, generator, progress: bool
):
    """Stage 1: vision tower + Q-Former with one linear probe per task (representation learning).

    `labels[task][i]` is what image i shows for that task ("" where unknown); every image supervises every
    task it is annotated for."""
    label_sets = {t: sorted({a for a in v if a}) for t, v in sorted(labels.items())}
    width = model.config.num_query_tokens * model.config.qformer_config.hidden_size
    heads = torch.nn.ModuleDict({t: torch.nn.Linear(width, len(ls)) for t, ls in label_sets.items()})
    device = model.query_tokens.device
    heads.to(device)

    def targets(lab: dict[str, list[str]]) -> dict[str, torch.Tensor]:
        def index(t: str) -> list[int]:
            return [label_sets[t].index(a) if a in label_sets[t] else IGNORE for a in lab[t]]

        return {t: torch.tensor(index(t), device=device) for t in label_sets}

    y, y_val = targets(labels), targets(val["labels"])
    params = [
        *model.vision_model.parameters(),
        model.query_tokens,
        *model.qformer.parameters(),
        *heads.parameters(),
    ]

    def loss(idx: torch.Tensor) -> torch.Tensor:
        feats = query_outputs(model, pixels[idx]).flatten(1)
        return sum(F.cross_entropy(heads[t](feats), y[t][idx], ignore_index=IGNORE) for t in label_sets)

    log = []

    def curve(epoch: int) -> None:
        feats = cache_query_outputs(model, val["pixels"]).flatten(1)
        acc = {}
        with torch.no_grad():
            for t in label_sets:
                known = y_val[t] != IGNORE
                acc[t] = round(
                    (heads[t](feats[known]).argmax(-1) == y_val[t][known]).float().mean().item(), 4
                )
        log.append({"stage": 1, "epoch": epoch, "probe_accuracy": acc})

    desc = "teacher stage 1 (vision + Q-Former)"
    _stage(model, params, len(pixels), loss, cfg, generator, desc, curve, progress)
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
        pred, gold = logits[:, :-1].argmax(-1), b["labels"][:, 1:].to(logits.device)
        ok = ((pred == gold) | (gold == IGNORE)).all(-1)
        for t, o in zip(tasks[i : i + batch_size], ok.tolist(), strict=True):
            hits.setdefault(t, []).append(o)
    return {t: round(sum(v) / len(v), 4) for t, v in sorted(hits.items())}


def _text_loss(model, tok, texts: list[str]) -> torch.Tensor:
    """Next-token cross-entropy of the language model alone on every token of `texts` (and EOS)."""
    b = tok([t + tok.eos_token for t in texts], padding=True, return_tensors="pt").to(model.device)
    logits = model.language_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, IGNORE)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)


def _answer_loss(model, processor, queries, questions, answers) -> torch.Tensor:
    """Cross-entropy on the answer tokens (and EOS) after the image's query outputs and the prompt."""
    b = training_batch(processor, questions, answers)
    logits = lm_logits(model, queries, b["input_ids"], b["attention_mask"])
    labels = b["labels"][:, 1:].flatten().to(logits.device)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels, ignore_index=IGNORE)


def train_language_stage(
    model,
    processor,
    queries,
    questions,
    answers,
    val,
    cfg: LanguageStage,
    shares: dict[str, float],
    generator,
    progress,
    replay: dict,
    stage: int = 2,
) -> tuple[list[dict], int]:
    """Stage 2: projection + language model, generatively, on cached query outputs; returns the learning
    curve and how many replayed samples were mixed in. Into every batch go `shares["replay"]` × its size of
    pretraining texts (`replay["corpus"]`), so that tuning on D_d does not erase what pretraining taught,
    as LLM instruction tuning mixes in pretraining data; and `shares["image_replay"]` × its size of the
    catalogue's knowledge questions (`replay["questions"]`), each asked with the query outputs of a D_d
    knowledge question (`replay["generic"]`: their indices, a generic box), so the teacher knows the whole
    catalogue in the multimodal form (harness/config/profile.py `Pretraining`). In task adaptation (`stage`
    3) the best epoch's weights are kept, the model as it came (epoch 0) included; with `cfg.patience` it
    stops once validation accuracy has not risen for that many epochs, and the replayed count is then that
    of the epochs it ran."""
    lm = list(model.language_model.parameters())
    params = [{"params": list(model.language_projection.parameters())}, {"params": lm}]
    if cfg.lm_lr is not None:
        params[1]["lr"] = cfg.lm_lr
    n, share, patience = cfg.epochs * len(questions), shares, getattr(cfg, "patience", None)
    texts = iter(_replay_stream(replay["corpus"], math.ceil(n * share["replay"]), generator))
    asked = iter(_replay_stream(replay["questions"], math.ceil(n * share["image_replay"]), generator))
    generic, used = torch.tensor(replay["generic"], dtype=torch.long), [0]

    def loss(idx: torch.Tensor) -> torch.Tensor:
        total = _answer_loss(
            model, processor, queries[idx], [questions[k] for k in idx], [answers[k] for k in idx]
        )
        if t := list(itertools.islice(texts, round(len(idx) * share["replay"]))):
            total = total + _text_loss(model, processor.tokenizer, t)
        if qa := list(itertools.islice(asked, round(len(idx) * share["image_replay"]))):
            img = generic[torch.randint(len(generic), (len(qa),), generator=generator)]
            total = total + _answer_loss(model, processor, queries[img], *map(list, zip(*qa, strict=True)))
        used[0] += len(t) + len(qa)
        return total

    log, best = [], {"score": -1.0, "epoch": 0, "weights": None}
    tuned = [*model.language_projection.parameters(), *lm]
    keep_best = stage == 3

    def curve(epoch: int) -> bool:
        acc = answer_accuracy(
            model, processor, val["queries"], val["questions"], val["answers"], val["tasks"]
        )
        log.append({"stage": stage, "epoch": epoch, "answer_accuracy": acc})
        if not keep_best:
            return False
        counts = {t: val["tasks"].count(t) for t in acc}
        score = sum(acc[t] * counts[t] for t in acc) / sum(counts.values())
        if score > best["score"]:
            best.update(score=score, epoch=epoch, weights=[p.detach().clone() for p in tuned])
        return patience is not None and epoch - best["epoch"] >= patience

    if keep_best:  # the model as it comes is a candidate too: adaptation never leaves it worse on validation
        curve(0)
    desc = "teacher stage 2 (language model)" if stage == 2 else "teacher task adaptation (D_d)"
    _stage(model, params, len(queries), loss, cfg, generator, desc, curve, progress)
    if best["weights"] is not None:
        with torch.no_grad():
            for p, w in zip(tuned, best["weights"], strict=True):
                p.copy_(w)
        ran = log[-1]["epoch"]
        log.append({"stage": stage, "best_epoch": best["epoch"], "epochs_run": ran})
    return log, used[0]


def train_pretraining_stage(
    model, processor, texts: list[str], cfg: Pretraining, generator, progress
) -> list[dict]:
    """Stage 0: the language model alone, next-token prediction on every token of the corpus texts."""

    def loss(idx: torch.Tensor) -> torch.Tensor:
        return _text_loss(model, processor.tokenizer, [texts[k] for k in idx])

    log = []
    params = list(model.language_model.parameters())
    desc = "teacher stage 0 (LM pretraining)"
    _stage(
        model,
        params,
        len(texts),
        loss,
        cfg,
        generator,
        desc,
        lambda e: log.append({"stage": 0, "epoch": e}),
        progress,
    )
    return log


def _replay_stream(pool: list, needed: int, generator) -> list:
    """At least `needed` items of `pool` (none when `needed` is 0): the pool in fresh orders, repeated."""
    passes = math.ceil(needed / len(pool)) if needed else 0
    return [pool[i] for _ in range(passes) for i in torch.randperm(len(pool), generator=generator).tolist()]


def train_teacher(
    model,
    processor,
    data,
    cfg: Teacher,
    seed: int,
    corpus: list[str],
    catalogue: list[tuple[str, str]],
    progress: bool = True,
) -> dict:
    """Train `model` in place: LM pretraining on `corpus` (when `cfg.pretraining` is set), then both
    stages on `data` (train and validation splits), with `corpus` and the `catalogue` questions replayed in
    stage 2 as `cfg.pretraining` says, then task adaptation (`cfg.adaptation`); returns the training log."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    t_pre = time.perf_counter()
    log, pre = [], cfg.pretraining
    if pre:
        log += train_pretraining_stage(model, processor, corpus, pre, generator, progress)
    t0 = time.perf_counter()
    rows, val = columns(data["train"]), columns(data["validation"])
    pixels = encode_images(processor, rows["image"])
    v = {
        "pixels": encode_images(processor, val["image"]),
        "tasks": val["task"],
        "answers": val["answer"],
        "questions": val["question"],
        "labels": image_labels(data["validation"]),
    }
    log += train_vision_stage(
        model, pixels, image_labels(data["train"]), v, cfg.vision_stage, generator, progress
    )
    t1 = time.perf_counter()
    for p in [*model.vision_model.parameters(), model.query_tokens, *model.qformer.parameters()]:
        p.requires_grad_(False)
    queries = cache_query_outputs(model, pixels)
    v["queries"] = cache_query_outputs(model, v["pixels"])
    shares = {k: getattr(pre, k) if pre else 0.0 for k in ("replay", "image_replay")}
    generic = [i for i, k in enumerate(data["train"]["knowledge"]) if k]  # their images show a generic box
    replay = {"corpus": corpus, "questions": catalogue, "generic": generic}
    curve, replayed = train_language_stage(
        model,
        processor,
        queries,
        rows["question"],
        rows["answer"],
        v,
        cfg.language_stage,
        shares,
        generator,
        progress,
        replay,
    )
    log += curve
    n_train = len(rows["question"])
    # samples seen by each stage, summed over epochs: the teacher's side of premise P3's budget ratio
    passes = {
        "pretraining": len(corpus) * pre.epochs if pre else 0,
        "vision_stage": n_train * cfg.vision_stage.epochs,
        "language_stage": n_train * cfg.language_stage.epochs + replayed,
    }
    t2 = time.perf_counter()
    seconds = {
        "pretraining": round(t0 - t_pre, 1),
        "vision_stage": round(t1 - t0, 1),
        "language_stage": round(t2 - t1, 1),
    }
    if (adapt := cfg.adaptation) is not None:
        # without pretraining (a teacher trained on D_d alone) there is nothing to replay
        kept = {"replay": adapt.replay * bool(corpus), "image_replay": adapt.image_replay * bool(catalogue)}
        curve, replayed = train_language_stage(
            model,
            processor,
            queries,
            rows["question"],
            rows["answer"],
            v,
            adapt,
            kept,
            generator,
            progress,
            replay,
            stage=3,
        )
        log += curve
        passes["adaptation"] = n_train * curve[-1]["epochs_run"] + replayed
        seconds["adaptation"] = round(time.perf_counter() - t2, 1)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return {
        "curves": log,
        "sample_passes": {**passes, "total": sum(passes.values())},
        "seconds": {**seconds, "total": round(time.perf_counter() - t_pre, 1)},
    }


def get_teacher(profile: Profile, cache_dir: Path, data, progress: bool = True):
    """(model, processor, folder, training log) of the profile's teacher: trained and stored on first use,
    loaded from the store afterwards."""
    target = teacher_dir(profile, cache_dir)
    stored = profile.teacher.checkpoint is None  # else the user's own checkpoint: read, never removed
    with entry_lock(target) if stored else contextlib.nullcontext():
        loaded = load_teacher(target, stored)
        parallel.barrier()  # under accelerate launch: every process decided before the main one writes
        if loaded is None and not stored:
            raise SpecError(f"teacher.checkpoint: {target} has no config.json (not a save_pretrained folder)")
        if loaded is None:
            model, processor = new_model(profile, data)
            log = train_teacher(
                model,
                processor,
                data,
                profile.teacher,
                profile.teacher.seed,
                teacher_corpus(profile),
                teacher_catalogue_questions(profile),
                progress,
            )
            save_teacher(target, model, processor, {"key": teacher_key(profile), **log})
    if loaded is None:  # after the lock, which every process leaves once the main one has saved
        loaded = load_teacher(target, stored)
    model, processor, log = loaded
    return model, processor, target, log
