"""results/constraints.txt: the exact versions of the libraries behind the committed results, for pip's `-c`.

Why generated: every result file records the versions it was computed with (`provenance.versions`,
harness/provenance.py), so the pins are read from the results themselves and can never drift from them.
`.ci/run` installs with them, and a reader who wants the committed numbers bit for bit installs the same
(`pip install -c results/constraints.txt -e .`). A library that results disagree on is pinned to the version
most of them used, and the file says so.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness.cache import write_atomic

NOT_PACKAGES = ("python", "platform")


def constraints(root: Path) -> str:
    """The constraints file for the result files under `root`."""
    seen: dict[str, Counter] = {}
    files = sorted(Path(root).glob("*/result.json"))
    for f in files:
        versions = json.loads(f.read_text(encoding="utf-8")).get("provenance", {}).get("versions", {})
        for lib, version in versions.items():
            if lib not in NOT_PACKAGES and version:
                seen.setdefault(lib, Counter())[version.split("+")[0]] += 1  # 2.13.0+cpu: any 2.13.0 build
    lines = [
        f"# The library versions behind the {len(files)} result files here, read from their provenance",
        "# (python -m harness report writes this file). Exact reproduction:",
        "#   pip install -c results/constraints.txt -e .",
    ]
    for lib in sorted(seen):
        counts = seen[lib]
        version, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if len(counts) > 1:
            others = ", ".join(f"{v} ({c})" for v, c in sorted(counts.items()) if v != version)
            lines.append(f"# {lib}: {n} results used {version}; also {others}")
        lines.append(f"{lib}=={version}")
    return "\n".join(lines) + "\n"


def write_constraints(root: Path) -> Path:
    path = Path(root) / "constraints.txt"
    write_atomic(path, constraints(root))
    return path
