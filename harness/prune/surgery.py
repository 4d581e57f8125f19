"""Structural surgery: physically slice weights and rewrite the config, so the result is again a standard
`Blip2ForConditionalGeneration` that plain `from_pretrained` loads.

Pruning is uniform across blocks (the paper keeps "the dimension pruned in each block consistent"), so one
config value describes every block. Every request is checked completely before the first weight changes.
Hidden dimensions are chosen globally; removing them rescales the RMSNorm weights by sqrt(d / d'), because
the norm divides by the width: removing dimensions that are zero everywhere then leaves the logits unchanged.
"""

from __future__ import annotations

import math

import torch

from harness.families.base import slice_parameter
from harness.models.blip2 import blocks
from harness.prune.structures import (
    PruningError,
    attention_group,
    attention_slices,
    ffn_slices,
    ffn_width,
    hidden_slices,
    refuse,
    set_ffn_width,
    sub_config,
)


def _check_keep(keep: torch.Tensor, rows: int | None, width: int, what: str) -> torch.Tensor:
    keep = torch.as_tensor(keep, dtype=torch.long)
    shape = (rows, None) if rows is not None else (None,)
    if keep.dim() != len(shape) or (rows is not None and keep.shape[0] != rows):
        raise PruningError(
            f"{what}: expected keep indices of shape {tuple('k' if s is None else s for s in shape)}, "
            f"got {tuple(keep.shape)}"
        )
    if keep.shape[-1] == 0:
        raise PruningError(f"{what}: cannot remove all {width}; at least one must remain")
    if keep.numel() and (keep.min() < 0 or keep.max() >= width):
        raise PruningError(f"{what}: keep indices must lie in [0, {width}), got [{keep.min()}, {keep.max()}]")
    rows_ = keep if keep.dim() == 2 else keep[None]
    if any(len(set(r.tolist())) != len(r) for r in rows_):
        raise PruningError(f"{what}: keep indices must be distinct")
    return keep.sort(dim=-1).values


def prune_blocks(model, n: int, module: str = "language_model", remove: list[int] | None = None) -> None:
    """Remove the last `n` blocks of `module` (Algorithm 1, stage 1), or the blocks listed in `remove`
    (Block Influence baseline); later blocks are renumbered so the KV cache indexes them right."""
    refuse(model, module, "block")
    layers = blocks(model, module)
    if not 1 <= n < len(layers):
        raise PruningError(
            f"cannot remove {n} block(s) of {module}: it has {len(layers)}, at least one must remain"
        )
    remove = sorted(range(len(layers) - n, len(layers)) if remove is None else remove)
    if len(set(remove)) != n or not all(0 <= i < len(layers) for i in remove):
        raise PruningError(f"blocks to remove must be {n} distinct indices below {len(layers)}, got {remove}")
    cfg = sub_config(model, module)
    kept = [i for i in range(len(layers)) if i not in remove]
    for i in reversed(remove):
        del layers[i]
    for i, layer in enumerate(layers):
        attn = getattr(layer, "self_attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = i
    cfg.num_hidden_layers = len(kept)
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = [cfg.layer_types[i] for i in kept]


def prune_ffn(model, keep: torch.Tensor, module: str = "language_model") -> None:
    """Keep FFN channels `keep[b]` in block b; the same count in every block (Algorithm 1, stage 2.1)."""
    refuse(model, module, "ffn")
    layers = blocks(model, module)
    width = ffn_width(model, module)
    keep = _check_keep(keep, len(layers), width, f"FFN channels of {module}")
    slices = ffn_slices(model, module)
    for layer, k in zip(layers, keep, strict=True):
        for s in slices:
            slice_parameter(layer, s.linear_or_param, k, s.axis)
    set_ffn_width(model, module, keep.shape[1])


def prune_attention(model, keep_groups: torch.Tensor, module: str = "language_model") -> None:
    """Keep key-value groups `keep_groups[b]` in block b: whole heads, GQA-aware (Algorithm 1, stage 2.2).

    GQA rule: a key-value head and the query heads that share it are removed together, so the ratio
    num_attention_heads / num_key_value_heads (and every head's width) is unchanged."""
    refuse(model, module, "attention")  # the language model only
    layers = blocks(model, "language_model")
    groups, per_group, head_dim = attention_group(model)
    keep_groups = _check_keep(keep_groups, len(layers), groups, "attention key-value groups")
    for layer, g in zip(layers, keep_groups, strict=True):
        q = (g[:, None] * per_group * head_dim + torch.arange(per_group * head_dim)).flatten()
        kv = (g[:, None] * head_dim + torch.arange(head_dim)).flatten()
        for s, unit in attention_slices(model):
            slice_parameter(layer, s.linear_or_param, q if unit == "q" else kv, s.axis)
    cfg = model.config.text_config
    cfg.num_key_value_heads = keep_groups.shape[1]
    cfg.num_attention_heads = keep_groups.shape[1] * per_group


def prune_hidden(model, keep: torch.Tensor, module: str = "language_model") -> None:
    """Keep hidden dimensions `keep` everywhere in the language model (Algorithm 1, stage 3)."""
    refuse(model, module, "hidden")  # the language model only
    cfg = model.config.text_config
    keep = _check_keep(keep, None, cfg.hidden_size, "hidden dimensions")
    per_block, outside, norms = hidden_slices(model)
    scale = math.sqrt(cfg.hidden_size / keep.numel())
    for layer in blocks(model, "language_model"):
        for s in per_block:
            is_norm = s.linear_or_param.split(".")[0] in norms
            slice_parameter(layer, s.linear_or_param, keep, s.axis, scale if is_norm else 1.0)
    for s in outside:
        is_norm = s.linear_or_param.rpartition(".")[0] in norms
        slice_parameter(model, s.linear_or_param, keep, s.axis, scale if is_norm else 1.0)
    cfg.hidden_size = keep.numel()
    if cfg.tie_word_embeddings:
        model.language_model.lm_head.weight = model.language_model.model.embed_tokens.weight
