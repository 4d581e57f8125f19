"""results/index.html (`python -m harness report --html`) opened in headless Chromium, as a reader opens it
from the folder: every figure loads, the claims table shows every claim, the filter shows one experiment.
Debian's chromium package runs it; .ci/run installs it, and without it the test says so and skips."""

import json
import re
import shutil
import subprocess

import pytest

from harness.config.paths import ROOT
from harness.report.html import page
from tests.helpers import SUBPROCESS_TIMEOUT

RESULTS = ROOT / "results"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _status(url: str) -> dict:
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,  # none unless HARNESS_TEST_TIMEOUT says: a busy machine is no failure
    )
    found = re.search(r'<span id="status"([^>]*)>', done.stdout)
    assert found, done.stderr[-2000:]
    return dict(re.findall(r'data-([a-z-]+)="(\d+)"', found.group(1)))


def test_the_committed_page_is_the_one_the_results_give():
    assert (RESULTS / "index.html").read_text(encoding="utf-8") == page(RESULTS)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")
def test_every_figure_loads_and_every_claim_shows_in_a_real_browser():
    figures = sorted(RESULTS.glob("*/*.png"))
    claims = json.loads((RESULTS / "claims.json").read_text())["claims"]
    status = _status((RESULTS / "index.html").as_uri())
    assert status["images"] == status["loaded"] == str(len(figures))
    assert status["claims-rows"] == str(len(claims))
    one = _status((RESULTS / "index.html").as_uri() + "#rq1_stagewise")  # the filter: claims + one experiment
    assert one["shown"] == "2" and int(status["shown"]) > 2
