"""Run by tests/test_parallel.py under `accelerate launch` with two CPU processes: what `parallel.sharded`
puts in each process, written as JSON to the folder in argv[1]."""

import json
import sys

import torch

from harness import parallel
from harness.device import CPU_FLOAT32, placed
from harness.models.blip2 import trained_parameters
from tests.helpers import tiny


def _forward_then_check(model) -> bool:
    """A forward-only pass of the sharded language model (inside the root's forward, as `sharded_call` runs
    it): afterwards every block holds its shards again, not its whole weights."""
    from torch.distributed.tensor import DTensor

    from harness.parallel import _blocks

    with torch.no_grad():
        model.language_model(inputs_embeds=torch.randn(2, 5, model.config.text_config.hidden_size))
    return all(isinstance(p, DTensor) for b in _blocks(model.language_model) for p in b.parameters())


def main(out: str) -> None:
    with placed(CPU_FLOAT32), parallel.using("fsdp"):
        _probe(out)


def _probe(out: str) -> None:
    model, _ = tiny()
    originals = trained_parameters(model)
    before = [p.detach().clone() for p in originals]
    with parallel.sharded(model, parallel.TRAINED, loss=lambda b: b) as root:
        shards = sum(p.to_local().numel() * p.element_size() for p in root.parameters())
        freed = all(p.numel() == 0 for p in originals)  # the whole weights wait, freed
        whole = sum(p.numel() for p in trained_parameters(model))  # the sharded copies' global sizes
    after = trained_parameters(model)
    blocks_resharded = parallel.sharded_call(model, lambda: _forward_then_check(model))
    record = {
        "rank": parallel.rank(),
        "shard_bytes": shards,
        "trained": whole,
        "restored": all(torch.equal(a, b) for a, b in zip(before, after, strict=True)),
        "freed": freed,
        "same_objects": all(a is b for a, b in zip(originals, after, strict=True)),
        "blocks_resharded": blocks_resharded,
    }
    with open(f"{out}/rank{parallel.rank()}.json", "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1])
