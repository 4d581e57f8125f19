"""Algorithm 1's four levels on a T5 language model (BLIP-2-Flan-T5), each written back as T5Config fields.

- block: the last n blocks of the encoder and of the decoder (num_layers, num_decoder_layers);
- FFN: channels of every block's feed-forward (wi_0 and wi_1 rows, wo columns; d_ff), chosen per block;
- attention: whole heads (q, k, v rows and o columns of d_kv each; num_heads). Every block of a stack adds
  the position bias that its first block's self-attention computes, head by head, so a stack's
  self-attentions keep one set of heads (scored over the stack) and the bias table keeps those columns;
  each decoder block's cross-attention, which has no position bias, chooses its own;
- hidden: d_model everywhere (embeddings, projections, the RMS layer norms rescaled by sqrt(d / d') as for
  Llama, BLIP-2's projection), and, where the decoder scales its output by d_model^-1/2 before the tied
  head, that factor's change folded into the decoder's final norm.
Why its own level operations (`own_levels`): every path differs from the decoder-only families' slice
tables (harness/families/base.py), and the encoder-decoder split has no counterpart there.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

from harness.config.vocabulary import STAGE_NAMES
from harness.errors import PruningError
from harness.families.base import per_structure, slice_parameter


def _lm(model):
    return model.language_model


def lm_blocks(model) -> list[nn.Module]:
    """The encoder's blocks, then the decoder's (the family's `all_blocks`)."""
    return FAMILY.all_blocks(_lm(model))


def stack_blocks(model) -> list[nn.ModuleList]:
    return [_lm(model).encoder.block, _lm(model).decoder.block]


def feed_forwards(model) -> list[nn.Module]:
    """Every block's feed-forward (DenseReluDense), encoder blocks first."""
    return [block.layer[-1].DenseReluDense for block in lm_blocks(model)]


def _ffn_parts(ff: nn.Module) -> list[tuple[nn.Linear, int]]:
    """(linear, axis of a channel): gated (wi_0, wi_1) or plain (wi) input rows, wo columns."""
    ins = [ff.wi_0, ff.wi_1] if hasattr(ff, "wi_0") else [ff.wi]
    return [(lin, 0) for lin in ins] + [(ff.wo, 1)]


def attention_rows(model) -> list[list[nn.Module]]:
    """The attention modules that keep one set of heads together: the encoder's self-attentions, the
    decoder's self-attentions, then each decoder block's cross-attention alone."""
    enc, dec = stack_blocks(model)
    return [[b.layer[0].SelfAttention for b in enc], [b.layer[0].SelfAttention for b in dec]] + [
        [b.layer[1].EncDecAttention] for b in dec
    ]


def hidden_parts(model) -> list[tuple[nn.Module, str, int]]:
    """(owner, parameter name, axis of a hidden dimension) for every parameter that has one, norms aside."""
    lm = _lm(model)
    parts: list[tuple[nn.Module, str, int]] = [(lm.shared, "weight", 1)]
    for block in lm_blocks(model):
        for layer in block.layer:
            attn = getattr(layer, "SelfAttention", None) or getattr(layer, "EncDecAttention", None)
            if attn is not None:
                parts += [(attn.q, "weight", 1), (attn.k, "weight", 1), (attn.v, "weight", 1)]
                parts.append((attn.o, "weight", 0))
            else:
                ff = layer.DenseReluDense
                parts += [(lin, "weight", 1 - axis) for lin, axis in _ffn_parts(ff)]
    if lm.lm_head.weight is not lm.shared.weight:
        parts.append((lm.lm_head, "weight", 1))
    parts += [(model.language_projection, "weight", 0), (model.language_projection, "bias", 0)]
    return parts


def norms(model) -> list[nn.Module]:
    lm = _lm(model)
    out = [layer.layer_norm for b in lm_blocks(model) for layer in b.layer]
    return out + [lm.encoder.final_layer_norm, lm.decoder.final_layer_norm]


# --- widths -------------------------------------------------------------------------------------------


def units(model, level: str) -> tuple[int, int]:
    """(structures the level has, width of one in the paper's units), as harness/prune/step.py counts."""
    cfg = model.config.text_config
    if level == "block":
        return min(cfg.num_layers, cfg.num_decoder_layers), 1
    if level == "ffn":
        return cfg.d_ff, 1
    if level == "attention":
        return cfg.num_heads, cfg.d_kv
    return cfg.d_model, 1


# --- importance --------------------------------------------------------------------------------------


def importance_shape(model, level: str) -> tuple[int, ...]:
    """Rows as the surgery takes them: FFN [blocks, channels]; attention [rows of attention_rows, heads];
    hidden [d_model]."""
    cfg = model.config.text_config
    return {
        "ffn": (len(feed_forwards(model)), cfg.d_ff),
        "attention": (len(attention_rows(model)), cfg.num_heads),
        "hidden": (cfg.d_model,),
    }[level]


def importance(model, level: str, scores) -> torch.Tensor:
    """Eq. 2–4 per structure, in importance_shape's rows, from `scores` (harness/prune/importance.py
    `elementwise`)."""
    cfg = model.config.text_config
    if level == "ffn":
        return torch.stack(
            [
                sum(per_structure(scores(lin.weight), ax) for lin, ax in _ffn_parts(ff))
                for ff in feed_forwards(model)
            ]
        )
    if level == "attention":
        rows = []
        for row in attention_rows(model):
            total = torch.zeros(cfg.num_heads)
            for attn in row:
                for lin, axis in ((attn.q, 0), (attn.k, 0), (attn.v, 0), (attn.o, 1)):
                    total += per_structure(scores(lin.weight), axis).reshape(cfg.num_heads, cfg.d_kv).sum(-1)
                if attn.has_relative_attention_bias:
                    total += per_structure(scores(attn.relative_attention_bias.weight), 1)
            rows.append(total)
        return torch.stack(rows)
    total = torch.zeros(cfg.d_model)
    for owner, name, axis in hidden_parts(model):
        total += per_structure(scores(getattr(owner, name)), axis)
    for norm in norms(model):
        total += per_structure(scores(norm.weight), 0)
    return total


# --- surgery ------------------------------------------------------------------------------------------


def _set(model, **fields) -> None:
    """Write `fields` into the model's T5 config and into the language model's own copy, if separate."""
    for cfg in {id(c): c for c in (model.config.text_config, _lm(model).config)}.values():
        for name, value in fields.items():
            setattr(cfg, name, value)


def prune_blocks(model, n: int) -> None:
    """Drop the last `n` blocks of the encoder and of the decoder (the first holds the position bias)."""
    cfg = model.config.text_config
    for blocks_ in stack_blocks(model):
        for _ in range(n):
            del blocks_[len(blocks_) - 1]
        for i, block in enumerate(blocks_):
            for layer in block.layer:
                attn = getattr(layer, "SelfAttention", None) or getattr(layer, "EncDecAttention", None)
                if attn is not None and hasattr(attn, "layer_idx"):
                    attn.layer_idx = i
    _set(model, num_layers=cfg.num_layers - n, num_decoder_layers=cfg.num_decoder_layers - n)


def prune_ffn(model, keep: torch.Tensor) -> None:
    """Keep channels `keep[b]` in block b (encoder blocks first); d_ff is the kept count."""
    ffs = feed_forwards(model)
    if keep.shape[0] != len(ffs):
        raise PruningError(f"FFN channels of a T5: expected keep indices for {len(ffs)} blocks")
    for ff, k in zip(ffs, keep, strict=True):
        for lin, axis in _ffn_parts(ff):
            slice_parameter(lin, "weight", k, axis)
    _set(model, d_ff=keep.shape[1])


def prune_attention(model, keep: torch.Tensor) -> None:
    """Keep heads `keep[r]` in every module of attention row r (attention_rows)."""
    cfg = model.config.text_config
    rows = attention_rows(model)
    if keep.shape[0] != len(rows):
        raise PruningError(f"attention heads of a T5: expected keep indices for {len(rows)} rows")
    for row, heads in zip(rows, keep, strict=True):
        inner = (heads[:, None] * cfg.d_kv + torch.arange(cfg.d_kv)).flatten()
        for attn in row:
            for lin, axis in ((attn.q, 0), (attn.k, 0), (attn.v, 0), (attn.o, 1)):
                slice_parameter(lin, "weight", inner, axis)
            if attn.has_relative_attention_bias:
                slice_parameter(attn.relative_attention_bias, "weight", heads, 1)
                attn.relative_attention_bias.embedding_dim = heads.numel()
            attn.n_heads, attn.inner_dim = heads.numel(), heads.numel() * cfg.d_kv
    _set(model, num_heads=keep.shape[1])


def prune_hidden(model, keep: torch.Tensor) -> None:
    """Keep d_model dimensions `keep` everywhere in the language model."""
    cfg, lm = model.config.text_config, _lm(model)
    tied = [
        m
        for m in (lm.encoder.embed_tokens, lm.decoder.embed_tokens, lm.lm_head)
        if m.weight is lm.shared.weight
    ]
    scale = math.sqrt(cfg.d_model / keep.numel())
    for owner, name, axis in hidden_parts(model):
        slice_parameter(owner, name, keep, axis)
    for norm in norms(model):
        slice_parameter(norm, "weight", keep, 0, scale)
    if getattr(cfg, "scale_decoder_outputs", False):  # output × d_model^-1/2 before the head: d_model changes
        slice_parameter(lm.decoder.final_layer_norm, "weight", torch.arange(keep.numel()), 0, 1 / scale)
    for m in tied:
        m.weight = lm.shared.weight
    for attn in (a for row in attention_rows(model) for a in row):
        attn.d_model = keep.numel()
    lm.model_dim = keep.numel()  # the decoder output's d_model^-1/2, read from here
    _set(model, d_model=keep.numel())


def prune(model, level: str, keep: torch.Tensor) -> None:
    """Keep FFN channels, heads or hidden dimensions `keep` (importance_shape's rows)."""
    {"ffn": prune_ffn, "attention": prune_attention, "hidden": prune_hidden}[level](model, keep)


# --- the family ---------------------------------------------------------------------------------------


_OWN = "a T5 language model is pruned by its own level operations (harness/families/t5.py), not slice tables"


class T5:
    """BLIP-2-Flan-T5's language model as a family (harness/families/base.py `Family`): every level, through
    the operations above rather than slice tables."""

    name = "t5"
    stages = tuple(STAGE_NAMES)
    refusals: dict[str, str] = {}
    torch_pruning = False
    own_levels = sys.modules[__name__]

    def layers(self, lm: nn.Module) -> nn.ModuleList:
        raise PruningError("a T5 language model has an encoder and a decoder stack (harness/families/t5.py)")

    def all_blocks(self, lm: nn.Module) -> list[nn.Module]:
        return [*lm.encoder.block, *lm.decoder.block]

    def ffn_width(self, text) -> int:
        return text.d_ff

    def set_ffn_width(self, text, width: int) -> None:
        raise PruningError(_OWN)

    def ffn_slices(self, block: nn.Module):
        raise PruningError(_OWN)

    def attention_slices(self, block: nn.Module):
        raise PruningError(_OWN)

    def hidden_slices(self, model):
        raise PruningError(_OWN)

    def structure(self, text) -> dict[str, int]:
        """Blocks per stack; d_ff; heads; d_model."""
        return {
            "num_hidden_layers": text.num_layers,
            "num_decoder_layers": text.num_decoder_layers,
            "intermediate_size": text.d_ff,
            "num_attention_heads": text.num_heads,
            "hidden_size": text.d_model,
        }

    def complete(self, text) -> None:
        """A T5 config states every width it has."""

    def saved_config(self, text):
        return text

    def step_problem(self, text, level: str, heads: int, hidden: int) -> str | None:
        return None


FAMILY = T5()
