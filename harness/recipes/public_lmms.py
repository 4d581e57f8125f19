"""Recipe of the public-LMM comparison: BLIP-2-family checkpoints beside ours. Zero-shot accuracy, optionally
after a short fine-tune on the training split and after Algorithm 1; size; and throughput, models
interleaved (one session per tokenizer)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from harness import parallel
from harness.cache import entry_lock
from harness.config.compression import Compression
from harness.config.experiment import CompressionRun, Experiment, PublicModel
from harness.config.profile import Profile
from harness.data.collate import BLIP2_PROMPT
from harness.device import current
from harness.distill.loop import distill
from harness.evaluate import accuracy_record, evaluate, max_answer_tokens
from harness.measure import throughput
from harness.models.blip2 import parameter_counts, trained_parts
from harness.models.public import load_lmm
from harness.objectives import cached_top_k, teacher_batches
from harness.pipeline import plan_run, run_compression, structure
from harness.prune.structures import default_stages
from harness.recipes.common import pruning_set, result_header
from harness.recipes.compression import FULL_RUN, compress, training_sets
from harness.recipes.teacher import get_teacher
from harness.results import Result, parse_result
from harness.store import (
    checkpoint_key,
    compression_key,
    get_dataset,
    public_run_dir,
    step_model,
    teacher_key,
)


def _public_model(entry: PublicModel, profile, data, teacher, teacher_processor, tdir, cache_dir, progress):
    """(model, processor, key) for one entry of public_lmms.yaml."""
    if entry.checkpoint == "teacher":
        return copy.deepcopy(teacher), teacher_processor, {"teacher": teacher_key(profile)}
    if entry.checkpoint == "compressed":
        seed = profile.seeds[0]
        sets = training_sets(profile, FULL_RUN, teacher, teacher_processor, data, tdir, progress)
        _, out = compress(
            profile, FULL_RUN, seed, teacher, teacher_processor, data, sets, cache_dir, progress
        )
        return step_model(out), teacher_processor, compression_key(profile, FULL_RUN, seed)
    model, processor = load_lmm(entry.checkpoint, entry.allow_download)
    processor.prompt_template = entry.prompt or BLIP2_PROMPT  # read by harness/data/collate.py
    return model, processor, {**checkpoint_key(entry.checkpoint), "prompt": processor.prompt_template}


def _fine_tuned(entry: PublicModel, profile: Profile, model, processor, data, progress: bool):
    """`model` fine-tuned on the training split (answers' cross-entropy) with the compression section's
    memory set-up: micro-batches, activation checkpointing, optimizer and trained weights' dtype. The copy
    is made in CPU memory and `model` waits there, so the device holds one model at a time."""
    c, home = profile.compression, model.device
    tuned = copy.deepcopy(model.to("cpu"))
    for part in trained_parts(tuned):
        part.to(getattr(torch, c.weights_dtype))
    parallel.place(tuned, home)  # under fsdp its language model stays in CPU memory
    # the answers alone: fine-tuning needs no teacher logits (a 2.7B model's full-vocabulary logits over
    # the training split would be gigabytes)
    batches = teacher_batches(None, processor, data["train"], c.micro, progress, student=tuned)
    distill(
        tuned,
        batches,
        entry.fine_tune_epochs,
        entry.fine_tune_lr,
        "label_ce",
        0.0,
        profile.seeds[0],
        progress,
        accumulate=c.accumulation,
        checkpointing=c.activation_checkpointing,
        optimizer=c.optimizer,
    )
    return tuned


def _compressed(entry: PublicModel, profile, base, processor, key, data, cache_dir, progress):
    """`base` compressed with Algorithm 1 (the profile's compression section with the entry's changes)."""
    c = Compression.model_validate({**profile.compression.model_dump(), **entry.compression})
    stages = entry.stages or default_stages(base)
    run = CompressionRun(label=entry.name, stages=stages)
    seed, bs = profile.seeds[0], profile.evaluation_batch_size
    plan = plan_run(base, c, run, seed, bs)
    out = public_run_dir(key, entry, plan, profile, cache_dir)
    k = cached_top_k(c, processor, data["train"], base.config.text_config.vocab_size)
    d_d = teacher_batches(base, processor, data["train"], c.micro, progress, top_k=k)
    d_p = pruning_set(base, processor, data["train"], c.pruning_samples, c.batch_size, progress, c.micro, k)
    with entry_lock(out):
        run_compression(base, processor, data["validation"], d_p, d_d, plan, out, progress)
    return f"compressed ({'→'.join(stages)})", step_model(out)


def run_public_lmms(exp: Experiment, profile: Profile, cache_dir: Path, progress: bool = True) -> Result:
    data = get_dataset(profile, cache_dir, progress)
    teacher = teacher_proc = tdir = None  # the stand-in is trained only when an entry names it
    if any(e.checkpoint in ("teacher", "compressed") for e in exp.models):
        teacher, teacher_proc, tdir, _ = get_teacher(profile, cache_dir, data, progress)
    bs, rows, models = profile.evaluation_batch_size, [], {}
    for entry in exp.models:
        model, processor, key = _public_model(
            entry, profile, data, teacher, teacher_proc, tdir, cache_dir, progress
        )
        variants = [("zero-shot" if entry.checkpoint not in ("teacher", "compressed") else "as is", model)]
        if entry.fine_tune_epochs:
            variants.append(
                (
                    f"fine-tuned {entry.fine_tune_epochs} ep",
                    _fine_tuned(entry, profile, model, processor, data, progress),
                )
            )
        if entry.compress:
            variants.append(
                _compressed(entry, profile, variants[-1][1], processor, key, data, cache_dir, progress)
            )
        for how, m in variants:
            acc = evaluate(parallel.place(m, current().device), processor, data["test"], bs)
            m.to("cpu")  # waits in CPU memory (a no-op on the CPU): one model on the device at a time
            name = f"{entry.name} ({how})"
            rows.append(
                {
                    "row": name,
                    "parameters": parameter_counts(m),
                    "structure": structure(m),
                    "accuracy": accuracy_record(acc),
                }
            )
            models[name] = (m, processor)
    if exp.measure:
        m = profile.measurement
        # one interleaved session for every model, each with its own tokenizer's prompt and as many new
        # tokens as that tokenizer's longest answer takes
        lengths = {id(p): max_answer_tokens(p, data["test"]["answer"]) for _, p in models.values()}
        speed = throughput(
            {n: mm for n, (mm, _) in models.items()},
            {n: p for n, (_, p) in models.items()},
            data["test"],
            m.batch_sizes,
            {n: lengths[id(p)] for n, (_, p) in models.items()},
            m,
        )
        for row in rows:
            row["throughput"] = list(speed[row["row"]].values())
    return parse_result({**result_header(exp, profile, data["test"]), "rows": rows})
