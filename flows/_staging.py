"""Stage outputs that appear all at once, and resume after a failure.

A stage builds each output folder in a *staging* folder beside it, inside a container named after
a fingerprint of everything that decides its content (the params the stage reads, its inputs and
the source of the code that writes it): ``results/metrics/.ir.partial-<fingerprint>/ir`` (same
last name as the output, so a library that writes ``<root>/<method>/`` gets the container as its
root). Only when the whole stage succeeded is the staging folder renamed onto the real output
(one ``os.replace`` per output), so a failed or
interrupted stage never leaves a half-written output that DVC would cache. Re-running the stage
with the same fingerprint finds the staging folder again and the library's own resume logic skips
what is already there; a different fingerprint (changed params or code) starts clean and removes
stale staging folders. ``.partial-*`` is in ``.dvcignore`` and ``.gitignore``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

MARK = ".partial-"


def _source_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts))
        elif path.is_file():
            files.append(path)
    return files


def fingerprint(config: Any, code: Sequence[str | Path] = ()) -> str:
    """Short hash of ``config`` (JSON, sorted keys) and the bytes of the ``code`` files/folders (``*.py``)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for path in _source_files(code):
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def file_stamp(path: str | Path) -> tuple[str, int, int]:
    """``(path, size, mtime_ns)``: cheap identity of an input file for :func:`fingerprint`."""
    stat = Path(path).stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def samples_stamp(samples: Iterable) -> list:
    """Identity of dataset samples (name and both image files) for :func:`fingerprint`."""
    return [(s.name, file_stamp(s.ir), file_stamp(s.vis)) for s in samples]


def staging_path(final: str | Path, key: str) -> Path:
    """``<parent>/.<name>.partial-<key>/<name>``: where ``final`` is built."""
    final = Path(final)
    return final.with_name(f".{final.name}{MARK}{key}") / final.name


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def publish(staging: Path, final: Path) -> Path:
    """Replace ``final`` by ``staging`` (a rename; the old content is removed afterwards)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        _remove(old)
    return final


@contextlib.contextmanager
def staged(finals: Sequence[str | Path], key: str) -> Iterator[list[Path]]:
    """Yield one staging folder per output folder in ``finals``; publish them all when the block
    succeeds, keep them (for resume) when it raises. Staging folders of other keys are removed."""
    finals = [Path(f) for f in finals]
    stagings = []
    for final in finals:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_path(final, key)
        for stale in final.parent.glob(f".{final.name}{MARK}*"):
            if stale != staging.parent:
                _remove(stale)
        staging.mkdir(parents=True, exist_ok=True)
        stagings.append(staging)
    yield stagings
    for staging, final in zip(stagings, finals):
        publish(staging, final)
        shutil.rmtree(staging.parent, ignore_errors=True)
