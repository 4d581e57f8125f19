"""Training curves of one-shot pruning as Algorithm 1 is written: why more distillation can score worse.

Why: in the distillation-budget map (results/budget_sensitivity), one-shot that distils E epochs once scores
lower at 13 and 47 optimizer steps than at 5, and recovers only at 157. This script prunes the teacher one
shot (every stage to the iterative run's structure, seed 0, as harness/pipeline.py `prune_one_shot` does),
then distils the same pruned model for each budget with the harness's own schedule (cosine decay, no
warm-up), logging the loss of every optimizer step and the validation accuracy after it, and writes
docs/one_shot/one_shot_curves.csv and figure_one_shot_curves.png (docs/results.md shows them; not under
results/, whose experiment folders are replaced whole when their experiment reruns).

    python scripts/one_shot_curves.py               # cpu profile, seed 0, budgets 5 13 47 157
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import sys
from pathlib import Path

import matplotlib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness of this checkout
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.config.experiment import CompressionRun  # noqa: E402
from harness.config.loading import load_profile  # noqa: E402
from harness.config.paths import ROOT  # noqa: E402
from harness.distill.loop import distill  # noqa: E402
from harness.evaluate import evaluate  # noqa: E402
from harness.pipeline import follow, plan_run, prune_one_shot  # noqa: E402
from harness.prune.step import level_width  # noqa: E402
from harness.recipes.common import running  # noqa: E402
from harness.recipes.compression import compress, training_sets  # noqa: E402
from harness.recipes.teacher import get_teacher  # noqa: E402
from harness.store import get_dataset  # noqa: E402

CACHE = ROOT / ".cache"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", type=int, nargs="+", default=[5, 13, 47, 157], help="optimizer steps")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "one_shot")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    with running(profile):
        curves(args, profile)


def curves(args, profile) -> None:
    """Every budget's training curve, in the profile's run context (harness/recipes/common.py `running`)."""
    c, bs = profile.compression, profile.evaluation_batch_size
    data = get_dataset(profile, CACHE)
    teacher, processor, tdir, _ = get_teacher(profile, CACHE, data)
    reference = CompressionRun(label="All stages")
    sets = training_sets(profile, reference, teacher, processor, data, tdir, True)
    ref_state, _ = compress(profile, reference, args.seed, teacher, processor, data, sets, CACHE, True)
    one_shot = CompressionRun(label="one-shot", mode="one_shot", one_shot_budget="per_step")
    plan = follow(plan_run(teacher, c, one_shot, args.seed, bs), ref_state["trace"])
    val = data["validation"]
    pruned = copy.deepcopy(teacher)
    prune_one_shot(pruned, plan, sets[1], {"block_ids": list(range(level_width(teacher, "block")))})
    start = evaluate(pruned, processor, val, bs, vision_of=teacher)["overall"]
    groups = math.ceil(len(sets[0]) / c.accumulation)  # optimizer steps in one epoch of D_d
    rows = []
    for budget in args.budgets:
        student = copy.deepcopy(pruned)
        rows.append({"budget": budget, "step": 0, "lr": c.lr, "loss": "", "val_accuracy": start})

        every = max(1, budget // 40)  # about 40 evaluations of the longest budget, every step of short ones

        def logged(k: int, loss: float, budget=budget, student=student, every=every) -> None:
            if k % every and k != budget:
                return
            acc = evaluate(student, processor, val, bs, vision_of=teacher)["overall"]
            lr = c.lr * 0.5 * (1 + math.cos(math.pi * k / budget))  # the schedule after step k
            rows.append({"budget": budget, "step": k, "lr": lr, "loss": loss, "val_accuracy": acc})
            print(f"budget {budget}, step {k}: loss {loss:.3f}, validation {acc:.3f}", flush=True)

        distill(
            student,
            sets[0],
            budget / groups,
            c.lr,
            "eq5",
            c.gamma,
            seed=args.seed * 1000 + 1,
            progress=False,
            accumulate=c.accumulation,
            optimizer=c.optimizer,
            after_step=logged,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "one_shot_curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for budget in args.budgets:
        mine = [r for r in rows if r["budget"] == budget]
        axes[0].plot([r["step"] for r in mine[1:]], [r["loss"] for r in mine[1:]], label=f"{budget} steps")
        axes[1].plot([r["step"] for r in mine], [r["val_accuracy"] for r in mine], label=f"{budget} steps")
    axes[0].set(xscale="log", xlabel="optimizer step", ylabel="distillation loss (Eq. 5)")
    axes[1].set(xscale="symlog", xlabel="optimizer step", ylabel="validation accuracy")
    axes[1].axhline(start, color="grey", lw=0.8, ls=":", label="pruned, before distillation")
    for ax in axes:
        ax.legend(title="budget", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"One-shot pruning as written (profile '{profile.name}', seed {args.seed}): each budget distils the "
        "same pruned model, cosine decay from the same learning rate",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.out / "figure_one_shot_curves.png", dpi=120)
    print(f"wrote {args.out / 'one_shot_curves.csv'} and figure_one_shot_curves.png")


if __name__ == "__main__":
    main()
