"""Algorithm 1 driver: requested structures for every variant, and resumption after SIGKILL."""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
import torch

import harness.evaluate as ev
from harness.config.experiment import CompressionRun, RunPlan
from harness.config.loading import load_profile
from harness.config.paths import ROOT
from harness.data.collate import training_batch
from harness.distill.loop import distill
from harness.evaluate import evaluate, forced_verdicts, generate_answers, max_answer_tokens, normalize
from harness.models.blip2 import parameter_counts
from harness.objectives import teacher_batches
from harness.pipeline import follow, run_compression, run_maxima, structure
from harness.prune.importance import importance
from harness.prune.step import prune_step
from harness.recipes.common import pruning_set
from harness.recipes.teacher import get_teacher
from harness.store import get_dataset, run_dir, step_model
from tests.helpers import SUBPROCESS_TIMEOUT


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    prof = load_profile("smoke")
    data = get_dataset(prof, cache, progress=False)
    teacher, processor, tdir, _ = get_teacher(prof, cache, data, progress=False)
    d_d = teacher_batches(teacher, processor, data["train"], prof.compression.batch_size)
    return prof, data, teacher, processor, d_d, cache, tdir


def _plan(prof, compression: dict | None = None, use_alpha: bool = True, **run) -> RunPlan:
    c = prof.compression.model_copy(update=compression or {})
    return RunPlan(
        run=CompressionRun(label="test", **run),
        compression=c,
        seed=0,
        eval_batch_size=50,
        maxima={"block": 1, "ffn": 64, "attention": 32, "hidden": 32},
        use_alpha=use_alpha,
        epochs=c.epochs,
        total_epochs=2,
    )


@pytest.mark.parametrize("budget, total", [("iterative_total", 0.5 * 3), ("per_step", 0.5)])
def test_one_shot_distils_in_either_reading_of_algorithm_1(budget, total):
    """Compute-fair: the iterative run's total epochs; as written: E once, after the one pruning step."""
    prof = load_profile("smoke")
    plan = _plan(prof, mode="one_shot", one_shot_budget=budget, epochs=0.5).model_copy(update={"epochs": 0.5})
    trace = [{"stage": "block", "amount": 1}, {"stage": "ffn", "amount": 32}, {"stage": "ffn", "amount": 32}]
    followed = follow(plan, trace)
    assert followed.total_epochs == pytest.approx(total)
    assert followed.maxima["ffn"] == 64 and followed.maxima["block"] == 1


def test_a_run_naming_the_profiles_own_budget_is_the_same_run(tmp_path):
    prof = load_profile("smoke")
    plain, named = CompressionRun(label="a"), CompressionRun(label="b", epochs=prof.compression.epochs)
    other = CompressionRun(label="c", epochs=prof.compression.epochs / 2)
    assert run_dir(prof, plain, 0, tmp_path) == run_dir(prof, named, 0, tmp_path)
    assert run_dir(prof, plain, 0, tmp_path) != run_dir(prof, other, 0, tmp_path)


def test_one_shot_budget_belongs_to_one_shot_runs():
    with pytest.raises(ValueError, match="one_shot_budget: only for mode 'one_shot'"):
        CompressionRun(label="a", one_shot_budget="per_step")


def test_iterative_run_records_every_step(smoke, tmp_path):
    prof, data, teacher, proc, d_d, _, _ = smoke
    plan = _plan(prof, use_alpha=False)  # every step to each stage's maximum, whatever the accuracy does
    state = run_compression(teacher, proc, data["validation"], d_d, d_d, plan, tmp_path, progress=False)
    stages = [s["stage"] for s in state["trace"]]
    assert stages == ["block", "ffn", "ffn", "attention", "hidden", "hidden"]
    assert all({"acc_pruned", "acc_distilled", "params_total", "seconds"} <= set(s) for s in state["trace"])
    params = [s["params_total"] for s in state["trace"]]
    assert params == sorted(params, reverse=True) and len(set(params)) == len(params)
    assert (tmp_path / "trace.csv").read_text().count("\n") == 1 + len(stages)
    # the block stage records which of the teacher's blocks it dropped: the last one (Algorithm 1)
    assert state["trace"][0]["blocks_dropped"] == [1] and state["block_ids"] == [0]
    assert structure(step_model(tmp_path)) == {
        "num_hidden_layers": 1,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_size": 32,
    }
    # every step folder carries a Hugging Face model card: each step so far, the size, the accuracy and split
    card = (tmp_path / "steps" / "step_006" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n") and "| 6 | hidden |" in card
    assert f"{state['trace'][-1]['params_total']:,} in all" in card
    assert f"{state['p_current']:.3f} on the validation split" in card and f"seed {plan.seed}" in card
    assert "| 0 | (none yet" in (tmp_path / "steps" / "step_000" / "README.md").read_text()


def test_single_level_changes_only_its_level(smoke, tmp_path):
    prof, data, teacher, proc, d_d, _, _ = smoke
    run_compression(
        teacher, proc, data["validation"], d_d, d_d, _plan(prof, stages=["ffn"]), tmp_path, progress=False
    )
    s, t = structure(step_model(tmp_path)), structure(teacher)
    assert s["intermediate_size"] == t["intermediate_size"] - 64
    assert {k: v for k, v in s.items() if k != "intermediate_size"} == {
        k: v for k, v in t.items() if k != "intermediate_size"
    }


def test_alpha_stops_a_stage(smoke, tmp_path):
    prof, data, teacher, proc, d_d, _, _ = smoke
    cfg = _plan(prof, {"alpha": 1e-9, "epochs": 0}, stages=["hidden"])
    state = run_compression(teacher, proc, data["validation"], d_d, d_d, cfg, tmp_path, progress=False)
    dropped = state["p_teacher"]["overall"] - state["trace"][0]["acc_distilled"]
    # one step always runs; a second only if the first did not lose α
    assert len(state["trace"]) == (1 if dropped >= 1e-9 else 2)


def test_one_shot_prunes_to_the_targets_at_once(smoke, tmp_path):
    prof, data, teacher, proc, d_d, _, _ = smoke
    cfg = _plan(prof, mode="one_shot", stages=["ffn", "hidden"])
    state = run_compression(teacher, proc, data["validation"], d_d, d_d, cfg, tmp_path, progress=False)
    assert (
        len(state["trace"]) == 1 and state["epochs_used"] == 2 and state["trace"][0]["stage"] == "ffn+hidden"
    )
    s = structure(step_model(tmp_path))
    assert s["intermediate_size"] == 128 - 64 and s["hidden_size"] == 64 - 32 and s["num_hidden_layers"] == 2


def test_one_shot_ends_at_the_iterative_runs_structure(smoke, tmp_path):
    """One-shot prunes to exactly what the iterative run reaches (the maxima), never to another size."""
    prof, data, teacher, proc, d_d, _, _ = smoke
    cfg = _plan(prof, {"epochs": 0})
    it = run_compression(teacher, proc, data["validation"], d_d, d_d, cfg, tmp_path / "it", progress=False)
    one_shot = _plan(prof, {"epochs": 0}, mode="one_shot")
    one = run_compression(teacher, proc, data["validation"], d_d, d_d, one_shot, tmp_path / "one", False)
    assert structure(step_model(tmp_path / "it")) == structure(step_model(tmp_path / "one"))
    assert it["block_ids"] == one["block_ids"] == [0] and one["trace"][0]["blocks_dropped"] == [1]


@pytest.mark.parametrize(
    "level, share, expected",
    [
        ("block", 0.01, 1),  # far below reach: every step the level allows (2 blocks, one must stay)
        ("ffn", 0.01, 96),  # 128 channels, steps of 32: 3 steps, one step's width must stay
        ("attention", 0.5, 32),  # 2 key-value groups of 32: at most 1
        ("hidden", 0.99, 16),  # one step already reaches 99%
    ],
)
def test_target_share_sets_the_fewest_whole_steps_that_reach_it(smoke, level, share, expected):
    prof, _, teacher, _, _, _, _ = smoke
    c = prof.compression
    maxima = run_maxima(teacher, c, [level], share)
    assert maxima[level] == expected, maxima
    assert {k: v for k, v in maxima.items() if k != level} == {
        k: v for k, v in run_maxima(teacher, c, [level]).items() if k != level
    }


def test_target_share_reaches_the_share_when_the_level_can(smoke):
    """FFN alone: the LM blocks' parameters fall linearly per step, so the computed maximum is the first one
    at or under the target, and one step fewer is above it."""
    prof, _, teacher, _, _, _, _ = smoke
    c = prof.compression
    total = parameter_counts(teacher)["lm_blocks"]
    n = c.n_h_ffn
    one = copy.deepcopy(teacher)
    prune_step(one, "ffn", n, torch.rand(2, 128))
    per_step = 1 - parameter_counts(one)["lm_blocks"] / total
    for share in (1 - 0.5 * per_step, 1 - 1.5 * per_step, 1 - 2.5 * per_step, 1 - 3 * per_step):
        m = run_maxima(teacher, c, ["ffn"], share)["ffn"]
        sizes = []
        for amount in (m - n, m):
            model = copy.deepcopy(teacher)
            if amount:
                prune_step(model, "ffn", amount, torch.rand(2, 128))
            sizes.append(parameter_counts(model)["lm_blocks"] / total)
        assert sizes[1] <= share + 1e-9 < sizes[0]


def test_one_shot_follows_the_iterative_run_where_alpha_stops_it_early(smoke, tmp_path):
    """With a tiny α the iterative run stops each stage after its first step (whenever accuracy fell), short
    of the maxima; one-shot must then prune to what the iterative run reached, with its epoch budget."""
    from harness.recipes.compression import compress

    prof, data, teacher, proc, d_d, _, _ = smoke
    prof = load_profile("smoke", {"compression": {"alpha": 1e-9, "epochs": 0}})
    it, one = CompressionRun(label="it"), CompressionRun(label="one", mode="one_shot")
    sets = (d_d, d_d)
    state, it_dir = compress(prof, it, 0, teacher, proc, data, sets, tmp_path, False)
    one_state, one_dir = compress(prof, one, 0, teacher, proc, data, sets, tmp_path, False)
    maxima = run_maxima(teacher, prof.compression, it.stages)
    reached = {s: sum(r["amount"] for r in state["trace"] if r["stage"] == s) for s in it.stages}
    assert reached != maxima  # α did stop some stage early here
    assert structure(step_model(it_dir)) == structure(step_model(one_dir))
    assert one_state["trace"][0]["amount"] == sum(reached.values())


def test_dropped_blocks_map_to_the_teachers_indices():
    from harness.pipeline import _drop

    state = {"block_ids": [0, 1, 2, 3]}
    assert _drop(state, [1]) == [1] and state["block_ids"] == [0, 2, 3]
    assert _drop(state, [1]) == [2] and state["block_ids"] == [0, 3]  # current index 1 is now block 2


def test_run_keys_stay_put_unless_the_run_changes():
    """Cached runs are found by these keys (version 4: every field of the run, label and paper values aside),
    pinned so that a change of the key's meaning is a deliberate KEY_VERSION bump."""
    from harness.cache import content_hash
    from harness.store import KEY_VERSION, compression_key, run_key

    assert run_key(CompressionRun(label="a")) == {
        "stages": ["block", "ffn", "attention", "hidden"],
        "mode": "iterative",
        "criterion": "first_order",
        "block_criterion": "last",
        "pruner": "harness",
        "variant": "eq5",
        "data_fraction": 1.0,
        "target_share": None,
        "epochs": None,
        "one_shot_budget": "iterative_total",
        "scratch_structure": "final",
        "scratch_recipe": "d_d",
    }
    assert content_hash(run_key(CompressionRun(label="a"))) == "6e5b53a5da77"
    key = compression_key(load_profile("smoke"), CompressionRun(label="a"), 0)
    assert key["key_version"] == key["teacher"]["key_version"] == KEY_VERSION == 4
    assert run_key(CompressionRun(label="s", stages=["ffn"], target_share=0.4))["target_share"] == 0.4


def _cli(cache, results):
    return [
        sys.executable,
        "-m",
        "harness",
        "run",
        "rq1_stagewise",
        "--profile",
        "smoke",
        "--cache-dir",
        str(cache),
        "--results-dir",
        str(results),
        "--quiet",
    ]


@pytest.mark.slow
def test_sigkill_mid_run_resumes_to_the_identical_result(smoke, tmp_path):
    _, _, _, _, _, cache, tdir = smoke
    for name in ("a", "b"):  # two caches sharing the trained teacher and dataset
        shutil.copytree(cache, tmp_path / name / "cache", ignore=shutil.ignore_patterns("compression"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ref = subprocess.run(
        _cli(tmp_path / "a" / "cache", tmp_path / "a" / "res"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen(
        _cli(tmp_path / "b" / "cache", tmp_path / "b" / "res"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_at = None
    while proc.poll() is None:  # until step 2 is saved, or the run ends by itself (then the test fails)
        states = list((tmp_path / "b" / "cache" / "compression").glob("run-*/state.json"))
        if states and json.loads(states[0].read_text())["step"] >= 2:
            time.sleep(0.3)  # into the next step's importance pass or distillation
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_at = json.loads(states[0].read_text())["step"]
            break
        time.sleep(0.05)
    assert killed_at is not None, "the run finished before it could be killed"
    assert not (tmp_path / "b" / "res" / "rq1_stagewise" / "result.json").exists()
    resumed = subprocess.run(
        _cli(tmp_path / "b" / "cache", tmp_path / "b" / "res"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a, b = (
        json.loads((tmp_path / x / "res" / "rq1_stagewise" / "result.json").read_text())["runs"][0]["seeds"][
            0
        ]
        for x in ("a", "b")
    )
    strip = lambda trace: [{k: v for k, v in s.items() if k != "seconds"} for s in trace]  # noqa: E731
    assert strip(a["trace"]) == strip(b["trace"]) and a["accuracy"] == b["accuracy"]
    ma = step_model(next((tmp_path / "a" / "cache" / "compression").glob("run-*")))
    mb = step_model(next((tmp_path / "b" / "cache" / "compression").glob("run-*")))
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert Path(tdir).is_dir()


def test_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(smoke, tmp_path):
    prof, data, teacher, proc, d_d, _, _ = smoke
    cfg = _plan(prof, stages=["ffn"])
    bad = [{**b, "teacher_logits": torch.full_like(b["teacher_logits"], float("nan"))} for b in d_d]
    with pytest.raises(FloatingPointError, match=r"step 1 \(ffn\), distill, epoch 1: loss is nan"):
        run_compression(teacher, proc, data["validation"], d_d, bad, cfg, tmp_path, progress=False)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["step"] == 0 and state["trace"] == []  # the teacher checkpoint, intact and loadable
    assert structure(step_model(tmp_path)) == structure(teacher)


@pytest.mark.parametrize("pruned", [False, True])
def test_a_forced_pass_scores_as_greedy_generation_does(smoke, pruned):
    """evaluate() scores by one teacher-forced pass and generates only what it leaves open: per sample, the
    verdicts are those of generating every answer, for the teacher and for a pruned model (many departures),
    end to end and from the teacher's cached query outputs."""
    _, data, teacher, processor, *_ = smoke
    model = copy.deepcopy(teacher)
    if pruned:
        prune_step(model, "ffn", 96, importance(model, "ffn", "random", [], seed=0))
    split = data["test"]
    images, questions, answers = (list(split[c]) for c in ("image", "question", "answer"))
    generated = generate_answers(
        model, processor, images, questions, max_answer_tokens(processor, answers), batch_size=50
    )
    by_generation = [normalize(p) == normalize(a) for p, a in zip(generated, answers, strict=True)]
    forced = forced_verdicts(model, processor, images, questions, answers, batch_size=50)
    assert all(f == g for f, g in zip(forced, by_generation, strict=True) if f is not None)
    # matches, and answers the forced pass did not confirm: left to generation or departures decided without
    # it (a pruned model departs early and often)
    assert True in forced and (False in forced if pruned else {False, None} & set(forced))
    for vision_of in (None, teacher):
        acc = evaluate(model, processor, split, batch_size=50, vision_of=vision_of)
        assert acc["correct"] == by_generation
        assert acc["predictions"] == [
            (a if f else None) if f is not None else p
            for f, p, a in zip(forced, generated, answers, strict=True)
        ]


def test_evaluate_tokenizes_a_split_once_per_processor_and_batch_size(smoke, monkeypatch):
    """The second evaluation on a split (another model, same processor and batch size) reuses the first's
    ordering and token ids, and scores as if it had built them."""
    _, data, teacher, processor, *_ = smoke
    built = []
    monkeypatch.setattr(ev, "training_batch", lambda *a: built.append(1) or training_batch(*a))
    model = copy.deepcopy(teacher)
    prune_step(model, "ffn", 96, importance(model, "ffn", "random", [], seed=0))
    first = evaluate(teacher, processor, data["validation"], batch_size=37, vision_of=teacher)
    n = len(built)
    again = evaluate(model, processor, data["validation"], batch_size=37, vision_of=teacher)
    assert n == -(-len(data["validation"]) // 37) and len(built) == n
    monkeypatch.setattr(ev, "_PREPARED", weakref.WeakKeyDictionary())
    assert evaluate(model, processor, data["validation"], batch_size=37, vision_of=teacher) == again
    assert evaluate(teacher, processor, data["validation"], batch_size=37) == first


def test_evaluate_refuses_a_vision_side_that_is_not_the_models(smoke):
    _, data, teacher, processor, *_ = smoke
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        other.qformer.layernorm.weight.add_(0.1)
    with pytest.raises(ValueError, match="vision side differs"):
        evaluate(other, processor, data["validation"], batch_size=50, vision_of=teacher)


def _samples(batches) -> list[tuple]:
    """Every sample's unpadded token ids, in a canonical order."""
    return sorted(
        tuple(ids[mask.bool()].tolist())
        for b in batches
        for ids, mask in zip(b["input_ids"], b["attention_mask"], strict=True)
    )


def test_d_p_batched_by_length_holds_the_same_samples_and_gives_the_same_importance(smoke):
    """D_p is batched by length to skip padding: the same first samples of D_d, and Eq. 1's gradient sum,
    hence every importance score, as in split order."""
    prof, data, teacher, processor, *_ = smoke
    bs, n = prof.compression.batch_size, 40
    by_length = pruning_set(teacher, processor, data["train"], n, bs, progress=False)
    in_order = teacher_batches(teacher, processor, data["train"].select(range(64)), bs)
    assert _samples(by_length) == _samples(in_order)  # 40 rounded up to whole batches of 32: the first 64
    assert sum(b["input_ids"].numel() for b in by_length) < sum(b["input_ids"].numel() for b in in_order)
    for level in ("ffn", "attention", "hidden"):
        a = importance(teacher, level, "first_order", by_length, seed=0)
        b = importance(teacher, level, "first_order", in_order, seed=0)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7), level


def test_distillation_and_importance_run_on_top_k_teacher_outputs(smoke):
    """compression.teacher_logits: top_k end to end on the smoke teacher: D_d keeps k logits per answer
    position, distillation trains on them and Eq. 1 against the teacher's KL takes its gradient from them."""
    _, data, teacher, processor, *_ = smoke
    rows = data["train"].select(range(64))
    batches = teacher_batches(teacher, processor, rows, 32, top_k=16)
    assert "teacher_logits" not in batches[0] and batches[0]["teacher_top_ids"].shape[-1] == 16
    student = copy.deepcopy(teacher)
    prune_step(student, "ffn", 32, importance(student, "ffn", "first_order", batches, 0, loss="teacher_kl"))
    losses = distill(student, batches, 2.0, 1e-3, "eq5", 1.0, seed=0)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_the_sample_log_is_what_evaluate_scored_and_the_bits_come_from_it(smoke, monkeypatch):
    """Each test sample's record (harness/sample_log.py): its prompt, target, knowledge class and task as
    the split has them, the text generated where generation decided, and a verdict that the result's packed
    bits and every accuracy agree with."""
    from harness import sample_log
    from harness.data.collate import prompt_of
    from harness.evaluate import accuracy_record
    from harness.results import pack

    _, data, teacher, processor, *_ = smoke
    pruned = copy.deepcopy(teacher)
    prune_step(pruned, "ffn", 64, importance(pruned, "ffn", "random", [], seed=0))
    split, hows = data["test"], set()
    # departures decided by the forced pass; then, with every departure left undecided, answers generated
    for model, undecided in ((teacher, False), (pruned, False), (pruned, True)):
        if undecided:
            monkeypatch.setattr("harness.evaluate.departure_verdict", lambda *a: None)
        acc = evaluate(model, processor, split, batch_size=50, vision_of=teacher)
        log = acc["samples"]
        assert [r["id"] for r in log] == list(range(len(split)))
        assert [r["correct"] for r in log] == acc["correct"]
        assert accuracy_record(acc)["correct"] == pack(acc["correct"]) == sample_log.correct_bits(log)
        for task, value in acc["per_task"].items():
            hits = [r["correct"] for r in log if r["task"] == task]
            assert sum(hits) / len(hits) == value
        hows |= {r["how"] for r in log}
        for r, row in zip(log, split, strict=True):
            assert (r["task"], r["target"]) == (row["task"], row["answer"])
            assert r["knowledge"] == row["knowledge_group"]
            assert r["prompt"] == prompt_of(processor, row["question"])
            if r["how"] == "generated":
                assert r["correct"] == (normalize(r["generated"]) == normalize(r["target"]))
            else:
                assert r["generated"] == (r["target"] if r["correct"] else None)
    assert hows == {"forced pass", "generated"}


def test_a_sample_log_is_byte_stable_and_reads_back(smoke, tmp_path):
    from harness import sample_log

    _, data, teacher, processor, *_ = smoke
    log = evaluate(teacher, processor, data["validation"], batch_size=50)["samples"]
    assert sample_log.dump(log) == sample_log.dump(log)  # no timestamp: the same records, the same bytes
    (tmp_path / "v.samples.jsonl.gz").write_bytes(sample_log.dump(log))
    assert sample_log.read(tmp_path / "v.samples.jsonl.gz") == log


def test_a_cached_evaluation_keeps_its_log_under_its_seal(smoke):
    """The log beside a cached evaluation is checked against the hash its sealed record keeps: `verify`
    names a log that was altered, and the next use evaluates again and writes the same log."""
    from harness import sample_log
    from harness.evaluations import teacher_test_accuracy
    from harness.store import samples_log, verify

    prof, data, teacher, processor, _, cache, tdir = smoke
    first = teacher_test_accuracy(prof, tdir, teacher, processor, data["test"])
    (record,) = (tdir / "eval").glob("*.json")
    log = samples_log(record)
    original = log.read_bytes()
    assert [r["correct"] for r in sample_log.read(log)] == first["correct"]
    assert verify(cache)[1] == []
    log.write_bytes(original[:-8])  # cut short
    assert any(str(log) in p for p in verify(cache)[1])
    again = teacher_test_accuracy(prof, tdir, teacher, processor, data["test"])
    assert again["correct"] == first["correct"] and log.read_bytes() == original
