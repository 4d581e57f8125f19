"""The teacher's task adaptation (harness/recipes/teacher.py): it stops once validation accuracy has not risen
for `patience` epochs and keeps the best epoch's weights; training's hooks stop early and see every step."""

import pytest
import torch

from harness.config.loading import load_profile
from harness.config.profile import Adaptation
from harness.recipes import teacher as recipe
from harness.store import get_dataset
from harness.train import train


def test_train_stops_when_after_epoch_says_so_and_reports_every_step():
    model = torch.nn.Linear(2, 1)
    epochs = [[torch.ones(4, 2)] * 3 for _ in range(5)]
    seen, steps = [], []
    losses = train(
        model,
        list(model.parameters()),
        epochs,
        lambda b: model(b).pow(2).mean(),
        lr=0.01,
        weight_decay=0.0,
        warmup_steps=1,
        desc="t",
        after_epoch=lambda e: seen.append(e) or e == 2,
        after_step=lambda k, loss: steps.append(k),
    )
    assert seen == [1, 2] and len(losses) == 2  # stopped after epoch 2 of 5
    assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    "scores, patience, best, ran",
    [
        ([0.4, 0.5, 0.9, 0.4, 0.3, 0.95], 2, 2, 4),  # stops 2 epochs after its best
        ([0.9, 0.5, 0.6, 0.7], 2, 0, 2),  # nothing beats the model as it came: it is kept
        ([0.1, 0.2, 0.3, 0.25], None, 2, 3),  # no early stopping: every epoch, the best kept
    ],
)
def test_adaptation_keeps_the_best_epochs_weights(tmp_path, monkeypatch, scores, patience, best, ran):
    """Validation scores are scripted, the first for the model as it comes (epoch 0): the stage keeps the
    projection and language model of its best epoch, and stops early only with a patience."""
    prof = load_profile("smoke")
    data = get_dataset(prof, tmp_path, False)
    from harness.models.stand_in import new_model

    model, processor = new_model(prof, data)
    tuned = [*model.language_projection.parameters(), *model.language_model.parameters()]
    snapshots, it = [], iter(scores)

    def scripted(model_, processor_, queries, questions, answers, tasks, batch_size=256):
        snapshots.append([p.detach().clone() for p in tuned])
        return dict.fromkeys(set(tasks), next(it))

    monkeypatch.setattr(recipe, "answer_accuracy", scripted)
    cfg = Adaptation(epochs=len(scores) - 1, lr=1e-3, batch_size=64, patience=patience)
    shares = {"replay": 0.0, "image_replay": 0.0}
    n = 128
    rows = recipe.columns(data["train"].select(range(n)))
    queries = torch.randn(n, model.config.num_query_tokens, model.config.qformer_config.hidden_size)
    val = {"queries": queries[:8], "questions": rows["question"][:8], "answers": rows["answer"][:8]}
    val["tasks"] = rows["task"][:8]
    replay = {"corpus": [], "questions": [], "generic": []}
    log, replayed = recipe.train_language_stage(
        model,
        processor,
        queries,
        rows["question"],
        rows["answer"],
        val,
        cfg,
        shares,
        torch.Generator(),
        False,
        replay,
        3,
    )
    assert log[-1] == {"stage": 3, "best_epoch": best, "epochs_run": ran} and replayed == 0
    assert len(snapshots) == ran + 1
    assert all(torch.equal(p, w) for p, w in zip(tuned, snapshots[best], strict=True))
    assert not all(torch.equal(p, w) for p, w in zip(tuned, snapshots[-1], strict=True)) or best == ran


def test_adaptation_passes_count_only_the_epochs_it_ran(tmp_path):
    """The teacher's sample passes (premise P3's denominator) include adaptation, epochs actually run."""
    prof = load_profile("smoke")
    adapt = {"epochs": 2, "lr": 1e-3, "batch_size": 32, "patience": 1, "replay": 0.25, "image_replay": 0.0}
    prof = prof.model_copy(
        update={"teacher": prof.teacher.model_copy(update={"adaptation": Adaptation(**adapt)})}
    )
    data = get_dataset(prof, tmp_path, False)
    from harness.models.stand_in import new_model, teacher_catalogue_questions, teacher_corpus

    model, processor = new_model(prof, data)
    log = recipe.train_teacher(
        model,
        processor,
        data,
        prof.teacher,
        0,
        teacher_corpus(prof),
        teacher_catalogue_questions(prof),
        False,
    )
    ran = next(c for c in log["curves"] if "best_epoch" in c)["epochs_run"]
    n = len(data["train"])
    assert n * ran <= log["sample_passes"]["adaptation"] <= n * ran * 1.25 + 64
    assert log["sample_passes"]["total"] == sum(v for k, v in log["sample_passes"].items() if k != "total")
    assert "adaptation" in log["seconds"]
