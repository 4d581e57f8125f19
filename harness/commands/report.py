"""`python -m harness report`: re-render every result folder, the claims report, the documents that quote
results, exports and the HTML page, from the result files alone (no torch).
"""

from __future__ import annotations

from pathlib import Path

from harness import parallel, registry
from harness.commands.folders import results_root
from harness.config.files import SpecError
from harness.config.loading import DEFAULT_PROFILE, experiment_files, load_experiment
from harness.report.claims import write_claims
from harness.report.constraints import write_constraints
from harness.report.frame import export_frame
from harness.report.html import write_html
from harness.report.readme import fill_tables


def cmd_report(args) -> int:
    root = args.results_dir or results_root(args.profile)
    if not Path(root).is_dir():
        raise SpecError(f"--results-dir: {root} is not a folder; nothing to report")
    for path in experiment_files():
        exp = load_experiment(path)
        if (root / exp.name / "result.json").is_file():
            registry.renderer(exp.kind)(root / exp.name)
            print(f"rendered {root / exp.name}")
    publish(root)
    if args.html:
        print(f"page: {write_html(root)}")
    for fmt in args.format or []:
        try:
            print(f"exported {export_frame(root, fmt)}")
        except ImportError as e:
            raise SpecError(f"--format {fmt}: {e.msg}; pip install pyarrow (the export extra)") from None
    return 0


def publish(root: Path) -> None:
    """The claims report from whatever results exist; then the committed results (and only those) are
    copied into the README, docs/ and data cards."""
    if not parallel.is_main():  # under accelerate launch the main process writes reports
        return
    if Path(root).is_dir():
        print(f"claims report: {write_claims(root)}")
        print(f"library versions behind the results: {write_constraints(root)}")
        if (Path(root) / "index.html").is_file():  # once written (report --html), kept in step with the rest
            print(f"page: {write_html(root)}")
    if Path(root).resolve() == results_root(DEFAULT_PROFILE).resolve():
        for doc in fill_tables(root):
            print(f"updated tables in {doc}")
