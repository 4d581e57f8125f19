"""Baseline: the compressed architecture trained from scratch, with at least the compression run's compute.

Why: Minitron and Sheared-LLaMA ask whether pruning + distillation beats simply training the small model. The
scratch model gets the final structure of the matching Algorithm 1 run (same seed), the teacher's own
two-stage recipe (its vision side trained from scratch too, which the compressed model inherited for free),
and as many language-stage epochs as it takes to match the compression run's compute, counted as
parameter × sample passes: every distillation epoch and every importance pass over D_p at the size the
language model had at that step. The same training serves two premises (results/claims.md): the teacher's
whole recipe on the final structure (P4, redundancy: the small model can hold what the teacher knows), and
the teacher's own structure on D_d alone (P5: no model trained on D_d alone beats the teacher).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from harness.evaluate import evaluate
from harness.models.blip2 import parameter_counts
from harness.models.stand_in import new_model, teacher_catalogue_questions, teacher_corpus
from harness.recipes.teacher import train_teacher
from harness.store import run_state, save_state, save_step

STRUCTURE_TO_PROFILE = {
    "num_hidden_layers": "num_layers",
    "intermediate_size": "intermediate_size",
    "num_attention_heads": "num_heads",
    "num_key_value_heads": "num_kv_heads",
    "hidden_size": "hidden_size",
}


def compression_compute(trace: list[dict], lm_before: int, d_d: int, d_p: int, epochs: float) -> float:
    """Parameter × sample passes of an iterative compression run: an importance pass over D_p at the size
    before each step (blocks are chosen without one), then E distillation epochs at the size after it."""
    total, size = 0.0, lm_before
    for row in trace:
        if row["stage"] != "block":
            total += size * d_p
        total += row["params_lm"] * d_d * epochs
        size = row["params_lm"]
    return total


def train_from_scratch(
    profile, data, run, reference: dict, seed: int, out: Path, progress: bool = True
) -> dict:
    """Train `run`'s structure (the reference run's final one, or the teacher's) from scratch with `run`'s
    recipe (harness/config/experiment.py `CompressionRun.scratch_recipe`) into `out` (a run folder
    `step_model` reads)."""
    out = Path(out)
    if (state := run_state(out)) is not None:
        return state
    lm = None  # the teacher's own structure
    if run.scratch_structure == "final":
        lm = {STRUCTURE_TO_PROFILE[k]: v for k, v in reference["structure"].items()}
    model, processor = new_model(profile, data, lm, seed=seed)
    n_train = len(data["train"])
    lm_params = parameter_counts(model)["language_model"]
    cfg = profile.teacher
    corpus, catalogue = teacher_corpus(profile), teacher_catalogue_questions(profile)
    if run.scratch_recipe == "d_d":
        epochs = max(cfg.language_stage.epochs, math.ceil(reference["compute"] / (lm_params * n_train)))
        cfg = cfg.model_copy(  # D_d only: what the catalogue taught the teacher is what this lacks
            update={
                "pretraining": None,
                "language_stage": cfg.language_stage.model_copy(update={"epochs": epochs}),
            }
        )
        corpus, catalogue = [], []  # nothing to replay: adaptation (if any) tunes on D_d alone
    t0 = time.perf_counter()
    log = train_teacher(model, processor, data, cfg, seed, corpus, catalogue, progress)
    epochs = cfg.language_stage.epochs
    acc = evaluate(model, processor, data["validation"], profile.evaluation_batch_size)
    counts = parameter_counts(model)
    state = {
        "step": 1,
        "done": True,
        "epochs_used": epochs,
        "p_teacher": reference["p_teacher"],
        "compute": {"reference": reference["compute"], "scratch": lm_params * n_train * epochs},
        "training_log": log,
        "trace": [
            {
                "step": 1,
                "stage": "scratch",
                "amount": 0,
                "removed_total": 0,
                "params_total": counts["total"],
                "params_lm": counts["language_model"],
                "acc_pruned": None,
                "acc_distilled": acc["overall"],
                "loss_last_epoch": None,
                "seconds": round(time.perf_counter() - t0, 2),
            }
        ],
    }
    save_step(out, 1, model, processor)
    save_state(out, state)
    return state
