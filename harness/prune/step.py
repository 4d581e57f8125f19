"""One pruning step of Algorithm 1, in the paper's units: n_b blocks, n_h FFN channels, n_h attention inner
width (heads × head_dim), n_d hidden dimensions. Checked in full before the model is touched."""

from __future__ import annotations

import torch

from harness import families
from harness.config.vocabulary import BY_NAME
from harness.families.base import LevelOps
from harness.models.blip2 import blocks
from harness.prune import surgery
from harness.prune.importance import keep_indices
from harness.prune.structures import PruningError, attention_group, ffn_width, own_levels, refuse
from harness.prune.surgery import prune_blocks


def _units(model, level: str, module: str) -> tuple[int, int]:
    """(structures the level has, width of one structure in the paper's units)."""
    ops = own_levels(model, module)
    if ops is not None:
        return ops.units(model, level)
    if level == "block":
        have, unit = len(blocks(model, module)), 1
    elif level == "ffn":
        have, unit = ffn_width(model, module), 1
    elif level == "attention":
        groups, per_group, head_dim = attention_group(model)
        have, unit = groups, per_group * head_dim
    else:
        have, unit = model.config.text_config.hidden_size, 1
    return have, unit


def level_width(model, level: str, module: str = "language_model") -> int:
    """The level's whole width in the paper's units: blocks, FFN channels, attention inner width, hidden."""
    refuse(model, module, level)
    have, unit = _units(model, level, module)
    return have * unit


def structures_to_remove(model, level: str, amount: int, module: str = "language_model") -> int:
    """How many structures `amount` means at `level`, or a PruningError saying why it is impossible."""
    refuse(model, module, level)
    if amount < 1:
        raise PruningError(f"{level}: the amount to remove must be at least 1, got {amount}")
    have, unit = _units(model, level, module)
    if level == "attention" and own_levels(model, module) is not None:
        if amount % unit:
            raise PruningError(f"attention: {amount} is not a whole number of heads of width {unit}")
    elif level == "attention":
        _, per_group, head_dim = attention_group(model)
        if amount % unit:
            raise PruningError(
                f"attention: {amount} does not divide into whole key-value groups of inner width "
                f"{unit} (= {per_group} head(s) × head_dim {head_dim})"
            )
    count = amount // unit
    if count >= have:
        raise PruningError(
            f"{level}: cannot remove {amount} from {module}, which has {have * unit}; "
            "at least one structure must remain"
        )
    _refuse_unloadable(model, level, count, module)
    return count


def _refuse_unloadable(model, level: str, count: int, module: str) -> None:
    """Refuse a step whose result the family could not save for stock transformers (a biased Llama whose
    heads would stop dividing the hidden size: harness/families/llama.py)."""
    if level not in ("attention", "hidden") or own_levels(model, module) is not None:
        return  # (attention and hidden: the language model only, refused before this for other modules)
    text = model.config.text_config
    heads, hidden = text.num_attention_heads, text.hidden_size
    if level == "attention":
        heads -= count * attention_group(model)[1]
    else:
        hidden -= count
    problem = families.of(model).step_problem(text, level, heads, hidden)
    if problem is not None:
        raise PruningError(f"{level}: removing {count} {problem}")


def schedule_problems(model, c, stages: list[str], module: str = "language_model") -> list[str]:
    """What makes the compression section `c` impossible for `stages` on `model` (only its config is read,
    so a meta-device model serves): a step or maximum that is no whole number of structures, leaves none,
    or names a level this language model cannot express."""
    problems = []
    for level in stages:
        stage = BY_NAME[level]
        step, maximum = getattr(c, stage.step_field), getattr(c, stage.max_field)
        reached = maximum // step * step  # where the iterative run stops (0: the stage prunes nothing)
        for field, amount in ((stage.step_field, step), (stage.max_field, reached)):
            if amount == 0:
                continue
            try:
                structures_to_remove(model, level, amount, module)
            except PruningError as e:
                problems.append(f"{field}: {getattr(c, field)} is impossible here ({e})")
                break  # a step that cannot be taken says all there is to say about the maximum
    return problems


def prune_step(
    model, level: str, amount: int, importance: torch.Tensor | None = None, module: str = "language_model"
) -> dict:
    """Remove `amount` at `level`: the last blocks, or the least important channels/groups/dimensions.
    Returns what was removed (blocks, by their index before this step) or kept, for the trace."""
    count = structures_to_remove(model, level, amount, module)
    ops = own_levels(model, module)
    if ops is not None:
        return _prune_own(ops, model, level, count, importance)
    if level == "block":
        # default: the last blocks (Algorithm 1); with scores (Block Influence), the lowest-scoring ones
        n = len(blocks(model, module))
        remove = list(range(n - count, n)) if importance is None else importance.argsort()[:count].tolist()
        prune_blocks(model, count, module, None if importance is None else remove)
        return {"level": level, "removed": count, "blocks": sorted(remove)}
    if importance is None:
        raise PruningError(f"{level}: an importance tensor is needed to choose what to remove")
    keep = keep_indices(importance, count)
    getattr(surgery, BY_NAME[level].surgery)(model, keep, module)  # (attention and hidden: language model)
    return {"level": level, "removed": count, "kept": keep.tolist()}


def _prune_own(ops: LevelOps, model, level: str, count: int, importance: torch.Tensor | None) -> dict:
    """prune_step through a family's own level operations (harness/families/t5.py): the last blocks of every
    stack, or the least important channels, heads or dimensions."""
    if level == "block":
        if importance is not None:
            raise PruningError(
                "block: this language model drops the last blocks of each stack; "
                "scored blocks are not supported"
            )
        n = ops.units(model, "block")[0]
        ops.prune_blocks(model, count)
        return {"level": level, "removed": count, "blocks": list(range(n - count, n))}
    if importance is None:
        raise PruningError(f"{level}: an importance tensor is needed to choose what to remove")
    keep = keep_indices(importance, count)
    ops.prune(model, level, keep)
    return {"level": level, "removed": count, "kept": keep.tolist()}
