"""The CUDA paths, run by scripts/gpu_check.sh on a machine with a GPU (`pytest -m cuda`); skipped elsewhere.

Each compares the GPU with the CPU on the smoke-sized model: Eq. 1 scores, a distillation run in each
precision, surgery and the saved checkpoint, timing with peak memory, and the refusal of a device index
this machine lacks."""

import contextlib
import copy

import pytest
import torch

from harness import device as dev
from harness.config.profile import Measurement
from harness.device import placement_of
from harness.distill.loop import distill
from harness.errors import DeviceError
from harness.measure import as_deployed, throughput
from harness.models.blip2 import lm_logits
from harness.prune.importance import importance
from harness.prune.step import prune_step
from tests.helpers import tiny
from tests.test_device import _batch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh)"),
]


@pytest.fixture
def place():
    """Work on a placement until the test ends (harness/device.py `placed`)."""
    with contextlib.ExitStack() as stack:
        yield lambda p: stack.enter_context(dev.placed(p))


def _on(batch: dict, device: str) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def test_eq1_scores_on_the_gpu_match_the_cpu(place):
    model, proc = tiny()
    batch = _batch(model, proc)
    place(placement_of("cpu", "float32"))
    cpu = importance(model, "ffn", "first_order", [batch], seed=0)
    place(placement_of("cuda", "float32"))
    gpu = importance(model.to("cuda"), "ffn", "first_order", [_on(batch, "cuda")], seed=0, checkpointing=True)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_distillation_on_the_gpu_trains_in_each_precision(dtype, place):
    model, proc = tiny()
    batch = _batch(model, proc)
    place(placement_of("cuda", dtype))
    student = copy.deepcopy(model).to("cuda")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    losses = distill(student, [batch], 3.0, 1e-3, "eq5", 1.0, seed=0, checkpointing=True)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert all(p.dtype == torch.float32 and p.is_cuda for p in student.parameters())
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_surgery_on_the_gpu_saves_a_checkpoint_the_stock_class_loads(tmp_path, place):
    from transformers import Blip2ForConditionalGeneration

    model, proc = tiny()
    batch = _batch(model, proc)
    place(placement_of("cuda", "float32"))
    model = model.to("cuda")
    imp = importance(model, "ffn", "first_order", [_on(batch, "cuda")], seed=0)
    prune_step(model, "ffn", 16, imp)
    prune_step(model, "block", 1)
    model.save_pretrained(tmp_path)
    again = Blip2ForConditionalGeneration.from_pretrained(tmp_path).to("cuda").eval()
    b = _on(batch, "cuda")
    with torch.no_grad():
        mine = lm_logits(model, b["query_output"], b["input_ids"], b["attention_mask"])
        theirs = lm_logits(again, b["query_output"], b["input_ids"], b["attention_mask"])
    torch.testing.assert_close(theirs, mine)


def test_timing_on_the_gpu_records_peak_memory_and_a_bfloat16_copy(place):
    from PIL import Image

    model, proc = tiny()
    place(placement_of("cuda", "bfloat16"))
    deployed = as_deployed({"m": model.to("cuda")})["m"]
    assert deployed.dtype == torch.bfloat16 and deployed.device.type == "cuda"
    split = {"image": [Image.new("RGB", (32, 32))] * 4, "question": ["What is the background color?"] * 4}
    cfg = Measurement(warmup=1, min_iterations=3, min_duration_s=0.0)
    speed = throughput({"m": deployed}, proc, split, [1, 4], new_tokens=3, cfg=cfg)["m"]
    assert speed["batch_1"]["prefill_ms"] > 0 and speed["batch_4"]["decode_ms_per_token"] is not None
    assert speed["batch_4"]["peak_memory_mb"] > 0


def test_a_device_index_this_machine_lacks_is_refused():
    with pytest.raises(DeviceError, match="CUDA device"):
        placement_of(f"cuda:{torch.cuda.device_count()}", "float32")
