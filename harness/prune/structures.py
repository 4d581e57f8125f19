"""Where each prunable structure lives in a BLIP-2 model: the slices of every parameter it owns.

One table serves both importance (Eq. 2–4 sum |∂L/∂θ·θ| over exactly these slices) and surgery (which
removes exactly these slices), so the two can never disagree about what "an FFN channel" or "a head" is.
The language model's tables are its family's (harness/families/); the vision tower and the Q-Former are
BLIP-2's own, with blocks and FFN channels.
"""

from __future__ import annotations

from harness import families
from harness.config.vocabulary import STAGE_NAMES
from harness.errors import PruningError
from harness.families.base import LevelOps, Slice
from harness.models.blip2 import blocks

LEVELS = STAGE_NAMES
MODULES = ("language_model", "vision_model", "qformer")


def own_levels(model, module: str) -> LevelOps | None:
    """The level operations of a language model whose family brings its own (harness/families/t5.py); None
    where the slice tables below describe every level."""
    return families.of(model).own_levels if module == "language_model" else None


def sub_config(model, module: str):
    """The config that describes `module`'s shapes (and the live copy inside the sub-model, if separate)."""
    return {
        "language_model": model.config.text_config,
        "vision_model": model.config.vision_config,
        "qformer": model.config.qformer_config,
    }[module]


def ffn_slices(model, module: str) -> list[Slice]:
    """Slices of one FFN channel inside a block (index = channel)."""
    if module == "language_model":
        return families.of(model).ffn_slices(blocks(model, module)[0])
    if module == "vision_model":
        return [Slice("mlp.fc1.weight", 0), Slice("mlp.fc1.bias", 0), Slice("mlp.fc2.weight", 1)]
    # Q-Former: the query branch is what BLIP-2 uses; a text branch, where the checkpoint has one, shares the
    # config's width, so it is sliced with the same channels to keep the checkpoint standard.
    out = [
        Slice("intermediate_query.dense.weight", 0),
        Slice("intermediate_query.dense.bias", 0),
        Slice("output_query.dense.weight", 1),
    ]
    if hasattr(blocks(model, "qformer")[0], "intermediate"):
        out += [
            Slice("intermediate.dense.weight", 0),
            Slice("intermediate.dense.bias", 0),
            Slice("output.dense.weight", 1),
        ]
    return out


def ffn_width(model, module: str) -> int:
    if module == "language_model":
        return families.of(model).ffn_width(model.config.text_config)
    return sub_config(model, module).intermediate_size


def set_ffn_width(model, module: str, width: int) -> None:
    if module == "language_model":
        families.of(model).set_ffn_width(model.config.text_config, width)
    else:
        sub_config(model, module).intermediate_size = width


def attention_group(model) -> tuple[int, int, int]:
    """(number of key-value groups, query heads per group, head_dim) of the language model."""
    cfg = model.config.text_config
    return cfg.num_key_value_heads, cfg.num_attention_heads // cfg.num_key_value_heads, cfg.head_dim


def attention_slices(model) -> list[tuple[Slice, str]]:
    """Slices of one key-value group inside a language-model block (harness/families/base.py)."""
    return families.of(model).attention_slices(blocks(model, "language_model")[0])


def hidden_slices(model) -> tuple[list[Slice], list[Slice], list[str]]:
    """Slices of one hidden dimension: (per block, outside the blocks, RMSNorm weights to rescale)."""
    return families.of(model).hidden_slices(model)


def refuse(model, module: str, level: str) -> None:
    """Raise a clear error for combinations the harness cannot prune into a standard checkpoint."""
    if level not in LEVELS:
        raise PruningError(f"unknown pruning level '{level}'; allowed: {', '.join(LEVELS)}")
    if module not in MODULES:
        raise PruningError(f"unknown module '{module}'; allowed: {', '.join(MODULES)}")
    if module != "language_model" and level in ("attention", "hidden"):
        raise PruningError(f"{level} pruning is supported for the language model only, not '{module}'")
    if module == "language_model":
        family = families.of(model)
        if level in family.refusals:
            raise PruningError(family.refusals[level])


def default_stages(model) -> list[str]:
    """Every stage the language model's family can express (OPT derives head_dim: blocks and FFN only)."""
    return list(families.of(model).stages)
