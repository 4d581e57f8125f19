"""One teacher-recipe trial, scored on a held-out probe split: how the cpu profile's teacher recipe is chosen.

Why a probe split: the teacher's settings are chosen from the premise rows (P2 knowledge, P5 the best model
on its own task) and the teacher's quality alone, never from the test split or a claim's verdict
(data_cards/synth_ads.md, "How the teacher's settings were chosen"). The probe split is SynthAd split id 5,
drawn like the test split and used by no result.

    python scripts/teacher_trial.py --teacher '{"adaptation": {"epochs": 12, "lr": 1e-3, ...}}' --d-d-alone
    python scripts/teacher_trial.py --score .cache/compression/run-.../step-001

prints (and with --out writes) per task accuracy on the probe split, on its no-knowledge samples, and on its
knowledge questions about seen and unseen advertisers, with the training time and sample passes.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import datasets
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness of this checkout

from harness.config.loading import load_profile
from harness.config.profile import Adaptation, Teacher
from harness.data.loaders import FEATURES, knowledge_group
from harness.data.synth_ads import catalogue_questions, generate_sample
from harness.evaluate import evaluate
from harness.models.public import load_lmm
from harness.models.stand_in import new_model, teacher_catalogue_questions, teacher_corpus
from harness.recipes.common import running
from harness.recipes.teacher import (
    cache_query_outputs,
    columns,
    encode_images,
    train_language_stage,
    train_teacher,
)
from harness.store import get_dataset

PROBE_SPLIT = 5
CACHE = Path(".cache")


def probe_split(profile, data, n: int):
    """The probe split (split id 5), generated once and cached beside the datasets."""
    d = profile.data
    target = CACHE / "probe" / f"synth_ads-seed{d.seed}-n{n}"
    if target.is_dir():
        return datasets.load_from_disk(str(target))
    seen = {a for a, k in zip(data["train"]["advertiser"], data["train"]["knowledge"], strict=True) if k}
    rows = [generate_sample(d.seed, PROBE_SPLIT, i, d.synth_ads) for i in range(n)]
    split = datasets.Dataset.from_list(
        [{**r, "knowledge_group": knowledge_group(r, seen)} for r in rows], features=FEATURES
    )
    split.save_to_disk(str(target))
    return datasets.load_from_disk(str(target))


def scores(model, processor, probe, batch_size: int) -> dict:
    """Probe accuracy overall, per task, per task on no-knowledge samples, and on knowledge questions."""
    acc = evaluate(model, processor, probe, batch_size)
    free: dict[str, list[bool]] = {}
    for s in acc["samples"]:
        if not s["knowledge"]:
            free.setdefault(s["task"], []).append(s["correct"])
    return {
        "overall": round(acc["overall"], 4),
        "per_task": {t: round(v, 4) for t, v in acc["per_task"].items()},
        "no_knowledge": {t: round(sum(v) / len(v), 4) for t, v in sorted(free.items())},
        "knowledge": {g: v and round(v, 4) for g, v in acc["knowledge"].items()},
    }


def merged(base: dict, change: dict) -> dict:
    """`base` with `change` merged in, section by section (None replaces a section)."""
    out = dict(base)
    for k, v in change.items():
        out[k] = merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def d_d_alone(cfg: Teacher) -> Teacher:
    """The recipe without anything D_d lacks: no pretraining, so nothing to replay (as the from-scratch
    baseline)."""
    return cfg.model_copy(update={"pretraining": None})


def stage_two(profile, data, recipe: Teacher) -> tuple:
    """The recipe's stages 0–2 (no adaptation) trained once: (model, processor, log, seconds)."""
    model, processor = new_model(profile, data)
    pre = recipe.pretraining is not None
    corpus = teacher_corpus(profile) if pre else []
    catalogue = teacher_catalogue_questions(profile) if pre else []
    t0 = time.perf_counter()
    log = train_teacher(
        model,
        processor,
        data,
        recipe.model_copy(update={"adaptation": None}),
        profile.teacher.seed,
        corpus,
        catalogue,
    )
    return model, processor, log, time.perf_counter() - t0


def adapted(profile, data, model, processor, cfg: Adaptation) -> tuple:
    """A copy of `model` after task adaptation `cfg` (harness/config/profile.py `Adaptation`), as
    train_teacher runs it, with a generator of its own: (model, log, sample passes, seconds)."""
    model = copy.deepcopy(model)
    rows, val = columns(data["train"]), columns(data["validation"])
    queries = cache_query_outputs(model, encode_images(processor, rows["image"]))
    v = {
        "queries": cache_query_outputs(model, encode_images(processor, val["image"])),
        "tasks": val["task"],
        "answers": val["answer"],
        "questions": val["question"],
    }
    replay = {
        "corpus": teacher_corpus(profile),
        "questions": catalogue_questions(profile.data.seed, profile.data.synth_ads),
        "generic": [i for i, k in enumerate(data["train"]["knowledge"]) if k],
    }
    for p in [*model.vision_model.parameters(), model.query_tokens, *model.qformer.parameters()]:
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(profile.teacher.seed + 3)
    t0 = time.perf_counter()
    shares = {"replay": cfg.replay, "image_replay": cfg.image_replay}
    log, replayed = train_language_stage(
        model, processor, queries, rows["question"], rows["answer"], v, cfg, shares, gen, True, replay, 3
    )
    return model, log, len(rows["question"]) * log[-1]["epochs_run"] + replayed, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--teacher", default="{}", help="JSON merged into the profile's teacher section")
    ap.add_argument(
        "--adaptations",
        default="{}",
        help="JSON {name: adaptation section}: each tried from the one model after stages 0-2",
    )
    ap.add_argument("--d-d-alone", action="store_true", help="also train the recipe on D_d alone")
    ap.add_argument("--score", type=Path, help="only score this saved model folder")
    ap.add_argument("--probe-size", type=int, default=2500)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    profile = load_profile(args.profile)
    with running(profile):
        trials(args, profile)


def trials(args, profile) -> None:
    """The trials, in the profile's run context (harness/recipes/common.py `running`)."""
    data = get_dataset(profile, CACHE)
    probe = probe_split(profile, data, args.probe_size)
    bs = profile.evaluation_batch_size
    report: dict = {"profile": profile.name, "teacher": json.loads(args.teacher)}

    def record(name: str, **row) -> None:
        report[name] = row
        print(name, json.dumps(row), flush=True)
        args.out.write_text(json.dumps(report, indent=1))

    if args.score:
        model, processor = load_lmm(args.score)
        record("scored", folder=str(args.score), **scores(model, processor, probe, bs))
        return
    cfg = Teacher.model_validate(merged(profile.teacher.model_dump(), json.loads(args.teacher)))
    variants = json.loads(args.adaptations)
    trials = [("teacher", cfg)] + ([("d_d_alone", d_d_alone(cfg))] if args.d_d_alone else [])
    for name, recipe in trials:
        model, processor, log, seconds = stage_two(profile, data, recipe)
        passes = log["sample_passes"]["total"]
        record(name, seconds=round(seconds, 1), passes=passes, **scores(model, processor, probe, bs))
        tried = []
        for vname, v in variants.items():
            if name == "d_d_alone":
                v = {**v, "replay": 0.0, "image_replay": 0.0}
            base = profile.teacher.language_stage.model_dump()
            full = Adaptation.model_validate(merged(base, {"patience": 2, **v}))
            if full in tried:  # on D_d alone, variants that differ only in replay are one
                continue
            tried.append(full)
            m, curve, extra, secs = adapted(profile, data, model, processor, full)
            record(
                f"{name}+{vname}",
                adaptation=full.model_dump(),
                seconds=round(seconds + secs, 1),
                passes=passes + extra,
                curve=curve,
                **scores(m, processor, probe, bs),
            )


if __name__ == "__main__":
    main()
