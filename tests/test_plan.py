"""`python -m harness plan`: its arithmetic against what small models on the CPU actually hold, and its
figures for the real checkpoints' configs in experiments/checkpoints/."""

import pytest
import torch

from harness.cli import main
from harness.config.loading import load_profile
from harness.config.paths import ROOT
from harness.distill.losses import distillation_loss
from harness.models.blip2 import lm_logits, parameter_counts
from harness.models.public import load_model
from harness.objectives import answer_positions
from harness.plan import (
    GiB,
    optimizer_bytes,
    parameters,
    parse_memory,
    plan,
    saved_activations,
    stand_in_or_checkpoint,
)
from harness.train import make_optimizer
from tests.helpers import tiny
from tests.test_accumulation import _batch
from tests.test_public import blip2_opt, instructblip_llama

CHECKPOINTS = ROOT / "experiments" / "checkpoints"


def _saved_bytes(model, batch) -> int:
    """What the harness's own distillation forward saves for backward, parameters (and their views) aside."""
    weights = {id(p) for p in model.parameters()}
    total = [0]

    def pack(t):
        if id(t if t._base is None else t._base) not in weights:
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = lm_logits(model, batch["query_output"], batch["input_ids"], batch["attention_mask"])
        student, _ = answer_positions(logits, batch["labels"])
        distillation_loss(student, batch["teacher_logits"], batch["answer_tokens"], "eq5", 1.0)
    return total[0]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_parameters_and_activations_match_a_real_model_on_the_cpu(family, tmp_path):
    model, proc = tiny(family)
    model.save_pretrained(tmp_path)
    prof = load_profile("smoke", {"compression": {"micro_batch_size": 8}})
    meta = plan(prof, tmp_path)
    real = parameter_counts(model)
    assert meta.params["total"] == real["total"]
    assert meta.params["language_model"] == real["language_model"]
    assert meta.params["qformer"] == real["qformer"] + real["query_tokens"]
    batch = _batch(model, proc, slice(0, 8))
    text_tokens = batch["input_ids"].shape[1] - model.config.num_query_tokens  # placeholders are queries
    measured = _saved_bytes(model, batch)
    estimate = saved_activations(stand_in_or_checkpoint(tmp_path, prof), 8, text_tokens, False, torch.float32)
    # the plan runs the language model alone, without padding mask or loss: 4% above the real pass here
    assert estimate == pytest.approx(measured, rel=0.1), (estimate, measured)


def test_activation_checkpointing_keeps_block_inputs_and_one_block(tmp_path):
    model, _ = tiny()
    model.save_pretrained(tmp_path)
    meta = stand_in_or_checkpoint(tmp_path, load_profile("smoke"))
    full = saved_activations(meta, 8, 40, False, torch.float32)
    lean = saved_activations(meta, 8, 40, True, torch.float32)
    layers = meta.config.text_config.num_hidden_layers
    width = meta.config.text_config.hidden_size
    seq = meta.config.num_query_tokens + 40
    assert layers * 8 * seq * width * 4 < lean < full


@pytest.mark.parametrize("name", ["adamw", "adafactor", "adamw_8bit"])
def test_optimizer_state_matches_what_the_optimizer_allocates(name):
    model, _ = tiny()
    params = [*model.language_projection.parameters(), *model.language_model.parameters()]
    opt = make_optimizer(name, params, 1e-3, 0.0)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    held = sum(
        v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)
    )
    scalars = sum(
        v.numel() * v.element_size()
        for s in opt.state.values()
        for v in s.values()
        if torch.is_tensor(v) and v.numel() == 1
    )
    assert optimizer_bytes(name, model, 4) == pytest.approx(held - scalars, rel=0.02), (name, held)


def test_plan_of_the_weights_and_gradients_is_what_a_compression_student_holds(tmp_path):
    """The student harness/pipeline.py makes: its own trained parts in bfloat16, the vision side shared."""
    from harness.pipeline import _student

    teacher, _ = tiny()
    teacher.save_pretrained(tmp_path)
    prof = load_profile("smoke", {"dtype": "bfloat16", "compression": {"weights_dtype": "bfloat16"}})
    phase = {p.name: p for p in plan(prof, tmp_path).phases}["distillation"]
    student = _student(tmp_path / "run", None, teacher, prof.compression)
    shared = {id(p) for p in teacher.parameters()}
    own = [p for p in student.parameters() if id(p) not in shared]
    assert phase.parts["student"] == sum(p.numel() * p.element_size() for p in own)
    assert {p.dtype for p in own} == {torch.bfloat16} and student.vision_model is teacher.vision_model
    assert phase.parts["gradients"] == sum(p.numel() * 2 for p in own)
    assert phase.parts["teacher"] == 4 * parameter_counts(teacher)["total"]


def test_the_real_checkpoints_plans(capsys):
    """Figures for blip2-opt-2.7b, blip2-flan-t5-xl and instructblip-vicuna-7b from their configs; the
    gpu profile's set-up fits blip2-opt-2.7b in 24 GB, the paper profile's does not."""
    counts = {}
    for name in ("blip2-opt-2.7b", "blip2-flan-t5-xl", "instructblip-vicuna-7b"):
        assert main(["plan", str(CHECKPOINTS / name), "--profile", "gpu"]) == 0
        out = capsys.readouterr().out
        assert "| distillation |" in out and "Peak:" in out
        counts[name] = plan(load_profile("gpu"), CHECKPOINTS / name).params
    assert counts["blip2-opt-2.7b"]["total"] == pytest.approx(3.745e9, rel=1e-3)  # the Hub's 3.74B
    assert counts["instructblip-vicuna-7b"]["language_model"] == pytest.approx(6.738e9, rel=1e-3)  # Vicuna-7B
    assert counts["blip2-flan-t5-xl"]["language_model"] == pytest.approx(2.784e9, rel=1e-3)  # tied
    opt = str(CHECKPOINTS / "blip2-opt-2.7b")
    assert main(["plan", opt, "--profile", "gpu", "--memory", "24GB"]) == 0
    assert "fits in 24 GiB" in capsys.readouterr().out
    assert main(["plan", opt, "--profile", "paper", "--memory", "24GB"]) == 1
    assert "does NOT fit in 24 GiB" in capsys.readouterr().out


def test_bad_plan_input_is_refused_clearly(tmp_path, capsys):
    assert main(["plan", str(tmp_path)]) == 2
    assert f"{tmp_path}: no config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plan", "--memory", "lots"])
    assert "'lots' is not a size" in capsys.readouterr().err
    assert parse_memory("24GB") == parse_memory("24 GiB") == 24 * GiB


def test_plan_counts_public_families(tmp_path):
    _, proc = tiny()
    for build in (blip2_opt, instructblip_llama):
        folder = build(proc, tmp_path / build.__name__)
        real = load_model(folder)
        assert (
            parameters(stand_in_or_checkpoint(folder, load_profile("smoke")))["total"]
            == parameter_counts(real)["total"]
        )


def test_the_gpu_page_shows_what_plan_prints_for_blip2_opt(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the command as docs/gpu.md gives it, from the repository
    readme = (ROOT / "docs" / "gpu.md").read_text()
    block = readme.split("<!-- plan:blip2-opt-2.7b -->\n```text\n")[1].split("\n```\n<!-- /plan")[0]
    opt = "experiments/checkpoints/blip2-opt-2.7b"
    assert main(["plan", opt, "--profile", "gpu", "--memory", "24GB", "--tflops", "40"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == block


def test_fsdp_on_two_24gb_cards_fits_instructblip_vicuna_7b(capsys):
    """The gpu profile's set-up: one 24 GB card or two under ddp hold whole models and do not fit; two under
    fsdp hold shards of every language model and do."""
    vicuna = str(CHECKPOINTS / "instructblip-vicuna-7b")
    base = ["plan", vicuna, "--profile", "gpu", "--memory", "24GB"]
    assert main(base) == 1
    assert main([*base, "--gpus", "2", "--parallel", "ddp"]) == 1
    capsys.readouterr()
    assert main([*base, "--gpus", "2", "--parallel", "fsdp"]) == 0
    out = capsys.readouterr().out
    assert "fits in 24 GiB" in out and "2 processes, one device each, fsdp" in out


def test_fsdp_plan_parts_follow_the_model(tmp_path):
    """Per device under fsdp: the trained weights split N ways, plus the root's own weights (embeddings,
    final norm, head, projection) and two blocks gathered; the teacher's language model only as shards."""
    from harness.models.blip2 import lm_blocks

    model, _ = tiny()
    model.save_pretrained(tmp_path)
    prof = load_profile("smoke")
    counts = parameter_counts(model)
    trained = counts["language_projection"] + counts["language_model"]
    block = max(sum(p.numel() for p in b.parameters()) for b in lm_blocks(model))
    root = counts["language_model"] - sum(sum(p.numel() for p in b.parameters()) for b in lm_blocks(model))
    for gpus in (2, 4):
        phases = {p.name: p for p in plan(prof, tmp_path, gpus=gpus, parallel="fsdp").phases}
        distill = phases["distillation"].parts
        assert distill["shards"] == 4 * trained / gpus
        assert distill["gathered"] == 4 * (root + counts["language_projection"] + 2 * block)
        assert phases["teacher outputs"].parts["shards"] == 4 * counts["language_model"] / gpus
    one = {p.name: p for p in plan(prof, tmp_path, gpus=2, parallel="ddp").phases}
    assert one["distillation"].parts["student"] == 4 * trained  # ddp: whole models on every device
