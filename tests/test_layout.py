"""The one layout map (CONTRIBUTING.md, "Layout") against the tree, and the README as a newcomer's page."""

import re

from harness.config.paths import ROOT


def _map() -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    return text.split("## Layout\n\n```\n", 1)[1].split("\n```\n", 1)[0]


def test_every_module_is_on_the_map_and_every_file_the_map_names_exists():
    layout = _map()
    named = set(re.findall(r"\b([a-z_0-9]+\.(?:py|sh))\b", layout))
    modules = {p.name for p in (ROOT / "harness").rglob("*.py") if not p.name.startswith("__")}
    assert modules - named == set(), "modules missing from CONTRIBUTING.md's layout"
    scripts = {p.name for p in (ROOT / "scripts").iterdir()}
    assert named - modules - scripts - {"run_all.py"} == set(), "the layout names files that do not exist"
    folders = {p.name for p in (ROOT / "harness").iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert all(f"{f}/" in layout for f in folders)


def test_the_readme_is_short_and_links_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(((?:docs|data_cards)/[^)#]+|CONTRIBUTING\.md)(?:#[^)]*)?\)", readme)
    assert {"docs/results.md", "docs/using.md", "docs/gpu.md", "CONTRIBUTING.md"} <= set(links)
    assert all((ROOT / link).is_file() for link in links)
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    assert pages <= set(links), "a docs/ page the README does not link"


def test_every_image_a_page_shows_exists():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), (page.name, target)


def test_every_registered_kind_has_its_code_and_result_model():
    """Each kind in harness/registry.py names a recipe and a renderer that exist, the schema accepts exactly
    those kinds, and results.py has the typed model of each kind's result file."""
    from typing import get_args

    from harness import registry
    from harness.config.experiment import Experiment
    from harness.results import MODELS

    assert set(get_args(Experiment.model_fields["kind"].annotation)) == set(registry.KINDS) == set(MODELS)
    for kind in registry.KINDS:
        assert callable(registry.recipe(kind)) and callable(registry.renderer(kind))
