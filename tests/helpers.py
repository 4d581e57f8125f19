"""Tiny models and processors for tests (built locally, nothing downloaded), and the one limit on how long a
test's subprocess may run."""

import os
import subprocess
import sys
from pathlib import Path

from harness.config.loading import load_profile
from harness.config.paths import ROOT
from harness.data.processor import build_processor
from harness.data.synth_ads import prompt_text
from harness.models.blip2 import build_config, build_model

# Seconds a test's subprocess may run: none unless HARNESS_TEST_TIMEOUT says, so a correct but slow run on a
# loaded machine never fails a test; set it where a hung subprocess must not stall CI.
SUBPROCESS_TIMEOUT = (
    float(os.environ["HARNESS_TEST_TIMEOUT"]) if os.environ.get("HARNESS_TEST_TIMEOUT") else None
)

TEXTS = [
    prompt_text("What is the background color of this ad?") + " red",
    prompt_text("Which brand logo appears in this ad?") + " none",
] * 10


def tiny(family: str = "llama", tie: bool = False, seed: int = 0):
    """A smoke-profile-sized BLIP-2 (random weights) and its processor."""
    prof = load_profile("smoke")
    lm = prof.model.language_model.model_copy(update={"family": family, "tie_word_embeddings": tie})
    cfg = prof.model.model_copy(update={"language_model": lm})
    proc = build_processor(TEXTS, 300, cfg.image_size, cfg.qformer.num_query_tokens)
    tok = proc.tokenizer
    config = build_config(
        cfg,
        len(tok),
        tok.convert_tokens_to_ids("<image>"),
        {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id},
    )
    return build_model(config, seed).eval(), proc


def harness_cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in a subprocess, as a user types it (output captured, no time limit unless
    HARNESS_TEST_TIMEOUT says)."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
