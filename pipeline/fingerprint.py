"""Content fingerprints: the one way FuseBench decides "is this result still valid?".

Every resume or skip key (a training checkpoint, a staging folder, a per-seed marker) is built
from these functions, so it changes whenever anything that decides the result changes: the *bytes*
of the input files, the params, and the source of the code that computes it. Never names, sizes
or modification times alone (a file replaced under the same name, or rewritten with the same
size, must invalidate a key).

* :func:`file_digest` — SHA-256 of one file's bytes;
* :func:`tree_digest` — files and folders: every file's relative name and bytes, sorted;
* :func:`params_digest` — a canonical JSON encoding (sorted keys, no whitespace) of params;
* :func:`code_digest` — the source of repository modules and everything they import from the
  repository (transitively, see :mod:`pipeline.codegraph`);
* :func:`samples_digest` — the files of dataset samples (images, label files) with their names
  and splits;
* :func:`content_key` — one short key from named parts (digests or plain JSON values).

Hashing reads every byte, so file digests are memoised per process by ``(path, size, mtime_ns,
inode)``: a stage that hashes the same images twice (its key, then a sub-step's key) reads them
once. The memo only ever saves work inside one process; a new process hashes again, so nothing
stale survives between runs. SHA-256 through :mod:`hashlib` runs at several hundred MB/s per core:
the demo data (a few MB) take milliseconds, the full M3FD (about 4 GB) tens of seconds.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

CHUNK = 1 << 20
KEY_LENGTH = 16
_MEMO: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of the bytes of ``path``; memoised per process by (path, size, mtime, inode)."""
    path = Path(path)
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    cached = _MEMO.get(memo_key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    value = digest.hexdigest()
    _MEMO[memo_key] = value
    return value


def clear_memo() -> None:
    """Forget the per-process digests (tests that rewrite a file within one mtime tick use it)."""
    _MEMO.clear()


def _is_listed(path: Path, base: Path, suffixes: tuple[str, ...] | None, hidden: bool) -> bool:
    rel = path.relative_to(base).parts
    if "__pycache__" in rel:
        return False
    if not hidden and any(part.startswith(".") for part in rel):
        return False
    return suffixes is None or path.name.lower().endswith(suffixes)


def tree_files(paths: Iterable[str | Path] | str | Path, *, suffixes: Iterable[str] | None = None,
               hidden: bool = False, exclude: Iterable[str] = ()) -> list[tuple[str, Path]]:
    """``(relative name, path)`` of every file under ``paths`` (files or folders), in digest order.

    A folder contributes its files named relative to it (sorted); a file contributes its own name.
    ``suffixes`` (e.g. ``(".py",)``) keeps only matching names, ``exclude`` (e.g. ``(".cache",)``)
    drops names ending so; hidden entries (``.name``: staging
    folders, editor files) and ``__pycache__`` are left out unless ``hidden``. A missing path is an
    error: a key that silently ignored a missing input would not notice it appear.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    wanted = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    out: list[tuple[str, Path]] = []
    for index, path in enumerate(map(Path, paths)):
        if path.is_dir():
            files = sorted((p for p in path.rglob("*") if p.is_file() and _is_listed(p, path, wanted, hidden)),
                           key=lambda p: p.relative_to(path).as_posix())
            out.extend((f"{index}:{p.relative_to(path).as_posix()}", p) for p in files)
        elif path.is_file():
            out.append((f"{index}:{path.name}", path))
        else:
            raise FileNotFoundError(f"{path}: no such file or folder to fingerprint")
    dropped = tuple(exclude)
    return [(name, file) for name, file in out if not name.endswith(dropped)] if dropped else out


def tree_digest(paths: Iterable[str | Path] | str | Path, *, suffixes: Iterable[str] | None = None,
                hidden: bool = False, exclude: Iterable[str] = ()) -> str:
    """SHA-256 over the relative names and bytes of every file under ``paths`` (see
    :func:`tree_files`). Independent of where the tree lies and of listing order; changes when a
    file is added, removed, renamed or rewritten."""
    digest = hashlib.sha256()
    for name, path in tree_files(paths, suffixes=suffixes, hidden=hidden, exclude=exclude):
        digest.update(name.encode("utf-8") + b"\0" + file_digest(path).encode("ascii") + b"\n")
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, Path):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value))
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN/inf; keep them distinct from null
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _canonical(value.tolist())
    raise TypeError(f"cannot fingerprint a {type(value).__name__} ({value!r}); pass plain data or a digest")


def canonical_json(obj: Any) -> str:
    """Canonical JSON of ``obj``: sorted keys, no whitespace, tuples as lists, paths as POSIX
    strings, numpy values as Python values. Objects without a stable text form (e.g. a function,
    whose ``repr`` holds a memory address) are a ``TypeError``, never a key that differs per run."""
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def params_digest(obj: Any) -> str:
    """SHA-256 of :func:`canonical_json` of ``obj`` (key order does not matter, values do)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def code_digest(modules: Iterable[str] | str, *, transitive: bool = True) -> str:
    """SHA-256 of the source files of repository ``modules`` (dotted names, e.g. ``"flows.fuse"``
    or ``"pipeline.segmentation.train"``) and, with ``transitive``, of every repository module they
    import (also inside functions) and the packages' ``__init__`` files (see
    :func:`pipeline.codegraph.module_closure`). Third-party code is left out: its version is
    recorded by :func:`pipeline.results.versions`."""
    from pipeline import codegraph

    if isinstance(modules, str):
        modules = [modules]
    names = codegraph.module_closure(modules) if transitive else sorted(set(modules))
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode("utf-8") + b"\0" + file_digest(codegraph.module_file(name)).encode() + b"\n")
    return digest.hexdigest()


def samples_digest(samples: Iterable[Any]) -> str:
    """SHA-256 of dataset samples (:class:`pipeline.datasets.Sample`): each one's name, split, box
    labels and the bytes of every file it refers to (``ir``, ``vis``, ``seg_label``, ``box_source``)."""
    digest = hashlib.sha256()
    for sample in samples:
        files = {}
        for slot in ("ir", "vis", "seg_label", "box_source"):
            path = getattr(sample, slot, None)
            if path is not None:
                files[slot] = file_digest(path)
        boxes = getattr(sample, "boxes", None)
        digest.update(canonical_json({"name": sample.name, "split": getattr(sample, "split", None),
                                      "files": files, "boxes": boxes}).encode("utf-8") + b"\n")
    return digest.hexdigest()


def content_key(length: int = KEY_LENGTH, **parts: Any) -> str:
    """One key from named parts, each a digest string from this module or plain params-like data:
    ``content_key(params=cfg, inputs=samples_digest(s), code=code_digest("flows.fuse"))``.
    Returns the first ``length`` hex digits of the SHA-256 of their canonical JSON (16 digits =
    64 bits: collisions are not a practical concern for resume keys)."""
    if not parts:
        raise ValueError("content_key needs at least one part")
    return params_digest(parts)[:length]

