"""Per-method weights records: what each ``fuse@<method>`` stage depends on instead of the whole
``models/trained`` folder (issue #14: changing one method's recipe re-runs only its own chain).

:func:`write_index` writes ``models/weights/<method>.json`` for **every** configured fusion method:
``{"method", "kind", "files": [{"path", "digest"}]}`` — the weight files the method loads
(:meth:`FusionMethod.input_files`: a trained checkpoint ``models/trained/<kind>.pth``, a published
file, MLFuse's ``official`` / ``trained`` file, a precomputed folder) with their content digest
(:mod:`pipeline.fingerprint`; ``null`` when absent: the fusion stage reports it), and no file for
the methods without weights. The record of a method
changes only when its own options or its own weight bytes change, so DVC re-runs only that
method's ``fuse@`` and what follows it (DVC skips a stage whose dependencies hash the same).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from pipeline.results import write_json

INDEX_ROOT = Path("models") / "weights"


def index_file(method: str, root: str | Path = INDEX_ROOT) -> Path:
    """``models/weights/<method>.json``."""
    return Path(root) / f"{method}.json"


def record(name: str, options: Mapping | None) -> dict:
    """The weights record of fusion method ``name`` configured with ``options``."""
    from pipeline.errors import FuseBenchError
    from pipeline.fingerprint import file_digest, tree_digest
    from pipeline.fusion.registry import get_method

    options = dict(options or {})
    try:
        method = get_method(name, **options)
    except FuseBenchError as err:  # the method's own fuse@ stage reports it; the others go on
        return {"method": name, "kind": options.get("kind") or name, "error": str(err)}
    files = []
    for path in method.input_files():
        path = Path(path)
        digest = file_digest(path) if path.is_file() else tree_digest(path) if path.is_dir() else None
        files.append({"path": str(path), "digest": digest})
    return {"method": name, "kind": options.get("kind") or name, "files": files}


def _file_state(files: list[dict]) -> bool:
    """True when every recorded file still has its recorded digest (absent stays absent)."""
    from pipeline.fingerprint import file_digest, tree_digest

    for entry in files:
        path = Path(entry["path"])
        digest = file_digest(path) if path.is_file() else tree_digest(path) if path.is_dir() else None
        if digest != entry.get("digest"):
            return False
    return True


def _reuse_key(name: str, options: Mapping | None) -> str:
    """What decides a record besides its files' bytes: the options, the code that resolves them
    (:mod:`pipeline.fusion` and what it imports) and ``$FUSEBENCH_SHARED`` (published weights)."""
    import os

    from pipeline.fingerprint import code_digest, content_key

    return content_key(name=name, options=dict(options or {}), shared=os.environ.get("FUSEBENCH_SHARED", "../shared"),
                       code=code_digest("pipeline.fusion.weights_index"))


def write_index(methods: Mapping[str, Mapping | None], root: str | Path = INDEX_ROOT,
                memo: str | Path | None = None) -> list[Path]:
    """Write :func:`record` of every method in ``methods`` (``fusion.methods``) under ``root``;
    records of methods no longer configured are removed.

    ``memo`` (a JSON file outside DVC's outputs, e.g. ``.cache/weights_index.json``): a record
    whose options, code and ``$FUSEBENCH_SHARED`` (:func:`_reuse_key`), file bytes and own bytes are
    those of the last run is kept without building the method, so an unchanged ``dvc repro``
    does not import torch for the registry. Every weight file is still hashed each time."""
    import json

    from pipeline.fingerprint import file_digest

    root = Path(root)
    try:
        last = json.loads(Path(memo).read_text()) if memo else {}
    except (OSError, ValueError):
        last = {}
    memory, written = {}, []
    for name, options in methods.items():
        path, key, seen = index_file(name, root), _reuse_key(name, options) if memo else None, last.get(name) or {}
        try:
            kept = (key is not None and seen.get("key") == key and path.is_file()
                    and file_digest(path) == seen.get("record") and _file_state(json.loads(path.read_text())["files"]))
        except (OSError, ValueError, KeyError, TypeError):
            kept = False
        written.append(path if kept else write_json(path, record(name, options)))
        if memo:
            memory[name] = {"key": key, "record": file_digest(path)}
    if memo:
        write_json(memo, memory)
    for stale in set(root.glob("*.json")) - {Path(p) for p in written}:
        stale.unlink()
    return written
