"""Where each prunable structure lives in a BLIP-2 model: the slices of every parameter it owns.

One table serves both importance (Eq. 2–4 sum |∂L/∂θ·θ| over exactly these slices) and surgery (which
removes exactly these slices), so the two can never disagree about what "an FFN channel" or "a head" is.

A slice is (parameter, axis): the structure's index selects along `axis` of that parameter.
Supported modules and levels:
- language model, Llama / Qwen2: blocks, FFN channels (gate row + up row + down column), attention
  key-value groups (whole heads, GQA-aware), hidden dimensions;
- language model, OPT: blocks and FFN channels (heads and hidden dims are refused, see `refuse`);
- vision tower and Q-Former: blocks and FFN channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.config.vocabulary import STAGE_NAMES
from harness.errors import PruningError
from harness.models.blip2 import blocks, lm_family

LEVELS = STAGE_NAMES
MODULES = ("language_model", "vision_model", "qformer")


@dataclass(frozen=True)
class Slice:
    linear_or_param: str  # attribute path relative to the block (or to the model for hidden dims)
    axis: int


def sub_config(model, module: str):
    """The config that describes `module`'s shapes (and the live copy inside the sub-model, if separate)."""
    return {
        "language_model": model.config.text_config,
        "vision_model": model.config.vision_config,
        "qformer": model.config.qformer_config,
    }[module]


def per_structure(score: torch.Tensor, axis: int) -> torch.Tensor:
    """A parameter's elementwise score summed over every axis but `axis` (a 1-D parameter is returned as
    is), on the CPU, where structures' scores are compared."""
    dims = [d for d in range(score.dim()) if d != axis]
    return (score.sum(dim=dims) if dims else score).cpu()


def ffn_slices(model, module: str) -> list[Slice]:
    """Slices of one FFN channel inside a block (index = channel)."""
    if module == "language_model":
        if lm_family(model) == "opt":
            return [Slice("fc1.weight", 0), Slice("fc1.bias", 0), Slice("fc2.weight", 1)]
        out = [
            Slice("mlp.gate_proj.weight", 0),
            Slice("mlp.up_proj.weight", 0),
            Slice("mlp.down_proj.weight", 1),
        ]
        mlp = blocks(model, module)[0].mlp  # Llama's mlp_bias
        return out + [Slice(f"mlp.{n}.bias", 0) for n in ("gate_proj", "up_proj") if _has_bias(mlp, n)]
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
    cfg = sub_config(model, module)
    return cfg.ffn_dim if module == "language_model" and lm_family(model) == "opt" else cfg.intermediate_size


def attention_group(model) -> tuple[int, int, int]:
    """(number of key-value groups, query heads per group, head_dim) of the language model."""
    cfg = model.config.text_config
    return cfg.num_key_value_heads, cfg.num_attention_heads // cfg.num_key_value_heads, cfg.head_dim


def attention_slices(model) -> list[tuple[Slice, str]]:
    """Slices of one key-value group inside a block, each with the unit its index counts in:
    'q' = rows/columns of the group's query heads, 'kv' = rows of its key/value head."""
    out = [
        (Slice("self_attn.q_proj.weight", 0), "q"),
        (Slice("self_attn.k_proj.weight", 0), "kv"),
        (Slice("self_attn.v_proj.weight", 0), "kv"),
        (Slice("self_attn.o_proj.weight", 1), "q"),
    ]
    attn = blocks(model, "language_model")[0].self_attn
    for name in ("q_proj", "k_proj", "v_proj"):
        if getattr(attn, name).bias is not None:
            out.append((Slice(f"self_attn.{name}.bias", 0), "q" if name == "q_proj" else "kv"))
    return out


def hidden_slices(model) -> tuple[list[Slice], list[Slice], list[str]]:
    """Slices of one hidden dimension: (per block, outside the blocks, RMSNorm weights to rescale)."""
    per_block = [
        Slice("input_layernorm.weight", 0),
        Slice("self_attn.q_proj.weight", 1),
        Slice("self_attn.k_proj.weight", 1),
        Slice("self_attn.v_proj.weight", 1),
        Slice("self_attn.o_proj.weight", 0),
        Slice("post_attention_layernorm.weight", 0),
        Slice("mlp.gate_proj.weight", 1),
        Slice("mlp.up_proj.weight", 1),
        Slice("mlp.down_proj.weight", 0),
    ]
    outside = [
        Slice("language_model.model.embed_tokens.weight", 1),
        Slice("language_model.model.norm.weight", 0),
        Slice("language_projection.weight", 0),
        Slice("language_projection.bias", 0),
    ]
    if not model.config.text_config.tie_word_embeddings:
        outside.append(Slice("language_model.lm_head.weight", 1))
    layer = blocks(model, "language_model")[0]  # Llama's attention_bias and mlp_bias reach the hidden side
    per_block += [Slice(f"{p}.bias", 0) for p in ("self_attn.o_proj", "mlp.down_proj") if _has_bias(layer, p)]
    norms = ["input_layernorm", "post_attention_layernorm"]
    return per_block, outside, norms


def _has_bias(owner: nn.Module, path: str) -> bool:
    return owner.get_submodule(path).bias is not None


def refuse(model, module: str, level: str) -> None:
    """Raise a clear error for combinations the harness cannot prune into a standard checkpoint."""
    if level not in LEVELS:
        raise PruningError(f"unknown pruning level '{level}'; allowed: {', '.join(LEVELS)}")
    if module not in MODULES:
        raise PruningError(f"unknown module '{module}'; allowed: {', '.join(MODULES)}")
    if module != "language_model" and level in ("attention", "hidden"):
        raise PruningError(f"{level} pruning is supported for the language model only, not '{module}'")
    if module == "language_model" and lm_family(model) == "opt":
        if level == "attention":
            raise PruningError(
                "attention pruning of an OPT language model is refused: OPT derives head_dim "
                "from hidden_size / num_attention_heads, so fewer heads cannot be expressed in "
                "its config without changing every head's width"
            )
        if level == "hidden":
            raise PruningError(
                "hidden-dimension pruning of an OPT language model is refused: its LayerNorm "
                "subtracts the mean over the width, so removing dimensions changes every "
                "output and cannot be compensated by rescaling"
            )


def default_stages(model) -> list[str]:
    """Every stage the language model can express: OPT derives head_dim, so only blocks and FFN; T5 and
    the Llama family, all four."""
    return ["block", "ffn"] if lm_family(model) == "opt" else list(STAGE_NAMES)
