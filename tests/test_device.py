"""Device and precision (harness/device.py): a device this machine lacks is refused before any work, the
CPU in float32 keeps every key and hash as it was, and mixed precision trains, scores and measures with
float32 weights left as they are."""

import copy

import pytest
import torch

from harness import device as dev
from harness.cli import main as cli
from harness.config.files import SpecError
from harness.config.loading import load_profile, resolve
from harness.data.collate import training_batch
from harness.device import placement_of, resolve_device
from harness.distill.loop import distill
from harness.errors import DeviceError
from harness.measure import as_deployed, device_info
from harness.models.blip2 import lm_logits, query_outputs
from harness.objectives import answer_positions
from harness.prune.importance import importance
from harness.results import spec_hash
from harness.store import input_hashes, teacher_key
from run_all import main as run_all
from tests.helpers import tiny

NO_CUDA = not torch.cuda.is_available()
needs_no_cuda = pytest.mark.skipif(not NO_CUDA, reason="the refusal is for machines without CUDA")


def test_auto_is_cuda_when_present_else_the_cpu():
    assert resolve_device("auto").type == ("cpu" if NO_CUDA else "cuda")
    assert resolve_device("cpu") == torch.device("cpu")


@needs_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_on_a_machine_without_it_is_refused_with_the_reason(name):
    with pytest.raises(DeviceError, match=r"^device: '.*' asked for, but this machine has no CUDA device"):
        resolve_device(name)


def test_what_is_not_a_device_or_a_dtype_is_refused_naming_what_is_allowed():
    with pytest.raises(DeviceError, match="allowed: auto, cpu, cuda, cuda:N"):
        resolve_device("tpu")
    with pytest.raises(DeviceError, match="allowed: float32, bfloat16, float16"):
        placement_of("cpu", "int8")
    with pytest.raises(SpecError, match="device"):
        load_profile("smoke", {"device": "gpu"})


@needs_no_cuda
def test_run_all_with_device_cuda_fails_before_any_work(tmp_path, capsys):
    cache = tmp_path / "cache"
    code = run_all(["--profile", "smoke", "--device", "cuda", "--cache-dir", str(cache), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "smoke.yaml (from --device/--dtype): field 'device':" in err and "no CUDA device" in err
    assert not cache.exists()  # nothing was computed, not even the dataset


@needs_no_cuda
@pytest.mark.parametrize("command", [["run", "teacher"], ["prune", "--level", "ffn", "--amount", "8"]])
def test_the_cli_refuses_cuda_on_a_machine_without_it(tmp_path, capsys, command):
    cache = tmp_path / "cache"
    args = [*command, "--profile", "smoke", "--device", "cuda", "--cache-dir", str(cache)]
    if command[0] == "prune":
        args += ["--out", str(tmp_path / "out")]
    assert cli(args) == 2
    assert "no CUDA device" in capsys.readouterr().err and not cache.exists()


def test_the_cpu_in_float32_keeps_keys_and_hashes_and_another_dtype_changes_them():
    explicit = load_profile("smoke")  # device: cpu in the file
    default = explicit.model_copy(update={"device": "auto" if NO_CUDA else "cpu"})
    assert explicit.placement_key() is None and default.placement_key() is None
    assert teacher_key(explicit) == teacher_key(default)
    exp, _ = resolve("rq1_stagewise", "smoke")
    assert spec_hash(exp, explicit, input_hashes(explicit)) == spec_hash(exp, default, input_hashes(default))
    bf16 = explicit.model_copy(update={"dtype": "bfloat16"})
    assert teacher_key(bf16)["placement"] == {"device": "cpu", "dtype": "bfloat16"}
    assert spec_hash(exp, bf16, input_hashes(bf16)) != spec_hash(exp, explicit, input_hashes(explicit))


def _batch(model, proc, n: int = 8) -> dict:
    """A distillation batch of the model's own outputs (harness/objectives.py teacher_batches' fields)."""
    b = training_batch(proc, ["What is the background color of this ad?"] * n, ["red", "blue"] * (n // 2))
    torch.manual_seed(0)
    with torch.no_grad():
        b["query_output"] = query_outputs(model, torch.randn(n, 3, 32, 32))
        logits = lm_logits(model, b["query_output"], b["input_ids"], b["attention_mask"])
    b["teacher_logits"], b["answer_tokens"] = answer_positions(logits, b["labels"])
    return b


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_scores_and_trains_with_float32_weights(dtype):
    model, proc = tiny()
    batch = _batch(model, proc)
    exact = importance(model, "ffn", "first_order", [batch], seed=0)  # outside a run: CPU, float32
    with dev.placed(placement_of("cpu", dtype)):
        mixed = importance(model, "ffn", "first_order", [batch], seed=0)
    # the same scores up to rounding (so computed in the lower precision), float16's loss scale divided out
    assert not torch.equal(mixed, exact) and torch.isfinite(mixed).all()
    assert mixed.sum() == pytest.approx(exact.sum().item(), rel=0.05)
    assert torch.corrcoef(torch.stack([mixed.flatten(), exact.flatten()]))[0, 1] > 0.95
    student, before = copy.deepcopy(model), copy.deepcopy(model.state_dict())
    with dev.placed(placement_of("cpu", dtype)):
        losses = distill(student, [batch], 3.0, 1e-3, "eq5", 1.0, seed=0)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(p.dtype == torch.float32 for p in student.parameters())
    lm = [k for k in before if k.startswith("language_model.")]
    assert any(not torch.equal(before[k], student.state_dict()[k]) for k in lm)


def test_measurement_runs_a_copy_in_the_dtype_and_the_result_records_it():
    model, _ = tiny()
    with dev.placed(placement_of("cpu", "bfloat16")):
        deployed = as_deployed({"m": model})["m"]
        assert deployed is not model and deployed.dtype == torch.bfloat16 and model.dtype == torch.float32
        assert device_info()["dtype"] == "bfloat16" and device_info()["device"] == "cpu"
    assert as_deployed({"m": model})["m"] is model and device_info()["dtype"] == "float32"  # after the run
