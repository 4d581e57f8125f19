"""Importance of structures: Eq. 1 per parameter, summed per structure as in Eq. 2–4.

Eq. 1 scores a parameter by |∂L(D_p)/∂θ · θ|, the first-order estimate of the loss change when θ is set to
zero, with the gradient of the loss over the whole pruning set (accumulated over batches). A structure's
importance is the sum over the parameters it owns (harness.prune.structures). Magnitude (L1, L2) and random
criteria share the interface, for the baselines, and so does `first_order_joint`: |Σ ∂L/∂θ·θ| over the
structure (signs kept inside it), the first-order change when all of the structure's parameters shrink
together (for a gated MLP ≈ 3× the change of removing the channel). Eq. 1 sums absolute values instead, so
terms that cancel in the real change add up in Eq. 2–4 (docs/deviations.md).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from typing import get_args

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from harness import parallel, registry
from harness.config.vocabulary import ImportanceLoss, gradient_criteria
from harness.data.collate import IGNORE
from harness.device import autocast, loss_scale
from harness.families.base import per_structure
from harness.models.blip2 import blocks, lm_blocks, lm_logits
from harness.objectives import Batch, answer_cross_entropy, answer_kl_to_teacher
from harness.prune.structures import (
    attention_group,
    attention_slices,
    ffn_slices,
    ffn_width,
    hidden_slices,
    own_levels,
)

Scores = Callable[[torch.Tensor], torch.Tensor]  # a parameter's elementwise score (`elementwise`)
# L(D_p) of Eq. 1: against the dataset's answers (the paper) or against the teacher's outputs
LOSSES = dict(zip(get_args(ImportanceLoss), (answer_cross_entropy, answer_kl_to_teacher), strict=True))


def _answer_tokens(batch: Batch) -> int:
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def accumulate_gradients(
    model,
    batches: Iterable[Batch],
    loss_fn: Callable = answer_cross_entropy,
    progress: bool = False,
    engine: parallel.Engine | None = None,
    checkpointing: bool = False,
) -> float:
    """Leave ∂L(D_p)/∂θ in every `.grad`, where L(D_p) is the mean loss over every answer position of D_p
    (each batch's mean weighted by its share of the positions): the loss over the whole pruning set, as Eq. 1
    writes it, the same however D_p is batched (harness/recipes/common.py batches it by length). Returns
    L(D_p). `engine`: under accelerate launch (harness/parallel.py), each process takes its share of D_p
    through it, and it sums the gradients. `checkpointing`: each block recomputes its activations in the
    backward pass (`_recomputed`)."""
    batches = list(batches)
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()  # no dropout: the score must describe the model as it is evaluated
    positions = sum(_answer_tokens(b) for b in batches)
    total, scale, bad = 0.0, loss_scale(), None
    work = [(b, True) for b in batches] if engine is None else parallel.share(batches)
    bar = tqdm(work, desc="importance", disable=not progress, leave=False)
    for i, (batch, counts) in enumerate(bar):
        hold = contextlib.nullcontext() if engine is None else engine.syncing(i == len(work) - 1)
        with hold, _recomputed(model, checkpointing):
            with autocast():
                loss = loss_fn(model, batch) if engine is None else engine.forward(batch)
            if not torch.isfinite(loss):
                if engine is None:
                    raise FloatingPointError(f"importance: loss is {loss.item()}")
                bad = bad or loss.item()  # every process finishes its passes first: its peers wait in them
            loss = loss * (_answer_tokens(batch) / positions)
            if engine is not None:  # the engine averages over the processes; padding counts nothing
                scale_here = scale * (engine.scale if counts else 0.0)
                (loss * scale_here).backward()
            else:
                (loss * scale if scale != 1.0 else loss).backward()
        total += loss.item() if counts else 0.0
    if engine is not None:
        parallel.stop_if_any(bad, "importance")
        total = parallel.sum_value(total)
    if scale != 1.0:  # float16 (harness/device.py): the gradient of L(D_p) itself
        for p in model.parameters():
            if p.grad is not None:
                p.grad.div_(scale)
    model.train(was_training)
    return total


@contextlib.contextmanager
def _recomputed(model, on: bool):
    """Eq. 1's backward with activation checkpointing, in eval mode: transformers' own checkpointing acts only
    in training mode, where dropout would be on, so each block's forward runs under torch's non-reentrant
    checkpoint instead, with the key-value cache off (a recomputed block would append to it twice)."""
    if not on:
        yield
        return
    layers = lm_blocks(model)
    config = model.language_model.config
    cache = config.use_cache
    config.use_cache = False
    for layer in layers:
        layer.forward = functools.partial(checkpoint, layer.forward, use_reentrant=False)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # the class's own again
        config.use_cache = cache


def elementwise(model, criterion: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The per-parameter score of `criterion` (harness/prune/criteria.py; a ValueError for an unknown
    name). Computed for one parameter when asked and reduced to its structures at once, so scoring never
    holds a second copy of the model's size (a 7B model's would be 28 GB in float32)."""
    scorer = registry.criterion(criterion)
    if scorer.score is None:
        raise ValueError(f"criterion '{criterion}' scores structures, not parameters")

    @torch.no_grad()
    def score(p: torch.Tensor) -> torch.Tensor:
        grad = p.grad
        if isinstance(p, DTensor):  # a shard (harness/parallel.py, fsdp): this one parameter gathered
            p, grad = p.full_tensor(), None if grad is None else grad.full_tensor()
        return scorer.score(p, grad)

    return score


def _random(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def ffn_importance(
    model, scores: Scores | None, module: str = "language_model", seed: int = 0
) -> torch.Tensor:
    """[blocks, channels]: Eq. 2 summed over each channel's gate row, up row and down column."""
    layers = blocks(model, module)
    if scores is None:
        return _random((len(layers), ffn_width(model, module)), seed)
    rows = []
    for layer in layers:
        rows.append(
            sum(
                per_structure(scores(layer.get_parameter(s.linear_or_param)), s.axis)
                for s in ffn_slices(model, module)
            )
        )
    return torch.stack(rows)


def attention_importance(model, scores: Scores | None, seed: int = 0) -> torch.Tensor:
    """[blocks, key-value groups]: Eq. 3 summed over each group's q/k/v rows and o columns (whole heads)."""
    layers = blocks(model, "language_model")
    groups, per_group, head_dim = attention_group(model)
    if scores is None:
        return _random((len(layers), groups), seed)
    rows = []
    for layer in layers:
        total = torch.zeros(groups)
        for s, unit in attention_slices(model):
            v = per_structure(scores(layer.get_parameter(s.linear_or_param)), s.axis)
            width = per_group * head_dim if unit == "q" else head_dim
            total += v.reshape(groups, width).sum(-1)
        rows.append(total)
    return torch.stack(rows)


def hidden_importance(model, scores: Scores | None, seed: int = 0) -> torch.Tensor:
    """[hidden]: Eq. 4 summed over embeddings, every block's projections and norms, the final norm, the
    projection's output rows and lm_head."""
    hidden = model.config.text_config.hidden_size
    if scores is None:
        return _random((hidden,), seed)
    per_block, outside, _ = hidden_slices(model)
    total = torch.zeros(hidden)
    for layer in blocks(model, "language_model"):
        for s in per_block:
            total += per_structure(scores(layer.get_parameter(s.linear_or_param)), s.axis)
    for s in outside:
        total += per_structure(scores(model.get_parameter(s.linear_or_param)), s.axis)
    return total


def structure_importance(
    model, level: str, criterion: str, module: str = "language_model", seed: int = 0
) -> torch.Tensor:
    """Importance of every structure of `level` from the gradients already accumulated in the model."""
    if level not in ("ffn", "attention", "hidden"):
        raise ValueError(f"no importance for level '{level}'; allowed: ffn, attention, hidden")
    scorer = registry.criterion(criterion)
    scores = None if scorer.score is None else elementwise(model, criterion)
    ops = own_levels(model, module)
    if ops is not None:
        shape = ops.importance_shape(model, level)
        imp = _random(shape, seed) if scores is None else ops.importance(model, level, scores)
    elif level == "ffn":
        imp = ffn_importance(model, scores, module, seed)
    elif level == "attention":
        imp = attention_importance(model, scores, seed)
    else:
        imp = hidden_importance(model, scores, seed)
    return imp.abs() if scorer.joint else imp


def importance(
    model,
    level: str,
    criterion: str,
    batches: list[Batch],
    seed: int,
    module: str = "language_model",
    loss: str = "cross_entropy",
    progress: bool = False,
    checkpointing: bool = False,
) -> torch.Tensor:
    """Importance of every structure of `level` over D_p = `batches`: the gradient of `loss` accumulated over
    them (not for the random criterion, which needs none), scored by `criterion`, gradients then cleared. The
    one entry point for Algorithm 1 (harness/pipeline.py) and `python -m harness prune`. `checkpointing`:
    the gradient pass recomputes each block's activations (the profile's compression.activation_checkpointing;
    the same scores, less memory)."""
    if criterion not in gradient_criteria():
        return structure_importance(model, level, criterion, module, seed=seed)
    # under accelerate launch the engine (harness/parallel.py) shares D_p out; under fsdp the scores are
    # taken from the sharded copies, one gathered parameter at a time
    with parallel.engine(model, lambda b: LOSSES[loss](model, b)) as engine:
        accumulate_gradients(model, batches, LOSSES[loss], progress, engine, checkpointing)
        imp = structure_importance(model, level, criterion, module, seed=seed)
        model.zero_grad(set_to_none=True)
    return imp


def keep_indices(importance: torch.Tensor, remove: int) -> torch.Tensor:
    """Indices of the structures to keep (the most important), sorted, along the last axis."""
    width = importance.shape[-1]
    keep = torch.topk(importance, width - remove, dim=-1, largest=True, sorted=False).indices
    return keep.sort(dim=-1).values


@torch.no_grad()
def block_influence(model, batches: Iterable[Batch]) -> torch.Tensor:
    """ShortGPT's Block Influence of every language-model block over D_p: 1 − cos(block input, block output)
    per token, averaged over the non-padding tokens. A low score: the block hardly changes the residual
    stream, so it is the one to drop. Under fsdp, over the sharded language model (harness/parallel.py)."""
    return parallel.sharded_call(model, lambda: _block_influence(model, batches))


def _block_influence(model, batches: Iterable[Batch]) -> torch.Tensor:
    layers = blocks(model, "language_model")
    current: dict[int, torch.Tensor] = {}

    def hook(i):
        def fn(module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, tuple) else output
            current[i] = 1 - F.cosine_similarity(x.float(), y.float(), dim=-1)

        return fn

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    total, count = torch.zeros(len(layers), dtype=torch.float64), 0
    try:
        model.eval()
        for b in batches:
            with autocast():
                lm_logits(model, b["query_output"], b["input_ids"], b["attention_mask"])
            mask = b["attention_mask"].bool()
            total += torch.stack(
                [current[i][mask.to(current[i].device)].sum().double() for i in range(len(layers))]
            ).cpu()
            count += int(mask.sum())
    finally:
        for h in handles:
            h.remove()
    return total / count
