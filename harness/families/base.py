"""What every family provides (`Family`), the decoder-only layout most families share (`DecoderOnly`), and
the slicing primitives both importance and surgery use.

Why one table per family: importance (Eq. 2–4 sum |∂L/∂θ·θ| over a structure's slices) and surgery (which
removes exactly those slices) read the same `Slice` lists, so they can never disagree about what "an FFN
channel" or "a head" is in a given family. A family whose levels differ in kind, not in names (T5: two
stacks; harness/families/t5.py), brings its own level operations instead (`own_levels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from harness.config.vocabulary import STAGE_NAMES


@dataclass(frozen=True)
class Slice:
    linear_or_param: str  # attribute path relative to the block (or to the model for hidden dims)
    axis: int


def per_structure(score: torch.Tensor, axis: int) -> torch.Tensor:
    """A parameter's elementwise score summed over every axis but `axis` (a 1-D parameter is returned as
    is), on the CPU, where structures' scores are compared."""
    dims = [d for d in range(score.dim()) if d != axis]
    return (score.sum(dim=dims) if dims else score).cpu()


def slice_parameter(root: nn.Module, path: str, keep: torch.Tensor, axis: int, scale: float = 1.0) -> None:
    """Replace parameter `path` of `root` by its slice along `axis` (kept rows/columns, in order)."""
    owner_path, _, name = path.rpartition(".")
    owner = root.get_submodule(owner_path) if owner_path else root
    old = getattr(owner, name)
    new = nn.Parameter(
        old.data.index_select(axis, keep.to(old.device)).clone() * scale, requires_grad=old.requires_grad
    )
    setattr(owner, name, new)
    if isinstance(owner, nn.Linear):
        owner.out_features, owner.in_features = owner.weight.shape
    elif isinstance(owner, nn.Embedding):
        owner.embedding_dim = owner.weight.shape[1]


def has_bias(owner: nn.Module, path: str) -> bool:
    return owner.get_submodule(path).bias is not None


class LevelOps(Protocol):
    """A family's own level operations, where the slice tables cannot describe it (harness/families/t5.py);
    harness/prune/step.py and harness/prune/importance.py call them for the language model."""

    def units(self, model, level: str) -> tuple[int, int]: ...
    def importance_shape(self, model, level: str) -> tuple[int, ...]: ...
    def importance(self, model, level: str, scores) -> torch.Tensor: ...
    def prune_blocks(self, model, n: int) -> None: ...
    def prune(self, model, level: str, keep: torch.Tensor) -> None: ...


class Family(Protocol):
    """One kind of language model (the model types it covers are its harness/registry.py entry's): the levels
    it can express (and why not the others), where its blocks and slices are, the structure a result records,
    and the form it is saved in."""

    name: str
    stages: tuple[str, ...]  # the levels it can express, Algorithm 1's order: a run's default stages
    refusals: Mapping[str, str]  # level → why this family cannot express it
    torch_pruning: bool  # harness/prune/torch_pruning_baseline.py is wired for it
    own_levels: LevelOps | None  # None: the slice tables below describe every level

    def layers(self, lm: nn.Module) -> nn.ModuleList: ...
    def all_blocks(self, lm: nn.Module) -> list[nn.Module]: ...
    def ffn_width(self, text) -> int: ...
    def set_ffn_width(self, text, width: int) -> None: ...
    def ffn_slices(self, block: nn.Module) -> list[Slice]: ...
    def attention_slices(self, block: nn.Module) -> list[tuple[Slice, str]]: ...
    def hidden_slices(self, model) -> tuple[list[Slice], list[Slice], list[str]]: ...
    def structure(self, text) -> dict[str, int]: ...
    def complete(self, text) -> None: ...
    def saved_config(self, text) -> Any: ...
    def step_problem(self, text, level: str, heads: int, hidden: int) -> str | None: ...


@dataclass(frozen=True)
class DecoderOnly:
    """A decoder-only language model whose blocks sit in one `ModuleList` (`layers_path`, from the language
    model) and whose FFN channels are the `ffn` slices (plus any bias of the `ffn_biases` projections that the
    checkpoint has). Attention and hidden slices are the Llama layout's; a family that cannot express those
    levels names them in `refusals`."""

    name: str
    layers_path: str
    ffn_width_field: str
    ffn: tuple[Slice, ...]
    ffn_biases: tuple[str, ...] = ()
    refusals: Mapping[str, str] = field(default_factory=dict)
    torch_pruning: bool = False
    own_levels: LevelOps | None = None

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(s for s in STAGE_NAMES if s not in self.refusals)

    def layers(self, lm: nn.Module) -> nn.ModuleList:
        return lm.get_submodule(self.layers_path)

    def all_blocks(self, lm: nn.Module) -> list[nn.Module]:
        return list(self.layers(lm))

    def ffn_width(self, text) -> int:
        return getattr(text, self.ffn_width_field)

    def set_ffn_width(self, text, width: int) -> None:
        setattr(text, self.ffn_width_field, width)

    def ffn_slices(self, block: nn.Module) -> list[Slice]:
        return [*self.ffn, *(Slice(f"{p}.bias", 0) for p in self.ffn_biases if has_bias(block, p))]

    def attention_slices(self, block: nn.Module) -> list[tuple[Slice, str]]:
        """Slices of one key-value group inside a block, each with the unit its index counts in:
        'q' = rows/columns of the group's query heads, 'kv' = rows of its key/value head."""
        out = [
            (Slice("self_attn.q_proj.weight", 0), "q"),
            (Slice("self_attn.k_proj.weight", 0), "kv"),
            (Slice("self_attn.v_proj.weight", 0), "kv"),
            (Slice("self_attn.o_proj.weight", 1), "q"),
        ]
        for name in ("q_proj", "k_proj", "v_proj"):
            if has_bias(block, f"self_attn.{name}"):
                out.append((Slice(f"self_attn.{name}.bias", 0), "q" if name == "q_proj" else "kv"))
        return out

    def hidden_slices(self, model) -> tuple[list[Slice], list[Slice], list[str]]:
        """Slices of one hidden dimension: (per block, outside the blocks, the RMSNorms whose weights are
        rescaled: per block by name inside the block, the final one by its path)."""
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
        layer = self.layers(model.language_model)[0]  # attention_bias and mlp_bias reach the hidden side
        biased = [p for p in ("self_attn.o_proj", "mlp.down_proj") if has_bias(layer, p)]
        per_block += [Slice(f"{p}.bias", 0) for p in biased]
        norms = ["input_layernorm", "post_attention_layernorm", "language_model.model.norm"]
        return per_block, outside, norms

    def structure(self, text) -> dict[str, int]:
        return {
            "num_hidden_layers": text.num_hidden_layers,
            "intermediate_size": self.ffn_width(text),
            "num_attention_heads": text.num_attention_heads,
            "num_key_value_heads": getattr(text, "num_key_value_heads", text.num_attention_heads),
            "hidden_size": text.hidden_size,
        }

    def complete(self, text) -> None:
        """Fill in what the loaded config derives but pruning must state (nothing, unless overridden)."""

    def saved_config(self, text):
        """The config `save_pretrained` writes: the family's own, unless overridden."""
        return text

    def step_problem(self, text, level: str, heads: int, hidden: int) -> str | None:
        """Why a step leaving `heads` heads over `hidden` dimensions could not be saved (None: it can)."""
        return None
