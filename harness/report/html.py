"""`python -m harness report --html`: results/index.html, one static page with the claims, every table and
every figure, filterable by experiment (the list, or `index.html#EXPERIMENT`), that works offline from the
folder (no script or style from elsewhere; figures by relative path).

Why: PNGs and Markdown tables are hard to publish together; a page in the results folder can be opened or
served as it is. It is built from the same files the other reports write (claims.md, each table.md), so it
never shows a number they do not.
"""

from __future__ import annotations

import html
from pathlib import Path

import markdown

from harness.cache import write_atomic
from harness.config.loading import experiment_files, load_experiment

# what each figure shows, for its caption (the figure's own title says which paper artefact it reproduces)
CAPTIONS = {
    "figure_6_sawtooth": "Validation accuracy after every pruning step (dips) and every distillation step.",
    "figure_10_size": "Parameters after each pruning step, whole model and language model.",
    "figure_11_log2size": "Size (log2 axis) against accuracy after distillation, coloured by stage.",
    "figure_7_sample_size": "Accuracy after compression against the number of distillation samples.",
    "figure_8_distillation": "Accuracy per distillation loss.",
    "figure_baselines_tradeoff": "Each method's accuracy and batch-1 speed at its final size.",
    "figure_pruning_curves": "Importance criteria alone: accuracy as the teacher is pruned, no recovery.",
    "figure_budget_map": "Final accuracy against the distillation budget per pruning step.",
    "figure_public_lmms": "Each model's accuracy and batch-1 speed-up over the first.",
}

STYLE = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.2rem .4rem;text-align:left}th{background:#f3f3f3}
figure{margin:1rem 0}img{max-width:100%}figcaption{font-size:.85rem;color:#555}
section{border-top:1px solid #ddd;margin-top:1.5rem}nav{position:sticky;top:0;background:#fff;padding:.5rem 0}
#status{font-size:.75rem;color:#888}"""

# counts what the page shows once everything has loaded, for readers and for the browser test
SCRIPT = """function show(){const v=document.getElementById('filter').value;
document.querySelectorAll('section[data-experiment]').forEach(s=>{
s.hidden=!(v==='all'||s.dataset.experiment===v||s.dataset.experiment==='claims');});}
window.addEventListener('load',()=>{const want=decodeURIComponent(location.hash.slice(1));
const sel=document.getElementById('filter');
if([...sel.options].some(o=>o.value===want)){sel.value=want;show();}
const shown=[...document.querySelectorAll('section[data-experiment]')].filter(x=>!x.hidden).length;
const imgs=[...document.images];
const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
const rows=document.querySelectorAll('#claims table tbody tr').length;
const st=document.getElementById('status');st.dataset.images=imgs.length;st.dataset.loaded=ok;
st.dataset.claimsRows=rows;st.dataset.shown=shown;
st.textContent=`${ok} of ${imgs.length} figures loaded; ${rows} claim rows`;});"""


def _md(path: Path) -> str:
    return markdown.markdown(path.read_text(encoding="utf-8"), extensions=["tables"])


def page(root: Path) -> str:
    """The page's HTML for the results under `root`."""
    root = Path(root)
    names = [f.stem for f in experiment_files() if (root / f.stem / "result.json").is_file()]
    sections = []
    if (root / "claims.md").is_file():
        sections.append(f'<section id="claims" data-experiment="claims">{_md(root / "claims.md")}</section>')
    for name in names:
        exp = load_experiment(name)
        parts = [f"<h2>{html.escape(name)}</h2>", f"<p><em>{html.escape(exp.reproduces)}</em></p>"]
        if (root / name / "table.md").is_file():
            parts.append(_md(root / name / "table.md"))
        for fig in sorted((root / name).glob("*.png")):
            caption = html.escape(CAPTIONS.get(fig.stem, fig.stem.replace("_", " ")))
            parts.append(
                f'<figure><img src="{name}/{fig.name}" alt="{caption}" loading="eager">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        sections.append(f'<section data-experiment="{html.escape(name)}">{"".join(parts)}</section>')
    options = "".join(f'<option value="{n}">{n}</option>' for n in names)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>AntGMM pruning + distillation: results</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>AntGMM pruning + distillation: results</h1>"
        '<nav><label>Experiment <select id="filter" onchange="show()">'
        f'<option value="all">all</option>{options}</select></label> <span id="status"></span></nav>'
        + "\n".join(sections)
        + f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_html(root: Path) -> Path:
    path = Path(root) / "index.html"
    write_atomic(path, page(root))
    return path
