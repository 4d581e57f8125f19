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

import contextlib
import copy
import math
import time
from pathlib import Path

import torch

from harness import families, parallel
from harness.config.compression import Compression
from harness.config.experiment import CompressionRun, RunPlan
from harness.config.vocabulary import BY_NAME
from harness.device import current
from harness.distill.loop import distill
from harness.evaluate import evaluate
from harness.model_card import card
from harness.models.blip2 import parameter_counts, trained_parameters, trained_parts
from harness.prune.importance import block_influence, importance, structure_importance
from harness.prune.step import level_width, prune_step, structures_to_remove
from harness.prune.structures import PruningError
from harness.prune.torch_pruning_baseline import example_inputs, torch_pruning_step
from harness.report.traces import write_trace_csv
from harness.store import run_state, save_state, save_step, step_model


def _perf(model, processor, split, batch_size: int, teacher) -> dict:
    """Validation accuracy; compression leaves the vision side the teacher's, so its query outputs serve."""
    r = evaluate(model, processor, split, batch_size, vision_of=teacher)
    # under accelerate launch every process takes the stage and α decisions from the main one's numbers
    return parallel.from_main({"overall": r["overall"], **{f"task_{t}": v for t, v in r["per_task"].items()}})


def _checkpoint(out: Path, model, state: dict, processor, plan: RunPlan, base: str) -> None:
    """The model after a completed step, with its processor and model card (every step folder is a
    checkpoint that harness/models/public.py `load_lmm` reads), then the state that points to it (both
    written atomically)."""
    save_step(out, state["step"], model, processor, _card(model, state, plan, base))
    save_state(out, state)
    write_trace_csv(out / "trace.csv", state["trace"])


def _card(model, state: dict, plan: RunPlan, base: str) -> str:
    """The step folder's model card (harness/model_card.py): every step so far, its validation accuracy."""
    rows = [
        {"step": r["step"], "stage": r["stage"], "removed": r["amount"], "parameters": r["params_total"]}
        for r in state["trace"]
    ]
    acc = state["p_current"]
    return card(
        f"{plan.run.label}, seed {plan.seed}, after step {state['step']}",
        base,
        rows,
        parameter_counts(model),
        f"{acc:.3f} on the validation split after this step's distillation (seed {plan.seed}); "
        f"the teacher's: {state['p_teacher']['overall']:.3f}. Test accuracy is in the run's results.",
        [f"Run `{plan.run.label}` ({plan.run.mode}, stages {', '.join(plan.run.stages)})."],
    )


def _base(teacher) -> str:
    """What a run compresses, as its model card names it: the folder the teacher was loaded from."""
    return getattr(teacher, "name_or_path", "") or "the stand-in teacher"


def plan_run(
    teacher, compression: Compression, run: CompressionRun, seed: int, eval_batch_size: int
) -> RunPlan:
    """The plan of `run` on `teacher`; for one-shot, `follow` then sets its targets from the iterative run."""
    maxima = run_maxima(teacher, compression, run.stages, run.target_share)
    steps = sum(maxima[s] // getattr(compression, BY_NAME[s].step_field) for s in run.stages)
    epochs = run.epochs_under(compression)
    return RunPlan(
        run=run,
        compression=compression,
        seed=seed,
        eval_batch_size=eval_batch_size,
        maxima=maxima,
        use_alpha=run.target_share is None,
        epochs=epochs,
        total_epochs=epochs * steps,
    )


def follow(plan: RunPlan, trace: list[dict]) -> RunPlan:
    """One-shot's plan: prune to exactly what the iterative run (`trace`) removed at each stage, even where α
    or feasibility stopped a stage early, and distil for that run's whole epoch budget (compute-fair), or
    for E epochs once (`one_shot_budget: per_step`, Algorithm 1 as written for one pruning step)."""
    reached = {s: sum(r["amount"] for r in trace if r["stage"] == s) for s in plan.run.stages}
    fair = plan.run.one_shot_budget == "iterative_total"
    total = plan.epochs * len(trace) if fair else plan.epochs
    return plan.model_copy(update={"maxima": {**plan.maxima, **reached}, "total_epochs": total})


def run_maxima(
    teacher, c: Compression, stages: list[str], target_share: float | None = None
) -> dict[str, int]:
    """Each stage's maximum reduction in the paper's units, a whole number of steps. Without a target: the
    profile's N_* (validated to be whole steps). With a target share (single-level runs, Table 3): the fewest
    steps after which the language model's transformer blocks (what the paper's sizes count) have at most
    `target_share` of the teacher's, or every step the level allows (at least one structure stays).
    Parameters fall linearly with the steps of one level, so one probe step on a weightless (meta-device)
    copy of the teacher gives the count per step."""
    maxima = {s.name: getattr(c, s.max_field) for s in BY_NAME.values()}
    if target_share is None:
        return maxima
    (level,) = stages
    step = getattr(c, BY_NAME[level].step_field)
    with torch.device("meta"):
        probe = type(teacher)(copy.deepcopy(teacher.config))
    before = parameter_counts(probe)["lm_blocks"]
    # which structures go does not change the count: the random criterion gives a tensor of the right shape
    prune_step(probe, level, step, None if level == "block" else structure_importance(probe, level, "random"))
    per_step = before - parameter_counts(probe)["lm_blocks"]
    needed = -(-(before - math.floor(target_share * before)) // per_step)  # integer ceiling
    allowed = (level_width(teacher, level) - 1) // step
    return {**maxima, level: min(needed, allowed) * step}


def _student(out: Path, step: int | None, teacher, c: Compression):
    """The model of the last completed step, or (`step` None) a copy of the teacher, on the current device,
    its trained parts (projection and language model) in `c.weights_dtype`. Its frozen vision side (vision
    tower, query tokens, Q-Former) is the teacher's own modules, not a copy: compression never changes it,
    and evaluation reads the teacher's query outputs anyway, so a GPU holds it once. The copy is made where
    the teacher's parts lie (its language model on the CPU when offloaded), so a GPU never holds two float32
    language models at once."""
    vision = {name: getattr(teacher, name) for name in VISION_SIDE}
    dtype = getattr(torch, c.weights_dtype)
    if step is None:
        # the trained parameters copied one by one, already in their dtype: never a second float32 model
        memo = {id(m): m for m in vision.values()}
        memo.update(
            {
                id(p): torch.nn.Parameter(p.detach().to(dtype, copy=True), p.requires_grad)
                for p in trained_parameters(teacher)
            }
        )
        model = copy.deepcopy(teacher, memo=memo)
    else:
        model = step_model(out, step, device="cpu")  # cast and stripped of its vision side before the device
        for name, part in vision.items():
            setattr(model, name, part)
    for part in trained_parts(model):
        part.to(dtype)
    # under fsdp its language model waits in CPU memory, and only shards reach the device (parallel.place)
    return parallel.place(model, current().device).eval()


# what computes the query outputs, never pruned by a compression run (harness/evaluate.py `vision_side`)
VISION_SIDE = ("vision_model", "query_tokens", "qformer")


@contextlib.contextmanager
def _offloaded(module, offload: bool):
    """`module` in CPU memory for the duration (offload_teacher), then back where it was."""
    if not offload:
        yield
        return
    home = next(module.parameters()).device
    module.to("cpu")
    try:
        yield
    finally:
        module.to(home)


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


def _importance(model, level: str, criterion: str, d_p, seed: int, block_criterion: str, c: Compression):
    if level == "block":  # Algorithm 1 drops the last blocks; Block Influence (a baseline) scores them
        return block_influence(model, d_p) if block_criterion == "block_influence" else None
    return importance(model, level, criterion, d_p, seed, checkpointing=c.activation_checkpointing)


def run_compression(
    teacher, processor, val, d_p, d_d, plan: RunPlan, out: Path, progress: bool = True
) -> dict:
    """Compress `teacher` as `plan` says into the run folder `out`, and return the final state.
    `d_p`: importance batches; `d_d`: teacher batches."""
    c, run = plan.compression, plan.run
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = run_state(out)  # None: never run, or found corrupt and removed
    parallel.barrier()  # under accelerate launch: every process read it before the main one writes
    new = state is None
    if new:
        p_f = _perf(teacher, processor, val, plan.eval_batch_size, teacher)
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
            "block_ids": list(range(level_width(teacher, "block"))),
        }
    with _offloaded(teacher.language_model, c.offload_teacher):
        student = _student(out, None if new else state["step"], teacher, c)
        if new:
            _checkpoint(out, student, state, processor, plan, _base(teacher))
        if run.mode == "one_shot":
            return _one_shot(student, teacher, processor, val, d_p, d_d, plan, out, state, progress)
        return _iterative(student, teacher, processor, val, d_p, d_d, plan, out, state, progress)


def _iterative(student, teacher, processor, val, d_p, d_d, plan: RunPlan, out, state, progress) -> dict:
    """Algorithm 1's loop: prune a step, distil, evaluate; next stage when the stage's maximum or α is
    reached. Saves the model and state after every step."""
    c, run = plan.compression, plan.run
    while not state["done"]:
        level = run.stages[state["stage_index"]]
        amount, maximum = getattr(c, BY_NAME[level].step_field), plan.maxima[level]
        dropped = state["p_stage_start"] - state["p_current"]
        feasible = True
        try:
            structures_to_remove(student, level, amount)
        except PruningError:
            feasible = False
        over_alpha = plan.use_alpha and dropped >= c.alpha
        if state["removed"] + amount > maximum or over_alpha or not feasible:
            # next stage: it starts from the performance reached here
            state.update(stage_index=state["stage_index"] + 1, removed=0, p_stage_start=state["p_current"])
            if state["stage_index"] == len(run.stages):
                state["done"] = True
            save_state(out, state)
            continue
        k = state["step"] + 1
        t0 = time.perf_counter()
        info = {}
        if run.pruner == "torch_pruning" and level in ("ffn", "hidden"):
            torch_pruning_step(student, level, amount, example_inputs(processor, val))
        else:
            seed = plan.seed * 1000 + k
            imp = _importance(student, level, run.criterion, d_p, seed, run.block_criterion, c)
            info = prune_step(student, level, amount, imp)
        acc_pruned = _perf(student, processor, val, plan.eval_batch_size, teacher)
        losses = distill(
            student,
            d_d,
            plan.epochs,
            c.lr,
            run.variant,
            c.gamma,
            seed=plan.seed * 1000 + k,
            progress=progress,
            desc=f"step {k} ({level}), distill",
            accumulate=c.accumulation,
            checkpointing=c.activation_checkpointing,
            optimizer=c.optimizer,
        )
        acc = _perf(student, processor, val, plan.eval_batch_size, teacher)
        row = _record(student, k, level, amount, state["removed"] + amount, acc_pruned, acc, losses, t0)
        if level == "block":
            row["blocks_dropped"] = _drop(state, info["blocks"])
        state["trace"].append(row)
        state.update(
            step=k,
            removed=state["removed"] + amount,
            p_current=acc["overall"],
            epochs_used=state["epochs_used"] + plan.epochs,
        )
        _checkpoint(out, student, state, processor, plan, _base(teacher))
        if progress:
            size = state["trace"][-1]["params_total"] / 1e6
            print(
                f"  step {k:2d} {level:9s} -{amount:<4d} params {size:.2f}M  "
                f"acc pruned {acc_pruned['overall']:.3f} -> distilled {acc['overall']:.3f}",
                flush=True,
            )
    return state


def prune_one_shot(student, plan: RunPlan, d_p, state: dict) -> list[int]:
    """One-shot's pruning: every named stage straight to the iterative run's maximum, each by importance on
    D_p; returns the blocks dropped (their original indices, tracked in `state`)."""
    c, run = plan.compression, plan.run
    dropped = []
    for level in run.stages:
        amount = plan.maxima[level]
        if amount == 0:  # the iterative run this one-shot follows removed nothing at this stage
            continue
        seed = plan.seed * 1000 + 1
        imp = _importance(student, level, run.criterion, d_p, seed, run.block_criterion, c)
        info = prune_step(student, level, amount, imp)
        if level == "block":
            dropped = _drop(state, info["blocks"])
    return dropped


def _one_shot(student, teacher, processor, val, d_p, d_d, plan: RunPlan, out, state, progress) -> dict:
    """Prune every named stage straight to the iterative run's maximum, then distil for the whole epoch
    budget."""
    if state["done"]:
        return state
    c, run = plan.compression, plan.run
    t0 = time.perf_counter()
    dropped = prune_one_shot(student, plan, d_p, state)
    acc_pruned = _perf(student, processor, val, plan.eval_batch_size, teacher)
    epochs = plan.total_epochs
    losses = distill(
        student,
        d_d,
        epochs,
        c.lr,
        run.variant,
        c.gamma,
        seed=plan.seed * 1000 + 1,
        progress=progress,
        desc="one-shot, distill",
        accumulate=c.accumulation,
        checkpointing=c.activation_checkpointing,
        optimizer=c.optimizer,
    )
    acc = _perf(student, processor, val, plan.eval_batch_size, teacher)
    total = sum(plan.maxima[s] for s in run.stages)
    row = _record(student, 1, "+".join(run.stages), total, total, acc_pruned, acc, losses, t0)
    if "block" in run.stages:
        row["blocks_dropped"] = dropped
    state["trace"].append(row)
    state.update(step=1, p_current=acc["overall"], epochs_used=epochs, done=True)
    _checkpoint(out, student, state, processor, plan, _base(teacher))
    return state


def structure(model) -> dict:
    """The language model's shape as a result records it (harness/families/base.py `Family.structure`)."""
    return families.of(model).structure(model.config.text_config)
