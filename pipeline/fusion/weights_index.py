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


def write_index(methods: Mapping[str, Mapping | None], root: str | Path = INDEX_ROOT) -> list[Path]:
    """Write :func:`record` of every method in ``methods`` (``fusion.methods``) under ``root``;
    records of methods no longer configured are removed."""
    root = Path(root)
    written = [write_json(index_file(name, root), record(name, options)) for name, options in methods.items()]
    for stale in set(root.glob("*.json")) - {Path(p) for p in written}:
        stale.unlink()
    return written
