"""The memory-lean compression set-up (compression.optimizer, weights_dtype, offload_teacher): each changes
where and in what the student trains, never what the run does."""

import contextlib
import copy

import pytest
import torch
from safetensors import safe_open

import harness.device as dev
import harness.pipeline as pipeline
from harness.config.files import SpecError
from harness.config.loading import load_profile
from harness.distill.loop import distill
from harness.pipeline import run_compression
from harness.prune.importance import importance
from harness.store import step_model
from harness.train import make_optimizer
from tests.helpers import tiny
from tests.test_accumulation import _batch
from tests.test_pipeline import _plan, smoke  # noqa: F401 (fixture)


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor", "adamw_8bit"])
def test_every_optimizer_lowers_the_distillation_loss(optimizer):
    teacher, proc = tiny(seed=0)
    student, _ = tiny(seed=1)
    batch = _batch(teacher, proc, slice(0, 8))
    losses = distill(student, [batch], 8.0, 1e-2, "eq5", 1.0, seed=0, optimizer=optimizer)
    assert losses[-1] < 0.8 * losses[0], losses


def test_optimizer_state_sizes_are_what_their_names_promise():
    """adamw: two states of each parameter's size and dtype; adamw_8bit: two uint8 states for a large
    tensor; adafactor: a row and a column statistic for a matrix, nothing of its size."""
    w = torch.nn.Parameter(torch.randn(64, 128))
    states = {}
    for name in ("adamw", "adafactor", "adamw_8bit"):
        p = torch.nn.Parameter(w.detach().clone())
        opt = make_optimizer(name, [p], 1e-3, 0.0)
        p.grad = torch.randn_like(p)
        opt.step()
        states[name] = {k: v for k, v in opt.state[p].items() if torch.is_tensor(v) and v.numel() > 1}
    assert sorted((v.dtype, v.numel()) for v in states["adamw"].values()) == [(torch.float32, 64 * 128)] * 2
    assert sorted(v.numel() for v in states["adafactor"].values()) == [64, 128]
    eight = [v for v in states["adamw_8bit"].values() if v.dtype == torch.uint8]
    assert [v.numel() for v in eight] == [64 * 128] * 2


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; allowed: adamw, adafactor, adamw_8bit"):
        make_optimizer("sgd", [torch.nn.Parameter(torch.ones(2))], 1e-3, 0.0)


@pytest.fixture
def bfloat16():
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(dev.placed(dev.placement_of("cpu", "bfloat16")))


def test_bfloat16_weights_score_importance_as_float32_weights_do(bfloat16):
    teacher, proc = tiny(seed=0)
    batches = [_batch(teacher, proc, slice(0, 8))]
    student, _ = tiny(seed=1)
    low = copy.deepcopy(student).to(torch.bfloat16)
    full = importance(student, "ffn", "first_order", batches, seed=0)
    bfloat16()
    half = importance(low, "ffn", "first_order", batches, seed=0)
    assert half.dtype == torch.float32
    # the same channels are kept: bfloat16 rounding reorders only near-ties
    k = full.shape[1] // 2
    overlap = [
        len(set(a.topk(k).indices.tolist()) & set(b.topk(k).indices.tolist())) / k
        for a, b in zip(full, half, strict=True)
    ]
    assert min(overlap) > 0.8, overlap


def test_an_offloaded_teacher_runs_no_language_model_and_changes_nothing(smoke, tmp_path, monkeypatch):  # noqa: F811
    prof, data, teacher, proc, d_d, _, _ = smoke
    plain = run_compression(
        teacher, proc, data["validation"], d_d, d_d, _plan(prof), tmp_path / "a", progress=False
    )
    real = pipeline._offloaded
    calls = []

    @contextlib.contextmanager
    def guarded(module, offload):
        calls.append(offload)

        def refuse(mod, args):  # copies of the teacher (the student) carry the hook but are not it
            if mod is module:
                pytest.fail("the offloaded teacher language model ran")

        with real(module, offload):
            hook = module.register_forward_pre_hook(refuse)
            try:
                yield
            finally:
                hook.remove()

    monkeypatch.setattr(pipeline, "_offloaded", guarded)
    plan = _plan(prof, {"offload_teacher": True})
    lean = run_compression(teacher, proc, data["validation"], d_d, d_d, plan, tmp_path / "b", progress=False)
    assert calls == [True]
    assert [r["acc_distilled"] for r in lean["trace"]] == [r["acc_distilled"] for r in plain["trace"]]


def test_a_bfloat16_adafactor_run_saves_bfloat16_steps_that_reload(smoke, tmp_path, bfloat16):  # noqa: F811
    prof, data, teacher, proc, d_d, _, _ = smoke
    bfloat16()
    plan = _plan(prof, {"weights_dtype": "bfloat16", "optimizer": "adafactor"}, stages=["ffn"])
    state = run_compression(teacher, proc, data["validation"], d_d, d_d, plan, tmp_path, progress=False)
    assert len(state["trace"]) == 2 and all(0 <= r["acc_distilled"] <= 1 for r in state["trace"])
    folder = sorted((tmp_path / "steps").iterdir())[-1]
    with safe_open(folder / "model.safetensors", "pt") as f:
        saved = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert {v for k, v in saved.items() if k.startswith("language_model.")} == {"BF16"}
    assert {v for k, v in saved.items() if k.startswith("vision_model.")} == {"F32"}
    model = step_model(tmp_path)  # loads, and evaluates like the run's last model
    assert model.config.text_config.intermediate_size == prof.model.language_model.intermediate_size - 64
    assert next(teacher.parameters()).dtype == torch.float32  # the teacher is never cast


def test_bfloat16_weights_need_bfloat16_compute():
    with pytest.raises(
        SpecError, match="field 'compression.weights_dtype': bfloat16 weights need dtype: bfloat16"
    ):
        load_profile("smoke", {"compression": {"weights_dtype": "bfloat16"}})
    lean = {"weights_dtype": "bfloat16", "optimizer": "adafactor", "offload_teacher": True}
    prof = load_profile("smoke", {"dtype": "bfloat16", "compression": lean})
    assert prof.compression.weights_dtype == "bfloat16"
