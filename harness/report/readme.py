"""Copy rendered tables into the README, the docs/ pages and data cards, between markers, so prose never
carries a hand-typed number: `<!-- table:NAME -->` ... `<!-- /table:NAME -->` is replaced by
results/NAME/table.md (or results/NAME.md)."""

from __future__ import annotations

import re
from pathlib import Path

from harness.cache import write_atomic
from harness.config.paths import ROOT

DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data_cards" / "synth_ads.md")
MARKER = re.compile(r"(<!-- table:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)


def fill_tables(results_root: Path, documents: tuple[Path, ...] = DOCUMENTS) -> list[Path]:
    """Refresh every marked block whose table exists; returns the documents that changed."""
    changed = []
    for doc in documents:
        if not doc.is_file():
            continue
        text = doc.read_text(encoding="utf-8")

        def sub(m: re.Match) -> str:
            table = Path(results_root) / m["name"] / "table.md"
            if not table.is_file():
                table = Path(results_root) / f"{m['name']}.md"  # e.g. claims.md
            if not table.is_file():
                return m.group(0)
            return f"{m.group(1)}{table.read_text(encoding='utf-8')}{m.group(4)}"

        new = MARKER.sub(sub, text)
        if new != text:
            write_atomic(doc, new)
            changed.append(doc)
    return changed
