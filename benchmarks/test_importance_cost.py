"""Cost of the importance pass (Eq. 1 over the whole D_p) against one training epoch over the same data.

Run: `python -m pytest benchmarks/ --benchmark-only` (not part of the test suite). Uses the cpu profile's
model shape and D_p size with freshly initialised weights: the cost does not depend on the weights' values.
Target (issue: pruning engine): the importance pass costs no more than ~1.5× one distillation epoch.
"""

import time
from functools import partial

import pytest
import torch

from harness.config.loading import load_profile
from harness.config.paths import ROOT
from harness.models.stand_in import new_model
from harness.objectives import answer_cross_entropy, teacher_batches
from harness.prune.importance import accumulate_gradients
from harness.store import get_dataset
from harness.train import train


@pytest.fixture(scope="module")
def setup():
    prof = load_profile("cpu")
    data = get_dataset(prof, ROOT / ".cache", progress=False)
    model, proc = new_model(prof, data)
    batches = teacher_batches(None, proc, data["train"], prof.compression.batch_size, student=model)
    return prof, model, batches


def _epoch(model, batches, lr):
    """One epoch of the training loop distillation uses, on the answer cross-entropy."""
    params = [*model.language_projection.parameters(), *model.language_model.parameters()]
    loss = partial(answer_cross_entropy, model)
    train(model, params, [batches], loss, lr=lr, weight_decay=0.0, warmup_steps=0, desc="epoch")


def test_importance_pass_vs_training_epoch(benchmark, setup):
    prof, model, batches = setup
    t0 = time.perf_counter()
    _epoch(model, batches, prof.compression.lr)
    epoch_s = time.perf_counter() - t0
    benchmark.pedantic(accumulate_gradients, args=(model, batches), rounds=2, iterations=1)
    importance_s = benchmark.stats.stats.median
    ratio = importance_s / epoch_s
    benchmark.extra_info.update(
        {
            "samples": sum(len(b["input_ids"]) for b in batches),
            "epoch_s": epoch_s,
            "importance_s": importance_s,
            "ratio": ratio,
            "threads": torch.get_num_threads(),
        }
    )
    print(
        f"\nD_p = {benchmark.extra_info['samples']} samples: importance pass {importance_s:.1f}s, "
        f"one training epoch {epoch_s:.1f}s, ratio {ratio:.2f} (target <= 1.5)"
    )
