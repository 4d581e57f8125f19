"""Algorithm 1 and its variants: iterative multi-stage, one-shot, single level, any subset of stages.

Iterative (the paper): stages in order block → ffn → attention → hidden. Each step prunes one step size,
distils E epochs with Eq. 5 against the cached teacher, then measures performance. A stage stops at its
maximum reduction, or once performance has dropped by α or more from the stage's own starting performance
(p_start − p < α, as Algorithm 1 writes it; the step that crosses α is kept, as in Algorithm 1).
One-shot: every named stage is pruned straight to the iterative run's maximum (`run_maxima`), then the model
is distilled once for the same total number of epochs.

Every step is recorded (stage, step, parameters, accuracy after pruning and after distillation, wall time)
and checkpointed, so a killed run resumes from its last completed step. Each step's randomness is seeded by
(seed, step), so the resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path

import torch

from harness.cache import atomic_dir, write_json
from harness.distill.loop import distill
from harness.evaluate import evaluate
from harness.models.blip2 import parameter_counts
from harness.models.public import load_model
from harness.profile import STEP_FIELDS as STEP_KEYS
from harness.prune.importance import accumulate_gradients, block_influence, structure_importance
from harness.prune.step import level_width, prune_step, structures_to_remove
from harness.prune.structures import PruningError, blocks
from harness.prune.torch_pruning_baseline import example_inputs, torch_pruning_step
from harness.report.traces import write_trace_csv


def _perf(model, processor, split, batch_size: int) -> dict:
    r = evaluate(model, processor, split, batch_size)
    return {"overall": r["overall"], **{f"task_{t}": v for t, v in r["per_task"].items()}}


def _checkpoint(out: Path, model, state: dict) -> None:
    """The model after a completed step, then the state that points to it (both written atomically)."""
    with atomic_dir(out / "steps" / f"step_{state['step']:03d}") as tmp:
        model.save_pretrained(tmp)
    write_json(out / "state.json", state)
    write_trace_csv(out / "trace.csv", state["trace"])


def run_maxima(teacher, c: dict, stages: list[str], target_share: float | None = None) -> dict[str, int]:
    """Each stage's maximum reduction in the paper's units, a whole number of steps. Without a target: the
    profile's N_* (validated to be whole steps). With a target share (single-level runs, Table 3): the fewest
    steps after which the language model's transformer blocks (what the paper's sizes count) have at most
    `target_share` of the teacher's, or every step the level allows (at least one structure stays).
    Parameters fall linearly with the steps of one level, so one probe step on a weightless (meta-device)
    copy of the teacher gives the count per step."""
    maxima = {level: c[STEP_KEYS[level][1]] for level in STEP_KEYS}
    if target_share is None:
        return maxima
    (level,) = stages
    step = c[STEP_KEYS[level][0]]
    with torch.device("meta"):
        probe = type(teacher)(copy.deepcopy(teacher.config))
    before = parameter_counts(probe)["lm_blocks"]
    # which structures go does not change the count: the random criterion gives a tensor of the right shape
    prune_step(probe, level, step, None if level == "block" else structure_importance(probe, level, "random"))
    per_step = before - parameter_counts(probe)["lm_blocks"]
    needed = -(-(before - math.floor(target_share * before)) // per_step)  # integer ceiling
    allowed = (level_width(teacher, level) - 1) // step
    return {**maxima, level: min(needed, allowed) * step}


def reached(trace: list[dict], stages: list[str]) -> dict[str, int]:
    """What an iterative run removed at each stage, in the paper's units: one-shot's targets, so that one-shot
    ends at exactly the iterative run's structure even where α or feasibility stopped a stage early."""
    return {s: sum(r["amount"] for r in trace if r["stage"] == s) for s in stages}


def _dropped_last(trace: list[dict], n_layers: int, maxima: dict) -> tuple[list[dict], list[int]]:
    """For a run cached before dropped blocks were recorded and whose block stage drops the last blocks:
    which blocks each block step dropped (original indices), and the blocks that remain."""
    ids = list(range(n_layers))
    for row in trace:
        stages = row["stage"].split("+")
        if "block" in stages:
            n = row["amount"] if stages == ["block"] else maxima["block"]
            row["blocks_dropped"], ids = ids[len(ids) - n :], ids[: len(ids) - n]
    return trace, ids


def _resume(out: Path, teacher, cfg: dict) -> tuple[object, dict | None]:
    state_path = out / "state.json"
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if "block_ids" in state:
            return step_model(out, state["step"]), state
        n_layers = len(blocks(teacher, "language_model"))
        if cfg["block_criterion"] == "last" or not any("block" in r["stage"] for r in state["trace"]):
            state["trace"], state["block_ids"] = _dropped_last(state["trace"], n_layers, cfg["maxima"])
            return step_model(out, state["step"]), state
        # a Block Influence run cached before dropped blocks were recorded: the blocks cannot be recovered,
        # so the whole folder goes (its step models, trace and cached evaluations)
        print(f"  {out.name}: cached before dropped blocks were recorded; recomputing", flush=True)
        shutil.rmtree(out)
        out.mkdir(parents=True)
    return copy.deepcopy(teacher).eval(), None


def _drop(state: dict, removed: list[int]) -> list[int]:
    """Map blocks removed by their current index to their index in the teacher, and forget them."""
    dropped = [state["block_ids"][i] for i in removed]
    state["block_ids"] = [b for i, b in enumerate(state["block_ids"]) if i not in removed]
    return dropped


def _record(student, step, stage, amount, removed_total, acc_pruned, acc, losses, t0) -> dict:
    """One row of the trace: what was removed, the size after, accuracy after pruning and after distilling."""
    counts = parameter_counts(student)
    return {
        "step": step,
        "stage": stage,
        "amount": amount,
        "removed_total": removed_total,
        "params_total": counts["total"],
        "params_lm": counts["language_model"],
        "acc_pruned": acc_pruned["overall"],
        "acc_distilled": acc["overall"],
        "per_task_pruned": acc_pruned,
        "per_task_distilled": acc,
        "loss_last_epoch": losses[-1] if losses else None,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _importance(model, level: str, criterion: str, d_p, seed: int, block_criterion: str):
    if level == "block":  # Algorithm 1 drops the last blocks; Block Influence (a baseline) scores them
        return block_influence(model, d_p) if block_criterion == "block_influence" else None
    if criterion != "random":
        accumulate_gradients(model, d_p)
    imp = structure_importance(model, level, criterion, seed=seed)
    model.zero_grad(set_to_none=True)
    return imp


def run_compression(teacher, processor, val, d_p, d_d, cfg: dict, out: Path, progress: bool = True) -> dict:
    """Compress `teacher` and return the final state. `cfg` holds: stages, mode (iterative | one_shot),
    criterion, block_criterion, pruner, seed, variant, maxima (each stage's maximum reduction, `run_maxima`;
    one-shot prunes to them), use_alpha (False: only the maxima stop a stage), total_epochs (one-shot's
    budget) and the profile's compression section (alpha, epochs, lr, gamma, step sizes).
    `d_p`: importance batches; `d_d`: teacher batches."""
    c = cfg["compression"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    student, state = _resume(out, teacher, cfg)
    if state is None:
        p_f = _perf(teacher, processor, val, cfg["eval_batch_size"])
        state = {
            "step": 0,
            "stage_index": 0,
            "removed": 0,
            "p_stage_start": p_f["overall"],
            "p_current": p_f["overall"],
            "p_teacher": p_f,
            "trace": [],
            "done": False,
            "epochs_used": 0,
            "block_ids": list(range(len(blocks(teacher, "language_model")))),
        }
        _checkpoint(out, student, state)
    if cfg["mode"] == "one_shot":
        return _one_shot(student, processor, val, d_p, d_d, cfg, out, state, progress)
    while not state["done"]:
        level = cfg["stages"][state["stage_index"]]
        amount, maximum = c[STEP_KEYS[level][0]], cfg["maxima"][level]
        dropped = state["p_stage_start"] - state["p_current"]
        feasible = True
        try:
            structures_to_remove(student, level, amount)
        except PruningError:
            feasible = False
        over_alpha = cfg["use_alpha"] and dropped >= c["alpha"]
        if state["removed"] + amount > maximum or over_alpha or not feasible:
            # next stage: it starts from the performance reached here
            state.update(stage_index=state["stage_index"] + 1, removed=0, p_stage_start=state["p_current"])
            if state["stage_index"] == len(cfg["stages"]):
                state["done"] = True
            write_json(out / "state.json", state)
            continue
        k = state["step"] + 1
        t0 = time.perf_counter()
        info = {}
        if cfg["pruner"] == "torch_pruning" and level in ("ffn", "hidden"):
            torch_pruning_step(student, level, amount, example_inputs(processor, val))
        else:
            imp = _importance(
                student, level, cfg["criterion"], d_p, cfg["seed"] * 1000 + k, cfg["block_criterion"]
            )
            info = prune_step(student, level, amount, imp)
        acc_pruned = _perf(student, processor, val, cfg["eval_batch_size"])
        losses = distill(
            student,
            d_d,
            c["epochs"],
            c["lr"],
            cfg["variant"],
            c["gamma"],
            seed=cfg["seed"] * 1000 + k,
            progress=progress,
            desc=f"step {k} ({level}), distill",
        )
        acc = _perf(student, processor, val, cfg["eval_batch_size"])
        row = _record(student, k, level, amount, state["removed"] + amount, acc_pruned, acc, losses, t0)
        if level == "block":
            row["blocks_dropped"] = _drop(state, info["blocks"])
        state["trace"].append(row)
        state.update(
            step=k,
            removed=state["removed"] + amount,
            p_current=acc["overall"],
            epochs_used=state["epochs_used"] + c["epochs"],
        )
        _checkpoint(out, student, state)
        if progress:
            size = state["trace"][-1]["params_total"] / 1e6
            print(
                f"  step {k:2d} {level:9s} -{amount:<4d} params {size:.2f}M  "
                f"acc pruned {acc_pruned['overall']:.3f} -> distilled {acc['overall']:.3f}",
                flush=True,
            )
    return state


def _one_shot(student, processor, val, d_p, d_d, cfg, out, state, progress) -> dict:
    """Prune every named stage straight to the iterative run's maximum, then distil for the whole epoch
    budget."""
    if state["done"]:
        return state
    c = cfg["compression"]
    t0 = time.perf_counter()
    dropped = []
    for level in cfg["stages"]:
        amount = cfg["maxima"][level]
        if amount == 0:  # the iterative run this one-shot follows removed nothing at this stage
            continue
        seed = cfg["seed"] * 1000 + 1
        imp = _importance(student, level, cfg["criterion"], d_p, seed, cfg["block_criterion"])
        info = prune_step(student, level, amount, imp)
        if level == "block":
            dropped = _drop(state, info["blocks"])
    acc_pruned = _perf(student, processor, val, cfg["eval_batch_size"])
    epochs = cfg["total_epochs"]
    losses = distill(
        student,
        d_d,
        epochs,
        c["lr"],
        cfg["variant"],
        c["gamma"],
        seed=cfg["seed"] * 1000 + 1,
        progress=progress,
        desc="one-shot, distill",
    )
    acc = _perf(student, processor, val, cfg["eval_batch_size"])
    total = sum(cfg["maxima"][s] for s in cfg["stages"])
    row = _record(student, 1, "+".join(cfg["stages"]), total, total, acc_pruned, acc, losses, t0)
    if "block" in cfg["stages"]:
        row["blocks_dropped"] = dropped
    state["trace"].append(row)
    state.update(step=1, p_current=acc["overall"], epochs_used=epochs, done=True)
    _checkpoint(out, student, state)
    return state


def step_model(out: Path, step: int | None = None):
    """The model saved after `step` (default: the last completed step) of a run folder."""
    if step is None:
        step = json.loads((Path(out) / "state.json").read_text())["step"]
    return load_model(Path(out) / "steps" / f"step_{step:03d}")


def structure(model) -> dict:
    cfg = model.config.text_config
    return {
        "num_hidden_layers": cfg.num_hidden_layers,
        "intermediate_size": cfg.ffn_dim if cfg.model_type == "opt" else cfg.intermediate_size,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": getattr(cfg, "num_key_value_heads", cfg.num_attention_heads),
        "hidden_size": cfg.hidden_size,
    }
