"""The committed results re-render byte for byte from their result files alone, `report` never imports torch,
and a cached result takes on a renamed run without rerunning anything.

Why: every table, figure, trace CSV and the claims report must be a function of result.json; a change to the
report code that moves a single byte shows here (figures are deterministic: harness/report/figures.py fixes
their metadata).
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from harness import registry
from harness.commands.run import run_experiment
from harness.config.paths import EXPERIMENTS_DIR, ROOT
from harness.report.readme import DOCUMENTS, fill_tables
from harness.results import load_result

RESULTS = ROOT / "results"
RENDERED = (".md", ".tex", ".csv", ".png", ".pdf")
WRITTEN = ("claims.json",)  # the report's own JSON (result.json files are its input)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """`python -m harness report` over a copy of results/ holding nothing but the result files; the folder is
    named 'results' since claims.md cites it. Returns the folder and the modules the command imported."""
    root = tmp_path_factory.mktemp("rerender") / "results"
    patterns = [f"*{suffix}" for suffix in RENDERED] + list(WRITTEN)
    shutil.copytree(RESULTS, root, ignore=shutil.ignore_patterns(*patterns))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "harness", "report", "--results-dir", str(root)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {m.group(1) for m in re.finditer(r"^import time:.*\|\s*([\w.]+)\s*$", out.stderr, re.M)}
    return root, imported


def test_report_never_imports_torch(rendered):
    _, imported = rendered
    # the log is read right (modules imported by importlib.import_module, as the registry loads renderers,
    # are not timed; what they import is)
    assert "harness.report.figures" in imported and "pandas" in imported
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}


def test_every_committed_table_figure_and_trace_rerenders_byte_for_byte(rendered):
    root, _ = rendered
    ours = lambda p: p.suffix in RENDERED or p.name in WRITTEN  # noqa: E731
    committed = sorted(p.relative_to(RESULTS) for p in RESULTS.rglob("*") if ours(p))
    produced = sorted(p.relative_to(root) for p in root.rglob("*") if ours(p))
    assert produced == committed
    assert [str(p) for p in committed if (RESULTS / p).read_bytes() != (root / p).read_bytes()] == []


def test_readme_and_data_card_tables_are_the_rendered_ones(rendered, tmp_path):
    root, _ = rendered
    copies = []
    for doc in DOCUMENTS:
        copies.append(tmp_path / doc.name)
        shutil.copy(doc, copies[-1])
    assert fill_tables(root, tuple(copies)) == []


def test_a_renamed_run_is_restated_not_rerun(tmp_path, monkeypatch):
    """Labels do not enter the spec hash: the cached result takes on the new label, its table follows, and
    not one number changes."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS / "rq5_hard_label", results / "rq5_hard_label")
    text = (EXPERIMENTS_DIR / "rq5_hard_label.yaml").read_text()
    (tmp_path / "rq5_hard_label.yaml").write_text(text.replace("Hard-label distillation", "Hard labels too"))

    def no_run(kind):
        raise AssertionError(f"a {kind} recipe was started: the relabelled result should have been cached")

    monkeypatch.setattr(registry, "recipe", no_run)
    seeds = len(load_result(RESULTS / "rq5_hard_label" / "result.json").seeds)  # what results/ holds
    out, how = run_experiment(
        tmp_path / "rq5_hard_label.yaml", "cpu", results, tmp_path / "cache", False, False, seeds
    )
    assert how == "cached"
    new, old = load_result(out / "result.json"), load_result(RESULTS / "rq5_hard_label" / "result.json")
    assert [r.label for r in new.runs] == ["All stages", "Hard labels too"]
    assert [r.seeds for r in new.runs] == [r.seeds for r in old.runs] and new.teacher == old.teacher
    assert "Hard labels too — ours" in (out / "table.md").read_text()
