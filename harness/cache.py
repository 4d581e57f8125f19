"""Content-addressed storage of runs: every artefact lives under the hash of the inputs that made it.

Why: a dataset, a teacher or a compression run is computed once and reused by every experiment that needs
the same inputs; writing through a temporary folder and a rename means a killed run never leaves a
half-written artefact that a later run would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def content_hash(obj: Any, length: int = 12) -> str:
    """Stable short hash of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


@functools.lru_cache(maxsize=65536)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, memoised by its size and modification time: re-keying an unchanged folder reads
    nothing twice in one process."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_hash(root: Path, files: list[Path], length: int = 12) -> str:
    """Hash of the content of `files` (and of their paths relative to `root`): the key of anything loaded from
    a folder, so that a changed checkpoint or dataset gets a new key instead of a stale cache entry."""
    entries = []
    for f in sorted(set(files)):
        st = f.stat()
        entries.append([str(f.relative_to(root)), _file_sha256(str(f.resolve()), st.st_size, st.st_mtime_ns)])
    return content_hash(entries, length)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; it becomes `target` only if the block finishes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
