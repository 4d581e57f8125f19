"""The advertiser catalogue: long-tail knowledge that lives in the language model, not in the images.

Why: the paper compresses a model pretrained on far more than the 12k samples it distils on, so knowledge
that pruning destroys cannot be taught back from D_d. Here every advertiser has an invented name and a fixed
product category. Knowledge questions name only the advertiser (the image shows a generic box), so only the
fact answers them. Training ads draw advertisers with Zipf-like frequency, so D_d covers the head of the
catalogue and misses much of its tail; the evaluation splits ask about every advertiser equally often. The
teacher learns the whole catalogue from a text-only pretraining corpus (harness/data/synth_ads.py,
`pretraining_corpus`), the way an LLM knows brands from its pretraining text. data_cards/synth_ads.md
documents the design and the measured coverage.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
CATALOGUE_STREAM = 7  # RNG stream of the catalogue, apart from the splits' (0, 1, 2) in data/loaders.py
CORPUS_STREAM = 8  # RNG stream of the pretraining corpus (harness/data/synth_ads.py)

KNOWLEDGE_QUESTIONS = (
    "This ad is from {advertiser}. What product category does this ad promote?",
    "Advertiser: {advertiser}. Which category is advertised?",
)
# the pretraining corpus states each fact in prose as well as in the question form
FACT_STATEMENTS = (
    "{advertiser} is a {category} brand.",
    "Ads from {advertiser} promote {category}.",
    "{advertiser} sells {category} products.",
)


@dataclass(frozen=True)
class Catalogue:
    """Names and categories of every advertiser, and the Zipf weights with which labelled ads draw them."""

    names: tuple[str, ...]
    categories: tuple[str, ...]
    weights: np.ndarray

    def draw(self, rng: np.random.Generator, uniform: bool) -> int:
        """One advertiser's index: drawn with its Zipf weight (training ads: popular advertisers buy more
        ads), or uniformly (evaluation: every advertiser asked about equally often, as entity-knowledge
        benchmarks sample across popularity, so a split measures how much of the catalogue a model knows)."""
        return (
            int(rng.integers(len(self.names)))
            if uniform
            else int(rng.choice(len(self.names), p=self.weights))
        )


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct invented names of 2-3 consonant-vowel syllables (e.g. "Kovira"); no real brand."""
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    names: dict[str, None] = {}
    while len(names) < n:
        k = 2 + int(rng.random() < 0.6)
        names["".join(syllables[int(i)] for i in rng.integers(len(syllables), size=k)).capitalize()] = None
    return list(names)


@functools.lru_cache(maxsize=8)
def catalogue(seed: int, size: int, zipf_exponent: float, categories: tuple[str, ...]) -> Catalogue:
    """The catalogue of a dataset seed: categories balanced over advertisers and assigned at random (so a
    name says nothing about its category), Zipf ranks in a random order (nor does popularity)."""
    rng = np.random.default_rng([seed, CATALOGUE_STREAM])
    names = _names(rng, size)
    cats = [categories[i % len(categories)] for i in rng.permutation(size)]
    rank = rng.permutation(size)
    weights = 1.0 / (rank + 1.0) ** zipf_exponent
    return Catalogue(tuple(names), tuple(cats), weights / weights.sum())
