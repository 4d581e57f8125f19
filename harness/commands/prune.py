"""`python -m harness prune`: one pruning step of one level on a checkpoint, saved as a standard one.

Why a command module of its own: it is a small recipe of its own (data, importance, surgery, save); the
heavy imports stay inside it, so the CLI's other commands (`report`) run without torch.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness import parallel
from harness.cache import atomic_dir, write_json
from harness.config.files import SpecError, new_folder
from harness.config.vocabulary import gradient_criteria
from harness.measure import device_info
from harness.model_card import card, write_card
from harness.models.blip2 import parameter_counts
from harness.models.public import load_lmm, load_model, save_lmm
from harness.objectives import cached_top_k, teacher_batches
from harness.plan import stand_in_or_checkpoint
from harness.preflight import checked_profile
from harness.prune.importance import importance
from harness.prune.step import prune_step, structures_to_remove
from harness.recipes.common import running
from harness.recipes.teacher import get_teacher
from harness.store import get_dataset


def prune_command(args) -> int:
    """Prune one step of one level from a checkpoint (default: the profile's teacher) and save the result."""
    prof = checked_profile(args.profile, {}, args.device, args.dtype)
    if args.module != "language_model" and parallel.world() > 1:
        raise SpecError(
            f"--module {args.module}: pruning the vision side runs in one process only (not under accelerate "
            "launch with several: only the language model's gradients are exchanged)"
        )
    if args.loss == "teacher_kl" and args.teacher is None:
        raise SpecError("--loss teacher_kl needs --teacher DIR (the model the KL is measured against)")
    new_folder(args.out, "--out")
    for flag, folder in (("--checkpoint", args.checkpoint), ("--teacher", args.teacher)):
        if folder is not None and not (Path(folder) / "config.json").is_file():
            raise SpecError(f"{flag}: {folder} is not a checkpoint folder (no config.json in it)")
    with running(prof):
        return _prune(args, prof)


def _prune(args, prof) -> int:
    """The step itself, inside the profile's run context (device, dtype, threads)."""
    model = processor = None
    if args.checkpoint:  # the model and --amount are checked before the dataset is made
        model, processor = load_lmm(args.checkpoint)
        structures_to_remove(model, args.level, args.amount, args.module)
    else:  # the profile's teacher has the stand-in's shape: --amount is checked on it, weightless
        structures_to_remove(stand_in_or_checkpoint(None, prof), args.level, args.amount, args.module)
    data = get_dataset(prof, args.cache_dir, not args.quiet)
    if model is None:
        model, processor, tdir, _ = get_teacher(prof, args.cache_dir, data, not args.quiet)
    structures_to_remove(model, args.level, args.amount, args.module)  # fails here, before any work
    teacher = load_model(args.teacher) if args.teacher else None
    split = data["train"].select(range(min(args.samples or len(data["train"]), len(data["train"]))))
    before = parameter_counts(model)
    t0 = time.perf_counter()
    imp, batches = None, []
    if args.level != "block" and args.criterion in gradient_criteria():  # the others read the weights alone
        batches = teacher_batches(
            teacher,
            processor,
            split,
            prof.compression.micro,
            student=model,
            with_pixels=args.module != "language_model",
            top_k=None
            if teacher is None
            else cached_top_k(prof.compression, processor, split, teacher.config.text_config.vocab_size),
        )
    if args.level != "block":
        imp = importance(
            model, args.level, args.criterion, batches, args.seed, args.module, args.loss, not args.quiet
        )
    seconds = time.perf_counter() - t0
    info = prune_step(model, args.level, args.amount, imp, args.module)
    after = parameter_counts(model)
    base = str(args.checkpoint) if args.checkpoint else f"{tdir} (the '{prof.name}' profile's teacher)"
    text = card(
        f"{Path(args.out).name}: {args.level} pruned by {args.amount}",
        base,
        [{"step": 1, "stage": args.level, "removed": args.amount, "parameters": after["total"]}],
        after,
        "not measured by `prune` (no distillation follows); `python -m harness evaluate --checkpoint "
        f"{args.out}` scores it on the profile's test split",
        [
            f"Criterion {args.criterion} with the {args.loss} loss over {len(split)} training samples "
            f"(module {args.module}); parameters before: {before['total']:,}."
        ],
    )
    with atomic_dir(Path(args.out)) as tmp:
        save_lmm(model, processor, tmp)
        write_card(tmp, text)
        write_json(
            tmp / "pruning.json",
            {
                **info,
                "criterion": args.criterion,
                "loss": args.loss,
                "module": args.module,
                "prompt": processor.prompt_template,  # what Eq. 1 ran on: evaluate --prompt auto reads it
                "samples": len(split),
                "importance_seconds": seconds,
                "parameters_before": before,
                "parameters_after": after,
                "device": device_info(),
            },
        )
    print(
        f"{args.level}: removed {info['removed']} structure(s) from {args.module}; parameters "
        f"{before['total']:,} -> {after['total']:,} (language model {before['language_model']:,} -> "
        f"{after['language_model']:,}); importance pass {seconds:.1f}s; saved to {args.out}"
    )
    return 0
