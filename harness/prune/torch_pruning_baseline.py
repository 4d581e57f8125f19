"""Torch-Pruning as a peer pruner (baseline): its dependency graph and its default group importance.

Why: Torch-Pruning is the general-purpose structured pruner; the question is whether the paper's first-order,
per-structure scores beat it at the same shape. Torch-Pruning traces the whole BLIP-2 model, so a hidden
dimension is removed from every coupled layer it finds (embeddings, the Q-Former→LM projection, every norm and
projection, the LM head); an FFN channel from gate, up and down. It has no depth pruning, and it cannot group
rotary-embedded heads of an HF Llama without model-specific set-up, so blocks and heads stay with the harness
(last blocks; heads ranked by L2 magnitude, the closest match to Torch-Pruning's group-L2 default).
"""

from __future__ import annotations

import warnings

import torch

from harness import families
from harness.data.collate import pixel_values, prompt_batch, qformer_kwargs
from harness.device import on
from harness.models.blip2 import blocks
from harness.prune.structures import PruningError


def example_inputs(processor, split, n: int = 2) -> dict:
    """A small real batch to trace the model with, on the current device (harness/device.py)."""
    b = prompt_batch(processor, split["question"][:n])
    batch = {
        "pixel_values": pixel_values(processor, split["image"][:n]),
        "input_ids": b["input_ids"],
        "attention_mask": b["attention_mask"],
        **qformer_kwargs(b),
    }
    return on(batch)


def torch_pruning_step(model, level: str, amount: int, example: dict) -> dict:
    """Remove `amount` FFN channels (in every block) or hidden dimensions with Torch-Pruning."""
    import torch_pruning as tp

    if level not in ("ffn", "hidden"):
        raise PruningError(f"Torch-Pruning baseline prunes 'ffn' and 'hidden' only, not '{level}'")
    if not families.of(model).torch_pruning:
        raise PruningError("Torch-Pruning baseline is wired for Llama-family language models")
    with (
        warnings.catch_warnings()
    ):  # RMSNorm weights are 'unwrapped parameters'; pruning their last dim is right
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=example, output_transform=lambda out: out.logits
        )
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    text = model.config.text_config
    if level == "ffn":
        width = text.intermediate_size
        if not 1 <= amount < width:
            raise PruningError(f"ffn: cannot remove {amount} of {width} channels")
        for layer in blocks(model, "language_model"):
            group = graph.get_pruning_group(
                layer.mlp.gate_proj, tp.prune_linear_out_channels, idxs=list(range(width))
            )
            remove = importance(group).argsort()[:amount].tolist()
            graph.get_pruning_group(layer.mlp.gate_proj, tp.prune_linear_out_channels, idxs=remove).prune()
        text.intermediate_size = width - amount
        return {"level": level, "removed": amount, "pruner": "torch_pruning"}
    width = text.hidden_size
    if not 1 <= amount < width:
        raise PruningError(f"hidden: cannot remove {amount} of {width} dimensions")
    emb = model.language_model.get_input_embeddings()
    group = graph.get_pruning_group(emb, tp.prune_embedding_out_channels, idxs=list(range(width)))
    remove = importance(group).argsort()[:amount].tolist()
    graph.get_pruning_group(emb, tp.prune_embedding_out_channels, idxs=remove).prune()
    text.hidden_size = width - amount
    with torch.no_grad():
        model(**example)  # fails here, not later, if a coupled layer was missed
    return {"level": level, "removed": amount, "pruner": "torch_pruning"}
