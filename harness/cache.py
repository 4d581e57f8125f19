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
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness import parallel

_UMASK = os.umask(0)
os.umask(_UMASK)


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
    """Yield a temporary folder beside `target`; it becomes `target` only if the block finishes. In a
    process other than the main one under `accelerate launch`, a folder that is thrown away: only the main
    process writes (harness/parallel.py)."""
    if not parallel.is_main():
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.rank{parallel.rank()}-") as tmp:
            yield Path(tmp)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's 0700 would make a shared cache unreadable to others
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write a text (or binary) file through a temporary file and a rename, so readers never see half a
    file (in the main process only, as atomic_dir)."""
    if not parallel.is_main():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 likewise
    try:
        with os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


MANIFEST = "manifest.json"


class CorruptEntry(ValueError):
    """A cache entry whose files do not match its manifest or seal; it is rebuilt, never used."""


def _manifest_files(folder: Path) -> list[Path]:
    """The files a folder's manifest covers: all of them except the manifest itself, temporary files and the
    evaluations cached beside a model (eval/: each is sealed on its own and tied to the model's manifest)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name != MANIFEST
        and not p.name.startswith(".")
        and p.relative_to(folder).parts[0] != "eval"
    )


def write_manifest(folder: Path) -> str:
    """Record the sha256 and size of every file of `folder` in its manifest (written last, by rename) and
    return the manifest's hash: the identity of the folder's content."""
    entries = {}
    for f in _manifest_files(folder):
        st = f.stat()
        entries[str(f.relative_to(folder))] = {
            "sha256": _file_sha256(str(f.resolve()), st.st_size, st.st_mtime_ns),
            "size": st.st_size,
        }
    write_json(folder / MANIFEST, {"files": entries})
    return content_hash(entries)


def verify_manifest(folder: Path) -> str:
    """The manifest's hash if every file it lists is present with its size and sha256 (and no other file
    has appeared); else CorruptEntry naming the folder, the file and what is wrong."""
    path = folder / MANIFEST
    try:
        entries = json.loads(path.read_text())["files"]
    except FileNotFoundError:
        raise CorruptEntry(f"{folder}: no {MANIFEST}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptEntry(f"{path}: unreadable ({e})") from None
    well_formed = isinstance(entries, dict) and all(
        isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
        for e in entries.values()
    )
    if not well_formed:
        raise CorruptEntry(f"{path}: not a manifest (files must map each name to its size and sha256)")
    present = {str(f.relative_to(folder)) for f in _manifest_files(folder)}
    if extra := sorted(present - set(entries)):
        raise CorruptEntry(f"{folder}: files not in the manifest: {', '.join(extra)}")
    for name, e in entries.items():
        f = folder / name
        if not f.is_file():
            raise CorruptEntry(f"{f}: missing")
        st = f.stat()
        if st.st_size != e["size"]:
            raise CorruptEntry(
                f"{f}: {st.st_size} bytes, the manifest says {e['size']} (truncated or replaced)"
            )
        if _file_sha256(str(f.resolve()), st.st_size, st.st_mtime_ns) != e["sha256"]:
            raise CorruptEntry(f"{f}: content differs from the manifest's sha256 (altered)")
    return content_hash(entries)


def write_sealed_json(path: Path, obj: dict) -> None:
    """A JSON record with the sha256 of its own content, so that a file edited by hand or cut short is
    detected on reading (`read_sealed_json`)."""
    write_json(path, {**obj, "sha256": content_hash(obj, 64)})


def read_sealed_json(path: Path) -> dict | None:
    """The record written by `write_sealed_json`, None if there is none; CorruptEntry if it was altered."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise CorruptEntry(f"{path}: not valid JSON ({e})") from None
    seal = record.pop("sha256", None) if isinstance(record, dict) else None
    if seal is None or content_hash(record, 64) != seal:
        raise CorruptEntry(f"{path}: content does not match its seal (edited or forged)")
    return record


def usable(path: Path, check) -> bool:
    """Whether the cache entry at `path` passes `check`; one that does not is reported with its path and
    why, and removed, so that the caller rebuilds it. A corrupt entry is never used."""
    try:
        check(path)
        return True
    except CorruptEntry as e:
        print(f"corrupt cache entry, rebuilding it: {e}", file=sys.stderr, flush=True)
        if not parallel.is_main():  # the main process removes it
            return False
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return False


_LOCKS: dict[str, VisibleLock] = {}


def entry_lock(path: Path) -> contextlib.AbstractContextManager:
    """A lock beside the cache entry at `path`: a second process that needs the entry waits for the first
    and then finds it built, instead of building it again. One lock object per entry and process, so that
    taking it again inside the same process does not wait on itself. Under `accelerate launch`, the
    processes of one run enter and leave the block together (only the main one takes the file lock), so
    each decides from the same cache and reads what the main one wrote inside it."""
    if parallel.world() > 1:
        return _together(path)
    return _file_lock(path)


@contextlib.contextmanager
def _together(path: Path) -> Iterator[None]:
    """The main process takes the file lock (another job may hold it), and only then do the others enter:
    every process reads the entry as the main one will, and leaves once it has written."""
    with _file_lock(path) if parallel.is_main() else contextlib.nullcontext():
        parallel.barrier()
        yield
        parallel.barrier()


WAIT_NOTICE_S = (2.0, 30.0)  # the first word on a lock held elsewhere, then one every 30 s while it lasts


class VisibleLock:
    """A file lock that says who holds it while it waits: the holder writes its pid, host and start time
    beside the lock, and a waiter prints them, then again every WAIT_NOTICE_S[1] seconds. Reentrant within a
    process, as FileLock is; a holder killed by SIGKILL frees the lock (the OS drops it) and leaves a stale
    note that the next holder overwrites."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = FileLock(str(path.parent / f".{path.name}.lock"))
        self.note = path.parent / f".{path.name}.holder"

    def holder(self) -> str:
        try:
            who = json.loads(self.note.read_text())
            return f"held by pid {who['pid']} on {who['host']} since {who['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "held by another process"

    def __enter__(self) -> VisibleLock:
        first = not self.lock.is_locked
        wait, waited = WAIT_NOTICE_S[0], 0.0
        while True:
            try:
                self.lock.acquire(timeout=wait)
                break
            except Timeout:
                waited += wait
                print(f"waiting {waited:.0f}s for {self.path}: {self.holder()}", file=sys.stderr, flush=True)
                wait = WAIT_NOTICE_S[1]
        if first:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            note = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
            self.note.write_text(json.dumps(note))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lock.lock_counter == 1:
            self.note.unlink(missing_ok=True)
        self.lock.release()


def _file_lock(path: Path) -> VisibleLock:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key not in _LOCKS:
        _LOCKS[key] = VisibleLock(path)
    return _LOCKS[key]
