"""The stand-in model of a profile: an untrained BLIP-2 of the profile's shape and its fitted processor.

Why apart from the store and the recipes: the teacher recipe and the from-scratch baseline both build one.
"""

from __future__ import annotations

import datasets

from harness.config.profile import Profile
from harness.data.processor import build_processor, dataset_texts
from harness.data.synth_ads import catalogue_questions, pretraining_corpus
from harness.models.blip2 import build_config, build_model


def teacher_corpus(profile: Profile) -> list[str]:
    """The teacher's pretraining corpus (empty without pretraining); a function of the profile alone."""
    pre, d = profile.teacher.pretraining, profile.data
    return [] if pre is None else pretraining_corpus(d.seed, d.synth_ads, pre.mentions)


def teacher_catalogue_questions(profile: Profile) -> list[tuple[str, str]]:
    """Every knowledge question of the catalogue the teacher replays with images (empty without it)."""
    pre, adapt, d = profile.teacher.pretraining, profile.teacher.adaptation, profile.data
    asked = pre is not None and (pre.image_replay or (adapt is not None and adapt.image_replay))
    return catalogue_questions(d.seed, d.synth_ads) if asked else []


def new_model(
    profile: Profile, data: datasets.DatasetDict, language_model: dict | None = None, seed: int | None = None
):
    """An untrained model of the profile's shape (language-model fields replaced by `language_model`) and its
    processor (tokenizer fitted on the train split and the teacher's pretraining corpus, so that every model
    of a profile shares one vocabulary)."""
    tokens = [*dataset_texts(data["train"].select_columns(["question", "answer"])), *teacher_corpus(profile)]
    processor = build_processor(
        tokens, profile.teacher.vocab_size, profile.model.image_size, profile.model.qformer.num_query_tokens
    )
    tok = processor.tokenizer
    lm = profile.model.language_model.model_copy(update=language_model or {})
    shape = profile.model.model_copy(update={"language_model": lm})
    config = build_config(
        shape,
        len(tok),
        tok.convert_tokens_to_ids("<image>"),
        {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id},
    )
    return build_model(config, profile.teacher.seed if seed is None else seed), processor
