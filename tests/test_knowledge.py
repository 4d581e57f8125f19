"""The advertiser catalogue: knowledge questions, the long tail D_d covers only in part, the teacher's
pretraining corpus (the premise rows P1–P3 that check the stand-in keeps the paper's premise are tested by
known answers in tests/test_claim_rules.py)."""

from collections import Counter

import numpy as np
import pytest

from harness.config.files import SpecError
from harness.config.loading import load_profile
from harness.config.profile import SynthAdParams
from harness.data.loaders import load_synth_ads
from harness.data.synth_ads import ads_catalogue, catalogue_questions, generate_sample, pretraining_corpus
from harness.distill.loop import distillation_steps

P = SynthAdParams(catalogue_size=300)


def test_catalogue_is_deterministic_balanced_and_long_tailed():
    a, b = ads_catalogue(0, P), ads_catalogue(0, P)
    assert a.names == b.names and a.categories == b.categories
    assert ads_catalogue(1, P).names != a.names
    assert len(set(a.names)) == 300
    assert set(Counter(a.categories).values()) == {50}  # 300 advertisers over 6 categories
    w = np.sort(a.weights)[::-1]
    assert w.sum() == pytest.approx(1.0)
    assert w[0] / w[9] == pytest.approx(10.0)  # Zipf, exponent 1: rank 1 is ten times rank 10


def test_knowledge_questions_name_only_the_advertiser():
    cat = ads_catalogue(0, P)
    rows = [generate_sample(0, 0, i, P) for i in range(2, 2000, 5)]  # every content sample
    knowledge = [r for r in rows if r["knowledge"]]
    assert 0.6 < len(knowledge) / len(rows) < 0.8  # knowledge_prob 0.7
    for r in knowledge:
        assert r["advertiser"] in r["question"] and r["title"] == ""
        assert not r["icon_visible"] and r["image_content"] == "unknown"  # the image does not tell
        assert r["clean_answer"] == cat.categories[cat.names.index(r["advertiser"])]
    assert all(r["advertiser"] == "" for r in rows if not r["knowledge"])
    off = SynthAdParams(catalogue_size=0)
    assert not any(generate_sample(0, 0, i, off)["knowledge"] for i in range(2, 500, 5))


def test_d_d_covers_part_of_the_catalogue(tmp_path):
    sizes = {"train": 500, "validation": 50, "test": 500}
    dd = load_synth_ads(P, sizes, seed=0, cache_dir=tmp_path, progress=False)
    seen = {a for a, k in zip(dd["train"]["advertiser"], dd["train"]["knowledge"], strict=True) if k}
    assert 0 < len(seen) < 300
    test = dd["test"].select_columns(["advertiser", "knowledge", "knowledge_group"])
    groups = Counter(test["knowledge_group"])
    assert groups["seen"] and groups["unseen"]
    for r in test:
        expected = ("seen" if r["advertiser"] in seen else "unseen") if r["knowledge"] else ""
        assert r["knowledge_group"] == expected


def test_pretraining_corpus_states_every_fact_equally_often():
    cat = ads_catalogue(0, P)
    corpus = pretraining_corpus(0, P, mentions=5)
    assert corpus == pretraining_corpus(0, P, mentions=5) and len(corpus) == 5 * 300
    counts = Counter(
        next(n for n in text.replace(".", " ").replace(":", " ").split() if n in cat.names) for text in corpus
    )
    assert set(counts.values()) == {5}
    fact = dict(zip(cat.names, cat.categories, strict=True))
    for text in corpus[:200]:
        name = next(n for n in text.replace(".", " ").replace(":", " ").split() if n in fact)
        assert fact[name] in text


def test_catalogue_questions_ask_every_advertiser_as_the_samples_do():
    cat = ads_catalogue(0, P)
    asked = catalogue_questions(0, P)
    assert len(asked) == 2 * 300  # both knowledge templates, every advertiser
    fact = dict(zip(cat.names, cat.categories, strict=True))
    sample = next(r for r in (generate_sample(0, 0, i, P) for i in range(2, 200, 5)) if r["knowledge"])
    assert (sample["question"], sample["clean_answer"]) in asked
    for question, category in asked:
        (name,) = [n for n in fact if f" {n}." in question]
        assert fact[name] == category


def test_image_replay_needs_knowledge_questions_to_take_images_from():
    with pytest.raises(SpecError, match=r"image_replay.*knowledge_prob > 0"):
        load_profile(
            "smoke",
            {
                "data": {"synth_ads": {"knowledge_prob": 0.0}},
                "teacher": {"pretraining": {"image_replay": 0.5}},
            },
        )


def test_pretraining_needs_the_synth_ads_catalogue():
    with pytest.raises(SpecError, match=r"teacher.pretraining.*catalogue_size > 0 \(else set"):
        load_profile("smoke", {"data": {"synth_ads": {"catalogue_size": 0}}})


@pytest.mark.parametrize("epochs, batches, steps", [(0.3, 157, 47), (1, 157, 157), (4, 12, 48), (0, 9, 0)])
def test_a_fractional_budget_takes_that_share_of_an_epoch(epochs, batches, steps):
    assert distillation_steps(epochs, batches) == steps
